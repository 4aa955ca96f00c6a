//! What every front end shows, kept up to date by events: who we are, the
//! connection, the conversations with their messages, unread counts and
//! presence, and which one is open. The terminal UI keeps its editor
//! beside it (`chat::app::App`); the web UI keeps only this.

use std::collections::BTreeMap;

use sotto_core::StoredMessage;

use super::{Event, Link, Outcome};

/// One conversation in the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// `@handle` or `#group`.
    pub name: String,
    /// Messages in it (as loaded).
    pub messages: Vec<StoredMessage>,
    /// Arrived while not looking.
    pub unread: usize,
    /// The other person is online (one-to-one only).
    pub online: bool,
    /// Who is typing, since when (a line shows for a few seconds).
    pub typing: Vec<(String, std::time::Instant)>,
    /// The disappearing-message timer (seconds; 0: off).
    pub timer: u64,
    /// A group's description.
    pub description: String,
    /// A message among the unread ones mentions this person.
    pub mentioned: bool,
    /// Muted on this device: no bell, no notification.
    pub muted: bool,
    /// Known to use classical (not post-quantum) encryption: marked in
    /// the list and the title.
    pub classical: bool,
}

/// How long a typing line shows after the last signal.
pub const TYPING_SHOWN: std::time::Duration = std::time::Duration::from_secs(6);

impl Conversation {
    /// Who is typing now.
    pub fn typing_now(&self) -> Vec<&str> {
        self.typing.iter().filter(|(_, at)| at.elapsed() < TYPING_SHOWN).map(|(h, _)| h.as_str()).collect()
    }
}

/// The front-end state every UI shares.
#[derive(Debug, Default)]
pub struct Model {
    /// Our handle.
    pub me: String,
    /// Server address.
    pub server: String,
    /// Connection state.
    pub link: Option<Link>,
    /// Conversations by name.
    pub conversations: BTreeMap<String, Conversation>,
    /// Order shown (most recent activity first).
    pub order: Vec<String>,
    /// Open conversation.
    pub current: Option<String>,
    /// Last line to show (a notice or an outcome).
    pub info: String,
    /// People's display names, as they shared them.
    pub names: std::collections::HashMap<String, String>,
    /// People's pictures (media type, bytes), as they shared them.
    pub avatars: std::collections::HashMap<String, (String, Vec<u8>)>,
    /// The newest notices from the server's operator, oldest first.
    pub notices: Vec<sotto_core::ServerNotice>,
    /// Front-end preferences kept in the profile (drafts and the like).
    pub preferences: BTreeMap<String, String>,
}

/// How many operator notices a front end keeps at hand.
pub const NOTICES_SHOWN: usize = 20;

impl Model {
    /// Applies one event.
    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::Identity { me, server } => {
                self.me = me;
                self.server = server;
            }
            Event::History { conversation, messages } => {
                let c = self.conversation(&conversation);
                c.messages = messages;
                self.touch(&conversation);
                if self.current.is_none() {
                    self.current = Some(conversation);
                }
            }
            Event::Message(m) => {
                let m = *m;
                let name = m.conversation.clone();
                // With nothing open, the first conversation to speak opens.
                let looking = self.current.is_none() || self.current.as_deref() == Some(name.as_str());
                let new = !self.conversations.get(&name).is_some_and(|c| c.messages.iter().any(|x| x.id == m.id));
                if new && !m.outgoing && !looking && !self.me.is_empty() && m.detail.mentions.contains(&self.me) {
                    self.info = format!("@{} mentioned you in {name}", m.sender);
                    self.conversation(&name).mentioned = true;
                }
                let c = self.conversation(&name);
                c.typing.retain(|(h, _)| *h != m.sender);
                match c.messages.iter_mut().find(|x| x.id == m.id) {
                    Some(existing) => *existing = m,
                    None => {
                        if !m.outgoing && !looking {
                            c.unread += 1;
                        }

                        c.messages.push(m);
                    }
                }
                self.touch(&name);
                if self.current.is_none() {
                    self.current = Some(name);
                }
            }
            Event::Timer { conversation, secs } => self.conversation(&conversation).timer = secs,
            Event::Profile { handle, name, avatar } => {
                match avatar {
                    Some(a) => self.avatars.insert(handle.clone(), a),
                    None => self.avatars.remove(&handle),
                };
                self.names.insert(handle, name);
            }
            Event::GroupPicture { conversation, picture } => {
                match picture {
                    Some(p) => self.avatars.insert(conversation, p),
                    None => self.avatars.remove(&conversation),
                };
            }
            Event::Description { conversation, text } => self.conversation(&conversation).description = text,
            Event::Muted { conversation, muted } => self.conversation(&conversation).muted = muted,
            Event::Encryption { conversation, post_quantum } => {
                self.conversation(&conversation).classical = !post_quantum
            }
            Event::Removed { conversation, id } => {
                if let Some(c) = self.conversations.get_mut(&conversation) {
                    c.messages.retain(|m| m.id != id);
                }
            }
            Event::Typing { conversation, handle, typing } => {
                let c = self.conversation(&conversation);
                c.typing.retain(|(h, _)| *h != handle);
                if typing {
                    c.typing.push((handle, std::time::Instant::now()));
                }
            }
            Event::Connection(l) => self.link = Some(l),
            Event::Presence(list) => {
                for (h, on) in list {
                    if let Some(c) = self.conversations.get_mut(&format!("@{h}")) {
                        c.online = on;
                    }
                }
            }
            Event::Preference { name, value } => {
                if value.is_empty() {
                    self.preferences.remove(&name);
                } else {
                    self.preferences.insert(name, value);
                }
            }
            Event::ServerNotice { notice: n, .. } => {
                if !self.notices.iter().any(|x| x.id == n.id) {
                    self.notices.push(n);
                    self.notices.sort_by_key(|n| n.id);
                    let over = self.notices.len().saturating_sub(NOTICES_SHOWN);
                    self.notices.drain(..over);
                }
            }
            Event::Notice { conversation, text } => {
                self.info = match conversation {
                    Some(c) => format!("{c}: {text}"),
                    None => text,
                }
            }
            // A sent text shows as ✓ on the message itself; a line saying
            // so after every message would only push out what matters.
            Event::Outcome { outcome: Outcome::Sent { .. }, .. } => {}
            // Typing and reading happen as the person uses the screen;
            // nothing to say about them.
            Event::Outcome { outcome: Outcome::Signalled | Outcome::Changed { change: "read", .. }, .. } => {}
            Event::Outcome { outcome, .. } => self.info = outcome.describe(),
            Event::Renamed { from, to } => {
                if let Some(mut c) = self.conversations.remove(&from) {
                    c.name = to.clone();
                    for m in &mut c.messages {
                        m.conversation = to.clone();
                    }
                    self.conversations.insert(to.clone(), c);
                }
                for n in &mut self.order {
                    if *n == from {
                        *n = to.clone();
                    }
                }
                if self.current.as_deref() == Some(from.as_str()) {
                    self.current = Some(to);
                }
            }
            Event::Progress { transfer, done, total, .. } => {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                let what = match transfer {
                    crate::frontend::Transfer::Upload => "upload",
                    crate::frontend::Transfer::Download => "download",
                };
                self.info = format!("{what}: {pct}% ({done} of {total} bytes)");
            }
        }
    }

    fn conversation(&mut self, name: &str) -> &mut Conversation {
        self.conversations
            .entry(name.to_owned())
            .or_insert_with(|| Conversation { name: name.to_owned(), ..Default::default() })
    }

    /// Moves a conversation to the top of the list.
    fn touch(&mut self, name: &str) {
        self.order.retain(|n| n != name);
        self.order.insert(0, name.to_owned());
    }

    /// Opens a conversation, clearing its unread count.
    pub fn open(&mut self, name: &str) {
        let c = self.conversation(name);
        c.unread = 0;
        c.mentioned = false;
        if !self.order.iter().any(|n| n == name) {
            self.order.push(name.to_owned());
        }
        self.current = Some(name.to_owned());
    }
}
