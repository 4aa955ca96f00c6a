//! What the writer keeps between folds: the client ids of recent appends
//! and the groups whose readers moved on.
//!
//! Writing each append's id into `sent_ids` and deleting what every reader
//! had read, in the commit that stored or acknowledged it, dirtied one
//! index page per group per commit: at 10,000 msgs/s in about 1,300
//! commits a second that was 7 of the 19 KB the store wrote per message
//! (docs/performance.md). The id now travels on the message row itself
//! (`messages.client_id`, written anyway), the writer remembers it here,
//! and every 100 ms a *fold* copies the ids into `sent_ids` and deletes
//! what every reader has read, a page per group per fold instead of per
//! commit, in transactions of a few groups each, with the writer's queued
//! work taken between them.
//!
//! Nothing is lost in a crash: an id not yet folded is on its message row,
//! and opening the store copies those into `sent_ids` before anything is
//! appended ([`recover`]). A message is deleted only in a transaction that
//! has its id in `sent_ids`: a fold copies the recent ids in the same
//! transaction as its deletes, and the purge of a disappearing group's
//! messages copies theirs first (`group_log.rs`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};
use sotto_proto::DeviceRef;

use super::id_filter::{IdFilter, IdHash};
use super::{backend, delete_fully_acked, Cached, StoreResult};

/// How long an id waits in memory at most before it is folded. Every
/// second, the fold of 10,000 ids and deletes held the writer long enough
/// to put p99 at 10,000 msgs/s at 12-18 ms; every 20 ms it saved less
/// (16.3 KB written per message against 14.3); 100 ms, measured between
/// (docs/performance.md).
pub(super) const FOLD_EVERY: Duration = Duration::from_millis(100);

/// Ids past which a fold comes sooner (about 150 bytes each).
const FOLD_AT_IDS: usize = 16_384;

/// Groups per fold transaction. A fold is done in small transactions, and
/// the writer takes queued work between them: one transaction for all of
/// 100 ms (about 1,000 ids and deletes at 10,000 msgs/s) held the appends
/// behind it for 2-4 ms, the tail of the relay's latency.
pub(super) const FOLD_GROUPS: usize = 8;

/// A client's id for an append, as the exactly-once check sees it.
pub(super) struct IdKey {
    group_id: Vec<u8>,
    id: SenderId,
}

impl IdKey {
    pub(super) fn new(group_id: &[u8], sender: &DeviceRef, client_id: &[u8]) -> Self {
        Self { group_id: group_id.to_vec(), id: (sender.clone(), client_id.to_vec()) }
    }
}

/// Where an id's append was stored.
#[derive(Clone, Copy)]
pub(super) struct StoredAt {
    pub(super) seq: u64,
    /// The group's epoch after the append (one more for a commit).
    pub(super) epoch_after: u64,
    pub(super) now: i64,
}

/// A sender's id within a group.
type SenderId = (DeviceRef, Vec<u8>);

/// What waits to be folded for one group.
#[derive(Default)]
struct GroupPending {
    /// Each id with where it was stored and the number of the batch that
    /// stored it.
    ids: HashMap<SenderId, (StoredAt, u64)>,
    /// A reader moved on: what every reader read can go.
    reclaim: bool,
}

/// The writer's memory between folds.
#[derive(Default)]
pub(super) struct Pending {
    /// By group, in group order (a fold takes a few groups at a time).
    groups: BTreeMap<Vec<u8>, GroupPending>,
    /// Ids in `groups`.
    ids: usize,
    /// Number of the batch being committed. Its ids go straight into
    /// `groups`, tagged with it, and are taken out again only if it is
    /// rolled back (rare: a failed write). Staging them apart and merging
    /// them after the commit hashed every id twice, 2-7 % of the writer's
    /// time at full speed (docs/performance.md).
    batch: u64,
    /// When the next fold is due (none: nothing waits).
    fold_at: Option<Instant>,
    /// Every id that may be in `sent_ids` (`id_filter.rs`).
    known: IdFilter,
}

impl Pending {
    /// With the ids `sent_ids` held when the store opened.
    pub(super) fn with_known(known: IdFilter) -> Self {
        Self { known, ..Self::default() }
    }

    /// `key`'s hash for the filter of stored ids.
    pub(super) fn hash(&self, key: &IdKey) -> IdHash {
        self.known.hash(&key.group_id, &key.id.0, &key.id.1)
    }

    /// Whether `sent_ids` may hold the id (if not, it is new unless
    /// [`Pending::seen`] knows it).
    pub(super) fn may_be_stored(&self, id: IdHash) -> bool {
        self.known.may_hold(id)
    }

    /// Notes an id about to go straight into `sent_ids`.
    pub(super) fn note_stored(&mut self, id: IdHash, at: StoredAt) {
        self.known.insert(id, at.now);
    }

    /// Drops what the retention purge made obsolete from the filter.
    pub(super) fn forget_purged(&mut self) {
        self.known.forget_purged();
    }

    /// Where `key` was stored, if by an append not folded yet (including
    /// one of the batch in progress).
    pub(super) fn seen(&self, key: &IdKey) -> Option<StoredAt> {
        self.groups.get(&key.group_id).and_then(|g| g.ids.get(&key.id)).map(|(at, _)| *at)
    }

    /// Notes an append of the batch in progress.
    pub(super) fn stage(&mut self, key: IdKey, id: IdHash, at: StoredAt) {
        // Into the filter now, before the fold copies it into `sent_ids`:
        // a rolled-back batch leaves it there, which costs a lookup.
        self.note_stored(id, at);
        let group = self.groups.entry(key.group_id).or_default();
        if group.ids.insert(key.id, (at, self.batch)).is_none() {
            self.ids += 1;
        }
        self.fold_at.get_or_insert_with(|| Instant::now() + FOLD_EVERY);
    }

    /// Notes a group whose reader moved on. Safe to note for a batch that
    /// is then rolled back: a fold deletes only what every reader read.
    pub(super) fn reclaim(&mut self, group_id: &[u8]) {
        match self.groups.get_mut(group_id) {
            Some(g) => g.reclaim = true,
            None => {
                self.groups.insert(group_id.to_vec(), GroupPending { reclaim: true, ..Default::default() });
            }
        }
        self.fold_at.get_or_insert_with(|| Instant::now() + FOLD_EVERY);
    }

    /// The batch committed: its ids are kept.
    pub(super) fn batch_committed(&mut self) {
        self.batch += 1;
    }

    /// The batch was rolled back: its ids go (a look through all ids,
    /// which happens only after a failed write).
    pub(super) fn batch_rolled_back(&mut self) {
        let batch = self.batch;
        let mut removed = 0;
        self.groups.retain(|_, g| {
            let before = g.ids.len();
            g.ids.retain(|_, (_, b)| *b != batch);
            removed += before - g.ids.len();
            g.reclaim || !g.ids.is_empty()
        });
        self.ids -= removed;
        self.batch += 1;
    }

    /// Whether anything waits to be folded.
    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How long the writer may wait for work before folding.
    pub(super) fn wait(&self) -> Option<Duration> {
        self.fold_at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether a fold is due now.
    pub(super) fn due(&self) -> bool {
        self.ids >= FOLD_AT_IDS || self.fold_at.is_some_and(|at| Instant::now() >= at)
    }

    /// Folds up to `max_groups` groups in one transaction: their ids into
    /// `sent_ids` (so a message is never deleted before its id is there),
    /// then what every reader of them has read is deleted. On failure
    /// nothing is forgotten: the next fold, a while later, tries again.
    pub(super) fn fold_some(&mut self, conn: &mut Connection, max_groups: usize) -> StoreResult<()> {
        let mut taken = Vec::new();
        while taken.len() < max_groups {
            let Some(g) = self.groups.pop_first() else { break };
            taken.push(g);
        }
        let r = write(conn, &taken);
        match &r {
            Ok(()) => self.ids -= taken.iter().map(|(_, g)| g.ids.len()).sum::<usize>(),
            Err(_) => {
                self.groups.extend(taken);
                self.fold_at = Some(Instant::now() + FOLD_EVERY);
            }
        }
        if self.groups.is_empty() {
            self.fold_at = None;
        }
        r
    }
}

fn write(conn: &mut Connection, groups: &[(Vec<u8>, GroupPending)]) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    {
        // One statement for every id of the fold: looking it up in the
        // statement cache per id was about 2 % of the writer's time.
        let mut insert = tx.prepare_cached(INSERT_ID).map_err(backend)?;
        for (group_id, g) in groups {
            // In key order: neighbouring ids share index pages.
            let mut ids: Vec<_> = g.ids.iter().collect();
            ids.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for ((sender, client_id), (at, _)) in ids {
                insert
                    .execute(params![
                        group_id,
                        sender.handle,
                        sender.device_id,
                        client_id,
                        at.seq,
                        at.epoch_after,
                        at.now
                    ])
                    .map_err(backend)?;
            }
        }
    }
    for (group_id, g) in groups {
        if g.reclaim {
            delete_fully_acked(&tx, group_id)?;
        }
    }
    tx.commit().map_err(backend)
}

/// Records one id in `sent_ids`, kept as it is if there already.
const INSERT_ID: &str =
    "INSERT OR IGNORE INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, \
                         stored_at) VALUES(?,?,?,?,?,?,?)";

/// Records one id in `sent_ids` (kept as it is if there already).
pub(super) fn insert_id(
    tx: &Connection,
    group_id: &[u8],
    sender: &DeviceRef,
    client_id: &[u8],
    at: StoredAt,
) -> StoreResult<()> {
    tx.exec(INSERT_ID, params![group_id, sender.handle, sender.device_id, client_id, at.seq, at.epoch_after, at.now])
        .map(drop)
        .map_err(backend)
}

/// Copies into `sent_ids` the ids on the message rows whose rowids `rows`
/// (a SELECT, with `params`) picks, runs included: before they are
/// deleted by anything but a fold, and when the store opens.
pub(super) fn copy_ids_of_rows(tx: &Connection, rows: &str, params: &[&dyn rusqlite::ToSql]) -> StoreResult<()> {
    tx.exec(
        &format!(
            "INSERT OR IGNORE INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
             SELECT group_id, sender_handle, sender_device, client_id, seq, epoch + (kind = 1), stored_at
             FROM messages WHERE client_id IS NOT NULL AND last_seq IS NULL AND rowid IN ({rows})"
        ),
        params,
    )
    .map_err(backend)?;
    let mut stmt = tx
        .prepare(&format!(
            "SELECT group_id, seq, payload FROM messages WHERE last_seq IS NOT NULL AND rowid IN ({rows})"
        ))
        .map_err(backend)?;
    let found = stmt
        .query_map(params, |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u64>(1)?, r.get::<_, Vec<u8>>(2)?)))
        .map_err(backend)?;
    for row in found {
        let (group_id, first, packed) = row.map_err(backend)?;
        for (seq, e) in super::runs::ids(first, &packed)? {
            let sender = DeviceRef { handle: e.sender_handle, device_id: e.sender_device };
            insert_id(tx, &group_id, &sender, &e.client_id, StoredAt { seq, epoch_after: e.epoch, now: e.stored_at })?;
        }
    }
    Ok(())
}

/// Run when the store opens, before the writer starts: the ids of appends
/// that were never folded (the server stopped first) go into `sent_ids`
/// from their message rows, and what every reader has read goes.
pub(super) fn recover(conn: &Connection) -> StoreResult<()> {
    let tx = conn.unchecked_transaction().map_err(backend)?;
    copy_ids_of_rows(&tx, "SELECT rowid FROM messages", &[])?;
    tx.exec(
        "DELETE FROM messages WHERE coalesce(last_seq, seq) <= (SELECT coalesce(min(cursor), 0) FROM members
                                                              WHERE members.group_id = messages.group_id)",
        [],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> IdKey {
        IdKey::new(b"g", &DeviceRef { handle: "alice".into(), device_id: 1 }, &[n])
    }

    /// A fold that cannot write (here: a read-only database; in life, a
    /// full or failing disk) forgets nothing and is tried again later, not
    /// at once; the next one that can write empties the memory.
    #[test]
    fn a_fold_that_cannot_write_keeps_everything_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(super::super::schema::SCHEMA).unwrap();
        drop(conn);
        let mut pending = Pending::default();
        pending.stage(key(1), pending.hash(&key(1)), StoredAt { seq: 1, epoch_after: 0, now: 0 });
        pending.batch_committed();
        pending.reclaim(b"g");

        let mut read_only = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert!(pending.fold_some(&mut read_only, FOLD_GROUPS).is_err());
        assert!(!pending.is_empty());
        assert_eq!(pending.seen(&key(1)).map(|at| at.seq), Some(1), "still known");
        assert!(!pending.due(), "tried again a while later, not in a loop");

        let mut conn = Connection::open(&path).unwrap();
        pending.fold_some(&mut conn, FOLD_GROUPS).unwrap();
        assert!(pending.is_empty());
        assert!(pending.seen(&key(1)).is_none(), "now in sent_ids");
        let n: i64 = conn.query_row("SELECT count(*) FROM sent_ids", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    /// A batch that was rolled back leaves no id behind, and takes none
    /// of an earlier batch's with it.
    #[test]
    fn a_rolled_back_batch_leaves_no_id() {
        let mut pending = Pending::default();
        pending.stage(key(2), pending.hash(&key(2)), StoredAt { seq: 2, epoch_after: 0, now: 0 });
        assert!(pending.seen(&key(2)).is_some(), "seen within its own batch");
        pending.batch_rolled_back();
        assert!(pending.seen(&key(2)).is_none());
        assert!(pending.is_empty());

        pending.stage(key(3), pending.hash(&key(3)), StoredAt { seq: 3, epoch_after: 0, now: 0 });
        pending.batch_committed();
        pending.stage(key(4), pending.hash(&key(4)), StoredAt { seq: 4, epoch_after: 0, now: 0 });
        pending.batch_rolled_back();
        assert_eq!(pending.seen(&key(3)).map(|at| at.seq), Some(3), "committed before: kept");
        assert!(pending.seen(&key(4)).is_none());
        assert_eq!(pending.ids, 1);
    }
}
