//! Stable error codes. The code is the contract (clients branch on it); the
//! message is for people and may change.

use serde::{Deserialize, Serialize};

/// Every way a request can fail. Encoded on the wire as its snake_case name,
/// so new codes can be added without renumbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame decoded but the request makes no sense (bad field value).
    BadRequest,
    /// The frame is not a valid protocol message.
    MalformedFrame,
    /// The frame is larger than the protocol allows.
    FrameTooLarge,
    /// The client speaks a protocol version the server does not.
    UnsupportedVersion,
    /// The request needs a logged-in device.
    NotAuthenticated,
    /// Login or registration came on a connection that is already logged in.
    AlreadyAuthenticated,
    /// The signature did not verify against the device key and challenge.
    AuthFailed,
    /// The account is banned on this server.
    Banned,
    /// This copy of the profile is out of date: a backup of it was restored
    /// elsewhere and that copy is the one in use now.
    StaleCopy,
    /// The handle breaks the handle rules.
    InvalidHandle,
    /// Somebody already registered this handle.
    HandleTaken,
    /// Registration needs an invite code on this server.
    InviteRequired,
    /// The invite code is unknown, used up or expired.
    InviteInvalid,
    /// The device certificate does not verify under the account key.
    BadCertificate,
    /// No account has this handle.
    UnknownHandle,
    /// The account has devices but none has a KeyPackage left.
    NoKeyPackages,
    /// The group does not exist.
    UnknownGroup,
    /// A group with this id exists already.
    GroupExists,
    /// No file with this id is stored, or it is not this device's.
    UnknownBlob,
    /// The device is not a member of the group.
    NotMember,
    /// The message names an epoch that is not the group's current one.
    StaleEpoch,
    /// Too many requests; slow down.
    RateLimited,
    /// A per-user or per-server limit is reached.
    LimitExceeded,
    /// The server failed; the request may be retried.
    Internal,
    /// This device was removed from its account and may not log in.
    DeviceRevoked,
    /// The account has as many devices as the server allows.
    DeviceLimit,
    /// No device is waiting to be linked under that code (or it expired).
    UnknownLink,
    /// Only an admin of the group may do that (remove people, add people
    /// when the group does not let members add, change roles).
    NotAdmin,
}

impl ErrorCode {
    /// A sentence a person can read, used when the server gives no detail.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BadRequest => "the request is not valid",
            Self::MalformedFrame => "the message could not be decoded",
            Self::FrameTooLarge => "the message is larger than the protocol allows",
            Self::UnsupportedVersion => "client and server speak different protocol versions",
            Self::NotAuthenticated => "log in first",
            Self::AlreadyAuthenticated => "this connection is already logged in",
            Self::AuthFailed => "the device could not prove its key; is this the right profile?",
            Self::Banned => "this account is banned on this server",
            Self::StaleCopy => "this copy of the profile is out of date: a backup of it was restored on another device, which is the one in use now",
            Self::InvalidHandle => "the handle breaks the handle rules",
            Self::HandleTaken => "that handle is taken; choose another",
            Self::InviteRequired => "this server needs an invite code (ask its operator)",
            Self::InviteInvalid => "the invite code is unknown, used up or expired",
            Self::BadCertificate => "the device certificate does not match the account key",
            Self::UnknownHandle => "no account has that handle on this server",
            Self::NoKeyPackages => "that person has no key packages left; they need to come online",
            Self::UnknownGroup => "no such conversation on the server",
            Self::GroupExists => "a conversation with that id exists already",
            Self::UnknownBlob => "no such file on the server, or it is not yours",
            Self::NotMember => "this device is not a member of that conversation",
            Self::StaleEpoch => "the conversation moved on; re-sync and retry",
            Self::RateLimited => "too many requests; slow down",
            Self::LimitExceeded => "a server limit was reached",
            Self::Internal => "the server could not complete this just now (its disk may be full); it can be retried later",
            Self::DeviceRevoked => "this device was removed from its account; link it again with `sotto link`",
            Self::DeviceLimit => "the account has as many devices as this server allows; remove one first",
            Self::UnknownLink => "no device is waiting to be linked with that code; check it, or start `sotto link` again",
            Self::NotAdmin => "only an admin of the group can do that; ask one of its admins",
        }
    }

    /// Whether the same request may succeed later without any change (the
    /// server failed, or asked to slow down).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Internal | Self::RateLimited)
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 28] = [
        Self::BadRequest,
        Self::MalformedFrame,
        Self::FrameTooLarge,
        Self::UnsupportedVersion,
        Self::NotAuthenticated,
        Self::AlreadyAuthenticated,
        Self::AuthFailed,
        Self::Banned,
        Self::StaleCopy,
        Self::InvalidHandle,
        Self::HandleTaken,
        Self::InviteRequired,
        Self::InviteInvalid,
        Self::BadCertificate,
        Self::UnknownHandle,
        Self::NoKeyPackages,
        Self::UnknownGroup,
        Self::GroupExists,
        Self::UnknownBlob,
        Self::NotMember,
        Self::StaleEpoch,
        Self::RateLimited,
        Self::LimitExceeded,
        Self::Internal,
        Self::DeviceRevoked,
        Self::DeviceLimit,
        Self::UnknownLink,
        Self::NotAdmin,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// The error half of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// With [`ErrorCode::StaleEpoch`]: the group's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
}

impl ErrorBody {
    /// An error with the code's own description.
    pub fn new(code: ErrorCode) -> Self {
        Self { code, message: code.describe().to_owned(), current_epoch: None }
    }

    /// An error with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), current_epoch: None }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The message only: a person never sees a Rust name; programs
        // branch on `code`.
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorBody {}
