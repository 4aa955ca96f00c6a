//! Which client ids the store may have seen: a Bloom filter over every id
//! in `sent_ids` when the store opened and every id appended since.
//!
//! The exactly-once check looks each new append's id up in `sent_ids`. A
//! new id is nearly always new, and that lookup (a b-tree descent in the
//! writer's transaction) was 8 % of the relay's rate on one core
//! (docs/performance.md, seventh session). The filter answers "never seen"
//! for all but about one id in a hundred without reading the table; a
//! "maybe" still reads it, so a false positive costs only the lookup.
//!
//! The filter may hold ids that are gone from `sent_ids` (a batch rolled
//! back, a purge), never the other way round: every id the store keeps was
//! either in `sent_ids` when the filter was loaded or was appended through
//! the writer, which adds it here first. Old ids leave with whole layers:
//! each layer knows its newest id's time, and once the server's retention
//! purged `sent_ids` past it (with a day's margin), the layer is dropped.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use fastbloom::BloomFilter;
use foldhash::fast::FixedState;
use rusqlite::Connection;
use sotto_proto::DeviceRef;

use super::{backend, StoreResult};

/// The chance that a new id is taken for a seen one (and looked up).
const FALSE_POSITIVES: f64 = 0.01;

/// Ids in the first layer beyond those loaded (about 1.2 bytes each, so
/// 1.2 MB).
const FIRST_LAYER: usize = 1 << 20;

/// The largest layer, in ids (about 20 MB): each full layer starts one
/// four times its size up to this, so a lookup checks few layers (each
/// check is a cache miss).
const LARGEST_LAYER: usize = 1 << 24;

/// A layer is dropped only once the purge is this far past its newest id
/// (ms): an id in a run (`runs.rs`) may be older than the run's row, which
/// is what the purge judges by.
const FORGET_MARGIN_MS: i64 = 24 * 60 * 60 * 1000;

/// One filter of a fixed size, and the ids it holds.
struct Layer {
    bloom: BloomFilter,
    holds: usize,
    capacity: usize,
    /// The newest `stored_at` among its ids.
    newest: i64,
}

/// Shared with the store: the retention purge notes here how far it
/// deleted `sent_ids`; the writer drops layers by it.
#[derive(Clone, Default)]
pub(super) struct PurgedBefore(Arc<AtomicI64>);

impl PurgedBefore {
    /// `sent_ids` holds nothing stored before `cutoff` (ms) any more.
    pub(super) fn purged(&self, cutoff: i64) {
        self.0.fetch_max(cutoff, Ordering::Relaxed);
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The filter. Without layers (not loaded: a read failed when the store
/// opened) it knows nothing and says "maybe" to every id.
pub(super) struct IdFilter {
    layers: Vec<Layer>,
    /// One hash per id for every layer. Seeded per process; a collision
    /// (even a crafted one) costs only a lookup.
    hasher: FixedState,
    purged: PurgedBefore,
}

/// An id's hash, computed once per append for the check and the insert.
#[derive(Clone, Copy)]
pub(super) struct IdHash(u64);

impl Default for IdFilter {
    /// Unloaded: every id is looked up.
    fn default() -> Self {
        Self { layers: Vec::new(), hasher: FixedState::with_seed(rand::random()), purged: PurgedBefore::default() }
    }
}

impl IdFilter {
    /// Every id in `sent_ids` (read once, when the store opens, after
    /// `pending::recover` copied the unfolded ones there).
    pub(super) fn load(conn: &Connection, purged: PurgedBefore) -> StoreResult<Self> {
        let mut filter = Self { purged, ..Self::default() };
        // One pass over the table: the hashes first (8 bytes each, for a
        // moment), so the layer is sized without counting the rows in a
        // second pass.
        let (mut hashes, mut newest) = (Vec::new(), i64::MIN);
        let mut stmt = conn
            .prepare("SELECT group_id, sender_handle, sender_device, client_id, stored_at FROM sent_ids")
            .map_err(backend)?;
        let mut rows = stmt.query([]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let group_id: Vec<u8> = r.get(0).map_err(backend)?;
            let sender = DeviceRef { handle: r.get(1).map_err(backend)?, device_id: r.get(2).map_err(backend)? };
            let client_id: Vec<u8> = r.get(3).map_err(backend)?;
            hashes.push(filter.hash(&group_id, &sender, &client_id));
            newest = newest.max(r.get(4).map_err(backend)?);
        }
        let layer = filter.layer(hashes.len().saturating_add(FIRST_LAYER));
        filter.layers.push(layer);
        for id in hashes {
            filter.insert(id, newest);
        }
        Ok(filter)
    }

    fn layer(&self, capacity: usize) -> Layer {
        // Its own hasher is never used: ids come hashed (`IdHash`).
        let bloom = BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity.max(1));
        Layer { bloom, holds: 0, capacity, newest: i64::MIN }
    }

    /// An id's hash, for [`IdFilter::may_hold`] and [`IdFilter::insert`].
    pub(super) fn hash(&self, group_id: &[u8], sender: &DeviceRef, client_id: &[u8]) -> IdHash {
        IdHash(self.hasher.hash_one(key(group_id, sender, client_id)))
    }

    /// Whether `sent_ids` may hold this id: `false` means it does not.
    pub(super) fn may_hold(&self, id: IdHash) -> bool {
        self.layers.is_empty() || self.layers.iter().any(|l| l.bloom.contains_hash(id.0))
    }

    /// Notes an id the writer is about to store. Unloaded, it stays so.
    pub(super) fn insert(&mut self, id: IdHash, stored_at: i64) {
        let Some(last) = self.layers.last() else { return };
        if last.holds >= last.capacity {
            let next = last.capacity.saturating_mul(4).min(LARGEST_LAYER);
            let layer = self.layer(next);
            self.layers.push(layer);
        }
        let Some(last) = self.layers.last_mut() else { return };
        last.bloom.insert_hash(id.0);
        last.holds += 1;
        last.newest = last.newest.max(stored_at);
    }

    /// Drops the layers whose every id the retention purge deleted (never
    /// the last: new ids go there).
    pub(super) fn forget_purged(&mut self) {
        let before = self.purged.get().saturating_sub(FORGET_MARGIN_MS);
        let last = self.layers.len().saturating_sub(1);
        let mut i = 0;
        self.layers.retain(|l| {
            let keep = i == last || l.newest >= before;
            i += 1;
            keep
        });
    }

    /// Layers held (for tests).
    #[cfg(test)]
    fn layers(&self) -> usize {
        self.layers.len()
    }
}

/// What is hashed: the same parts, in the same order, for an id from an
/// append and for one read from `sent_ids`.
fn key<'a>(group_id: &'a [u8], sender: &'a DeviceRef, client_id: &'a [u8]) -> impl Hash + 'a {
    (group_id, sender.handle.as_str(), sender.device_id, client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> DeviceRef {
        DeviceRef { handle: "alice".into(), device_id: 1 }
    }

    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::schema::SCHEMA).unwrap();
        conn
    }

    /// An id in `sent_ids` when the filter loads, and one inserted after,
    /// are both "maybe"; of ten thousand others nearly all are "no".
    #[test]
    fn loaded_and_inserted_ids_are_held_and_few_others_seem_so() {
        let conn = store();
        conn.execute(
            "INSERT INTO sent_ids(group_id, sender_handle, sender_device, client_id, seq, epoch, stored_at)
             VALUES(x'01', 'alice', 1, x'aa', 1, 0, 5)",
            [],
        )
        .unwrap();
        let mut f = IdFilter::load(&conn, PurgedBefore::default()).unwrap();
        assert!(f.may_hold(f.hash(&[1], &alice(), &[0xaa])));
        f.insert(f.hash(&[1], &alice(), &[0xbb]), 6);
        assert!(f.may_hold(f.hash(&[1], &alice(), &[0xbb])));
        let others = (0u32..10_000).filter(|n| f.may_hold(f.hash(&[2], &alice(), &n.to_be_bytes()))).count();
        assert!(others < 300, "{others} of 10,000 new ids taken for seen ones");
    }

    /// Past a layer's size a new one starts, and every id stays held;
    /// once the purge is past a layer's newest id (and the margin), that
    /// layer goes, never the one taking new ids.
    #[test]
    fn layers_grow_and_go_once_purged() {
        let purged = PurgedBefore::default();
        let mut f = IdFilter::load(&store(), purged.clone()).unwrap();
        let n = (FIRST_LAYER + 10) as u32;
        for i in 0..n {
            f.insert(f.hash(&[1], &alice(), &i.to_be_bytes()), i64::from(i));
        }
        assert_eq!(f.layers(), 2);
        assert!((0..n).all(|i| f.may_hold(f.hash(&[1], &alice(), &i.to_be_bytes()))), "no id is forgotten");

        purged.purged(FIRST_LAYER as i64 - 1 + FORGET_MARGIN_MS);
        f.forget_purged();
        assert_eq!(f.layers(), 2, "the first layer's newest id is not purged yet");
        purged.purged(i64::MAX);
        f.forget_purged();
        assert_eq!(f.layers(), 1, "the layer taking new ids stays");
        assert!(f.may_hold(f.hash(&[1], &alice(), &(n - 1).to_be_bytes())));
    }

    /// Not loaded, the filter says "maybe" to everything.
    #[test]
    fn an_unloaded_filter_holds_everything() {
        let mut f = IdFilter::default();
        f.insert(f.hash(&[1], &alice(), &[1]), 0);
        assert!(f.may_hold(f.hash(&[9], &alice(), &[9])));
    }
}
