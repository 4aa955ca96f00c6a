//! Errors of the client core, each saying what to do about it.

/// What can go wrong in the client core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The database did not open with this key.
    #[error("wrong passphrase for this profile (or the profile is damaged)")]
    WrongPassphrase,
    /// No profile exists where one was expected.
    #[error("no profile in {0}; create one with `sotto init`")]
    NoProfile(String),
    /// A profile exists where a new one was to be made.
    #[error("a profile exists already in {0}")]
    ProfileExists(String),
    /// The local database failed.
    #[error("local database: {0}")]
    Db(#[from] rusqlite::Error),
    /// File system trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// MLS refused something.
    #[error("MLS: {0}")]
    Mls(String),
    /// A commit breaks the group's roles (someone without the right
    /// removed or added people); it is refused.
    #[error("{0}")]
    RoleBreach(String),
    /// A peer's credential or key package failed validation.
    #[error("invalid credential: {0}")]
    BadCredential(String),
    /// Bytes from the network or disk did not decode.
    #[error("could not decode {what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// The person named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A contact's account key changed; sending is held until trusted.
    #[error("the account key of @{0} changed; compare safety numbers, then run `sotto trust @{0}`")]
    KeyChanged(String),
    /// The person blocked this contact.
    #[error("you blocked @{0}; `sotto unblock @{0}` to talk again")]
    Blocked(String),
    /// Input a person gave is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// This device is no longer in the conversation's group.
    #[error("you are no longer a member of this conversation")]
    NotAMember,
    /// A one-to-one conversation where the other person is gone: nobody
    /// could read a message.
    #[error("nobody else is in this conversation any more, so nobody could read the message; nothing was sent")]
    NobodyElse,
    /// A welcome into a group this device is in, no newer than its state
    /// (the same welcome again): nothing to do.
    #[error("this device is in that conversation already")]
    AlreadyJoined,
}

impl CoreError {
    /// The profile's database cannot be opened or written: the folder is
    /// not writable, the file is read-only, or the disk is full.
    pub fn storage_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, C::CannotOpen | C::ReadOnly | C::DiskFull | C::PermissionDenied)
            }
            Self::Io(e) => matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::StorageFull),
            _ => false,
        }
    }

    pub(crate) fn mls(e: impl std::fmt::Display) -> Self {
        Self::Mls(e.to_string())
    }

    pub(crate) fn decode(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Decode { what, detail: e.to_string() }
    }
}

/// Result of a core call.
pub type CoreResult<T> = Result<T, CoreError>;
