//! The embedded default store: SQLite in WAL mode with `synchronous=FULL`,
//! so a transaction that returned is on disk before the client hears "ok".

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use sotto_proto::{Delivery, DeviceInfo, DeviceRef, MessageKind};

use super::*;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts(
    handle TEXT PRIMARY KEY,
    account_key BLOB NOT NULL,
    banned INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices(
    handle TEXT NOT NULL REFERENCES accounts(handle) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    device_key BLOB NOT NULL,
    certificate BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE IF NOT EXISTS invites(
    code_hash BLOB PRIMARY KEY,
    uses_left INTEGER NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS key_packages(
    id INTEGER PRIMARY KEY,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    last_resort INTEGER NOT NULL,
    package BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS key_packages_device ON key_packages(handle, device_id, last_resort, id);
CREATE TABLE IF NOT EXISTS groups(
    group_id BLOB PRIMARY KEY,
    epoch INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    creator_handle TEXT,
    creator_device INTEGER,
    group_info BLOB,
    group_info_epoch INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members(
    group_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    joined_seq INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    -- Set when the device was removed by the commit at this seq: it may
    -- still read up to that commit (so it learns of its removal), nothing
    -- after, and may not post. The row goes once it acknowledged the commit.
    until_seq INTEGER,
    PRIMARY KEY(group_id, handle, device_id)
);
CREATE INDEX IF NOT EXISTS members_device ON members(handle, device_id);
CREATE TABLE IF NOT EXISTS messages(
    group_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    payload BLOB NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY(group_id, seq)
);
CREATE INDEX IF NOT EXISTS messages_age ON messages(stored_at);
CREATE TABLE IF NOT EXISTS sent_ids(
    group_id BLOB NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    client_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY(group_id, sender_handle, sender_device, client_id)
);
CREATE TABLE IF NOT EXISTS welcomes(
    id INTEGER PRIMARY KEY,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    group_id BLOB NOT NULL,
    sender_handle TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    welcome BLOB NOT NULL,
    stored_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS welcomes_device ON welcomes(handle, device_id, id);
CREATE TABLE IF NOT EXISTS blobs(
    id BLOB PRIMARY KEY,
    owner_handle TEXT NOT NULL,
    owner_device INTEGER NOT NULL,
    size INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_owner ON blobs(owner_handle);
CREATE TABLE IF NOT EXISTS device_copies(
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    copy_id BLOB NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY(handle, device_id)
);
CREATE TABLE IF NOT EXISTS blob_readers(
    blob_id BLOB NOT NULL,
    handle TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(blob_id, handle, device_id)
);
"#;

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
}

/// An append waiting for the writer.
struct Job {
    msg: OwnedMessage,
    now: i64,
    reply: tokio::sync::oneshot::Sender<StoreResult<Appended>>,
}

/// A [`NewMessage`] that owns its bytes, to cross to the writer thread.
struct OwnedMessage {
    group_id: Vec<u8>,
    sender: DeviceRef,
    epoch: u64,
    kind: MessageKind,
    client_id: Vec<u8>,
    payload: Vec<u8>,
    added: Vec<DeviceRef>,
    removed: Vec<DeviceRef>,
    welcome: Option<Vec<u8>>,
}

impl OwnedMessage {
    fn new(m: &NewMessage<'_>) -> Self {
        Self {
            group_id: m.group_id.to_vec(),
            sender: m.sender.clone(),
            epoch: m.epoch,
            kind: m.kind,
            client_id: m.client_id.to_vec(),
            payload: m.payload.to_vec(),
            added: m.added.to_vec(),
            removed: m.removed.to_vec(),
            welcome: m.welcome.map(<[u8]>::to_vec),
        }
    }

    fn view(&self) -> NewMessage<'_> {
        NewMessage {
            group_id: &self.group_id,
            sender: &self.sender,
            epoch: self.epoch,
            kind: self.kind,
            client_id: &self.client_id,
            payload: &self.payload,
            added: &self.added,
            removed: &self.removed,
            welcome: self.welcome.as_deref(),
        }
    }
}

/// Most appends committed together.
const MAX_BATCH: usize = 1024;

/// Who is in each group, as the writer last read it: an application
/// message (nearly every append) needs the member list twice, to check the
/// sender and to know whom to wake, and it only changes with a commit. The
/// writer owns this; it is dropped whenever membership may have changed
/// outside the writer (`changes` moved on) or a batch was rolled back, and
/// per group after each of its commits.
#[derive(Default)]
struct MembersCache {
    seen_changes: u64,
    groups: HashMap<Vec<u8>, Arc<[DeviceRef]>>,
}

/// Within one batch, each group's (epoch, last sequence number) as the
/// batch's appends move them; written back once per group at the end of the
/// batch instead of one UPDATE per message.
type GroupHeads = HashMap<Vec<u8>, (u64, u64)>;

impl MembersCache {
    fn get(&mut self, tx: &Connection, group_id: &[u8]) -> StoreResult<Arc<[DeviceRef]>> {
        if let Some(m) = self.groups.get(group_id) {
            return Ok(m.clone());
        }
        let m: Arc<[DeviceRef]> = members_of(tx, group_id)?.into();
        self.groups.insert(group_id.to_vec(), m.clone());
        Ok(m)
    }
}

fn writer(conn: Arc<Mutex<Connection>>, jobs: mpsc::Receiver<Job>, changes: Arc<AtomicU64>) {
    let mut cache = MembersCache::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let results = {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Read under the connection lock, which every membership change
            // also holds: nothing can change between this and the batch.
            let now_changes = changes.load(Ordering::SeqCst);
            if now_changes != cache.seen_changes {
                cache = MembersCache { seen_changes: now_changes, ..Default::default() };
            }
            commit_batch(&mut conn, &batch, &mut cache)
        };
        for (job, r) in batch.into_iter().zip(results) {
            let _ = job.reply.send(r);
        }
    }
}

/// Commits a batch of appends in one transaction. Nobody hears "stored"
/// before the commit. A refused append writes nothing (see [`append_in`]),
/// so the batch runs straight through; only if a write fails is it rolled
/// back and run again with a savepoint around each append, so that one
/// failing append cannot take the others down with it.
fn commit_batch(conn: &mut Connection, batch: &[Job], cache: &mut MembersCache) -> Vec<StoreResult<Appended>> {
    if let Some(results) = commit_straight(conn, batch, cache) {
        return results;
    }
    // Whatever the failed batch read may not be true any more.
    cache.groups.clear();
    commit_isolated(conn, batch)
}

/// The fast path: `None` when a write failed and nothing was committed.
fn commit_straight(
    conn: &mut Connection,
    batch: &[Job],
    cache: &mut MembersCache,
) -> Option<Vec<StoreResult<Appended>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ok()?;
    let mut results = Vec::with_capacity(batch.len());
    let mut heads = GroupHeads::new();
    for job in batch {
        match append_in(&tx, &job.msg.view(), job.now, Some((&mut *cache, &mut heads))) {
            // Dropping the transaction rolls it back.
            Err(StoreError::Backend(_)) => return None,
            r => results.push(r),
        }
    }
    for (group_id, (epoch, last_seq)) in &heads {
        tx.exec("UPDATE groups SET epoch=?, last_seq=? WHERE group_id=?", params![epoch, last_seq, group_id]).ok()?;
    }
    tx.commit().ok()?;
    Some(results)
}

/// Each append in its own savepoint (a failed one leaves no trace), all
/// committed at once.
fn commit_isolated(conn: &mut Connection, batch: &[Job]) -> Vec<StoreResult<Appended>> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            return batch.iter().map(|_| Err(StoreError::Backend(msg.clone()))).collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let r =
            tx.exec("SAVEPOINT one", []).map_err(backend).and_then(|_| append_in(&tx, &job.msg.view(), job.now, None));
        let undo = if r.is_ok() { Ok(0) } else { tx.exec("ROLLBACK TO one", []) };
        results.push(undo.and_then(|_| tx.exec("RELEASE one", [])).map_err(backend).and(r));
    }
    if let Err(e) = tx.commit() {
        let msg = e.to_string();
        return results.into_iter().map(|_| Err(StoreError::Backend(msg.clone()))).collect();
    }
    results
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
        Self::setup(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::setup(Connection::open_in_memory().map_err(backend)?)
    }

    fn setup(conn: Connection) -> StoreResult<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
        // Room for every statement the store uses, so none is ever re-parsed.
        conn.set_prepared_statement_cache_capacity(128);
        // FULL: in WAL mode NORMAL may lose the last commits on power loss,
        // and we promise that an acknowledged message survives.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(backend)?;
        // The log's pages are written, read back and freed again within
        // moments: keep up to 16 MiB of them in SQLite's own cache (filled
        // only as used) instead of re-reading them from the OS.
        conn.execute_batch("PRAGMA cache_size=-16384;").map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, rx) = mpsc::channel();
        let c = conn.clone();
        let membership_changes = Arc::new(AtomicU64::new(0));
        let changes = membership_changes.clone();
        std::thread::Builder::new()
            .name("sotto-store-writer".into())
            .spawn(move || writer(c, rx, changes))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self { conn, jobs, membership_changes })
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

    fn with_tx<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        // A poisoned lock only means another thread panicked mid-call; its
        // transaction was rolled back when the guard dropped, so go on.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let out = f(&tx)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

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

fn one_time_count(tx: &Connection, device: &DeviceRef) -> StoreResult<u32> {
    tx.row(
        "SELECT count(*) FROM key_packages WHERE handle=? AND device_id=? AND last_resort=0",
        params![device.handle, device.device_id],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Deletes the group's messages that every member has acknowledged.
fn delete_fully_acked(tx: &Connection, group_id: &[u8]) -> StoreResult<()> {
    tx.exec(
        "DELETE FROM messages WHERE group_id=?1 AND seq <= (SELECT coalesce(min(cursor), 0) FROM members WHERE group_id=?1)",
        [group_id],
    )
    .map_err(backend)?;
    Ok(())
}

/// One append inside an open transaction: membership, idempotency, epoch,
/// membership change, welcomes.
fn append_in(
    tx: &Connection,
    m: &NewMessage<'_>,
    now: i64,
    batch: Option<(&mut MembersCache, &mut GroupHeads)>,
) -> StoreResult<Appended> {
    let (mut cache, heads) = match batch {
        Some((c, h)) => (Some(c), Some(h)),
        None => (None, None),
    };
    let head = match heads.as_deref().and_then(|h| h.get(m.group_id)) {
        Some(&head) => Some(head),
        None => group_row(tx, m.group_id)?,
    };
    let (epoch, last_seq) = head.ok_or(StoreError::UnknownGroup)?;
    let members = match cache.as_deref_mut() {
        Some(c) => c.get(tx, m.group_id)?,
        None => members_of(tx, m.group_id)?.into(),
    };
    if !members.contains(m.sender) {
        return Err(StoreError::NotMember);
    }
    let seen: Option<(u64, u64)> = tx
        .row(
            "SELECT seq, epoch FROM sent_ids WHERE group_id=? AND sender_handle=? AND sender_device=? AND client_id=?",
            params![m.group_id, m.sender.handle, m.sender.device_id, m.client_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    if let Some((seq, epoch_after)) = seen {
        return Ok(Appended { seq, epoch: epoch_after, duplicate: true, members });
    }
    if m.epoch != epoch {
        return Err(StoreError::StaleEpoch { current: epoch });
    }
    let seq = last_seq + 1;
    let new_epoch = if m.kind == MessageKind::Commit { epoch + 1 } else { epoch };
    if m.kind == MessageKind::Commit {
        for d in m.added {
            let known: i64 = tx
                .row(
                    "SELECT count(*) FROM devices WHERE handle=? AND device_id=?",
                    params![d.handle, d.device_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if known == 0 {
                return Err(StoreError::UnknownDevice(d.clone()));
            }
        }
    }
    // Every check is above this line and every write below it: a refusal
    // leaves no trace, so the writer needs no savepoint per message; only
    // a failing write (disk full, I/O) can stop an append half-way.
    if m.kind == MessageKind::Commit {
        for d in m.added {
            // The new member reads from after the commit that adds it.
            tx.exec(
                "INSERT OR REPLACE INTO members(group_id, handle, device_id, joined_seq, cursor) VALUES(?,?,?,?,?)",
                params![m.group_id, d.handle, d.device_id, seq, seq],
            )
            .map_err(backend)?;
            if let Some(w) = m.welcome {
                tx.exec(
                            "INSERT INTO welcomes(handle, device_id, group_id, sender_handle, sender_device, welcome, stored_at)
                             VALUES(?,?,?,?,?,?,?)",
                            params![d.handle, d.device_id, m.group_id, m.sender.handle, m.sender.device_id, w, now],
                        )
                        .map_err(backend)?;
            }
        }
        for d in m.removed {
            tx.exec(
                "UPDATE members SET until_seq=? WHERE group_id=? AND handle=? AND device_id=? AND until_seq IS NULL",
                params![seq, m.group_id, d.handle, d.device_id],
            )
            .map_err(backend)?;
        }
    }
    tx.exec(
        "INSERT INTO messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at)
                 VALUES(?,?,?,?,?,?,?,?)",
        params![m.group_id, seq, m.epoch, m.sender.handle, m.sender.device_id, kind_code(m.kind), m.payload, now],
    )
    .map_err(backend)?;
    tx.exec(
        "INSERT INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
                 VALUES(?,?,?,?,?,?,?)",
        params![m.group_id, m.sender.handle, m.sender.device_id, m.client_id, seq, new_epoch, now],
    )
    .map_err(backend)?;
    match heads {
        Some(h) => {
            h.insert(m.group_id.to_vec(), (new_epoch, seq));
        }
        None => {
            tx.exec("UPDATE groups SET epoch=?, last_seq=? WHERE group_id=?", params![new_epoch, seq, m.group_id])
                .map_err(backend)?;
        }
    }
    if m.kind == MessageKind::Application {
        return Ok(Appended { seq, epoch: new_epoch, duplicate: false, members });
    }
    // A commit may change who is in: read again, and forget the old list.
    if let Some(c) = cache {
        c.groups.remove(m.group_id);
    }
    // Removed devices are woken too, to read the commit removing them.
    let mut wake = members_of(tx, m.group_id)?;
    wake.extend(m.removed.iter().cloned());
    Ok(Appended { seq, epoch: new_epoch, duplicate: false, members: wake.into() })
}

impl Store for SqliteStore {
    fn create_invite(&self, code: &str, uses: u32, expires_at: Option<i64>, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec(
                "INSERT INTO invites(code_hash, uses_left, expires_at, created_at) VALUES(?,?,?,?)",
                params![invite_hash(code), uses, expires_at, now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn register(
        &self,
        handle: &str,
        account_key: &[u8],
        device: &DeviceInfo,
        invite: Option<&str>,
        require_invite: bool,
        now: i64,
    ) -> StoreResult<()> {
        self.with_tx(|tx| {
            let exists: bool = tx
                .row("SELECT count(*) FROM accounts WHERE handle=?", [handle], |r| r.get::<_, i64>(0))
                .map_err(backend)?
                > 0;
            if exists {
                return Err(StoreError::HandleTaken);
            }
            if require_invite {
                let code = invite.ok_or(StoreError::InviteRequired)?;
                let changed = tx
                    .exec(
                        "UPDATE invites SET uses_left = uses_left - 1
                         WHERE code_hash=? AND uses_left > 0 AND (expires_at IS NULL OR expires_at > ?)",
                        params![invite_hash(code), now],
                    )
                    .map_err(backend)?;
                if changed == 0 {
                    return Err(StoreError::InviteInvalid);
                }
            }
            tx.exec(
                "INSERT INTO accounts(handle, account_key, created_at) VALUES(?,?,?)",
                params![handle, account_key, now],
            )
            .map_err(backend)?;
            tx.exec(
                "INSERT INTO devices(handle, device_id, device_key, certificate, created_at) VALUES(?,?,?,?,?)",
                params![handle, device.device_id, device.device_key, device.certificate, now],
            )
            .map_err(backend)?;
            // A new account under an old handle starts with no copy of its
            // own recorded (the old account's record, if any, is not its).
            tx.exec("DELETE FROM device_copies WHERE handle=?", [handle]).map_err(backend)?;
            Ok(())
        })
    }

    fn account(&self, handle: &str) -> StoreResult<Option<AccountRecord>> {
        self.with_tx(|tx| {
            let row = tx
                .row("SELECT account_key, banned FROM accounts WHERE handle=?", [handle], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, bool>(1)?))
                })
                .optional()
                .map_err(backend)?;
            let Some((account_key, banned)) = row else { return Ok(None) };
            Ok(Some(AccountRecord { handle: handle.to_owned(), account_key, banned, devices: devices_of(tx, handle)? }))
        })
    }

    fn set_banned(&self, handle: &str, banned: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            let n = tx.exec("UPDATE accounts SET banned=? WHERE handle=?", params![banned, handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            Ok(())
        })
    }

    fn add_key_packages(
        &self,
        device: &DeviceRef,
        packages: &[Vec<u8>],
        last_resort: Option<&[u8]>,
    ) -> StoreResult<u32> {
        self.with_tx(|tx| {
            let have = one_time_count(tx, device)? as usize;
            if have + packages.len() > sotto_proto::limits::MAX_KEY_PACKAGES_STOCK {
                return Err(StoreError::LimitExceeded(format!(
                    "a device may keep at most {} key packages",
                    sotto_proto::limits::MAX_KEY_PACKAGES_STOCK
                )));
            }
            {
                let mut stmt = tx
                    .prepare_cached("INSERT INTO key_packages(handle, device_id, last_resort, package) VALUES(?,?,?,?)")
                    .map_err(backend)?;
                for p in packages {
                    stmt.execute(params![device.handle, device.device_id, 0, p]).map_err(backend)?;
                }
                if let Some(lr) = last_resort {
                    tx.exec(
                        "DELETE FROM key_packages WHERE handle=? AND device_id=? AND last_resort=1",
                        params![device.handle, device.device_id],
                    )
                    .map_err(backend)?;
                    stmt.execute(params![device.handle, device.device_id, 1, lr]).map_err(backend)?;
                }
            }
            one_time_count(tx, device)
        })
    }

    fn key_package_count(&self, device: &DeviceRef) -> StoreResult<u32> {
        self.with_tx(|tx| one_time_count(tx, device))
    }

    fn claim_key_packages(&self, handle: &str) -> StoreResult<Vec<(DeviceInfo, Vec<u8>, u32)>> {
        self.with_tx(|tx| {
            let devices = devices_of(tx, handle)?;
            if devices.is_empty() {
                return Err(StoreError::UnknownHandle);
            }
            let mut out = Vec::new();
            for device in devices {
                // One-time packages first (oldest), the last-resort one only
                // when none is left.
                let row: Option<(i64, Vec<u8>, bool)> = tx
                    .row(
                        "SELECT id, package, last_resort FROM key_packages WHERE handle=? AND device_id=?
                         ORDER BY last_resort ASC, id ASC LIMIT 1",
                        params![handle, device.device_id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some((id, package, last_resort)) = row else { continue };
                if !last_resort {
                    tx.exec("DELETE FROM key_packages WHERE id=?", [id]).map_err(backend)?;
                }
                let dref = DeviceRef { handle: handle.to_owned(), device_id: device.device_id };
                let left = one_time_count(tx, &dref)?;
                out.push((device, package, left));
            }
            if out.is_empty() {
                return Err(StoreError::NoKeyPackages);
            }
            Ok(out)
        })
    }

    fn create_group(&self, group_id: &[u8], creator: &DeviceRef, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            if group_row(tx, group_id)?.is_some() {
                return Err(StoreError::GroupExists);
            }
            tx.exec(
                "INSERT INTO groups(group_id, epoch, last_seq, creator_handle, creator_device, created_at)
                 VALUES(?,0,0,?,?,?)",
                params![group_id, creator.handle, creator.device_id, now],
            )
            .map_err(backend)?;
            tx.exec(
                "INSERT INTO members(group_id, handle, device_id, joined_seq, cursor) VALUES(?,?,?,0,0)",
                params![group_id, creator.handle, creator.device_id],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn group(&self, group_id: &[u8]) -> StoreResult<Option<GroupRecord>> {
        self.with_tx(|tx| {
            let Some((epoch, last_seq)) = group_row(tx, group_id)? else { return Ok(None) };
            Ok(Some(GroupRecord { epoch, last_seq, members: members_of(tx, group_id)? }))
        })
    }

    fn append(&self, m: &NewMessage<'_>, now: i64) -> StoreResult<Appended> {
        self.append_queued(m, now)
            .blocking_recv()
            .map_err(|_| StoreError::Backend("the store writer stopped".into()))?
    }

    fn append_queued(&self, m: &NewMessage<'_>, now: i64) -> AppendTicket {
        let (reply, answer) = tokio::sync::oneshot::channel();
        // If the writer is gone the reply sender drops and the ticket says so.
        let _ = self.jobs.send(Job { msg: OwnedMessage::new(m), now, reply });
        answer
    }

    fn fetch(&self, group_id: &[u8], device: &DeviceRef, after_seq: u64, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.with_tx(|tx| {
            if group_row(tx, group_id)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            let (joined, _, until) = reader_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, epoch, sender_handle, sender_device, kind, payload, stored_at FROM messages
                     WHERE group_id=? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                )
                .map_err(backend)?;
            let limit = limit.min(sotto_proto::limits::MAX_FETCH);
            let until = until.map(|u| u as i64).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![group_id, after_seq.max(joined), until, limit], |r| {
                    Ok(Delivery {
                        group_id: group_id.to_vec(),
                        seq: r.get(0)?,
                        epoch: r.get(1)?,
                        sender: DeviceRef { handle: r.get(2)?, device_id: r.get(3)? },
                        kind: kind_from(r.get(4)?),
                        payload: r.get(5)?,
                        stored_at: r.get(6)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn memberships(&self, device: &DeviceRef) -> StoreResult<Vec<Membership>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT group_id, cursor FROM members WHERE handle=? AND device_id=? ORDER BY group_id")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![device.handle, device.device_id], |r| {
                    Ok(Membership { group_id: r.get(0)?, cursor: r.get(1)? })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn put_group_info(&self, group_id: &[u8], device: &DeviceRef, epoch: u64, group_info: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            let (current, _) = group_row(tx, group_id)?.ok_or(StoreError::UnknownGroup)?;
            member_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            if epoch != current {
                return Err(StoreError::StaleEpoch { current });
            }
            tx.exec(
                "UPDATE groups SET group_info=?, group_info_epoch=? WHERE group_id=?",
                params![group_info, epoch, group_id],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn group_info(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, Vec<u8>)>> {
        self.with_tx(|tx| {
            group_row(tx, group_id)?.ok_or(StoreError::UnknownGroup)?;
            member_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            let row: (Option<u64>, Option<Vec<u8>>) = tx
                .row("SELECT group_info_epoch, group_info FROM groups WHERE group_id=?", [group_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend)?;
            Ok(row.0.zip(row.1))
        })
    }

    fn begin_blob(
        &self,
        id: &[u8],
        owner: &DeviceRef,
        size: u64,
        max_size: u64,
        quota: u64,
        now: i64,
    ) -> StoreResult<BlobRecord> {
        self.with_tx(|tx| {
            if let Some(b) = blob_row(tx, id)? {
                if &b.owner != owner {
                    // Someone else's: answered like an unknown id (HEAD
                    // and GET say 404 for both), so ids cannot be probed.
                    return Err(StoreError::UnknownBlob);
                }
                if b.size != size {
                    return Err(StoreError::Invalid("this upload was begun with another size".into()));
                }
                return Ok(b);
            }
            if size > max_size {
                return Err(StoreError::LimitExceeded(format!(
                    "the file is {size} bytes; this server takes at most {max_size}"
                )));
            }
            let used: u64 = tx
                .row("SELECT coalesce(sum(size), 0) FROM blobs WHERE owner_handle=?", [&owner.handle], |r| r.get(0))
                .map_err(backend)?;
            if used.saturating_add(size) > quota {
                return Err(StoreError::LimitExceeded(format!(
                    "your storage quota ({quota} bytes) is used up until recipients fetch your files"
                )));
            }
            tx.exec(
                "INSERT INTO blobs(id, owner_handle, owner_device, size, created_at) VALUES(?,?,?,?,?)",
                params![id, owner.handle, owner.device_id, size, now],
            )
            .map_err(backend)?;
            Ok(BlobRecord { id: id.to_vec(), owner: owner.clone(), size, complete: false, created_at: now })
        })
    }

    fn blob(&self, id: &[u8]) -> StoreResult<Option<BlobRecord>> {
        self.with_tx(|tx| blob_row(tx, id))
    }

    fn complete_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec("UPDATE blobs SET complete=1 WHERE id=?", [id]).map_err(backend)?;
            Ok(())
        })
    }

    fn share_blob(&self, id: &[u8], owner: &DeviceRef, group_id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Someone else's blob looks like no blob: no probing for ids.
            blob_row(tx, id)?.filter(|b| &b.owner == owner).ok_or(StoreError::UnknownBlob)?;
            member_row(tx, group_id, owner)?.ok_or(StoreError::NotMember)?;
            for m in members_of(tx, group_id)? {
                if &m != owner {
                    tx.exec(
                        "INSERT OR IGNORE INTO blob_readers(blob_id, handle, device_id) VALUES(?,?,?)",
                        params![id, m.handle, m.device_id],
                    )
                    .map_err(backend)?;
                }
            }
            Ok(())
        })
    }

    fn may_read_blob(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.with_tx(|tx| {
            let Some(b) = blob_row(tx, id)? else { return Ok(false) };
            if &b.owner == device {
                return Ok(true);
            }
            tx.row(
                "SELECT count(*) FROM blob_readers WHERE blob_id=? AND handle=? AND device_id=?",
                params![id, device.handle, device.device_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(backend)
        })
    }

    fn blob_fetched(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.with_tx(|tx| {
            tx.exec(
                "UPDATE blob_readers SET fetched=1 WHERE blob_id=? AND handle=? AND device_id=?",
                params![id, device.handle, device.device_id],
            )
            .map_err(backend)?;
            let (readers, waiting): (i64, i64) = tx
                .row("SELECT count(*), coalesce(sum(fetched = 0), 0) FROM blob_readers WHERE blob_id=?", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend)?;
            if readers > 0 && waiting == 0 {
                tx.exec("DELETE FROM blob_readers WHERE blob_id=?", [id]).map_err(backend)?;
                tx.exec("DELETE FROM blobs WHERE id=?", [id]).map_err(backend)?;
                return Ok(true);
            }
            Ok(false)
        })
    }

    fn incomplete_blobs(&self) -> StoreResult<Vec<BlobRecord>> {
        self.with_tx(|tx| {
            let ids: Vec<Vec<u8>> = {
                let mut stmt = tx.prepare_cached("SELECT id FROM blobs WHERE complete=0").map_err(backend)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            ids.iter().filter_map(|id| blob_row(tx, id).transpose()).collect()
        })
    }

    fn remove_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec("DELETE FROM blob_readers WHERE blob_id=?", [id]).map_err(backend)?;
            tx.exec("DELETE FROM blobs WHERE id=?", [id]).map_err(backend)?;
            Ok(())
        })
    }

    fn expire_blobs(&self, cutoff: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.with_tx(|tx| {
            let ids: Vec<Vec<u8>> = {
                let mut stmt = tx.prepare_cached("SELECT id FROM blobs WHERE created_at < ?").map_err(backend)?;
                let rows = stmt.query_map([cutoff], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            for id in &ids {
                tx.exec("DELETE FROM blob_readers WHERE blob_id=?", [id]).map_err(backend)?;
                tx.exec("DELETE FROM blobs WHERE id=?", [id]).map_err(backend)?;
            }
            Ok(ids)
        })
    }

    fn list_invites(&self) -> StoreResult<Vec<InviteRecord>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT rowid, uses_left, expires_at, created_at FROM invites WHERE uses_left > 0 ORDER BY rowid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(InviteRecord {
                        id: r.get(0)?,
                        uses_left: r.get(1)?,
                        expires_at: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn revoke_invite(&self, id_or_code: &str) -> StoreResult<bool> {
        self.with_tx(|tx| {
            let n = match id_or_code.parse::<i64>() {
                Ok(id) => tx.exec("DELETE FROM invites WHERE rowid=?", [id]),
                Err(_) => tx.exec("DELETE FROM invites WHERE code_hash=?", [invite_hash(id_or_code)]),
            }
            .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn list_accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT a.handle, (SELECT count(*) FROM devices d WHERE d.handle = a.handle),
                            (SELECT count(DISTINCT group_id) FROM members m WHERE m.handle = a.handle),
                            a.banned, a.created_at
                     FROM accounts a ORDER BY a.handle",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AccountSummary {
                        handle: r.get(0)?,
                        devices: r.get(1)?,
                        groups: r.get(2)?,
                        banned: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn claim_copy(&self, device: &DeviceRef, copy: &[u8], takeover: bool, now: i64) -> StoreResult<Result<(), i64>> {
        self.with_tx(|tx| {
            let known: Option<(Vec<u8>, i64)> = tx
                .row(
                    "SELECT copy_id, since FROM device_copies WHERE handle=? AND device_id=?",
                    params![device.handle, device.device_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match known {
                Some((k, _)) if k == copy => Ok(Ok(())),
                Some((_, since)) if !takeover => Ok(Err(since)),
                _ => {
                    tx.exec(
                        "INSERT OR REPLACE INTO device_copies(handle, device_id, copy_id, since) VALUES(?,?,?,?)",
                        params![device.handle, device.device_id, copy, now],
                    )
                    .map_err(backend)?;
                    Ok(Ok(()))
                }
            }
        })
    }

    fn remove_account(&self, handle: &str) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            let n = tx.exec("DELETE FROM accounts WHERE handle=?", [handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            let groups: Vec<Vec<u8>> = {
                let mut stmt =
                    tx.prepare_cached("SELECT DISTINCT group_id FROM members WHERE handle=?").map_err(backend)?;
                let rows = stmt.query_map([handle], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            for sql in [
                "DELETE FROM devices WHERE handle=?",
                "DELETE FROM key_packages WHERE handle=?",
                "DELETE FROM device_copies WHERE handle=?",
                "DELETE FROM members WHERE handle=?",
                "DELETE FROM welcomes WHERE handle=?",
                "DELETE FROM blob_readers WHERE handle=?",
                "DELETE FROM blobs WHERE owner_handle=?",
            ] {
                tx.exec(sql, [handle]).map_err(backend)?;
            }
            for g in groups {
                delete_fully_acked(tx, &g)?;
            }
            Ok(())
        })
    }

    fn groups_created(&self, device: &DeviceRef) -> StoreResult<u64> {
        self.with_tx(|tx| {
            tx.row(
                "SELECT count(*) FROM groups WHERE creator_handle=? AND creator_device=?",
                params![device.handle, device.device_id],
                |r| r.get(0),
            )
            .map_err(backend)
        })
    }

    fn leave(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            if group_row(tx, group_id)?.is_none() {
                return Err(StoreError::UnknownGroup);
            }
            let n = tx
                .exec(
                    "DELETE FROM members WHERE group_id=? AND handle=? AND device_id=?",
                    params![group_id, device.handle, device.device_id],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotMember);
            }
            delete_fully_acked(tx, group_id)
        })
    }

    fn co_members(&self, device: &DeviceRef, handles: &[String]) -> StoreResult<Vec<String>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT 1 FROM members a JOIN members b ON a.group_id = b.group_id
                     WHERE a.handle=? AND a.device_id=? AND b.handle=? AND a.until_seq IS NULL AND b.until_seq IS NULL
                     LIMIT 1",
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            for h in handles {
                let shared = stmt.exists(params![device.handle, device.device_id, h]).map_err(backend)?;
                if shared {
                    out.push(h.clone());
                }
            }
            Ok(out)
        })
    }

    fn ack(&self, group_id: &[u8], device: &DeviceRef, seq: u64) -> StoreResult<()> {
        self.with_tx(|tx| {
            let (_, last_seq) = group_row(tx, group_id)?.ok_or(StoreError::UnknownGroup)?;
            let (_, cursor, until) = reader_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
            if let Some(until) = until {
                if seq >= until {
                    // A removed device has read its removal: it is gone.
                    tx.exec(
                        "DELETE FROM members WHERE group_id=? AND handle=? AND device_id=?",
                        params![group_id, device.handle, device.device_id],
                    )
                    .map_err(backend)?;
                    return delete_fully_acked(tx, group_id);
                }
            }
            // Cursors only move forward, and never past the end of the log.
            let new = seq.min(last_seq);
            if new > cursor {
                tx.exec(
                    "UPDATE members SET cursor=? WHERE group_id=? AND handle=? AND device_id=?",
                    params![new, group_id, device.handle, device.device_id],
                )
                .map_err(backend)?;
                delete_fully_acked(tx, group_id)?;
            }
            Ok(())
        })
    }

    fn welcomes(&self, device: &DeviceRef) -> StoreResult<Vec<StoredWelcome>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, group_id, sender_handle, sender_device, welcome FROM welcomes
                     WHERE handle=? AND device_id=? ORDER BY id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![device.handle, device.device_id], |r| {
                    Ok(StoredWelcome {
                        id: r.get(0)?,
                        group_id: r.get(1)?,
                        sender: DeviceRef { handle: r.get(2)?, device_id: r.get(3)? },
                        welcome: r.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    fn ack_welcome(&self, device: &DeviceRef, welcome_id: u64) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec(
                "DELETE FROM welcomes WHERE id=? AND handle=? AND device_id=?",
                params![welcome_id, device.handle, device.device_id],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn purge_expired(&self, now: i64, retention_ms: i64) -> StoreResult<u64> {
        let cutoff = now.saturating_sub(retention_ms);
        self.with_tx(|tx| {
            let mut n = 0;
            n += tx.exec("DELETE FROM messages WHERE stored_at < ?", [cutoff]).map_err(backend)?;
            n += tx.exec("DELETE FROM welcomes WHERE stored_at < ?", [cutoff]).map_err(backend)?;
            n += tx.exec("DELETE FROM sent_ids WHERE stored_at < ?", [cutoff]).map_err(backend)?;
            n += tx
                .exec("DELETE FROM invites WHERE (expires_at IS NOT NULL AND expires_at <= ?) OR uses_left <= 0", [now])
                .map_err(backend)?;
            Ok(n as u64)
        })
    }

    fn stats(&self) -> StoreResult<StoreStats> {
        self.with_tx(|tx| {
            let count = |table: &str| -> StoreResult<u64> {
                tx.row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(backend)
            };
            Ok(StoreStats {
                accounts: count("accounts")?,
                groups: count("groups")?,
                messages: count("messages")?,
                welcomes: count("welcomes")?,
                blobs: count("blobs")?,
                blob_bytes: tx.row("SELECT coalesce(sum(size), 0) FROM blobs", [], |r| r.get(0)).map_err(backend)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_in_memory() {
        conformance::run_all(|| SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn conformance_on_disk_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let n = std::sync::atomic::AtomicUsize::new(0);
        conformance::run_all(|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            SqliteStore::open(&dir.path().join(format!("c{i}.db"))).unwrap()
        });
        conformance::durability(|| SqliteStore::open(&path).unwrap());
    }
}
