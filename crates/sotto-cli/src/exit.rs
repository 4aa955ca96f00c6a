//! The exit codes of every `sotto` command, so scripts can tell "done"
//! from "queued" from "fix something and run again". README.md lists them.

use sotto_client::{ClientError, SessionError};

/// Done.
pub const OK: i32 = 0;
/// Did not happen and will not be retried by itself: the message says what
/// to fix, then run the command again.
pub const ERROR: i32 = 1;
/// The command line is wrong (clap's own code).
pub const USAGE: i32 = 2;
/// The message is saved in the profile's outbox and goes out by itself the
/// next time sotto connects (any command or front end). Do not send it
/// again: that would deliver it twice.
pub const QUEUED: i32 = 3;
/// The server could not be reached, or it failed in a way worth retrying;
/// nothing was kept, so running the same command later may work.
pub const UNREACHABLE: i32 = 4;

/// The exit code an error calls for.
pub fn code_for(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<SessionError>() {
            match s {
                SessionError::Queued(_) => return QUEUED,
                SessionError::Client(c) if temporary(c) => return UNREACHABLE,
                _ => {}
            }
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            if temporary(c) {
                return UNREACHABLE;
            }
        }
        if cause.downcast_ref::<Queued>().is_some() {
            return QUEUED;
        }
    }
    ERROR
}

fn temporary(c: &ClientError) -> bool {
    matches!(
        c,
        ClientError::Unreachable { .. } | ClientError::Timeout | ClientError::Transport(_) | ClientError::Closed(_)
    ) || c.code().is_some_and(|code| code.is_retryable())
}

/// A message that was written to the outbox but not taken by the server
/// yet (it could not be reached, or could not store it just now).
#[derive(Debug, thiserror::Error)]
#[error("{conversation}: not sent yet ({reason}); the message is saved and will be sent the next time sotto connects; do not send it again")]
pub struct Queued {
    /// Where it goes.
    pub conversation: String,
    /// Why it did not go now.
    pub reason: String,
}
