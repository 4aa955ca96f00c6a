//! Notices from a server's operator (`sotto-server announce`): kept in the
//! profile apart from every conversation, because they are not end-to-end
//! encrypted and no member of anything wrote them. What the server sends is
//! cleaned first: it is shown in terminals and pages.

#[allow(unused_imports)]
use super::*;

/// A notice from the operator of the server this profile uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerNotice {
    /// The server's id for it.
    pub id: u64,
    /// What the operator wrote, cleaned (no control characters but line
    /// breaks, at most [`sotto_proto::limits::MAX_NOTICE_BYTES`]).
    pub text: String,
    /// When the operator wrote it, as the server says (ms).
    pub sent_at: i64,
}

/// The text as it may be shown: no terminal escapes or other control
/// characters, no more than the protocol allows.
fn clean(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| *c == '\n' || !c.is_control()).collect();
    let max = sotto_proto::limits::MAX_NOTICE_BYTES;
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out.trim().to_owned()
}

impl Messenger {
    /// The highest notice id this profile has from its current server.
    pub fn last_notice_id(&self) -> CoreResult<u64> {
        let server = self.server()?;
        let id: Option<i64> =
            self.conn.row("SELECT max(id) FROM server_notices WHERE server=?", [server], |r| r.get(0))?;
        Ok(id.unwrap_or(0).max(0) as u64)
    }

    /// Keeps the notices the server sent that are new here; returns an
    /// event for each. Empty ones (after cleaning) and repeats are dropped.
    pub fn receive_notices(&self, notices: Vec<sotto_proto::Notice>) -> CoreResult<Vec<Event>> {
        let server = self.server()?;
        let mut events = Vec::new();
        for n in notices {
            let text = clean(&n.text);
            if text.is_empty() || n.id > i64::MAX as u64 {
                continue;
            }
            let added = self.conn.exec(
                "INSERT OR IGNORE INTO server_notices(server, id, text, sent_at, received_at) VALUES(?,?,?,?,?)",
                params![server, n.id as i64, text, n.sent_at, self.now()],
            )?;
            if added > 0 {
                events.push(Event::Notice(ServerNotice { id: n.id, text, sent_at: n.sent_at }));
            }
        }
        Ok(events)
    }

    /// Notices not shown yet (oldest first); they count as shown now.
    pub fn take_unshown_notices(&self) -> CoreResult<Vec<ServerNotice>> {
        let list = self.notices_where("shown=0", usize::MAX)?;
        self.conn.exec("UPDATE server_notices SET shown=1 WHERE shown=0", [])?;
        Ok(list)
    }

    /// The newest `limit` notices from the current server, oldest first.
    pub fn notices(&self, limit: usize) -> CoreResult<Vec<ServerNotice>> {
        self.notices_where("1", limit)
    }

    fn notices_where(&self, clause: &str, limit: usize) -> CoreResult<Vec<ServerNotice>> {
        let server = self.server()?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, text, sent_at FROM server_notices WHERE server=? AND {clause} ORDER BY id DESC LIMIT ?"
        ))?;
        let rows = stmt.query_map(params![server, limit.min(i64::MAX as usize) as i64], |r| {
            Ok(ServerNotice { id: r.get::<_, i64>(0)? as u64, text: r.get(1)?, sent_at: r.get(2)? })
        })?;
        let mut list: Vec<ServerNotice> = rows.collect::<Result<_, _>>()?;
        list.reverse();
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn what_a_server_sends_is_cleaned_before_anyone_sees_it() {
        assert_eq!(clean("  back at \u{1b}[31m22:00\u{7}\r\nthanks "), "back at [31m22:00\nthanks");
        let long = "é".repeat(sotto_proto::limits::MAX_NOTICE_BYTES);
        let cut = clean(&long);
        assert!(cut.len() <= sotto_proto::limits::MAX_NOTICE_BYTES && cut.chars().all(|c| c == 'é'));
    }
}
