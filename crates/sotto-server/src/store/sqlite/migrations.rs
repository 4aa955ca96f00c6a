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
}
