//! Disappearing messages: a per-conversation timer that travels as an
//! ordered control message (the highest sequence number wins, so every
//! member ends with the same timer), the expiry each new message carries,
//! and the sweep that removes expired messages and their files.

#[allow(unused_imports)]
use super::*;

/// The timer in words: "5 minutes", "1 hour", "off".
pub fn timer_words(secs: u64) -> String {
    if secs == 0 {
        return "off".into();
    }
    const UNITS: [(u64, &str); 5] =
        [(604_800, "week"), (86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")];
    for (size, name) in UNITS {
        if secs.is_multiple_of(size) {
            let n = secs / size;
            return format!("{n} {name}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{secs} seconds")
}

/// The longest timer (a year): longer is not "disappearing".
pub const MAX_TIMER_SECS: u64 = 366 * 86_400;

impl Messenger {
    /// The conversation's disappearing-message timer in seconds (0: off).
    pub fn timer(&self, conversation: &str) -> CoreResult<u64> {
        let Some(group_id) = self.conversation_group(conversation)? else {
            return Err(CoreError::NotFound(format!("no conversation {conversation}")));
        };
        Ok(self.conn.row("SELECT timer_secs FROM groups WHERE group_id=?", [&group_id], |r| r.get(0))?)
    }

    /// Sets the conversation's timer for everyone in it (0 turns it off).
    /// It takes effect here when the server has it, in the order the
    /// server gives it, as for every member.
    pub fn prepare_timer(&self, conversation: &str, secs: u64) -> CoreResult<OutboxItem> {
        if secs > MAX_TIMER_SECS {
            return Err(CoreError::Invalid("a disappearing-message timer is at most one year".into()));
        }
        if let Some(from) = self.request_from(conversation)? {
            return Err(CoreError::Invalid(format!(
                "{conversation} is a message request from @{from}: accept it first (`sotto accept {conversation}`)"
            )));
        }
        let content = Content::new(self.new_id(), self.now(), Body::Timer { secs });
        self.prepare_content(conversation, &content)
    }

    /// A timer message at `seq` in `group_id`: applied unless a later one
    /// already was; a line in history says who set what.
    pub(crate) fn apply_timer(
        &self,
        group_id: &[u8],
        conversation: &str,
        sender: &str,
        seq: u64,
        secs: u64,
    ) -> CoreResult<Vec<Event>> {
        let secs = secs.min(MAX_TIMER_SECS);
        let changed = self.conn.exec(
            "UPDATE groups SET timer_secs=?, timer_seq=?, retention_told=0 WHERE group_id=? AND timer_seq < ?",
            params![secs, seq, group_id, seq],
        )?;
        if changed == 0 {
            return Ok(vec![]);
        }
        let who = if sender == self.identity.handle { "you".to_owned() } else { format!("@{sender}") };
        let text = if secs == 0 {
            format!("{who} turned disappearing messages off")
        } else {
            format!("{who} set disappearing messages to {}", timer_words(secs))
        };
        let m = self.insert_system(conversation, group_id, seq, &text)?;
        Ok(vec![Event::Message(Box::new(m))])
    }

    /// The requests that tell the server the timers it has not heard of
    /// yet, so it keeps no entry of those groups longer than the timer
    /// (whoever has not read it). Any member may tell it; each does once.
    pub fn retention_requests(&self) -> CoreResult<Vec<Request>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT group_id, timer_secs FROM groups WHERE retention_told=0 AND active=1 AND broken=0",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (group_id, secs) = row?;
            out.push(Request::SetRetention { group_id, secs });
        }
        Ok(out)
    }

    /// The server has the timer of `group_id`.
    pub fn retention_told(&self, group_id: &[u8]) -> CoreResult<()> {
        self.conn.exec("UPDATE groups SET retention_told=1 WHERE group_id=?", [group_id])?;
        Ok(())
    }

    /// When a message made now in `group_id` disappears, if it does.
    pub(crate) fn expiry_for(&self, group_id: &[u8], from_ms: i64) -> CoreResult<Option<i64>> {
        let secs: Option<u64> =
            self.conn.row("SELECT timer_secs FROM groups WHERE group_id=?", [group_id], |r| r.get(0)).optional()?;
        Ok(secs.filter(|s| *s > 0).map(|s| from_ms + (s as i64) * 1000))
    }

    /// Removes every message whose time is up, with its file; returns what
    /// went so front ends drop it too.
    pub fn expire_due(&self) -> CoreResult<Vec<Event>> {
        let now = self.now();
        let due: Vec<(Vec<u8>, String)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, conversation FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?",
            )?;
            let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        if due.is_empty() {
            return Ok(vec![]);
        }
        self.tx(|me| {
            let mut events = Vec::new();
            for (id, conversation) in due {
                // Still in the outbox: the server never had it, and the
                // others will not get it either.
                me.conn.exec("DELETE FROM outbox WHERE message_id=?", [&id])?;
                me.remove_message(&id, false)?;
                events.push(Event::Removed { conversation, id });
            }
            Ok(events)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::timer_words;

    #[test]
    fn timers_read_as_people_say_them() {
        assert_eq!(timer_words(0), "off");
        assert_eq!(timer_words(300), "5 minutes");
        assert_eq!(timer_words(3600), "1 hour");
        assert_eq!(timer_words(86_400), "1 day");
        assert_eq!(timer_words(604_800), "1 week");
        assert_eq!(timer_words(4 * 604_800), "4 weeks");
        assert_eq!(timer_words(90), "90 seconds");
    }
}
