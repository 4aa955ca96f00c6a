//! The embedded default store: SQLite in WAL mode; a transaction is on disk
//! (its log synced, `durability.rs`) before the client hears "ok".

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use sotto_proto::{Delivery, DeviceInfo, DeviceRef, MessageKind};

use super::*;

mod accounts;
mod append;
mod blobs;
mod durability;
mod group_log;
mod id_filter;
mod job;
mod key_packages;
mod migrations;
mod operator;
mod pending;
mod runs;
mod schema;
mod writer;

use super::queued::OwnedMessage;
use super::stage_timings::StageTimings;
use job::Job;
use writer::writer;

/// SQLite-backed [`Store`]. One connection behind a mutex: SQLite serialises
/// writers anyway, and one connection makes every call one transaction with
/// no lock dance.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Appends go through one writer thread that commits whatever is queued
    /// in a single transaction: one fsync for many acknowledged messages
    /// (group commit) instead of one each.
    jobs: mpsc::Sender<Job>,
    /// Bumped, under the connection lock, by every change of membership
    /// made outside the writer (see [`MembersCache`]).
    membership_changes: Arc<AtomicU64>,
    /// The write-ahead log to sync after a write outside the writer (on
    /// disk only; see `durability.rs`).
    wal: Option<Arc<durability::WalSync>>,
    /// How long writes spend in each stage (`/metrics`).
    timings: Arc<StageTimings>,
    /// How far the retention purge deleted `sent_ids`, for the writer's
    /// filter of known ids (`id_filter.rs`).
    ids_purged: id_filter::PurgedBefore,
}

/// Every statement goes through the connection's statement cache. Parsing
/// the same SQL again for every append was the largest single cost of the
/// relay (perf: the SQLite parser and resolver took about a fifth of the
/// server's CPU under load).
trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn invite_hash(code: &str) -> Vec<u8> {
    Sha256::digest(code.trim().as_bytes()).to_vec()
}

fn kind_code(kind: MessageKind) -> i64 {
    match kind {
        MessageKind::Commit => 1,
        MessageKind::Application => 2,
    }
}

fn kind_from(code: i64) -> MessageKind {
    if code == 1 {
        MessageKind::Commit
    } else {
        MessageKind::Application
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        // Checkpoints run beside the writer (`durability::checkpointer`),
        // which also lets the log start over; the writer's own, past 16
        // MiB of log, bounds it only if that thread falls behind.
        conn.execute_batch("PRAGMA wal_autocheckpoint=4096;").map_err(backend)?;
        Self::setup(conn, Some(Arc::new(durability::WalSync::new(path))))
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::setup(Connection::open_in_memory().map_err(backend)?, None)
    }

    /// `disk`: the log to sync, which knows the database's path (none in memory).
    fn setup(conn: Connection, disk: Option<Arc<durability::WalSync>>) -> StoreResult<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
        // Room for every statement the store uses, so none is ever re-parsed.
        conn.set_prepared_statement_cache_capacity(128);
        // NORMAL: a commit does not sync the log itself; the store does,
        // before anyone hears of the commit (`durability.rs`), so an
        // acknowledged message survives a power loss as with FULL.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(backend)?;
        // The log's pages are written, read back and freed again within
        // moments: keep up to 16 MiB of them in SQLite's own cache (filled
        // only as used) instead of re-reading them from the OS.
        conn.execute_batch("PRAGMA cache_size=-16384;").map_err(backend)?;
        migrations::create_or_migrate(&conn)?;
        // Ids the writer held when the server last stopped, before anything
        // new is appended.
        pending::recover(&conn)?;
        let ids_purged = id_filter::PurgedBefore::default();
        let known = id_filter::IdFilter::load(&conn, ids_purged.clone()).unwrap_or_else(|e| {
            // Safe without: every id is then looked up in `sent_ids`.
            tracing::warn!(error = %e, "could not read the stored message ids; each new one is looked up instead");
            id_filter::IdFilter::default()
        });
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, rx) = mpsc::channel();
        let c = conn.clone();
        let membership_changes = Arc::new(AtomicU64::new(0));
        let changes = membership_changes.clone();
        let timings = Arc::new(StageTimings::default());
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(drop)
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let (durable, wal) = match disk {
            Some(wal) => {
                let (tx, rx) = mpsc::channel();
                let (synced, ticks) = mpsc::sync_channel(1);
                let w = wal.clone();
                let writer_conn = conn.clone();
                let t = timings.clone();
                spawn("sotto-store-syncer", Box::new(move || durability::syncer(w, rx, synced, t)))?;
                let log = wal.clone();
                spawn("sotto-store-checkpointer", Box::new(move || durability::checkpointer(ticks, writer_conn, log)))?;
                (Some((tx, wal.clone())), Some(wal))
            }
            None => (None, None),
        };
        std::thread::Builder::new()
            .name("sotto-store-writer".into())
            .spawn({
                let t = timings.clone();
                move || writer(c, rx, changes, durable, t, known)
            })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self { conn, jobs, membership_changes, wal, timings, ids_purged })
    }

    /// Caps the database file at about `bytes` (SQLite's page limit): past
    /// it, writes fail as on a full disk and the relay answers `internal`
    /// (retry later) instead of acknowledging. For small boxes, and for
    /// testing what a full disk does.
    pub fn set_max_bytes(&self, bytes: u64) -> StoreResult<u64> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let page: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(backend)?;
        let pages = (bytes / page.max(1)).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| r.get(0)).map_err(backend)
    }

    /// Folds the write-ahead log into the database (on clean shutdown).
    pub fn checkpoint(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    /// Has the writer fold what it holds (`pending.rs`) and waits for it.
    fn fold(&self) -> StoreResult<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        let stopped = || StoreError::Backend("the store writer stopped".into());
        self.jobs.send(Job::Fold { reply }).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    fn with_tx<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        // A poisoned lock only means another thread panicked mid-call; its
        // transaction was rolled back when the guard dropped, so go on.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let before = conn.total_changes();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let out = f(&tx)?;
        let failed = self.wal.as_ref().is_some_and(|w| w.has_failed());
        if failed && tx.total_changes() != before {
            // Nothing more goes into a log that may have a hole
            // (`durability.rs`); dropping the transaction rolls it back.
            return Err(StoreError::Backend(format!("could not sync to disk: {}", durability::LOG_FAILED)));
        }
        tx.commit().map_err(backend)?;
        let wrote = conn.total_changes() != before;
        drop(conn);
        if let (true, Some(wal)) = (wrote, &self.wal) {
            // On disk before the caller hears of it (`durability.rs`).
            wal.sync().map_err(|e| StoreError::Backend(format!("could not sync to disk: {e}")))?;
        }
        Ok(out)
    }
}

/// One node only: nobody to ring.
impl Changes for SqliteStore {}

fn devices_of(tx: &Connection, handle: &str) -> StoreResult<Vec<DeviceInfo>> {
    let mut stmt = tx
        .prepare_cached("SELECT device_id, device_key, certificate FROM devices WHERE handle=? ORDER BY device_id")
        .map_err(backend)?;
    let rows = stmt
        .query_map([handle], |r| Ok(DeviceInfo { device_id: r.get(0)?, device_key: r.get(1)?, certificate: r.get(2)? }))
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

fn members_of(tx: &Connection, group_id: &[u8]) -> StoreResult<Vec<DeviceRef>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT handle, device_id FROM members WHERE group_id=? AND until_seq IS NULL ORDER BY handle, device_id",
        )
        .map_err(backend)?;
    let rows =
        stmt.query_map([group_id], |r| Ok(DeviceRef { handle: r.get(0)?, device_id: r.get(1)? })).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// A current member's (joined_seq, cursor).
fn member_row(tx: &Connection, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, u64)>> {
    Ok(reader_row(tx, group_id, device)?.filter(|r| r.2.is_none()).map(|r| (r.0, r.1)))
}

/// A device that may still read: (joined_seq, cursor, until_seq).
fn reader_row(tx: &Connection, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, u64, Option<u64>)>> {
    tx.row(
        "SELECT joined_seq, cursor, until_seq FROM members WHERE group_id=? AND handle=? AND device_id=?",
        params![group_id, device.handle, device.device_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
    .map_err(backend)
}

fn group_row(tx: &Connection, group_id: &[u8]) -> StoreResult<Option<(u64, u64)>> {
    tx.row("SELECT epoch, last_seq FROM groups WHERE group_id=?", [group_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)
}

fn blob_row(tx: &Connection, id: &[u8]) -> StoreResult<Option<BlobRecord>> {
    tx.row("SELECT owner_handle, owner_device, size, complete, created_at FROM blobs WHERE id=?", [id], |r| {
        Ok(BlobRecord {
            id: id.to_vec(),
            owner: DeviceRef { handle: r.get(0)?, device_id: r.get(1)? },
            size: r.get(2)?,
            complete: r.get(3)?,
            created_at: r.get(4)?,
        })
    })
    .optional()
    .map_err(backend)
}

/// The one-time stock a device reports (its scarcest suite's).
fn one_time_count(tx: &Connection, device: &DeviceRef) -> StoreResult<u32> {
    Ok(super::key_package_rules::stock(&suite_counts(tx, device)?))
}

/// `(suite, one-time packages)` for every suite the device keeps packages
/// of (a suite with only its last-resort package counts 0).
fn suite_counts(tx: &Connection, device: &DeviceRef) -> StoreResult<Vec<(u16, u32)>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT suite, sum(last_resort=0) FROM key_packages WHERE handle=? AND device_id=? GROUP BY suite",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![device.handle, device.device_id], |r| Ok((r.get::<_, u16>(0)?, r.get::<_, u32>(1)?)))
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Deletes the group's messages that every member has acknowledged (a run
/// once they all read its last entry).
fn delete_fully_acked(tx: &Connection, group_id: &[u8]) -> StoreResult<()> {
    tx.exec(
        "DELETE FROM messages WHERE group_id=?1
           AND seq <= (SELECT coalesce(min(cursor), 0) FROM members WHERE group_id=?1)
           AND coalesce(last_seq, seq) <= (SELECT coalesce(min(cursor), 0) FROM members WHERE group_id=?1)",
        [group_id],
    )
    .map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite on a store that lives in memory only.
    mod in_memory {
        use super::*;
        crate::store_conformance!(SqliteStore::open_in_memory().unwrap());
    }

    /// The suite on a database file (WAL, the writer thread, fsync), as
    /// the server runs it.
    mod on_disk {
        use super::*;

        thread_local! {
            /// Each test runs on its own thread; its folders go with it.
            static DIRS: std::cell::RefCell<Vec<tempfile::TempDir>> = const { std::cell::RefCell::new(Vec::new()) };
        }

        fn on_disk() -> SqliteStore {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
            DIRS.with(|d| d.borrow_mut().push(dir));
            store
        }

        crate::store_conformance!(on_disk());

        #[test]
        fn what_was_written_is_there_after_reopening() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.db");
            conformance::durability(|| SqliteStore::open(&path).unwrap());
        }

        /// The state a crash leaves between two folds: the append is
        /// stored, its id only on its row. After reopening, the same id is
        /// still a duplicate, and a database from before the id column
        /// gets it.
        #[test]
        fn an_id_the_writer_had_not_folded_is_known_after_a_crash() {
            use sotto_proto::MessageKind;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("relay.db");
            let alice = conformance::dev("alice");
            let g: &[u8] = b"group-crash";
            let first = {
                let s = SqliteStore::open(&path).unwrap();
                conformance::register(&s, "alice");
                s.create_group(g, &alice, 0).unwrap();
                let first = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
                s.stats().unwrap(); // folds, so nothing is left to fold later
                first
            };
            // Take the folded id out again, as if the fold had not happened.
            let raw = Connection::open(&path).unwrap();
            assert_eq!(raw.execute("DELETE FROM sent_ids", []).unwrap(), 1, "the fold wrote the id");
            drop(raw);
            let s = SqliteStore::open(&path).unwrap();
            let again = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            assert!(again.duplicate, "known after the crash");
            assert_eq!(again.seq, first.seq);
            drop(s);
            // A database from before the column: it is added, appends work.
            Connection::open(&path).unwrap().execute_batch("ALTER TABLE messages DROP COLUMN client_id").unwrap();
            let s = SqliteStore::open(&path).unwrap();
            let new = s.append(&conformance::msg(g, &alice, 0, b"id-2", MessageKind::Application), 0).unwrap();
            assert_eq!((new.seq, new.duplicate), (first.seq + 1, false));
            let old = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            assert_eq!((old.seq, old.duplicate), (first.seq, true), "ids from before stay known");
        }

        /// Once the log failed to sync, the store acknowledges nothing and
        /// writes nothing more into the log, and says why.
        #[test]
        fn after_the_log_failed_to_sync_nothing_is_written_or_acknowledged() {
            use sotto_proto::MessageKind;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("relay.db");
            let (alice, g) = (conformance::dev("alice"), b"group-disk");
            {
                let s = SqliteStore::open(&path).unwrap();
                conformance::register(&s, "alice");
                s.create_group(g, &alice, 0).unwrap();
            }
            let s = SqliteStore::open(&path).unwrap();
            // SQLite keeps writing to the log it has open, moved aside; the
            // store syncs the path, now a file the kernel cannot sync
            // (procfs has no fsync), as it could not on a failing disk.
            let log = dir.path().join("relay.db-wal");
            let moved = dir.path().join("real-wal");
            std::fs::rename(&log, &moved).unwrap();
            std::os::unix::fs::symlink("/proc/self/stat", &log).unwrap();
            let send = |id: &[u8]| {
                s.append(&conformance::msg(g, &alice, 0, id, MessageKind::Application), 0).unwrap_err().to_string()
            };
            let first = send(b"a");
            assert!(first.contains("could not sync to disk"), "not acknowledged: {first}");
            let size = std::fs::metadata(&moved).unwrap().len();
            for later in [send(b"b"), send(b"a")] {
                assert!(later.contains("until the server restarts"), "{later}");
            }
            let registered = s.register("bob", &[2; 32], &conformance::info(), None, false, 0);
            let e = registered.unwrap_err().to_string();
            assert!(e.contains("until the server restarts"), "a write outside the writer neither: {e}");
            assert_eq!(std::fs::metadata(&moved).unwrap().len(), size, "nothing more went into the log");
        }

        /// An id folded into `sent_ids` is known after the store reopens
        /// (its filter of stored ids is loaded from there), also past the
        /// first of the filter's layers; a new id is still new.
        #[test]
        fn folded_ids_are_known_after_reopening() {
            use sotto_proto::MessageKind;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("relay.db");
            let alice = conformance::dev("alice");
            let g: &[u8] = b"group-reopen";
            let first = {
                let s = SqliteStore::open(&path).unwrap();
                conformance::register(&s, "alice");
                s.create_group(g, &alice, 0).unwrap();
                let first = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
                s.stats().unwrap(); // folds
                first
            };
            // Many more ids than the filter's first layer holds, straight
            // into the table.
            let raw = Connection::open(&path).unwrap();
            raw.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
                 INSERT INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
                 SELECT CAST('group-reopen' AS BLOB), 'alice', 1, CAST(i AS BLOB), 1, 0, 0 FROM n",
            )
            .unwrap();
            drop(raw);
            let s = SqliteStore::open(&path).unwrap();
            let again = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            assert_eq!((again.seq, again.duplicate), (first.seq, true), "known after reopening");
            let late = s.append(&conformance::msg(g, &alice, 0, b"99999", MessageKind::Application), 0).unwrap();
            assert_eq!((late.seq, late.duplicate), (1, true), "an id loaded late is known too");
            let new = s.append(&conformance::msg(g, &alice, 0, b"id-2", MessageKind::Application), 0).unwrap();
            assert_eq!((new.seq, new.duplicate), (first.seq + 1, false));
        }

        /// An id stays known across a fold (memory, then `sent_ids`).
        #[test]
        fn an_id_stays_known_once_folded() {
            use sotto_proto::MessageKind;
            let s = on_disk();
            let alice = conformance::dev("alice");
            let g: &[u8] = b"group-fold";
            conformance::register(&s, "alice");
            s.create_group(g, &alice, 0).unwrap();
            let first = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            let before_fold = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            assert_eq!((before_fold.seq, before_fold.duplicate), (first.seq, true));
            s.stats().unwrap(); // folds
            let after_fold = s.append(&conformance::msg(g, &alice, 0, b"id-1", MessageKind::Application), 0).unwrap();
            assert_eq!((after_fold.seq, after_fold.duplicate), (first.seq, true));
        }

        /// A database from before message requests keeps showing presence
        /// between the members it had (they count as accepted).
        #[test]
        fn memberships_from_before_acceptance_count_as_accepted() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("relay.db");
            let (alice, bob) = (conformance::dev("alice"), conformance::dev("bob"));
            {
                let s = SqliteStore::open(&path).unwrap();
                conformance::register(&s, "alice");
                conformance::register(&s, "bob");
                s.create_group(b"old-group", &alice, 0).unwrap();
                let added = [bob.clone()];
                let mut commit = conformance::msg(b"old-group", &alice, 0, b"c", sotto_proto::MessageKind::Commit);
                commit.added = &added;
                s.append(&commit, 0).unwrap();
            }
            Connection::open(&path).unwrap().execute_batch("DROP TABLE accepted_groups").unwrap();
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.co_members(&alice, &["bob".into()]).unwrap(), vec!["bob".to_owned()]);
        }
    }
}
