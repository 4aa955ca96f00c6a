//! What the network side tells every front end.

use serde::Serialize;
use sotto_core::StoredMessage;

/// Connection state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Link {
    /// Connecting for the first time.
    Connecting,
    /// Logged in and live.
    Online,
    /// Lost; retrying.
    Reconnecting {
        /// Why, for a person.
        reason: String,
    },
}

/// Which way a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    /// Encrypting and sending.
    Upload,
    /// Fetching and decrypting.
    Download,
}

/// How a command ended. Only [`Outcome::Error`] means it did not happen;
/// [`Outcome::Queued`] means it will, by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The server has the message.
    Sent {
        /// Where it went.
        conversation: String,
    },
    /// The message is in the outbox and goes out when the connection
    /// returns; sending it again would deliver it twice.
    Queued {
        /// Where it goes.
        conversation: String,
    },
    /// A file is encrypted and sent.
    FileSent {
        /// Where.
        conversation: String,
        /// Its name.
        name: String,
    },
    /// A file is fetched, checked and saved.
    Saved {
        /// Where it is now.
        path: String,
    },
    /// A broadcast went to this many contacts.
    Broadcast {
        /// How many.
        count: usize,
    },
    /// A group change is done.
    GroupChanged {
        /// The group (its new name after a rename).
        conversation: String,
        /// `create`, `add`, `remove`, `leave` or `rename`.
        change: &'static str,
    },
    /// The safety number with a contact.
    SafetyNumber {
        /// Whose.
        handle: String,
        /// Grouped for reading aloud.
        number: String,
    },
    /// A conversation was written to a file.
    Exported {
        /// The file.
        path: String,
    },
    /// Presence was refreshed (it arrives as [`Event::Presence`]).
    Presence,
    /// It did not happen and will not be retried: the message says why
    /// and what to do.
    Error {
        /// For a person.
        message: String,
    },
}

impl Outcome {
    /// The outcome in one line, for a front end that shows text.
    pub fn describe(&self) -> String {
        match self {
            Self::Sent { conversation } => format!("sent to {conversation}"),
            Self::Queued { conversation } => {
                format!("{conversation}: not sent yet; the message is saved and goes out when the connection returns")
            }
            Self::FileSent { conversation, name } => format!("sent {name} to {conversation}"),
            Self::Saved { path } => format!("saved {path}"),
            Self::Broadcast { count } => format!("broadcast to {count} contacts"),
            Self::GroupChanged { conversation, change } => format!("{change} {conversation}: done"),
            Self::SafetyNumber { handle, number } => format!("safety number with @{handle}: {number}"),
            Self::Exported { path } => format!("exported to {path}"),
            Self::Presence => "contacts: ● online, ○ offline (in the list on the left)".into(),
            Self::Error { message } => format!("error: {message}"),
        }
    }
}

/// Something a front end shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Who we are and where.
    Identity {
        /// Our handle.
        me: String,
        /// The server's address.
        server: String,
    },
    /// The whole history of a conversation (on start, after joining, after
    /// a reconnect sent what waited).
    History {
        /// Which.
        conversation: String,
        /// Oldest first.
        messages: Vec<StoredMessage>,
    },
    /// A message is new or changed (pending to sent, say): replace the one
    /// with its id, or add it.
    Message(Box<StoredMessage>),
    /// A conversation has a new name.
    Renamed {
        /// The old name.
        from: String,
        /// The new one.
        to: String,
    },
    /// The connection state changed.
    Connection(Link),
    /// Who is online among contacts.
    Presence(Vec<(String, bool)>),
    /// A file transfer moved on.
    Progress {
        /// The request it belongs to.
        request: u64,
        /// Which way.
        transfer: Transfer,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Something the person should know that is no command's outcome (a
    /// warning about a conversation, why connecting does not work).
    Notice {
        /// Where, if anywhere.
        conversation: Option<String>,
        /// What.
        text: String,
    },
    /// How request N ended.
    Outcome {
        /// The request's id.
        request: u64,
        /// How it ended.
        outcome: Outcome,
    },
}
