//! What calls the person's attention in the terminal UI: the hotlist of
//! conversations with unread messages (mentions first) in the status bar,
//! the terminal bell and an optional desktop notification (OSC 9) for a
//! message elsewhere, a "new messages" line where unread messages start,
//! and boxes over the screen for what does not fit the status line (the
//! whole safety number, the member list).

use std::io::Write;

use crate::frontend::{Event, Outcome};
use sotto_core::MessageState;

use super::app::App;

/// What the person chose for messages in other conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alerts {
    /// Ring the terminal bell.
    pub bell: bool,
    /// Ask the terminal for a desktop notification (OSC 9).
    pub notify: bool,
}

impl Default for Alerts {
    fn default() -> Self {
        Self { bell: true, notify: false }
    }
}

/// A box over the screen with lines to read; Esc closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Its title.
    pub title: String,
    /// Its lines (wrapped when drawn).
    pub lines: Vec<String>,
}

impl App {
    /// Before an event is applied: a message arriving elsewhere calls for
    /// the bell (and a notification), an outcome may open a box, a group
    /// just made takes focus, a conversation opened for a send that failed
    /// goes again.
    pub(super) fn attend(&mut self, ev: &Event) {
        match ev {
            Event::Message(m) => {
                // With nothing open, the first conversation to speak opens.
                let elsewhere = self.model.current.as_ref().is_some_and(|c| *c != m.conversation);
                let new = !self
                    .model
                    .conversations
                    .get(&m.conversation)
                    .is_some_and(|c| c.messages.iter().any(|x| x.id == m.id));
                // A muted conversation calls only when it mentions this person.
                let muted = self.model.conversations.get(&m.conversation).is_some_and(|c| c.muted)
                    && !m.detail.mentions.contains(&self.model.me);
                if new && elsewhere && !muted && !m.outgoing && m.state != MessageState::System && !m.detail.annotation
                {
                    let text = crate::output::text_of(&m.body).replace(['\n', '\x07', '\x1b'], " ");
                    let who = if m.conversation.starts_with('@') {
                        m.conversation.clone()
                    } else {
                        format!("@{} in {}", m.sender, m.conversation)
                    };
                    self.alert = Some(format!("{who}: {}", text.chars().take(120).collect::<String>()));
                }
            }
            Event::ServerNotice { notice, fresh: true } => {
                self.alert = Some(format!("notice from the server's operator: {}", notice.text.replace('\n', " ")));
                self.notice = Some(operator_notices(std::slice::from_ref(notice)));
            }
            Event::Outcome { outcome, .. } => match outcome {
                Outcome::SafetyNumber { handle, number, verified, key_changed } => {
                    let mut lines = vec![number.clone(), String::new()];
                    if *key_changed {
                        lines.push(format!("@{handle}'s key changed: messages with them wait until you accept it."));
                        lines.push(format!("Compare this number with them first, then /trust @{handle}."));
                    } else if *verified {
                        lines.push(format!("@{handle} is verified: you compared this number before."));
                    } else {
                        lines.push(format!("Compare it with what @{handle}'s screen shows, in person or on a call."));
                        lines.push(format!(
                            "If it is the same: /confirm @{handle} followed by the digits they read out."
                        ));
                    }
                    lines.push("Esc closes this.".into());
                    self.notice = Some(Notice { title: format!(" safety number with @{handle} "), lines })
                }
                Outcome::Members { conversation, members } => {
                    let mut lines: Vec<String> = members.iter().map(|m| m.describe()).collect();
                    lines.push(String::new());
                    lines.push("Esc closes this.".into());
                    self.notice = Some(Notice { title: format!(" {conversation}: {} ", members.len()), lines });
                }
                Outcome::Found { query, hits } => self.on_found(query, hits),
                Outcome::GroupChanged { conversation, change: "create" } => self.open(conversation),
                Outcome::Sent { .. } | Outcome::Queued { .. } => self.opened_for_send = None,
                Outcome::Error { .. } => self.forget_unsent_conversation(),
                _ => {}
            },
            _ => {}
        }
    }

    /// A `/msg` to someone new opened a conversation; the send failed (no
    /// such person, say): nothing of it stays, and the one open before
    /// comes back.
    fn forget_unsent_conversation(&mut self) {
        let Some((name, before)) = self.opened_for_send.take() else { return };
        if self.model.conversations.get(&name).is_some_and(|c| !c.messages.is_empty()) {
            return;
        }
        self.model.conversations.remove(&name);
        self.model.order.retain(|n| *n != name);
        self.model.current = before.or_else(|| self.model.order.first().cloned());
    }

    /// Rings the bell and asks for a notification, as chosen, for what
    /// arrived elsewhere since the last call.
    pub fn ring(&mut self, out: &mut impl Write) {
        let Some(text) = self.alert.take() else { return };
        if self.alerts.bell {
            let _ = out.write_all(b"\x07");
        }
        if self.alerts.notify {
            // OSC 9: terminals that know it (iTerm2, kitty, WezTerm, foot,
            // Windows Terminal) show a desktop notification; others ignore
            // it. The text has no control characters left.
            let _ = write!(out, "\x1b]9;sotto {text}\x07");
        }
        let _ = out.flush();
    }

    /// `/bell on|off`, `/notify on|off`.
    pub(super) fn set_alert(&mut self, which: &str, on: Option<&str>) {
        let on = match on.map(str::trim) {
            Some("on") => true,
            Some("off") => false,
            _ => {
                self.model.info = format!("usage: /{which} on|off");
                return;
            }
        };
        if which == "bell" {
            self.alerts.bell = on;
        } else {
            self.alerts.notify = on;
        }
        self.model.info = format!("{which} {} for messages in other conversations", if on { "on" } else { "off" });
    }

    /// The conversations with unread messages, for the status bar: those
    /// that mention this person first, then by recent activity.
    pub fn hotlist(&self) -> Vec<(String, usize, bool)> {
        let mut list: Vec<(String, usize, bool)> = self
            .model
            .order
            .iter()
            .filter(|n| self.model.current.as_deref() != Some(n.as_str()))
            .filter_map(|n| self.model.conversations.get(n))
            .filter(|c| c.unread > 0 && (!c.muted || c.mentioned))
            .map(|c| (c.name.clone(), c.unread, c.mentioned))
            .collect();
        list.sort_by_key(|(_, _, mentioned)| !mentioned);
        list
    }

    /// Where the "new messages" line goes on opening `name`: before the
    /// first of its unread messages.
    pub(super) fn mark_new(&mut self, name: &str) {
        self.new_from = self.model.conversations.get(name).and_then(|c| {
            let first = c.messages.len().checked_sub(c.unread).filter(|_| c.unread > 0)?;
            c.messages.get(first).map(|m| m.id.clone())
        });
    }
}

/// The box for notices from the server's operator: plainly marked as not
/// from anyone in a conversation and not end-to-end encrypted.
pub(super) fn operator_notices(notices: &[sotto_core::ServerNotice]) -> Notice {
    let mut lines = vec![
        "From the operator of this server, to everyone on it.".to_owned(),
        "Not end-to-end encrypted: the server can read (and write) it.".to_owned(),
        String::new(),
    ];
    if notices.is_empty() {
        lines.push("No notices.".into());
    }
    for n in notices {
        let when = chrono::DateTime::from_timestamp_millis(n.sent_at)
            .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        lines.push(format!("{when}  {}", n.text.lines().next().unwrap_or_default()));
        lines.extend(n.text.lines().skip(1).map(str::to_owned));
    }
    lines.push(String::new());
    lines.push("/notices shows them again. Esc closes this.".into());
    Notice { title: " server notice ".into(), lines }
}
