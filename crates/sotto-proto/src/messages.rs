//! Every message of the protocol. Byte fields are CBOR byte strings.

use serde::{Deserialize, Serialize};

pub use crate::push::{Push, ServerMessage};
pub use crate::responses::*;

/// A device of an account: the unit of routing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceRef {
    /// The account's handle.
    pub handle: String,
    /// The device number within the account.
    pub device_id: u32,
}

impl std::fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "@{}/{}", self.handle, self.device_id)
    }
}

/// A device's public key and the account key's certificate over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device number within the account.
    pub device_id: u32,
    /// Ed25519 public key (32 bytes); also the device's MLS signature key.
    #[serde(with = "serde_bytes")]
    pub device_key: Vec<u8>,
    /// Ed25519 signature by the account key over
    /// [`crate::signing::device_certificate_payload`].
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
}

/// What the server tells a client as soon as the WebSocket opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The server's protocol version.
    pub protocol_version: u16,
    /// The server's identity, which login signatures are bound to: the
    /// SHA-256 pin of its TLS key, or a stored random id without TLS.
    #[serde(with = "serde_bytes")]
    pub server_id: Vec<u8>,
    /// A fresh random challenge for this connection.
    #[serde(with = "serde_bytes")]
    pub challenge: Vec<u8>,
    /// Whether registration needs an invite.
    pub invite_only: bool,
    /// Largest file (encrypted blob) the server accepts, in bytes.
    #[serde(default)]
    pub max_blob_bytes: u64,
    /// The server answers [`Request::Notices`] (older servers do not).
    #[serde(default)]
    pub notices: bool,
}

/// A notice from the server's operator to every user: plain text, not end
/// to end encrypted, not part of any conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Increasing on this server.
    pub id: u64,
    /// What the operator wrote (at most [`crate::limits::MAX_NOTICE_BYTES`]).
    pub text: String,
    /// When it was written (ms since the Unix epoch).
    pub sent_at: i64,
}

/// A client-to-server frame: a request with an id the response will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMessage {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// Whether a log entry changes the group or carries content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An MLS commit: moves the group to the next epoch.
    Commit,
    /// An MLS application message.
    Application,
}

/// Everything a client can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Create an account and its first device, and log that device in.
    Register {
        /// The wanted handle.
        handle: String,
        /// Ed25519 account public key (32 bytes).
        #[serde(with = "serde_bytes")]
        account_key: Vec<u8>,
        /// The first device, certified by the account key.
        device: DeviceInfo,
        /// Invite code, needed unless registration is open.
        #[serde(default)]
        invite: Option<String>,
        /// The device key's signature over [`crate::signing::login_payload`].
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// Log in as a new device of an existing account, certified by the
    /// account key (a restored backup of the account's first device
    /// becoming a device of its own): the server checks the certificate
    /// against the account key, adds the device (within its cap; a revoked
    /// number is refused) and logs it in. Allowed before login.
    EnrollDevice {
        /// The account's handle.
        handle: String,
        /// The new device, certified by the account key.
        device: DeviceInfo,
        /// The new device key's signature over [`crate::signing::login_payload`].
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// Log a registered device in.
    Login {
        /// The account's handle.
        handle: String,
        /// The device.
        device_id: u32,
        /// The device key's signature over [`crate::signing::login_payload`].
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
        /// A random id of this copy of the profile (1 to 32 bytes). Two
        /// copies of one device (a backup restored while the original is in
        /// use) would break every conversation for everyone; the server
        /// lets one copy in: the one it knows, or a restored one that says
        /// `takeover`, after which the other is refused (`stale_copy`).
        #[serde(default)]
        copy: Option<serde_bytes::ByteBuf>,
        /// This copy was just restored from a backup and replaces the one
        /// the server knows.
        #[serde(default)]
        takeover: bool,
    },
    /// Add KeyPackages (TLS-serialized MLS KeyPackages) to this device's stock.
    UploadKeyPackages {
        /// One-time packages.
        packages: Vec<serde_bytes::ByteBuf>,
        /// A package handed out when the one-time stock is empty; replaces
        /// the previous one.
        #[serde(default)]
        last_resort: Option<serde_bytes::ByteBuf>,
        /// Last-resort packages of the device's other suites (one per
        /// suite; each replaces the previous one of its suite).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other_last_resorts: Vec<serde_bytes::ByteBuf>,
    },
    /// Take one KeyPackage for every device of an account (or for the
    /// listed devices only).
    ClaimKeyPackages {
        /// The account.
        handle: String,
        /// Only these devices (adding a newly linked device to a group
        /// needs its package, not everyone's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        devices: Option<Vec<u32>>,
        /// The MLS suites the claimer can use, most wanted first (see
        /// [`crate::suites`]); empty means the classical suite only. The
        /// server picks the first suite every device has a package for,
        /// else each device's best.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suites: Vec<u16>,
    },
    /// The account key and devices of a handle.
    LookupUser {
        /// The account.
        handle: String,
    },
    /// Create an empty group whose only member is this device, at epoch 0.
    CreateGroup {
        /// 16 random bytes chosen by the creator.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// The group has roles (a named group): the server enforces them,
        /// with the creator as first admin. Groups whose id starts with 2
        /// (made by apps before this field) have roles too.
        #[serde(default)]
        roles: bool,
    },
    /// Post a commit for the group's current epoch.
    Commit {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// The epoch the commit was made in; must be the current one.
        epoch: u64,
        /// Idempotency key: a retry with the same id is answered with the
        /// first result.
        #[serde(with = "serde_bytes")]
        client_id: Vec<u8>,
        /// The MLS commit message.
        #[serde(with = "serde_bytes")]
        commit: Vec<u8>,
        /// The MLS welcome for the devices this commit adds.
        #[serde(default)]
        welcome: Option<serde_bytes::ByteBuf>,
        /// Devices the commit adds (routing only).
        #[serde(default)]
        added: Vec<DeviceRef>,
        /// Devices the commit removes (routing only).
        #[serde(default)]
        removed: Vec<DeviceRef>,
    },
    /// Post an application message in the group's current epoch.
    Send {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// The epoch it was encrypted in; must be the current one.
        epoch: u64,
        /// Idempotency key, as for [`Request::Commit`].
        #[serde(with = "serde_bytes")]
        client_id: Vec<u8>,
        /// The MLS application message.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Mark every message of a group up to `seq` as received by this device.
    Ack {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// The highest sequence number processed.
        seq: u64,
    },
    /// Mark a welcome as processed; the server deletes it.
    AckWelcome {
        /// The welcome's id from [`Push::Welcome`].
        welcome_id: u64,
    },
    /// Read a group's log after a sequence number (members only).
    Fetch {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Return messages with a larger sequence number.
        after_seq: u64,
        /// At most this many (capped by the server).
        limit: u32,
    },
    /// The group's current epoch and member devices (members only).
    GroupState {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
    },
    /// Start delivery: the server pushes every pending welcome and message
    /// from this device's cursors, then [`Push::SyncDone`], then live ones.
    Sync,
    /// Delete this account and everything the server holds for it: its
    /// devices, KeyPackages, memberships, welcomes and files. The handle
    /// becomes free. Clients leave their conversations first, so the other
    /// members learn of it.
    DeleteAccount,
    /// Stop being routed messages of a group, at once. The remaining
    /// members remove the device from the MLS group by a later commit.
    Leave {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
    },
    /// Say whether this account accepts a conversation it was added to
    /// (a message request from someone new is not accepted until the person
    /// says so; blocking someone withdraws it). Others see this account's
    /// presence only through groups it accepted. Groups an account created
    /// are accepted from the start. Members only.
    AcceptGroup {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Accepted (true) or not (false).
        accepted: bool,
    },
    /// Store the group's public GroupInfo for the current epoch, so a
    /// member that lost its state can rejoin by external commit.
    PutGroupInfo {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// The epoch the GroupInfo describes; must be current.
        epoch: u64,
        /// The MLS GroupInfo message (with ratchet tree).
        #[serde(with = "serde_bytes")]
        group_info: Vec<u8>,
    },
    /// The latest stored GroupInfo of a group (members only).
    GetGroupInfo {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
    },
    /// A bearer token for the blob endpoints (`/v1/blobs/...`), valid for
    /// an hour.
    BlobToken,
    /// Let the members of a group fetch a blob this device uploaded. Each
    /// member device (but the uploader) must confirm with `BlobFetched`
    /// before the server deletes the blob.
    ShareBlob {
        /// The blob (16 bytes).
        #[serde(with = "serde_bytes")]
        blob_id: Vec<u8>,
        /// The group whose current members may fetch it.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
    },
    /// This device fetched and verified the blob; it may be deleted once
    /// every recipient did.
    BlobFetched {
        /// The blob.
        #[serde(with = "serde_bytes")]
        blob_id: Vec<u8>,
    },
    /// Which of these accounts have a device online. Answered only for
    /// accounts that share a group with the asker; others are left out.
    Presence {
        /// The accounts.
        handles: Vec<String>,
    },
    /// Add a device to this account. Its certificate must verify under the
    /// account key; the account may have at most the server's device cap.
    AddDevice {
        /// The new device.
        device: DeviceInfo,
    },
    /// Remove a device of this account for good: it leaves every group's
    /// routing at once, its connections close and it can never log in
    /// again. Its number is not reused.
    RemoveDevice {
        /// The device.
        device_id: u32,
    },
    /// This account's devices with when each was added and last seen.
    ListDevices,
    /// (Before login.) A device that wants to be linked to an account
    /// offers its link KeyPackage and asks whether an answer came. The slot
    /// is named by the first [`crate::LINK_SLOT_LEN`] bytes of the
    /// package's SHA-256; it lives a few minutes after the last offer.
    LinkOffer {
        /// The TLS-serialized link KeyPackage (at most 16 KiB).
        #[serde(with = "serde_bytes")]
        key_package: Vec<u8>,
    },
    /// The link KeyPackage waiting in a slot (for the linking device).
    LinkFetch {
        /// The slot.
        #[serde(with = "serde_bytes")]
        slot: Vec<u8>,
    },
    /// Leave the answer for the device waiting in a slot (once).
    LinkAnswer {
        /// The slot.
        #[serde(with = "serde_bytes")]
        slot: Vec<u8>,
        /// Opaque to the server: an MLS welcome and message.
        #[serde(with = "serde_bytes")]
        answer: Vec<u8>,
    },
    /// Keep the group's entries on the server for at most this long, even
    /// if not every device has them (a conversation's disappearing
    /// timer); 0 goes back to the server's retention. Any member may set
    /// it; the newest setting wins.
    SetRetention {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Seconds; 0 for the server's own retention.
        secs: u64,
    },
    /// Makes a member an admin of a named group, or a member again. Only
    /// an admin may; the group's creator is its first admin.
    SetRole {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Whose role.
        handle: String,
        /// Admin, or member.
        admin: bool,
    },
    /// Whether members who are not admins may add people (admins only).
    SetGroupPolicy {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Members may add people.
        members_can_add: bool,
    },
    /// A transient signal (a typing indicator) for the group's other
    /// member devices that are connected now. Never stored, never
    /// delivered later; at most one per device and group every
    /// [`crate::limits::SIGNAL_INTERVAL_MS`] is passed on (the rest are
    /// dropped, and still answered `Done`).
    Signal {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Opaque to the server (sealed with a key exported from the
        /// group's epoch); at most [`crate::limits::MAX_SIGNAL_BYTES`].
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The operator's notices after `after` (the newest few), and from now
    /// on each new one as [`Push::Notice`] on this connection. Only a
    /// client that asks gets them pushed, so older clients never meet the
    /// push they would not understand.
    Notices {
        /// The highest notice id this device has.
        after: u64,
    },
}
