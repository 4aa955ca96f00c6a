//! The chat screen's state: a plain struct changed by events (keys, and
//! what the network task reports), testable without a terminal. Drawing is
//! a pure function of it (`ui.rs`).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use crate::frontend::model::Model;
pub use crate::frontend::{Command, Event, GroupChange, Link};

/// The whole screen state.
#[derive(Debug, Default)]
pub struct App {
    /// What every front end shows: conversations, connection, the open one.
    pub model: Model,
    /// The input line(s).
    pub input: String,
    /// Cursor position in `input` (bytes, on a char boundary).
    pub cursor: usize,
    /// Sent lines, for Up/Down.
    pub sent_history: Vec<String>,
    /// Position while browsing `sent_history`.
    pub history_pos: Option<usize>,
    /// Lines scrolled up from the bottom of the message view.
    pub scroll: usize,
    /// Help overlay shown.
    pub show_help: bool,
    /// Set when the person quits.
    pub quit: bool,
    /// Profiles in the data directory: name and "@handle server".
    pub profiles: Vec<(String, String)>,
    /// Set with `quit` when the person switches to another profile.
    pub switch_to: Option<String>,
    /// The message selected with Ctrl-↑/Ctrl-↓ (replies, reactions act
    /// on it).
    pub selected: Option<Vec<u8>>,
    /// The own message being edited (↑ in an empty line).
    pub editing: Option<Vec<u8>>,
    /// A delete for everyone waiting for "y".
    pub confirm_delete: Option<Vec<u8>>,
    /// When this person last told the others they are typing.
    pub last_typing: Option<std::time::Instant>,
    /// How far each conversation was marked read.
    pub read_upto: std::collections::HashMap<String, u64>,
    /// Commands the screen made by itself, waiting to be sent.
    pub queued: Vec<Command>,
    /// Search results shown over the screen.
    pub search: Option<super::search::SearchView>,
    /// A box with lines to read (a safety number, members).
    pub notice: Option<super::attention::Notice>,
    /// Bell and notifications for messages elsewhere.
    pub alerts: super::attention::Alerts,
    /// What arrived elsewhere, waiting for the bell.
    pub alert: Option<String>,
    /// The conversation `/msg` opened for someone new (and the one open
    /// before), until the send is done.
    pub opened_for_send: Option<(String, Option<String>)>,
    /// The first unread message when the conversation was opened: the
    /// "new messages" line goes above it.
    pub new_from: Option<Vec<u8>>,
}

/// The commands, for `/help` and completion.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/msg @h text", "send to someone (opens the conversation)"),
    ("/send @h path", "send a file to @h or #group"),
    ("/bmsg text", "broadcast to every one-to-one contact"),
    ("/list", "contacts and who is online"),
    ("/join #g", "open a conversation"),
    ("/group create|add|remove|leave|rename ...", "manage groups"),
    ("/verify @h", "show the safety number"),
    ("/export", "export this conversation to a file"),
    ("/download id", "fetch a received file"),
    ("/profile [name]", "list profiles, or switch to one"),
    ("/devices", "your devices"),
    ("/device add CODE", "link the device showing CODE"),
    ("/device remove ID", "remove a device for good"),
    ("/requests", "conversations waiting for you to accept them"),
    ("/accept @h|#g", "accept a message request"),
    ("/decline @h|#g", "decline a message request (its messages are deleted)"),
    ("/reply text", "answer the selected (Ctrl-↑) or newest message"),
    ("/react 👍", "react to the selected or newest message (/unreact takes it back)"),
    ("/edit text", "change your selected or last message (or ↑ in an empty line)"),
    ("/delete [me]", "delete your message for everyone (asks), or any message here only"),
    ("/timer off|5m|1h|1d|1w", "disappearing messages in this conversation"),
    ("/pin, /unpin", "pin the selected or newest message for everyone"),
    ("/describe text", "set this group's description"),
    ("/search text", "search all history (↑/↓ and Enter open a result)"),
    ("/members", "who is in this conversation (and who is admin)"),
    ("/notices", "the server operator's notices (not end-to-end encrypted)"),
    ("/retry", "send again your newest text here that was not sent"),
    ("/mute, /unmute", "no bell or hotlist for this conversation (mentions still call)"),
    ("/confirm @h DIGITS", "mark @h verified: the safety number they read out"),
    ("/trust @h", "accept @h's changed key"),
    ("/bell on|off, /notify on|off", "bell, desktop notification for messages elsewhere"),
    ("/help", "show or hide this help"),
    ("/exit", "quit (also Ctrl-C)"),
];

impl App {
    /// Applies something the network reported.
    pub fn on_net(&mut self, ev: Event) {
        self.attend(&ev);
        self.model.apply(ev);
        self.note_read();
    }

    /// Opens a conversation, clearing its unread count.
    pub fn open(&mut self, name: &str) {
        self.mark_new(name);
        self.model.open(name);
        self.scroll = 0;
    }

    fn cycle(&mut self, forward: bool) {
        if self.model.order.is_empty() {
            return;
        }
        let i = self.model.current.as_ref().and_then(|c| self.model.order.iter().position(|n| n == c)).unwrap_or(0);
        let n = self.model.order.len();
        let next = if forward { (i + 1) % n } else { (i + n - 1) % n };
        let name = self.model.order[next].clone();
        self.open(&name);
    }

    fn insert(&mut self, s: &str) {
        self.input.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    fn prev_boundary(&self) -> usize {
        self.input[..self.cursor].char_indices().next_back().map(|(i, _)| i).unwrap_or(0)
    }

    fn next_boundary(&self) -> usize {
        self.input[self.cursor..].chars().next().map(|c| self.cursor + c.len_utf8()).unwrap_or(self.cursor)
    }

    /// Handles a key; returns a command for the network task, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if self.confirm_delete.is_some() {
            return self.confirm(key.code == KeyCode::Char('y') || key.code == KeyCode::Char('Y'));
        }
        if !ctrl && !alt && self.search_key(key.code) {
            return None;
        }
        if key.code == KeyCode::Esc && self.notice.take().is_some() {
            return None;
        }
        match key.code {
            KeyCode::Up if ctrl => {
                self.select(true);
                None
            }
            KeyCode::Down if ctrl => {
                self.select(false);
                None
            }
            KeyCode::Up if self.input.is_empty() && self.history_pos.is_none() && self.start_editing() => None,
            KeyCode::Char('c') | KeyCode::Char('d') if ctrl => {
                self.quit = true;
                None
            }
            KeyCode::Char('n') if ctrl => {
                self.cycle(true);
                None
            }
            KeyCode::Char('p') if ctrl => {
                self.cycle(false);
                None
            }
            KeyCode::Down if alt => {
                self.cycle(true);
                None
            }
            KeyCode::Up if alt => {
                self.cycle(false);
                None
            }
            KeyCode::Char('a') if ctrl => {
                self.cursor = 0;
                None
            }
            KeyCode::Char('e') if ctrl => {
                self.cursor = self.input.len();
                None
            }
            KeyCode::Char('u') if ctrl => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
                None
            }
            KeyCode::Char('w') if ctrl => {
                let start = self.input[..self.cursor].trim_end().rfind(' ').map(|i| i + 1).unwrap_or(0);
                self.input.drain(start..self.cursor);
                self.cursor = start;
                None
            }
            KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.insert("\n");
                None
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Tab => {
                self.complete();
                None
            }
            KeyCode::BackTab => {
                self.cycle(false);
                None
            }
            KeyCode::Char(c) => {
                let mut buf = [0u8; 4];
                self.insert(c.encode_utf8(&mut buf));
                self.history_pos = None;
                self.typed();
                None
            }
            KeyCode::Backspace => {
                if self.cursor > 0 {
                    let p = self.prev_boundary();
                    self.input.drain(p..self.cursor);
                    self.cursor = p;
                }
                None
            }
            KeyCode::Delete => {
                let n = self.next_boundary();
                self.input.drain(self.cursor..n);
                None
            }
            KeyCode::Left => {
                self.cursor = self.prev_boundary();
                None
            }
            KeyCode::Right => {
                self.cursor = self.next_boundary();
                None
            }
            KeyCode::Home => {
                self.cursor = 0;
                None
            }
            KeyCode::End => {
                self.cursor = self.input.len();
                None
            }
            KeyCode::Up => {
                self.browse_history(true);
                None
            }
            KeyCode::Down => {
                self.browse_history(false);
                None
            }
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_add(10);
                None
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(10);
                None
            }
            KeyCode::Esc => {
                self.show_help = false;
                self.cancel();
                None
            }
            _ => None,
        }
    }

    fn browse_history(&mut self, back: bool) {
        if self.sent_history.is_empty() {
            return;
        }
        let last = self.sent_history.len() - 1;
        let pos = match (self.history_pos, back) {
            (None, true) => Some(last),
            (None, false) => None,
            (Some(0), true) => Some(0),
            (Some(p), true) => Some(p - 1),
            (Some(p), false) if p >= last => None,
            (Some(p), false) => Some(p + 1),
        };
        self.history_pos = pos;
        self.input = pos.map(|p| self.sent_history[p].clone()).unwrap_or_default();
        self.cursor = self.input.len();
    }

    /// Completes the word before the cursor: a command, a handle or a group.
    fn complete(&mut self) {
        let start = self.input[..self.cursor].rfind([' ', '\n']).map(|i| i + 1).unwrap_or(0);
        let word = self.input[start..self.cursor].to_owned();
        if word.is_empty() {
            self.cycle(true);
            return;
        }
        let mut candidates: Vec<String> = if word.starts_with('/') && start == 0 {
            COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or("").to_owned()).collect()
        } else {
            self.model.conversations.keys().cloned().collect()
        };
        candidates.retain(|c| c.starts_with(&word) && c != &word);
        candidates.sort();
        candidates.dedup();
        if let Some(first) = candidates.first() {
            let rest = first[word.len()..].to_owned();
            self.insert(&rest);
            if candidates.len() == 1 {
                self.insert(" ");
            }
        }
    }

    /// Enter: a slash command, or text for the open conversation.
    fn submit(&mut self) -> Option<Command> {
        let line = std::mem::take(&mut self.input);
        self.cursor = 0;
        self.history_pos = None;
        let text = line.trim_end().to_owned();
        if text.trim().is_empty() {
            return None;
        }
        self.sent_history.push(text.clone());
        self.scroll = 0;
        if !text.starts_with('/') {
            let Some(to) = self.model.current.clone() else {
                self.model.info = "no conversation open: /msg @handle text, or /join #group".into();
                return None;
            };
            self.last_typing = None;
            return Some(self.compose(to, text));
        }
        let mut parts = text.splitn(3, ' ');
        let cmd = parts.next().unwrap_or("");
        let a = parts.next().map(str::to_owned);
        let b = parts.next().map(str::to_owned);
        let usage = |this: &mut Self, u: &str| {
            this.model.info = format!("usage: {u}");
            None
        };
        let rest = text.strip_prefix(cmd).unwrap_or("").to_owned();
        if let Some(command) = self.message_command(cmd, &rest) {
            return command;
        }
        match cmd {
            "/exit" | "/quit" => {
                self.quit = true;
                None
            }
            "/help" => {
                self.show_help = !self.show_help;
                None
            }
            "/msg" => match (a, b) {
                (Some(to), Some(text)) if to.starts_with('@') || to.starts_with('#') => {
                    if !self.model.conversations.contains_key(&to) {
                        self.opened_for_send = Some((to.clone(), self.model.current.clone()));
                    }
                    self.open(&to);
                    Some(Command::Send { to, text })
                }
                _ => usage(self, "/msg @handle text"),
            },
            "/send" => match (a, b) {
                (Some(to), Some(path)) if to.starts_with('@') || to.starts_with('#') => {
                    self.open(&to);
                    Some(Command::SendFile { to, path: path.into() })
                }
                _ => usage(self, "/send @handle path"),
            },
            "/bmsg" => {
                let rest = text.strip_prefix("/bmsg").unwrap_or("").trim().to_owned();
                if rest.is_empty() {
                    return usage(self, "/bmsg text");
                }
                Some(Command::Broadcast { text: rest })
            }
            "/list" => Some(Command::Presence),
            "/join" => match a {
                Some(c) if c.starts_with('#') || c.starts_with('@') => {
                    self.open(&c);
                    None
                }
                _ => usage(self, "/join #group"),
            },
            "/group" => {
                let args: Vec<String> = text.split_whitespace().skip(1).map(str::to_owned).collect();
                match GroupChange::parse(&args) {
                    Ok(change) => Some(Command::Group(change)),
                    Err(e) => {
                        self.model.info = e;
                        None
                    }
                }
            }
            "/verify" => match a {
                Some(h) if h.starts_with('@') => Some(Command::Verify { handle: h[1..].to_owned() }),
                _ => usage(self, "/verify @handle"),
            },
            "/export" => match self.model.current.clone() {
                Some(c) => Some(Command::Export { conversation: c }),
                None => usage(self, "/export (in a conversation)"),
            },
            "/profile" => match a {
                None => {
                    let list: Vec<String> = self.profiles.iter().map(|(n, d)| format!("{n} ({d})")).collect();
                    self.model.info = if list.is_empty() {
                        "no named profiles".into()
                    } else {
                        format!("profiles: {}", list.join(", "))
                    };
                    None
                }
                Some(name) => {
                    self.switch_to = Some(name);
                    self.quit = true;
                    None
                }
            },
            "/search" => {
                let what = rest.trim().to_owned();
                if what.is_empty() {
                    return usage(self, "/search words (in all conversations)");
                }
                Some(Command::Search { text: what, conversation: None })
            }
            "/mute" | "/unmute" => match self.model.current.clone() {
                Some(conversation) => Some(Command::Mute { conversation, muted: cmd == "/mute" }),
                None => usage(self, "/mute (in a conversation)"),
            },
            "/notices" => {
                self.notice = Some(super::attention::operator_notices(&self.model.notices));
                None
            }
            "/retry" => {
                let failed = self.model.current.as_ref().and_then(|c| self.model.conversations.get(c)).and_then(|c| {
                    c.messages.iter().rev().find(|m| {
                        m.outgoing
                            && m.state == sotto_core::MessageState::NotSent
                            && matches!(m.body, sotto_core::Body::Text { .. })
                    })
                });
                match failed {
                    Some(m) => Some(Command::Retry { id: hex::encode(&m.id) }),
                    None => {
                        self.model.info = "nothing here waits for a retry: every text of yours was sent".into();
                        None
                    }
                }
            }
            "/members" => match self.model.current.clone() {
                Some(conversation) => Some(Command::Members { conversation }),
                None => usage(self, "/members (in a conversation)"),
            },
            "/confirm" => match (a, b) {
                (Some(h), Some(digits)) if h.starts_with('@') => Some(Command::Confirm { handle: h, digits }),
                _ => usage(self, "/confirm @handle DIGITS (the safety number they read out)"),
            },
            "/trust" => match a {
                Some(h) if h.starts_with('@') => Some(Command::Trust { handle: h }),
                _ => usage(self, "/trust @handle"),
            },
            "/bell" | "/notify" => {
                self.set_alert(&cmd[1..], a.as_deref());
                None
            }
            "/devices" => Some(Command::Devices),
            "/requests" => Some(Command::Requests),
            "/accept" => match a {
                Some(conversation) => Some(Command::AcceptRequest { conversation }),
                None => usage(self, "/accept @handle or /accept #group (as /requests lists it)"),
            },
            "/decline" => match a {
                Some(conversation) => Some(Command::DeclineRequest { conversation }),
                None => usage(self, "/decline @handle or /decline #group (as /requests lists it)"),
            },
            "/device" => match (a.as_deref(), b) {
                (Some("add"), Some(code)) => Some(Command::LinkDevice { code, history_days: None }),
                (Some("remove"), Some(id)) => match id.trim().parse() {
                    Ok(id) => Some(Command::RemoveDevice { id }),
                    Err(_) => usage(self, "/device remove ID (the number /devices shows)"),
                },
                _ => usage(self, "/device add CODE (shown by `sotto link` on the new device) or /device remove ID"),
            },
            "/download" => match a {
                Some(id) => Some(Command::Download { id }),
                None => usage(self, "/download ID (the id shown with the file)"),
            },
            other => {
                self.model.info = format!("unknown command {other}; /help lists them");
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
pub(crate) mod tests;
