//! What the messenger shows and stores: messages, contacts, events, kinds of
//! group.

#[allow(unused_imports)]
use super::*;

/// A message in the local history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The sender's message id.
    pub id: Vec<u8>,
    /// `@handle` for one-to-one, `#name` for groups.
    pub conversation: String,
    /// The sender's handle (without `@`).
    pub sender: String,
    /// Sent by this device.
    pub outgoing: bool,
    /// Sender's clock (ms).
    pub sent_at: i64,
    /// When this device stored it (ms).
    pub received_at: i64,
    /// The content.
    pub body: Body,
    /// Where it stands.
    pub state: MessageState,
    /// Server sequence number in its group, once known.
    pub seq: Option<u64>,
    /// Replies, edits, deletes, reactions, timers and receipts.
    pub detail: MessageDetail,
}

/// What other messages did to a message, or what an annotation does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageDetail {
    /// The message this one answers.
    pub reply_to: Option<Vec<u8>>,
    /// This is an annotation (a reaction, an edit, a delete, a receipt)
    /// acting on `target`, listed by `receive` but not in history.
    pub annotation: bool,
    /// The message an annotation acts on.
    pub target: Option<Vec<u8>>,
    /// When it was last edited (sender's clock, ms).
    pub edited_at: Option<i64>,
    /// Deleted for everyone by its sender.
    pub deleted: bool,
    /// When it disappears from this device (ms).
    pub expires_at: Option<i64>,
    /// Reactions: each emoji with who reacted, in the order first seen.
    pub reactions: Vec<(String, Vec<String>)>,
    /// For this person's own messages the server stored: how far the
    /// others got.
    pub receipt: Option<Receipt>,
    /// Pinned for everyone in the conversation.
    pub pinned: bool,
    /// The people its text names with `@handle` (each once).
    pub mentions: Vec<String>,
}

/// The handles a text names as `@handle` (each once, in order).
pub fn mentions_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices('@') {
        // A mention starts a word: "mail@example.org" names nobody.
        if text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let handle: String =
            text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).collect();
        let handle = handle.trim_end_matches('.').to_owned();
        if sotto_proto::validate_handle(&handle).is_ok() && !out.contains(&handle) {
            out.push(handle);
        }
    }
    out
}

/// How far an own message got with the other members.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    /// Every other member device has it.
    pub delivered: bool,
    /// The members (handles) who read it.
    pub read_by: Vec<String>,
}

/// A contact: someone this device shares a conversation with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Handle without `@`.
    pub handle: String,
    /// The account key first seen (trust on first use).
    pub account_key: Vec<u8>,
    /// The person compared safety numbers.
    pub verified: bool,
    /// A different account key was seen since.
    pub key_changed: bool,
}

/// What processing produced, for the front end to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new message in history.
    Message(Box<StoredMessage>),
    /// This device joined a conversation.
    Joined {
        /// Its name.
        conversation: String,
    },
    /// Someone this person has not accepted started a conversation with
    /// them: it is held as a message request (nothing of it shows) until
    /// accepted.
    Request {
        /// Its name.
        conversation: String,
        /// Who added this device.
        from: String,
    },
    /// A conversation got a new name.
    Renamed {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// A message left this device's history (deleted for me, or its
    /// disappearing timer ran out).
    Removed {
        /// Where it was.
        conversation: String,
        /// Its id.
        id: Vec<u8>,
    },
    /// Someone's profile (name, picture) changed.
    Profile {
        /// Whose.
        handle: String,
    },
    /// Someone is typing in a conversation (or stopped). Transient: shown
    /// for a few seconds, never stored.
    Typing {
        /// Where.
        conversation: String,
        /// Who.
        handle: String,
        /// Typing now, or stopped.
        typing: bool,
    },
    /// This person muted or unmuted a conversation on another of their
    /// devices; it is now the same here.
    Muted {
        /// Which.
        conversation: String,
        /// Muted now, or no longer.
        muted: bool,
    },
    /// The server's operator wrote to every user (not end-to-end
    /// encrypted; in no conversation).
    Notice(super::ServerNotice),
    /// Something the person should know (a marker is also in history).
    Warning {
        /// Where, if anywhere.
        conversation: Option<String>,
        /// What.
        text: String,
    },
}

/// The warning shown when a contact's account key changes.
/// A short tag for a group id of any length (the id comes from the server
/// and a welcome, so it may be shorter than ours are): the first `n` bytes
/// of its SHA-256, in hex.
pub(crate) fn short_id(group_id: &[u8], n: usize) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(group_id)[..n.min(32)])
}

pub(crate) fn key_change_text(handle: &str) -> String {
    format!(
        "the account key of @{handle} changed: they may have a new device, or someone may be impersonating them. \
         Compare safety numbers (`sotto verify @{handle}`), then `sotto trust @{handle}`"
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Whether a group is a one-to-one chat or a named group. Stored in the
/// first byte of a classical group's id (so apps from before the
/// post-quantum suite know it at join); a post-quantum group's id is random
/// and each member records the kind at creation or join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GroupKind {
    /// One-to-one.
    Direct = 1,
    /// Named group.
    Group = 2,
    /// The account's own group: only this account's devices, never shown
    /// as a conversation. Trust decisions, blocks and history handovers go
    /// from one device to the others through it.
    Own = 3,
}

/// The local name of the account's own group (hidden from every list).
pub const OWN_CONVERSATION: &str = "~self";

impl GroupKind {
    /// The kind an id of a classical group says in its first byte (a
    /// post-quantum group's id says nothing: its kind is recorded in the
    /// profile, see `Messenger::group_kind`).
    pub fn of_legacy_id(group_id: &[u8]) -> Option<Self> {
        match group_id.first() {
            Some(1) => Some(Self::Direct),
            Some(2) => Some(Self::Group),
            Some(3) => Some(Self::Own),
            _ => None,
        }
    }

    /// The kind recorded in the profile (`groups.kind`).
    pub(crate) fn from_stored(v: u8) -> Option<Self> {
        Self::of_legacy_id(&[v])
    }

    /// A joined group's kind, from what every member agrees on: a named
    /// group carries roles in its state; the account's own group has
    /// nobody else in it; the rest are one-to-one.
    pub(crate) fn of_joined(group_id: &[u8], has_roles: bool, others: usize) -> Self {
        if let Some(kind) = Self::of_legacy_id(group_id) {
            return kind;
        }
        if has_roles {
            Self::Group
        } else if others == 0 {
            Self::Own
        } else {
            Self::Direct
        }
    }
}

/// Where a message in history stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    /// In the outbox: the server has not accepted it yet.
    Pending,
    /// The server has it.
    Sent,
    /// Someone else's, stored here.
    Received,
    /// A marker such as "messages may be missing".
    System,
    /// Ours, and it will not be sent: this device was removed from the
    /// conversation before the server took it.
    NotSent,
}

impl MessageState {
    /// The stable name (in the database and the JSON of front ends).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Received => "received",
            Self::System => "system",
            Self::NotSent => "not_sent",
        }
    }
}

impl rusqlite::types::FromSql for MessageState {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value.as_str()? {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "received" => Ok(Self::Received),
            "system" => Ok(Self::System),
            "not_sent" => Ok(Self::NotSent),
            _ => Err(rusqlite::types::FromSqlError::InvalidType),
        }
    }
}
