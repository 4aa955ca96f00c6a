//! Creating the tables, and bringing a database from an earlier version
//! up to this one (each step checks for itself whether it is needed).

use rusqlite::{Connection, OptionalExtension};

use super::schema::{self, SCHEMA};
use super::{backend, StoreResult};

/// Creates what is missing and migrates what is old, before the store is
/// used.
pub(super) fn create_or_migrate(conn: &Connection) -> StoreResult<()> {
    let had_acceptance = table_sql(conn, "accepted_groups")?.is_some();
    let had_groups = table_sql(conn, "members")?.is_some();
    if table_sql(conn, "key_packages")?.is_some() && !has_column(conn, "key_packages", "suite")? {
        run(conn, schema::KEY_PACKAGE_SUITE_MIGRATION)?;
    }
    run(conn, SCHEMA)?;
    if had_groups && !had_acceptance {
        // A database from before message requests: every membership
        // then was as good as accepted, so presence stays as it was.
        run(conn, schema::ACCEPTANCE_MIGRATION)?;
    }
    if !table_sql(conn, "welcomes")?.unwrap_or_default().contains("AUTOINCREMENT") {
        run(conn, schema::WELCOME_IDS_MIGRATION)?;
    }
    if !has_column(conn, "messages", "client_id")? {
        run(conn, schema::MESSAGE_CLIENT_ID_MIGRATION)?;
    }
    if !has_column(conn, "messages", "last_seq")? {
        run(conn, schema::MESSAGE_RUNS_MIGRATION)?;
    }
    if last_column(conn, "messages")?.as_deref() != Some("payload") {
        run(conn, schema::MESSAGES_PAYLOAD_LAST_MIGRATION)?;
    }
    if !table_sql(conn, "sent_ids")?.unwrap_or_default().contains("WITHOUT ROWID") {
        run(conn, schema::SENT_IDS_WITHOUT_ROWID_MIGRATION)?;
    }
    Ok(())
}

fn run(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.execute_batch(sql).map_err(backend)
}

/// The statement that created `table`, if it exists.
fn table_sql(conn: &Connection, table: &str) -> StoreResult<Option<String>> {
    conn.query_row("SELECT sql FROM sqlite_master WHERE type='table' AND name=?", [table], |r| r.get(0))
        .optional()
        .map_err(backend)
}

/// The name of `table`'s last column.
fn last_column(conn: &Connection, table: &str) -> StoreResult<Option<String>> {
    conn.query_row("SELECT name FROM pragma_table_info(?) ORDER BY cid DESC LIMIT 1", [table], |r| r.get(0))
        .optional()
        .map_err(backend)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> StoreResult<bool> {
    conn.query_row("SELECT count(*) FROM pragma_table_info(?) WHERE name=?", [table, column], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
        .map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::conformance::{dev, msg, register};
    use crate::store::{GroupLog, OperatorViews};
    use sotto_proto::MessageKind;

    /// A database whose `sent_ids` still has rowids is moved to the keyed
    /// table on opening, and every id in it stays known.
    #[test]
    fn sent_ids_with_rowids_are_moved_and_stay_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let alice = dev("alice");
        let g: &[u8] = b"group-migrate";
        let first = {
            let s = SqliteStore::open(&path).unwrap();
            register(&s, "alice");
            s.create_group(g, &alice, 0).unwrap();
            let first = s.append(&msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            s.stats().unwrap(); // folds: the id is in sent_ids
            first
        };
        // The table as an earlier version made it.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE old_ids(group_id BLOB NOT NULL, sender_handle TEXT NOT NULL, sender_device INTEGER NOT NULL,
                 client_id BLOB NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL, stored_at INTEGER NOT NULL,
                 PRIMARY KEY(group_id, sender_handle, sender_device, client_id));
             INSERT INTO old_ids SELECT * FROM sent_ids;
             DROP TABLE sent_ids;
             ALTER TABLE old_ids RENAME TO sent_ids;
             DELETE FROM messages;",
        )
        .unwrap();
        drop(raw);
        let s = SqliteStore::open(&path).unwrap();
        let again = s.append(&msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
        assert_eq!((again.seq, again.duplicate), (first.seq, true), "known from the moved table");
        let sql: String = s
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT sql FROM sqlite_master WHERE name='sent_ids'", [], |r| r.get(0))
            .unwrap();
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    }

    /// A database whose messages have columns after the payload (as the
    /// columns added later were) gets the payload moved last on opening;
    /// what was stored reads back the same, and an id not folded yet stays
    /// known.
    #[test]
    fn messages_get_their_payload_last_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let (alice, bob) = (dev("alice"), dev("bob"));
        let g: &[u8] = b"group-layout";
        {
            let s = SqliteStore::open(&path).unwrap();
            register(&s, "alice");
            register(&s, "bob");
            s.create_group(g, &alice, 0).unwrap();
            let added = [bob.clone()];
            let mut commit = msg(g, &alice, 0, b"c", MessageKind::Commit);
            commit.added = &added;
            s.append(&commit, 0).unwrap();
            let mut hello = msg(g, &alice, 1, b"id-1", MessageKind::Application);
            hello.payload = b"hello";
            s.append(&hello, 7).unwrap();
        }
        // The table as an earlier version left it.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP INDEX messages_age;
             CREATE TABLE old_messages(group_id BLOB NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,
                 sender_handle TEXT NOT NULL, sender_device INTEGER NOT NULL, kind INTEGER NOT NULL,
                 payload BLOB NOT NULL, stored_at INTEGER NOT NULL, client_id BLOB, last_seq INTEGER,
                 PRIMARY KEY(group_id, seq));
             INSERT INTO old_messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at,
                 client_id, last_seq)
             SELECT group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at, client_id, last_seq
             FROM messages;
             DROP TABLE messages;
             ALTER TABLE old_messages RENAME TO messages;
             CREATE INDEX messages_age ON messages(stored_at);",
        )
        .unwrap();
        drop(raw);
        let s = SqliteStore::open(&path).unwrap();
        let read = s.fetch(g, &bob, 1, 10).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].seq, read[0].payload.as_slice(), read[0].stored_at), (2, &b"hello"[..], 7));
        let again = s.append(&msg(g, &alice, 1, b"id-1", MessageKind::Application), 0).unwrap();
        assert_eq!((again.seq, again.duplicate), (2, true), "the id on the moved row is known");
        let conn = s.conn.lock().unwrap();
        let last: String = conn
            .query_row("SELECT name FROM pragma_table_info('messages') ORDER BY cid DESC LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, "payload");
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name='messages_age' AND tbl_name='messages'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1, "the age index is on the new table");
    }
}
