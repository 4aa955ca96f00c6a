//! What a front end can ask for.

use serde::Deserialize;

/// A command for the network side. The JSON form (the web API) is tagged
/// by `type`; see docs/frontend-events.md.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Send a text to `@handle` (starting the conversation if needed) or
    /// `#group`.
    Send {
        /// Where.
        to: String,
        /// What.
        text: String,
    },
    /// Send a file from this machine. Not accepted from the web API (a page
    /// must not name local files); its upload endpoint stages the bytes.
    #[serde(skip_deserializing)]
    SendFile {
        /// Where.
        to: String,
        /// The file.
        path: std::path::PathBuf,
    },
    /// The same text to every one-to-one contact.
    Broadcast {
        /// What.
        text: String,
    },
    /// Fetch and decrypt a received file into the downloads folder.
    Download {
        /// The file message's id (hex).
        id: String,
    },
    /// Change a group.
    Group(GroupChange),
    /// The safety number with a contact.
    Verify {
        /// Handle, with or without `@`.
        handle: String,
    },
    /// Mark a contact verified: `digits` are the safety number they read
    /// out (spaces do not matter); refused when it differs.
    Confirm {
        /// Handle, with or without `@`.
        handle: String,
        /// The number as the other person reads it.
        digits: String,
    },
    /// Accept a contact's changed key (sending to them is held until then).
    Trust {
        /// Handle, with or without `@`.
        handle: String,
    },
    /// Mute a conversation on this device (no bell, no notification), or
    /// unmute it.
    Mute {
        /// `@handle` or `#group`.
        conversation: String,
        /// Mute (true) or unmute.
        #[serde(default = "yes")]
        muted: bool,
    },
    /// Send again a text of this person's that was not sent (the server
    /// refused it); it replaces the one that failed.
    Retry {
        /// The message's id (hex).
        id: String,
    },
    /// Remember a front end's preference for this person on this device
    /// (a draft, the notification switch, recent emoji) in the encrypted
    /// profile; an empty value forgets it.
    Preference {
        /// Its name, e.g. `draft.@bob`, `notify`, `emoji.recent`.
        name: String,
        /// Its value.
        #[serde(default)]
        value: String,
    },
    /// Who is in a conversation, and who of them is admin.
    Members {
        /// `@handle` or `#group`.
        conversation: String,
    },
    /// Write a conversation to a text file in the current folder.
    Export {
        /// `@handle` or `#group`.
        conversation: String,
    },
    /// Ask the server who is online now.
    Presence,
    /// This account's devices.
    Devices,
    /// Link the device that shows `code` (its `sotto link`) to this
    /// account. Only the account's first device can.
    LinkDevice {
        /// The code, as shown (case, dashes and spaces do not matter).
        code: String,
        /// Days of history to hand over (`None`: the default, 30; 0: none).
        #[serde(default)]
        history_days: Option<u32>,
    },
    /// Remove a device of this account for good.
    RemoveDevice {
        /// Its number (see [`Command::Devices`]).
        id: u32,
    },
    /// The message requests waiting (conversations started by someone not
    /// accepted yet; nothing of them shows until accepted).
    Requests,
    /// Accept a message request: it shows like any other conversation.
    AcceptRequest {
        /// Its name, as [`Command::Requests`] lists it.
        conversation: String,
    },
    /// Decline a message request: its messages are deleted and nothing more
    /// of it reaches this device.
    DeclineRequest {
        /// Its name.
        conversation: String,
    },
    /// Answer a message, quoting it.
    Reply {
        /// Where (the conversation of the message answered).
        to: String,
        /// What.
        text: String,
        /// The message answered (hex id).
        reply_to: String,
    },
    /// React to a message, or take the reaction back.
    React {
        /// The message (hex id).
        id: String,
        /// Any emoji.
        emoji: String,
        /// Take it back.
        #[serde(default)]
        remove: bool,
    },
    /// Change the text of an own message, for everyone.
    Edit {
        /// The message (hex id).
        id: String,
        /// The new text.
        text: String,
    },
    /// Delete an own message for everyone, or any message from this
    /// device only.
    Delete {
        /// The message (hex id).
        id: String,
        /// Only here.
        #[serde(default)]
        for_me: bool,
    },
    /// Set a conversation's disappearing-message timer (0: off).
    Timer {
        /// `@handle` or `#group`.
        conversation: String,
        /// Seconds a message lives.
        secs: u64,
    },
    /// The person read a conversation up to its newest message.
    Read {
        /// `@handle` or `#group`.
        conversation: String,
    },
    /// The person is typing in a conversation (or stopped): the others who
    /// are online see it for a few seconds.
    Typing {
        /// `@handle` or `#group`.
        conversation: String,
        /// Typing now, or stopped.
        #[serde(default = "yes")]
        typing: bool,
    },
    /// Search all history on this device (texts, file names, captions),
    /// newest first.
    Search {
        /// What to look for: every word must appear; the last may be a
        /// word's start.
        text: String,
        /// Only in this conversation.
        #[serde(default)]
        conversation: Option<String>,
    },
    /// Pin a message for everyone in its conversation, or unpin it.
    Pin {
        /// The message (hex id).
        id: String,
        /// Pinned, or no longer.
        #[serde(default = "yes")]
        pinned: bool,
    },
    /// Set a group's description for everyone ("" clears it).
    Describe {
        /// `#group`.
        conversation: String,
        /// What the group is about.
        text: String,
    },
    /// Turn sending read receipts on or off.
    ReadReceipts {
        /// On.
        on: bool,
    },
}

fn yes() -> bool {
    true
}

/// A change to a group. Group names are given without `#`, handles with
/// or without `@`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupChange {
    /// A new group with these people.
    Create {
        /// Its name.
        name: String,
        /// Who is in it besides this person.
        people: Vec<String>,
    },
    /// Add people.
    Add {
        /// The group.
        name: String,
        /// Who.
        people: Vec<String>,
    },
    /// Remove people.
    Remove {
        /// The group.
        name: String,
        /// Who.
        people: Vec<String>,
    },
    /// Leave it.
    Leave {
        /// The group.
        name: String,
    },
    /// Give it a new name, for everyone.
    Rename {
        /// The group.
        name: String,
        /// The new name.
        to: String,
    },
}

impl GroupChange {
    /// Reads `/group ACTION NAME [PEOPLE…]` arguments (the terminal UI's).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let usage = || "use /group create|add|remove|leave|rename NAME [@people…]".to_owned();
        let (action, name) = match args {
            [action, name, ..] => (action.as_str(), name.trim_start_matches('#').to_owned()),
            _ => return Err(usage()),
        };
        let people: Vec<String> = args[2..].iter().map(|h| h.trim_start_matches('@').to_owned()).collect();
        Ok(match action {
            "create" => Self::Create { name, people },
            "add" => Self::Add { name, people },
            "remove" => Self::Remove { name, people },
            "leave" => Self::Leave { name },
            "rename" => match people.first() {
                Some(to) => Self::Rename { name, to: to.trim_start_matches('#').to_owned() },
                None => return Err("/group rename NAME NEW".into()),
            },
            other => return Err(format!("/group {other}: {}", usage())),
        })
    }

    /// The group it changes, as `#name`.
    pub fn conversation(&self) -> String {
        let name = match self {
            Self::Create { name, .. }
            | Self::Add { name, .. }
            | Self::Remove { name, .. }
            | Self::Leave { name }
            | Self::Rename { name, .. } => name,
        };
        format!("#{}", name.trim_start_matches('#'))
    }

    /// The verb, for what a front end shows.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Add { .. } => "add",
            Self::Remove { .. } => "remove",
            Self::Leave { .. } => "leave",
            Self::Rename { .. } => "rename",
        }
    }
}

impl Command {
    /// A command that changes messages or settings here first and puts
    /// what the others must learn into the outbox (so it works offline
    /// too): replies, reactions, edits, deletes, timers, reads, pins,
    /// descriptions, the read-receipts setting.
    pub fn changes_messages(&self) -> bool {
        matches!(
            self,
            Self::Reply { .. }
                | Self::React { .. }
                | Self::Edit { .. }
                | Self::Delete { .. }
                | Self::Timer { .. }
                | Self::Read { .. }
                | Self::Pin { .. }
                | Self::Describe { .. }
                | Self::ReadReceipts { .. }
        )
    }

    /// Checks what a person or a page asked for before it goes anywhere.
    pub fn validate(&self) -> Result<(), String> {
        let conversation = |to: &str| {
            if to.starts_with('@') || to.starts_with('#') {
                Ok(())
            } else {
                Err(format!("{to:?}: write @handle or #group"))
            }
        };
        match self {
            Self::Send { to, text } => {
                conversation(to)?;
                if text.trim().is_empty() {
                    return Err("the message is empty".into());
                }
                Ok(())
            }
            Self::SendFile { to, .. } => conversation(to),
            Self::Reply { to, text, .. } | Self::Edit { id: to, text } if text.trim().is_empty() => {
                let _ = to;
                Err("the message is empty".into())
            }
            Self::Timer { secs, .. } if *secs > sotto_core::MAX_TIMER_SECS => {
                Err("a disappearing-message timer is at most one year".into())
            }
            Self::Timer { conversation: c, .. } | Self::Read { conversation: c } => conversation(c),
            Self::Broadcast { text } if text.trim().is_empty() => Err("the message is empty".into()),
            Self::Search { text, .. } if text.trim().is_empty() => Err("type something to search for".into()),
            Self::Search { text, .. } if text.len() > 1000 => Err("search for at most 1,000 characters".into()),
            Self::Export { conversation: c } => conversation(c),
            Self::Group(GroupChange::Create { name, .. } | GroupChange::Rename { to: name, .. }) => {
                sotto_core::validate_group_name(name.trim_start_matches('#')).map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_from_json_and_a_page_cannot_name_a_local_file() {
        let c: Command = serde_json::from_str(r#"{"type":"send","to":"@bob","text":"hi"}"#).unwrap();
        assert_eq!(c, Command::Send { to: "@bob".into(), text: "hi".into() });
        let g: Command =
            serde_json::from_str(r#"{"type":"group","action":"add","name":"crew","people":["dave"]}"#).unwrap();
        assert_eq!(g, Command::Group(GroupChange::Add { name: "crew".into(), people: vec!["dave".into()] }));
        assert!(serde_json::from_str::<Command>(r#"{"type":"send_file","to":"@bob","path":"/etc/passwd"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"type":"send","to":"@bob","text":"x","extra":1}"#).is_err());
        assert!(Command::Send { to: "bob".into(), text: "x".into() }.validate().is_err());
        assert!(Command::Send { to: "@bob".into(), text: "  ".into() }.validate().is_err());
    }

    #[test]
    fn group_arguments_from_the_terminal() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            GroupChange::parse(&args("add #crew @dave")).unwrap(),
            GroupChange::Add { name: "crew".into(), people: vec!["dave".into()] }
        );
        assert_eq!(
            GroupChange::parse(&args("rename crew team")).unwrap(),
            GroupChange::Rename { name: "crew".into(), to: "team".into() }
        );
        assert!(GroupChange::parse(&args("explode crew")).is_err());
        assert!(GroupChange::parse(&args("rename crew")).is_err());
    }
}
