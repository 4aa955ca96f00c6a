//! The server's answers to requests, and the records they carry. Byte
//! fields are CBOR byte strings.

use serde::{Deserialize, Serialize};

use crate::messages::*;

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The request was done; nothing to return.
    Done,
    /// The device is logged in.
    LoggedIn {
        /// The device.
        device: DeviceRef,
        /// Unclaimed one-time KeyPackages in stock.
        key_packages: u32,
    },
    /// KeyPackages were stored.
    KeyPackagesStored {
        /// Unclaimed one-time KeyPackages now in stock.
        key_packages: u32,
    },
    /// One KeyPackage per device of the account.
    KeyPackages {
        /// The account.
        handle: String,
        /// Its account key.
        #[serde(with = "serde_bytes")]
        account_key: Vec<u8>,
        /// Per device: the device and its package.
        packages: Vec<ClaimedKeyPackage>,
    },
    /// An account's public keys.
    User(UserInfo),
    /// A commit or message is durably in the group's log.
    Appended {
        /// Its sequence number.
        seq: u64,
        /// The group's epoch after it.
        epoch: u64,
        /// True when this was a retry of something already stored.
        duplicate: bool,
    },
    /// Messages of a group, in order.
    Messages {
        /// The messages.
        messages: Vec<Delivery>,
    },
    /// Who is online, among the asked accounts the asker shares a group
    /// with.
    Presence {
        /// False when the operator switched presence off (then `online`
        /// is empty).
        enabled: bool,
        /// Handle and whether any of its devices is connected.
        online: Vec<(String, bool)>,
    },
    /// A token for the blob endpoints.
    BlobToken {
        /// Send as `Authorization: Bearer <hex of token>`.
        #[serde(with = "serde_bytes")]
        token: Vec<u8>,
        /// Seconds it stays valid.
        expires_in: u64,
    },
    /// A group's latest GroupInfo.
    GroupInfo {
        /// The epoch it describes.
        epoch: u64,
        /// The MLS GroupInfo message.
        #[serde(with = "serde_bytes")]
        group_info: Vec<u8>,
    },
    /// A link slot: the answer, once the linking device left one.
    LinkSlot {
        /// The answer (see [`Request::LinkAnswer`]).
        #[serde(default)]
        answer: Option<serde_bytes::ByteBuf>,
        /// Seconds the slot stays open without another offer.
        expires_in: u64,
    },
    /// The link KeyPackage waiting in a slot.
    LinkPackage {
        /// The TLS-serialized link KeyPackage.
        #[serde(with = "serde_bytes")]
        key_package: Vec<u8>,
    },
    /// Operator notices, oldest first.
    Notices {
        /// The notices.
        notices: Vec<Notice>,
    },
    /// This account's devices.
    Devices {
        /// One entry per device.
        devices: Vec<DeviceRecord>,
    },
    /// A group's routing state.
    Group {
        /// Current epoch.
        epoch: u64,
        /// Member devices.
        members: Vec<DeviceRef>,
        /// Sequence number of the newest message.
        last_seq: u64,
        /// The admins of a named group (empty: the group has no roles,
        /// every member may add and remove).
        #[serde(default)]
        admins: Vec<String>,
        /// Whether members who are not admins may add people.
        #[serde(default = "default_true")]
        members_can_add: bool,
    },
}

/// A KeyPackage handed out for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    /// The device's keys.
    pub device: DeviceInfo,
    /// The TLS-serialized KeyPackage.
    #[serde(with = "serde_bytes")]
    pub package: Vec<u8>,
}

/// A device of one's own account, as [`Request::ListDevices`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device number.
    pub device_id: u32,
    /// When it was added (ms since the Unix epoch).
    pub added_at: i64,
    /// When it last logged in (ms since the Unix epoch; 0 = never).
    pub last_seen: i64,
}

/// An account's public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The account.
    pub handle: String,
    /// Ed25519 account public key.
    #[serde(with = "serde_bytes")]
    pub account_key: Vec<u8>,
    /// Its devices.
    pub devices: Vec<DeviceInfo>,
}

/// One entry of a group's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The group.
    #[serde(with = "serde_bytes")]
    pub group_id: Vec<u8>,
    /// Server-assigned position in the group's log, from 1.
    pub seq: u64,
    /// The epoch the message was sent in.
    pub epoch: u64,
    /// The device that posted it.
    pub sender: DeviceRef,
    /// Commit or application message.
    pub kind: MessageKind,
    /// The MLS message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// When the server stored it (milliseconds since the Unix epoch).
    pub stored_at: i64,
}

fn default_true() -> bool {
    true
}
