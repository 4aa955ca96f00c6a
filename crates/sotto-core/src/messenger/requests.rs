//! Message requests: a conversation started by someone this person has not
//! chosen to talk to is held apart (its messages kept, not shown, nothing
//! sent into it) until the person accepts it, as Signal does. The server
//! shows this account's presence only through groups it accepted.

#[allow(unused_imports)]
use super::*;

/// A conversation waiting for the person to accept or decline it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRequest {
    /// Its name (`@handle`, or `#name` once the group's name arrived).
    pub conversation: String,
    /// Who added this device.
    pub from: String,
    /// Messages waiting in it.
    pub messages: u64,
    /// When it arrived (ms since the epoch).
    pub since: i64,
}

impl Messenger {
    /// Whether conversations from anyone show at once, without a request
    /// (off by default; for bots, support accounts and scripts that answer
    /// whoever writes).
    pub fn auto_accept(&self) -> CoreResult<bool> {
        Ok(self.setting("auto_accept")?.as_deref() == Some(b"1"))
    }

    /// Turns [`Messenger::auto_accept`] on or off. Requests waiting stay
    /// requests.
    pub fn set_auto_accept(&self, on: bool) -> CoreResult<()> {
        self.set_setting("auto_accept", if on { b"1" } else { b"0" })
    }

    /// Whether `handle` is someone this person chose to talk to (their own
    /// account always is, and everyone is with auto-accept on).
    pub(crate) fn is_accepted(&self, handle: &str) -> CoreResult<bool> {
        if handle == self.identity.handle || self.auto_accept()? {
            return Ok(true);
        }
        let accepted: Option<bool> =
            self.conn.row("SELECT accepted FROM contacts WHERE handle=?", [handle], |r| r.get(0)).optional()?;
        Ok(accepted == Some(true))
    }

    /// Records that this person chose to talk to `handle` (a known contact).
    pub(crate) fn accept_person(&self, handle: &str) -> CoreResult<()> {
        self.conn.exec("UPDATE contacts SET accepted=1 WHERE handle=?", [handle])?;
        Ok(())
    }

    /// Who a conversation is a request from, if it is one.
    pub fn request_from(&self, conversation: &str) -> CoreResult<Option<String>> {
        Ok(self
            .conn
            .row(
                "SELECT request_from FROM groups WHERE conversation=? AND active=1 AND request_from IS NOT NULL",
                [conversation],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The group's request sender, by group id.
    pub(crate) fn group_request_from(&self, group_id: &[u8]) -> CoreResult<Option<String>> {
        Ok(self
            .conn
            .row("SELECT request_from FROM groups WHERE group_id=?", [group_id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// Every conversation waiting to be accepted, oldest first.
    pub fn requests(&self) -> CoreResult<Vec<MessageRequest>> {
        let mut stmt = self.conn.prepare(
            "SELECT g.conversation, g.request_from, g.created_at,
                    (SELECT count(*) FROM messages m WHERE m.conversation = g.conversation AND m.state != 'control')
             FROM groups g WHERE g.request_from IS NOT NULL AND g.active=1 ORDER BY g.created_at, g.conversation",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(MessageRequest { conversation: r.get(0)?, from: r.get(1)?, since: r.get(2)?, messages: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A conversation that is a request: who it is from and its group.
    pub fn request_group(&self, conversation: &str) -> CoreResult<(String, Vec<u8>)> {
        let from = self
            .request_from(conversation)?
            .ok_or_else(|| CoreError::NotFound(format!("{conversation} is not a message request")))?;
        let group_id = self
            .conversation_group(conversation)?
            .ok_or_else(|| CoreError::NotFound(format!("no conversation {conversation}")))?;
        Ok((from, group_id))
    }

    /// Accepts a request here (the server is told first, by the session):
    /// it shows like any other conversation (its messages become news for
    /// `take_unfetched`) and its sender's later conversations show at once.
    pub fn clear_request(&self, group_id: &[u8], from: &str) -> CoreResult<()> {
        self.tx(|me| {
            me.conn.exec("UPDATE groups SET request_from=NULL WHERE group_id=?", [group_id])?;
            me.accept_person(from)
        })
    }

    /// The control message telling this account's other devices that a
    /// conversation was accepted here (queued in the outbox).
    pub fn accepted_notice(&self, conversation: &str) -> CoreResult<OutboxItem> {
        let content = Content::new(self.new_id(), self.now(), Body::Accepted);
        self.prepare_content(conversation, &content)
    }

    /// Declines a request: its messages are deleted and the conversation is
    /// closed on this device. Returns the group id, to leave on the server
    /// so it routes nothing more here.
    pub fn decline_request(&self, conversation: &str) -> CoreResult<Vec<u8>> {
        let (_, group_id) = self.request_group(conversation)?;
        self.tx(|me| {
            me.conn.exec("DELETE FROM messages WHERE conversation=?", [conversation])?;
            me.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [&group_id])?;
            Ok(())
        })?;
        Ok(group_id)
    }

    /// What a delivery into a request shows: nothing yet (the messages are
    /// stored and show once accepted), unless this account wrote there from
    /// another device, which accepts it here too.
    pub(crate) fn screen_request(&self, group_id: &[u8], events: Vec<Event>) -> CoreResult<Vec<Event>> {
        let Some(from) = self.group_request_from(group_id)? else { return Ok(events) };
        let own = |e: &Event| matches!(e, Event::Message(m) if m.outgoing);
        if events.iter().any(own) {
            self.clear_request(group_id, &from)?;
            return Ok(events);
        }
        Ok(events.into_iter().filter(|e| !matches!(e, Event::Message(_))).collect())
    }
}
