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
        /// Compared before and confirmed.
        verified: bool,
        /// Their key changed: messages wait until it is accepted.
        key_changed: bool,
    },
    /// A conversation was written to a file.
    Exported {
        /// The file.
        path: String,
    },
    /// Presence was refreshed (it arrives as [`Event::Presence`]).
    Presence,
    /// A transient signal (typing) went to whoever is online; nothing to
    /// show.
    Signalled,
    /// This account's devices.
    Devices {
        /// By number.
        devices: Vec<DeviceEntry>,
    },
    /// A new device is linked to this account.
    DeviceLinked {
        /// Its number.
        id: u32,
        /// The name it was given.
        name: String,
        /// Whether it is in every conversation already (otherwise it joins
        /// them when this device next connects after it came online).
        complete: bool,
    },
    /// A device was removed for good.
    DeviceRemoved {
        /// Its number.
        id: u32,
        /// Conversations it was taken out of.
        conversations: usize,
    },
    /// A message was changed (a reaction, an edit, a delete), a timer set,
    /// a conversation marked read or a setting changed.
    Changed {
        /// Where (empty for a setting).
        conversation: String,
        /// `react`, `edit`, `delete`, `delete_for_me`, `timer`, `read` or
        /// `read_receipts`.
        change: &'static str,
    },
    /// A contact is verified (the safety numbers matched).
    Verified {
        /// Whose.
        handle: String,
    },
    /// A contact's changed key is accepted (`changed` false: nothing had
    /// changed).
    Trusted {
        /// Whose.
        handle: String,
        /// Whether there was a changed key to accept.
        changed: bool,
    },
    /// Who is in a conversation.
    Members {
        /// Which.
        conversation: String,
        /// Sorted by handle.
        members: Vec<MemberEntry>,
    },
    /// What a search found, newest first.
    Found {
        /// What was searched for.
        query: String,
        /// The messages.
        hits: Vec<SearchHit>,
    },
    /// A preference was kept (nothing to say about it).
    Remembered {
        /// Its name.
        name: String,
    },
    /// The message requests waiting.
    Requests {
        /// Oldest first.
        requests: Vec<RequestEntry>,
    },
    /// A message request was accepted; the conversation shows now.
    RequestAccepted {
        /// Its name.
        conversation: String,
    },
    /// A message request was declined and its messages deleted.
    RequestDeclined {
        /// Its name.
        conversation: String,
    },
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
            Self::SafetyNumber { handle, number, .. } => format!("safety number with @{handle}: {number}"),
            Self::Exported { path } => format!("exported to {path}"),
            Self::Presence => "contacts: ● online, ○ offline (in the list on the left)".into(),
            Self::Signalled => String::new(),
            Self::Devices { devices } => {
                let list: Vec<String> = devices.iter().map(DeviceEntry::describe).collect();
                format!("your devices: {}", list.join("; "))
            }
            Self::DeviceLinked { id, name, complete: true } => {
                format!("linked device {id} (\"{name}\"); it is in every conversation")
            }
            Self::DeviceLinked { id, name, complete: false } => format!(
                "linked device {id} (\"{name}\"); it joins your conversations once it has come online and this device reconnects"
            ),
            Self::DeviceRemoved { id, conversations } => format!(
                "removed device {id}: taken out of {conversations} conversation(s); it can no longer log in or read what is sent"
            ),
            Self::Requests { requests } if requests.is_empty() => "no message requests".into(),
            Self::Requests { requests } => {
                let list: Vec<String> = requests.iter().map(RequestEntry::describe).collect();
                format!("message requests: {} (/accept or /decline one)", list.join("; "))
            }
            Self::RequestAccepted { conversation } => format!("accepted {conversation}"),
            Self::Verified { handle } => format!("@{handle} is verified: the safety numbers match"),
            Self::Trusted { handle, changed: true } => {
                format!("accepted @{handle}'s new key; compare safety numbers again (/verify @{handle})")
            }
            Self::Trusted { handle, changed: false } => format!("@{handle}'s key has not changed; nothing to accept"),
            Self::Members { conversation, members } => {
                let list: Vec<String> = members.iter().map(MemberEntry::describe).collect();
                format!("{conversation}: {}", list.join(", "))
            }
            Self::Found { query, hits } if hits.is_empty() => format!("nothing found for \"{query}\""),
            Self::Found { query, hits } => format!("{} found for \"{query}\"", hits.len()),
            Self::Changed { conversation, change } => match *change {
                "delete_for_me" => "deleted from this device".into(),
                "read_receipts" => "read receipts changed".into(),
                "timer" => format!("{conversation}: disappearing-message timer set"),
                "pin" => format!("{conversation}: pins changed"),
                "mute" => format!("{conversation} muted: no bell or notification (a mention still calls)"),
                "unmute" => format!("{conversation} unmuted"),
                "describe" => format!("{conversation}: description set"),
                other => format!("{other} in {conversation}: done"),
            },
            Self::RequestDeclined { conversation } => format!("declined {conversation}; its messages are deleted"),
            Self::Remembered { .. } => String::new(),
            Self::Error { message } => format!("error: {message}"),
        }
    }
}

/// A member of a conversation, as the front ends list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberEntry {
    /// Handle (without `@`).
    pub handle: String,
    /// An admin of the group.
    pub admin: bool,
    /// This person.
    pub me: bool,
}

impl MemberEntry {
    /// "@alice (admin)".
    pub fn describe(&self) -> String {
        let mut s = format!("@{}", self.handle);
        if self.me {
            s.push_str(" (you)");
        }
        if self.admin {
            s.push_str(" (admin)");
        }
        s
    }
}

/// A message a search found, as the front ends list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    /// Where it is.
    pub conversation: String,
    /// Its id (hex), to open it in context.
    pub id: String,
    /// Who wrote it.
    pub from: String,
    /// When it was written (ms since 1970).
    pub sent_at: i64,
    /// Its text (a file's caption, or its name).
    pub text: String,
}

impl SearchHit {
    /// The hit for a found message.
    pub fn of(m: &StoredMessage) -> Self {
        Self {
            conversation: m.conversation.clone(),
            id: hex::encode(&m.id),
            from: m.sender.clone(),
            sent_at: m.sent_at,
            text: crate::output::text_of(&m.body).to_owned(),
        }
    }
}

/// A message request, as the front ends list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestEntry {
    /// The conversation's name.
    pub conversation: String,
    /// Who started it.
    pub from: String,
    /// Messages waiting in it.
    pub messages: u64,
}

impl RequestEntry {
    /// `@mallory from @mallory (2 messages)`.
    pub fn describe(&self) -> String {
        format!("{} from @{} ({} message(s))", self.conversation, self.from, self.messages)
    }
}

/// A device of this account, as `sotto devices` and the front ends show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceEntry {
    /// Its number.
    pub id: u32,
    /// The name it was given ("" when this device never learnt it).
    pub name: String,
    /// Whether it is the device showing the list.
    pub this: bool,
    /// When it was added (ms since the epoch).
    pub added_at: i64,
    /// Its last login (ms since the epoch; 0 when never).
    pub last_seen: i64,
}

impl DeviceEntry {
    /// `2 "laptop" (last seen 2026-12-02T06:40:00Z)`.
    pub fn describe(&self) -> String {
        let name = if self.name.is_empty() { "(unnamed)".to_owned() } else { format!("\"{}\"", self.name) };
        if self.this {
            format!("{} {name} (this device)", self.id)
        } else {
            format!("{} {name} (last seen {})", self.id, time_of(self.last_seen))
        }
    }
}

/// A time for people: RFC 3339, or "never".
pub fn time_of(ms: i64) -> String {
    if ms <= 0 {
        "never".to_owned()
    } else {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64))
            .to_string()
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
    /// A message left this device (deleted for me, or it disappeared):
    /// remove it.
    Removed {
        /// Where it was.
        conversation: String,
        /// Its id.
        id: Vec<u8>,
    },
    /// A conversation's disappearing-message timer (seconds; 0: off).
    Timer {
        /// Which.
        conversation: String,
        /// The timer.
        secs: u64,
    },
    /// Someone's profile (as they shared it).
    Profile {
        /// Whose.
        handle: String,
        /// The name they go by ("" when none).
        name: String,
        /// Their picture: media type and bytes.
        avatar: Option<(String, Vec<u8>)>,
    },
    /// A group's picture.
    GroupPicture {
        /// Which group.
        conversation: String,
        /// Media type and bytes; `None` when it has none.
        picture: Option<(String, Vec<u8>)>,
    },
    /// A front end's preference for this person on this device (sent for
    /// each at start, then for each change; empty: forgotten).
    Preference {
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
    /// A conversation is muted on this device, or not any more.
    Muted {
        /// Which.
        conversation: String,
        /// Muted now.
        muted: bool,
    },
    /// How a conversation is encrypted (known once its state is read).
    Encryption {
        /// Which.
        conversation: String,
        /// Its key exchange is post-quantum (X-Wing).
        post_quantum: bool,
    },
    /// A group's description.
    Description {
        /// Which.
        conversation: String,
        /// What it says ("" when nothing).
        text: String,
    },
    /// Someone is typing (or stopped): show it for a few seconds.
    Typing {
        /// Where.
        conversation: String,
        /// Who.
        handle: String,
        /// Typing now, or stopped.
        typing: bool,
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
    /// A notice from the server's operator to every user: not end-to-end
    /// encrypted, in no conversation; front ends show it apart and say so.
    ServerNotice {
        /// The notice.
        notice: sotto_core::ServerNotice,
        /// Not shown to this person before (front ends call attention to
        /// it); older ones come again at each start, for reference.
        fresh: bool,
    },
    /// How request N ended.
    Outcome {
        /// The request's id.
        request: u64,
        /// How it ended.
        outcome: Outcome,
    },
}
