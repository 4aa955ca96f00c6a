//! Search in all history: an SQLite FTS5 index inside the encrypted
//! profile (SQLCipher encrypts its pages like every other table, so there
//! is never a plaintext index on disk).
//!
//! Triggers on `messages` keep the index: every path that stores, edits,
//! deletes or expires a message (received, sent, imported from a linked
//! device's archive, restored from a backup) is covered without each one
//! having to remember. The triggers read the text out of the stored CBOR
//! body with `sotto_search_text`, a function registered on every
//! connection that opens a profile.

#[allow(unused_imports)]
use super::*;
use rusqlite::functions::FunctionFlags;

/// Most hits one search returns.
pub const MAX_SEARCH_HITS: usize = 200;

/// The index, the queue of messages waiting to be indexed, and the
/// triggers that keep both. System lines and control messages are not
/// searched; neither are annotations (reactions, and edits, which are
/// applied to their message, whose text is indexed) nor what was deleted
/// for everyone.
///
/// A stored message is only queued (a row of one integer); the queue goes
/// into the index in one statement at the end of each batch of deliveries
/// and before every search. Indexing each message from its trigger cost
/// 2.5 times as much per message (FTS5's work per statement), which made a
/// backlog 18 % slower (docs/performance.md).
const SEARCH_SCHEMA: &str = r#"
CREATE VIRTUAL TABLE message_search USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS search_queue(n INTEGER PRIMARY KEY);
CREATE TRIGGER IF NOT EXISTS message_search_insert AFTER INSERT ON messages
WHEN new.annotation = 0 AND new.deleted = 0 AND new.state NOT IN ('control', 'system')
BEGIN
    INSERT OR IGNORE INTO search_queue(n) VALUES(new.n);
END;
CREATE TRIGGER IF NOT EXISTS message_search_update AFTER UPDATE OF body, deleted ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = old.n;
    INSERT OR IGNORE INTO search_queue(n)
    SELECT new.n WHERE new.annotation = 0 AND new.deleted = 0 AND new.state NOT IN ('control', 'system');
END;
CREATE TRIGGER IF NOT EXISTS message_search_delete AFTER DELETE ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = old.n;
    DELETE FROM search_queue WHERE n = old.n;
END;
INSERT OR IGNORE INTO search_queue(n)
SELECT n FROM messages WHERE annotation = 0 AND deleted = 0 AND state NOT IN ('control', 'system');
"#;

/// Puts the queued messages into the index.
pub(crate) fn index_queued(conn: &Connection) -> CoreResult<()> {
    conn.execute_batch(
        "INSERT INTO message_search(rowid, text)
         SELECT n, t FROM (SELECT m.n AS n, sotto_search_text(m.body) AS t
                           FROM search_queue q CROSS JOIN messages m ON m.n = q.n)
         WHERE t IS NOT NULL;
         DELETE FROM search_queue;",
    )?;
    Ok(())
}

/// The searchable text of a stored body: a text, or a file's name and
/// caption; `None` for everything else.
pub(crate) fn searchable_text(body: &[u8]) -> Option<String> {
    match ciborium::from_reader::<Body, _>(body).ok()? {
        Body::Text { text } => Some(text),
        Body::File { file, caption } => Some(match caption {
            Some(c) => format!("{} {c}", file.name),
            None => file.name,
        }),
        _ => None,
    }
}

/// Makes `sotto_search_text` known to this connection (the triggers call
/// it; a connection without it could not write a message).
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "sotto_search_text",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let body = ctx.get_raw(0);
            Ok(body.as_blob().ok().and_then(searchable_text))
        },
    )
}

/// Registers the function and, on a profile from before search, builds the
/// index from the history there is.
pub(crate) fn install(conn: &Connection) -> CoreResult<()> {
    register(conn)?;
    let exists: bool =
        conn.query_row("SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE name = 'message_search')", [], |r| r.get(0))?;
    if !exists {
        conn.execute_batch(&format!("BEGIN; {SEARCH_SCHEMA} COMMIT;"))?;
    }
    Ok(())
}

/// An FTS5 query from what a person typed: every word must appear (in any
/// order), the last one as a prefix (so results come while typing). Each
/// word is quoted, so FTS5's own syntax (`AND`, `*`, `"`, `:`) in the
/// text is searched for, not obeyed.
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (last, rest) = words.split_last()?;
    let quote = |w: &str| format!("\"{}\"", w.replace('"', "\"\""));
    let mut q: Vec<String> = rest.iter().map(|w| quote(w)).collect();
    q.push(format!("{}*", quote(last)));
    Some(q.join(" "))
}

impl Messenger {
    /// Messages whose text (or file name, or caption) has every word of
    /// `text`, newest first, in one conversation or all; at most `limit`
    /// (up to [`MAX_SEARCH_HITS`]).
    pub fn search(&self, text: &str, conversation: Option<&str>, limit: usize) -> CoreResult<Vec<StoredMessage>> {
        let Some(query) = fts_query(text) else {
            return Err(CoreError::Invalid("type something to search for".into()));
        };
        let limit = limit.clamp(1, MAX_SEARCH_HITS) as i64;
        self.tx(|me| index_queued(&me.conn))?;
        let ns: Vec<i64> = {
            // The newest stored first: FTS5 walks its index in row order
            // and stops at the limit, where sorting every match by time
            // took 80 ms for a common word in 100,000 messages
            // (docs/performance.md). Those few are then put in time order.
            let mut stmt = self.conn.prepare_cached(
                "SELECT s.rowid FROM message_search s JOIN messages m ON m.n = s.rowid
                 WHERE message_search MATCH ?1 AND (?2 IS NULL OR m.conversation = ?2)
                 ORDER BY s.rowid DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![query, conversation, limit], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if ns.is_empty() {
            return Ok(Vec::new());
        }
        // Row numbers from the index: integers, safe to write into SQL.
        let list = ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        let oldest = ns.iter().min().copied().unwrap_or(0);
        let mut hits = self.messages_where(&format!("n >= ? AND n IN ({list})"), &oldest)?;
        // Listed in storage order; a search shows the newest first.
        // (reversed first, so the stable sort keeps the newest stored
        // first among equal times, as the query ordered them).
        hits.reverse();
        hits.sort_by_key(|m| std::cmp::Reverse(m.sent_at));
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::fts_query;
    use crate::Messenger;

    #[test]
    fn a_profile_from_before_search_gets_its_history_indexed_on_opening() {
        let m = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
        // As an older version left it: messages, no index, no triggers.
        m.conn
            .execute_batch(
                "DROP TRIGGER message_search_insert; DROP TRIGGER message_search_update;
                 DROP TRIGGER message_search_delete; DROP TABLE message_search; DROP TABLE search_queue;",
            )
            .unwrap();
        m.conn
            .execute(
                "INSERT INTO messages(id, conversation, sender, outgoing, sent_at, received_at, body, state)
                 VALUES(x'01', '@bob', 'bob', 0, 1, 1, ?, 'received')",
                [crate::messenger::cbor(&crate::Body::Text { text: "an old message about kayaks".into() })],
            )
            .unwrap();
        super::install(&m.conn).unwrap();
        let hits = m.search("kayak", None, 10).unwrap();
        let queued: i64 = m.conn.query_row("SELECT count(*) FROM search_queue", [], |r| r.get(0)).unwrap();
        assert_eq!(queued, 0, "indexed before searching");
        assert_eq!(hits.len(), 1);
        // And from then on the triggers keep it.
        m.conn.execute("DELETE FROM messages WHERE id = x'01'", []).unwrap();
        assert!(m.search("kayak", None, 10).unwrap().is_empty());
    }

    #[test]
    fn what_a_person_types_is_searched_for_never_obeyed() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("pizza"), Some("\"pizza\"*".into()));
        assert_eq!(fts_query("friday pizza"), Some("\"friday\" \"pizza\"*".into()));
        assert_eq!(fts_query("a\"b OR c*"), Some("\"a\"\"b\" \"OR\" \"c*\"*".into()));
    }
}
