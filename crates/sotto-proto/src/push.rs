//! What the server sends: pushes it makes without being asked, and every
//! server-to-client frame.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::messages::{Delivery, DeviceRef, Hello, Notice, Response};

/// Something the server sends without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    /// A group message for this device.
    Deliver(Delivery),
    /// A welcome into a group for this device.
    Welcome {
        /// Id to acknowledge with [`Request::AckWelcome`].
        welcome_id: u64,
        /// The group joined.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Who added the device.
        sender: DeviceRef,
        /// The MLS welcome.
        #[serde(with = "serde_bytes")]
        welcome: Vec<u8>,
    },
    /// Everything pending at the time of [`Request::Sync`] has been pushed.
    SyncDone,
    /// The device's one-time KeyPackage stock is low; upload more.
    KeyPackagesLow {
        /// Unclaimed packages left.
        remaining: u32,
    },
    /// A transient signal from another member device of a group (see
    /// [`Request::Signal`]). Only sent to connected, synced devices.
    Signal {
        /// The group.
        #[serde(with = "serde_bytes")]
        group_id: Vec<u8>,
        /// Who sent it.
        sender: DeviceRef,
        /// As the sender gave it.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A new notice from the operator (only to connections that sent
    /// [`crate::Request::Notices`]).
    Notice(Notice),
}

/// A server-to-client frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of every connection.
    Hello(Hello),
    /// The answer to the request with the same id.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        result: Result<Response, ErrorBody>,
    },
    /// Something pushed.
    Push(Push),
    /// The server closes the connection after this, saying why.
    Goodbye(ErrorBody),
}
