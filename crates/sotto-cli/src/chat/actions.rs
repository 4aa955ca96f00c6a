//! What the chat screen does with messages already there: selecting one
//! (Ctrl-↑/Ctrl-↓), replying to it, reacting, editing the last own
//! message with ↑, deleting with a confirmation; telling the others this
//! person is typing and has read what is on the screen.

use std::time::{Duration, Instant};

use sotto_core::{Body, MessageState, StoredMessage};

use super::app::{App, Command};

/// Typing is told again at most this often while the person types.
const TYPING_EVERY: Duration = Duration::from_secs(4);

impl App {
    /// The open conversation's messages that can be acted on (not
    /// notices), oldest first.
    fn actionable(&self) -> Vec<&StoredMessage> {
        let Some(c) = self.model.current.as_ref().and_then(|c| self.model.conversations.get(c)) else { return vec![] };
        c.messages.iter().filter(|m| m.state != MessageState::System && !m.detail.annotation).collect()
    }

    /// The selected message, if it is still there.
    pub fn selected_message(&self) -> Option<&StoredMessage> {
        let id = self.selected.as_ref()?;
        self.actionable().into_iter().find(|m| &m.id == id)
    }

    /// Moves the selection one message up (older) or down (newer);
    /// down from the newest ends selecting.
    pub(super) fn select(&mut self, older: bool) {
        let list = self.actionable();
        let at = self.selected.as_ref().and_then(|id| list.iter().position(|m| &m.id == id));
        let next = match (at, older) {
            (None, true) => list.len().checked_sub(1),
            (None, false) => None,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < list.len() => Some(i + 1),
            (Some(_), false) => None,
        };
        self.selected = next.map(|i| list[i].id.clone());
        self.model.info = match self.selected_message() {
            Some(m) => format!(
                "selected {}'s message: type to reply, /react 👍, /edit, /delete, Esc to stop",
                if m.outgoing { "your" } else { m.sender.as_str() }.trim_end_matches("'s")
            ),
            None => String::new(),
        };
    }

    /// ↑ in an empty line: edit the newest own text here.
    pub(super) fn start_editing(&mut self) -> bool {
        let Some(m) = self.actionable().into_iter().rev().find(|m| m.outgoing && !m.detail.deleted && m.seq.is_some())
        else {
            return false;
        };
        let Body::Text { text } = &m.body else { return false };
        let (id, text) = (m.id.clone(), text.clone());
        self.editing = Some(id);
        self.input = text;
        self.cursor = self.input.len();
        self.model.info = "editing your last message: Enter saves it for everyone, Esc cancels".into();
        true
    }

    /// Leaves selecting, editing and a pending delete.
    pub(super) fn cancel(&mut self) {
        if self.editing.take().is_some() {
            self.input.clear();
            self.cursor = 0;
        }
        self.selected = None;
        self.confirm_delete = None;
        self.model.info.clear();
    }

    /// The message a command acts on: the selected one, else the newest
    /// (own only, for edits and deletes).
    fn target(&self, own: bool) -> Option<&StoredMessage> {
        self.selected_message()
            .filter(|m| !own || m.outgoing)
            .or_else(|| self.actionable().into_iter().rev().find(|m| !own || m.outgoing))
    }

    /// A plain line typed while a message is selected or edited.
    pub(super) fn compose(&mut self, to: String, text: String) -> Command {
        if let Some(id) = self.editing.take() {
            self.model.info.clear();
            return Command::Edit { id: hex::encode(id), text };
        }
        match self.selected.take() {
            Some(id) => {
                self.model.info.clear();
                Command::Reply { to, text, reply_to: hex::encode(id) }
            }
            None => Command::Send { to, text },
        }
    }

    /// `/reply`, `/react`, `/unreact`, `/edit`, `/delete`, `/timer`:
    /// `None` when `cmd` is none of them.
    pub(super) fn message_command(&mut self, cmd: &str, rest: &str) -> Option<Option<Command>> {
        let to = self.model.current.clone();
        let fail = |this: &mut Self, text: &str| {
            this.model.info = text.to_owned();
            Some(None)
        };
        let Some(to) = to else {
            return match cmd {
                "/reply" | "/react" | "/unreact" | "/edit" | "/delete" | "/timer" | "/pin" | "/unpin" | "/describe" => {
                    fail(self, "open a conversation first")
                }
                _ => None,
            };
        };
        let rest = rest.trim();
        Some(match cmd {
            "/reply" => {
                let Some(m) = self.target(false) else { return fail(self, "nothing to reply to") };
                if rest.is_empty() {
                    return fail(self, "usage: /reply text (answers the selected or newest message)");
                }
                let reply_to = hex::encode(&m.id);
                self.selected = None;
                Some(Command::Reply { to, text: rest.to_owned(), reply_to })
            }
            "/react" | "/unreact" => {
                let Some(m) = self.target(false) else { return fail(self, "nothing to react to") };
                let emoji = if rest.is_empty() { "👍" } else { rest };
                let id = hex::encode(&m.id);
                self.selected = None;
                Some(Command::React { id, emoji: emoji.to_owned(), remove: cmd == "/unreact" })
            }
            "/edit" => {
                let Some(m) = self.target(true) else { return fail(self, "you have no message here to edit") };
                let id = hex::encode(&m.id);
                self.selected = None;
                if rest.is_empty() {
                    return fail(self, "usage: /edit new text (or ↑ in an empty line)");
                }
                Some(Command::Edit { id, text: rest.to_owned() })
            }
            "/delete" if rest == "me" => {
                let Some(m) = self.target(false) else { return fail(self, "nothing to delete") };
                let id = hex::encode(&m.id);
                self.selected = None;
                Some(Command::Delete { id, for_me: true })
            }
            "/delete" => {
                let Some(m) = self.target(true) else { return fail(self, "you have no message here to delete") };
                let preview: String = match &m.body {
                    Body::Text { text } => text.chars().take(30).collect(),
                    _ => "the file".into(),
                };
                self.confirm_delete = Some(m.id.clone());
                self.model.info = format!("delete \"{preview}\" for everyone? y deletes, any other key keeps it");
                None
            }
            "/pin" | "/unpin" => {
                let Some(m) = self.target(false) else { return fail(self, "nothing to pin") };
                let id = hex::encode(&m.id);
                self.selected = None;
                Some(Command::Pin { id, pinned: cmd == "/pin" })
            }
            "/describe" => Some(Command::Describe { conversation: to, text: rest.to_owned() }),
            "/timer" => match parse_timer(rest) {
                Some(secs) => Some(Command::Timer { conversation: to, secs }),
                None => return fail(self, "usage: /timer off|5m|1h|1d|1w|4w"),
            },
            _ => return None,
        })
    }

    /// The answer to "delete for everyone?".
    pub(super) fn confirm(&mut self, yes: bool) -> Option<Command> {
        let id = self.confirm_delete.take()?;
        self.selected = None;
        if yes {
            self.model.info.clear();
            Some(Command::Delete { id: hex::encode(id), for_me: false })
        } else {
            self.model.info = "kept".into();
            None
        }
    }

    /// Called as the person types a message (not a command).
    pub(super) fn typed(&mut self) {
        let Some(conversation) = self.model.current.clone() else { return };
        if self.input.starts_with('/') {
            return;
        }
        if self.last_typing.is_some_and(|at| at.elapsed() < TYPING_EVERY) {
            return;
        }
        self.last_typing = Some(Instant::now());
        self.queued.push(Command::Typing { conversation, typing: true });
    }

    /// After events: what is on the screen counts as read.
    pub(crate) fn note_read(&mut self) {
        let Some(current) = self.model.current.clone() else { return };
        let Some(c) = self.model.conversations.get(&current) else { return };
        let newest =
            c.messages.iter().filter(|m| !m.outgoing && m.state == MessageState::Received).filter_map(|m| m.seq).max();
        if newest.is_some() && newest != self.read_upto.get(&current).copied() {
            self.read_upto.insert(current.clone(), newest.unwrap_or(0));
            self.queued.push(Command::Read { conversation: current });
        }
    }

    /// Commands the screen made by itself (typing, read), to send.
    pub fn take_queued(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.queued)
    }
}

/// `off`, or 30s, 5m, 1h, 1d, 1w, 4w.
fn parse_timer(s: &str) -> Option<u64> {
    if s.eq_ignore_ascii_case("off") {
        return Some(0);
    }
    let d = humantime::parse_duration(s).ok()?;
    (d.as_secs() >= 1 && d.as_secs() <= sotto_core::MAX_TIMER_SECS).then_some(d.as_secs())
}
