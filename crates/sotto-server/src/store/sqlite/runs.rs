//! Runs: the application messages one batch appends to one group, with
//! consecutive sequence numbers, stored as one row of `messages`.
//!
//! One row per message cost the writer three b-tree inserts (the row, the
//! `(group_id, seq)` index, the age index) and a fold three deletes for
//! each of them; with no message rows at all the relay went from about
//! 78,000 to 128,000 msgs/s on one core (docs/performance.md). At full
//! speed a batch carries about fifteen messages per group, so a run
//! divides that cost by fifteen; at a trickle a run is one message and
//! is stored as a plain row, as before.
//!
//! A run's row has `seq` (its first entry), `last_seq` (its last), kind
//! [`RUN_KIND`], `stored_at` of its newest entry (so retention keeps it
//! until its newest entry is due), no `client_id`, and the entries,
//! CBOR-encoded, in `payload`. Everything that reads or deletes message
//! rows knows both shapes: `fetch` unpacks runs, the fold deletes a run
//! once every reader has read its last entry, and the ids in a run are
//! copied into `sent_ids` like those on plain rows (`pending.rs`).

use std::collections::HashMap;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use sotto_proto::{Delivery, DeviceRef, MessageKind};

use super::{backend, Cached, StoreResult};

/// `messages.kind` of a run's row (1 is a commit, 2 an application message).
pub(super) const RUN_KIND: i64 = 3;

/// One entry as stored in a run (its seq is the run's first plus its place).
#[derive(Serialize)]
struct EntryRef<'a> {
    epoch: u64,
    sender_handle: &'a str,
    sender_device: u32,
    stored_at: i64,
    #[serde(with = "serde_bytes")]
    client_id: &'a [u8],
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

/// One entry as a reader gets it back (its client id is skipped).
#[derive(Deserialize)]
pub(super) struct Entry {
    pub(super) epoch: u64,
    pub(super) sender_handle: String,
    pub(super) sender_device: u32,
    pub(super) stored_at: i64,
    #[serde(with = "serde_bytes")]
    pub(super) payload: Vec<u8>,
}

/// An application append waiting in its batch's run.
pub(super) struct RunEntry<'a> {
    pub(super) seq: u64,
    pub(super) epoch: u64,
    pub(super) sender: &'a DeviceRef,
    pub(super) stored_at: i64,
    pub(super) client_id: &'a [u8],
    pub(super) payload: &'a [u8],
}

/// Most payload bytes in one run: a reader part-way through a run reads
/// and decodes all of it, and a batch of large messages (up to 900 KiB
/// each) must not become one huge row. Small messages still share a row
/// by the hundred.
const MAX_RUN_BYTES: usize = 256 * 1024;

/// The runs of the batch being committed, by group. Borrowed from the
/// batch's jobs, which outlive the transaction.
#[derive(Default)]
pub(super) struct Runs<'a> {
    /// Each group's open run and its payload bytes.
    open: HashMap<&'a [u8], (Vec<RunEntry<'a>>, usize)>,
    /// Runs closed by a gap (a commit in between) or by their size, to
    /// write at the end.
    closed: Vec<(&'a [u8], Vec<RunEntry<'a>>)>,
}

impl<'a> Runs<'a> {
    /// Adds an application append of the batch.
    pub(super) fn push(&mut self, group_id: &'a [u8], entry: RunEntry<'a>) {
        let (run, bytes) = self.open.entry(group_id).or_default();
        let gap = run.last().is_some_and(|last| last.seq + 1 != entry.seq);
        if gap || (!run.is_empty() && *bytes + entry.payload.len() > MAX_RUN_BYTES) {
            self.closed.push((group_id, std::mem::take(run)));
            *bytes = 0;
        }
        *bytes += entry.payload.len();
        run.push(entry);
    }

    /// Writes every run of the batch: one row each (a plain row for a run
    /// of one).
    pub(super) fn write(self, tx: &Connection) -> StoreResult<()> {
        let open = self.open.into_iter().map(|(g, (run, _))| (g, run));
        for (group_id, run) in self.closed.into_iter().chain(open) {
            write_run(tx, group_id, &run)?;
        }
        Ok(())
    }
}

fn write_run(tx: &Connection, group_id: &[u8], run: &[RunEntry<'_>]) -> StoreResult<()> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else { return Ok(()) };
    if run.len() == 1 {
        return tx
            .exec(
                "INSERT INTO messages(group_id, seq, epoch, sender_handle, sender_device, kind, payload, stored_at, client_id)
                 VALUES(?,?,?,?,?,2,?,?,?)",
                params![
                    group_id,
                    first.seq,
                    first.epoch,
                    first.sender.handle,
                    first.sender.device_id,
                    first.payload,
                    first.stored_at,
                    first.client_id
                ],
            )
            .map(drop)
            .map_err(backend);
    }
    let entries: Vec<EntryRef<'_>> = run
        .iter()
        .map(|a| EntryRef {
            epoch: a.epoch,
            sender_handle: &a.sender.handle,
            sender_device: a.sender.device_id,
            stored_at: a.stored_at,
            client_id: a.client_id,
            payload: a.payload,
        })
        .collect();
    let size = run.iter().map(|a| a.payload.len() + a.client_id.len() + a.sender.handle.len() + 32).sum();
    let mut packed = Vec::with_capacity(size);
    ciborium::into_writer(&entries, &mut packed).map_err(|e| super::StoreError::Backend(e.to_string()))?;
    let newest = run.iter().map(|a| a.stored_at).max().unwrap_or(last.stored_at);
    tx.exec(
        "INSERT INTO messages(group_id, seq, last_seq, epoch, sender_handle, sender_device, kind, payload, stored_at)
         VALUES(?,?,?,?,?,?,?,?,?)",
        params![
            group_id,
            first.seq,
            last.seq,
            first.epoch,
            first.sender.handle,
            first.sender.device_id,
            RUN_KIND,
            packed,
            newest
        ],
    )
    .map(drop)
    .map_err(backend)
}

/// The entries of a run's row, in order, with their seqs. A row that
/// cannot be read (damaged on disk) is an error, not an empty run: its
/// readers must not skip past messages they never saw.
pub(super) fn unpack(first_seq: u64, packed: &[u8]) -> StoreResult<Vec<(u64, Entry)>> {
    let entries: Vec<Entry> = ciborium::from_reader(packed)
        .map_err(|e| super::StoreError::Backend(format!("a stored run of messages could not be read: {e}")))?;
    Ok(entries.into_iter().enumerate().map(|(i, e)| (first_seq + i as u64, e)).collect())
}

/// An entry's id and where it was stored, read without its payload (which
/// CBOR lets the decoder skip): what copying a run's ids into `sent_ids`
/// needs, when the store opens and before a purge.
#[derive(Deserialize)]
pub(super) struct EntryId {
    pub(super) epoch: u64,
    pub(super) sender_handle: String,
    pub(super) sender_device: u32,
    pub(super) stored_at: i64,
    #[serde(with = "serde_bytes")]
    pub(super) client_id: Vec<u8>,
}

/// The ids in a run's row, in order, with their seqs.
pub(super) fn ids(first_seq: u64, packed: &[u8]) -> StoreResult<Vec<(u64, EntryId)>> {
    let entries: Vec<EntryId> = ciborium::from_reader(packed)
        .map_err(|e| super::StoreError::Backend(format!("a stored run of messages could not be read: {e}")))?;
    Ok(entries.into_iter().enumerate().map(|(i, e)| (first_seq + i as u64, e)).collect())
}

/// A run's entry as the delivery a reader gets.
pub(super) fn delivery(group_id: &[u8], seq: u64, e: Entry) -> Delivery {
    Delivery {
        group_id: group_id.to_vec(),
        seq,
        epoch: e.epoch,
        sender: DeviceRef { handle: e.sender_handle, device_id: e.sender_device },
        kind: MessageKind::Application,
        payload: e.payload,
        stored_at: e.stored_at,
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::conformance::{dev, msg, register};
    use crate::store::{GroupLog, NewMessage, OperatorViews};
    use sotto_proto::MessageKind;

    /// Appends queued while the writer waits for its connection: the
    /// writer then commits them together, so the application messages
    /// form runs around the commit in the middle.
    fn append_together(s: &SqliteStore, messages: &[NewMessage<'_>]) -> Vec<crate::store::Appended> {
        let held = s.conn.lock().unwrap();
        let tickets: Vec<_> = messages.iter().map(|m| s.append_queued(m, 1_000)).collect();
        drop(held);
        tickets.into_iter().map(|t| t.blocking_recv().unwrap().unwrap()).collect()
    }

    fn count(s: &SqliteStore, sql: &str) -> i64 {
        s.conn.lock().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Runs read back as the messages they hold, from anywhere in them, in
    /// order and with their own senders, epochs and payloads; their ids
    /// stay known (also after a crash between two folds); a run goes once
    /// every reader has read its last entry, not before.
    #[test]
    fn runs_read_back_entry_by_entry_and_go_once_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let (alice, bob) = (dev("alice"), dev("bob"));
        let g: &[u8] = b"group-runs";
        let s = SqliteStore::open(&path).unwrap();
        register(&s, "alice");
        register(&s, "bob");
        s.create_group(g, &alice, 0).unwrap();
        let added = [bob.clone()];
        let add = NewMessage { added: &added, welcome: Some(b"w"), ..msg(g, &alice, 0, b"c0", MessageKind::Commit) };
        assert_eq!(s.append(&add, 0).unwrap().seq, 1);

        // 2..=41 in epoch 1, a commit at 42, 43..=62 in epoch 2.
        let ids: Vec<Vec<u8>> = (0..60).map(|i| format!("a{i}").into_bytes()).collect();
        let payloads: Vec<Vec<u8>> = (0..60).map(|i| format!("payload {i}").into_bytes()).collect();
        let sender = |i: usize| if i.is_multiple_of(3) { &bob } else { &alice };
        let mut batch = Vec::new();
        for i in 0..60 {
            let epoch = if i < 40 { 1 } else { 2 };
            batch.push(NewMessage {
                payload: &payloads[i],
                ..msg(g, sender(i), epoch, &ids[i], MessageKind::Application)
            });
            if i == 39 {
                batch.push(msg(g, &alice, 1, b"c1", MessageKind::Commit));
            }
        }
        let appended = append_together(&s, &batch);
        let seqs: Vec<u64> = appended.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, (2..=62).collect::<Vec<u64>>());
        assert!(count(&s, "SELECT count(*) FROM messages WHERE kind = 3") >= 2, "runs on both sides of the commit");

        let seq_of = |i: usize| if i < 40 { i as u64 + 2 } else { i as u64 + 3 };
        // Bob reads from after the commit that added him.
        let all = s.fetch(g, &bob, 0, 500).unwrap();
        assert_eq!(all.iter().map(|d| d.seq).collect::<Vec<_>>(), (2..=62).collect::<Vec<u64>>());
        for i in 0..60 {
            let d = &all[seq_of(i) as usize - 2];
            assert_eq!((&d.payload, &d.sender), (&payloads[i], sender(i)));
            assert_eq!(d.epoch, if i < 40 { 1 } else { 2 });
            assert_eq!(d.kind, MessageKind::Application);
        }
        assert_eq!(all[40].kind, MessageKind::Commit);
        let from_middle = s.fetch(g, &bob, 20, 500).unwrap();
        assert_eq!(from_middle.first().map(|d| d.seq), Some(21));
        assert_eq!(from_middle.len(), 42);
        let after_run = s.fetch(g, &bob, 41, 500).unwrap();
        assert_eq!(after_run.first().map(|d| (d.seq, d.kind)), Some((42, MessageKind::Commit)));
        let few = s.fetch(g, &bob, 3, 5).unwrap();
        assert_eq!(few.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8]);
        assert_eq!(s.stats().unwrap().messages, 62, "counted by entries, not rows");

        // Exactly once: before and after a fold, and after a crash that
        // lost the fold (the ids are then only in the runs).
        let again = |s: &SqliteStore, i: usize| {
            let m = NewMessage { payload: &payloads[i], ..msg(g, sender(i), 2, &ids[i], MessageKind::Application) };
            let a = s.append(&m, 0).unwrap();
            assert!(a.duplicate, "message {i} is known");
            assert_eq!(a.seq, seq_of(i));
        };
        again(&s, 10);
        s.stats().unwrap();
        again(&s, 11);
        drop(s);
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("DELETE FROM sent_ids", []).unwrap();
        drop(raw);
        let s = SqliteStore::open(&path).unwrap();
        again(&s, 12);
        again(&s, 55);

        // Half of the first run read by everyone: it stays, and what was
        // read is not handed out again.
        s.ack(g, &alice, 62).unwrap();
        s.ack(g, &bob, 30).unwrap();
        s.stats().unwrap();
        let rest = s.fetch(g, &bob, 0, 500).unwrap();
        assert_eq!(rest.first().map(|d| d.seq), Some(31));
        assert_eq!(rest.len(), 32);
        assert!(count(&s, "SELECT count(*) FROM messages WHERE kind = 3 AND seq <= 30") >= 1, "the run is kept");
        s.ack(g, &bob, 62).unwrap();
        assert_eq!(s.stats().unwrap().messages, 0, "all read: all gone");
    }

    /// Large messages close a run at its size bound; a gap closes it too.
    #[test]
    fn runs_close_at_a_gap_and_at_their_size() {
        fn entry<'a>(seq: u64, sender: &'a sotto_proto::DeviceRef, payload: &'a [u8]) -> super::RunEntry<'a> {
            super::RunEntry { seq, epoch: 0, sender, stored_at: 0, client_id: b"id", payload }
        }
        let alice = dev("alice");
        let (big, small) = (vec![0u8; 100 * 1024], b"small".to_vec());
        let mut runs = super::Runs::default();
        for seq in 1..=5 {
            runs.push(b"g", entry(seq, &alice, &big));
        }
        runs.push(b"g", entry(7, &alice, &small));
        runs.push(b"g", entry(8, &alice, &small));
        let mut sizes: Vec<usize> = runs.closed.iter().map(|(_, r)| r.len()).collect();
        sizes.extend(runs.open.values().map(|(r, _)| r.len()));
        // 100 KiB each: two fit in 256 KiB, the third starts a new run;
        // the gap at 6 closes the last big one.
        assert_eq!(sizes, vec![2, 2, 1, 2]);
    }

    /// What a batch, an acknowledgement or a read does, in a random mix.
    #[derive(Debug, Clone)]
    enum Op {
        /// Appends together: (sender is bob, is a commit) each.
        Batch(Vec<(bool, bool)>),
        /// A reader (bob or alice) acknowledges up to this share of the log.
        Ack(bool, u8),
        /// A reader reads from this share of the log, at most this many.
        Fetch(bool, u8, u16),
        /// The writer folds (deleting what everyone read).
        Fold,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec((any::<bool>(), proptest::bool::weighted(0.05)), 1..40).prop_map(Op::Batch),
            (any::<bool>(), 0u8..=100).prop_map(|(r, p)| Op::Ack(r, p)),
            (any::<bool>(), 0u8..=100, 1u16..=500).prop_map(|(r, p, l)| Op::Fetch(r, p, l)),
            Just(Op::Fold),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever the mix of batches (with commits in them), reads and
        /// acknowledgements, a reader gets exactly the messages after where
        /// it asks from and after what everyone has read, in order, each
        /// with its own sender, epoch and bytes: runs or plain rows alike.
        #[test]
        fn reads_match_the_log_whatever_the_batches(ops in proptest::collection::vec(op(), 1..30)) {
            let (alice, bob) = (dev("alice"), dev("bob"));
            let g: &[u8] = b"group-prop";
            let s = SqliteStore::open_in_memory().unwrap();
            register(&s, "alice");
            register(&s, "bob");
            s.create_group(g, &alice, 0).unwrap();
            let added = [bob.clone()];
            let add = NewMessage { added: &added, welcome: Some(b"w"), ..msg(g, &alice, 0, b"c0", MessageKind::Commit) };
            s.append(&add, 0).unwrap();
            s.ack_welcome(&bob, s.welcomes(&bob).unwrap()[0].id).unwrap();
            // The model: (seq, bob sent it, epoch, kind, payload); alice
            // read nothing yet, bob joined after seq 1.
            let mut log: Vec<(u64, bool, u64, MessageKind, Vec<u8>)> =
                vec![(1, false, 0, MessageKind::Commit, b"ciphertext".to_vec())];
            let (mut epoch, mut cursors, mut n) = (1u64, [0u64, 1u64], 0u32);
            for op in ops {
                match op {
                    Op::Batch(items) => {
                        let mut owned = Vec::new();
                        for (by_bob, commit) in items {
                            n += 1;
                            let kind = if commit { MessageKind::Commit } else { MessageKind::Application };
                            owned.push((by_bob, kind, epoch, format!("id{n}").into_bytes(), format!("bytes {n}").into_bytes()));
                            if commit {
                                epoch += 1;
                            }
                        }
                        let batch: Vec<NewMessage<'_>> = owned
                            .iter()
                            .map(|(by_bob, kind, e, id, payload)| NewMessage {
                                payload,
                                ..msg(g, if *by_bob { &bob } else { &alice }, *e, id, *kind)
                            })
                            .collect();
                        let appended = append_together(&s, &batch);
                        for ((by_bob, kind, e, _, payload), a) in owned.into_iter().zip(appended) {
                            let seq = log.last().map(|l| l.0).unwrap_or(0) + 1;
                            proptest::prop_assert_eq!(a.seq, seq);
                            log.push((seq, by_bob, e, kind, payload));
                        }
                    }
                    Op::Ack(by_bob, share) => {
                        let last = log.last().map(|l| l.0).unwrap_or(0);
                        let to = last * share as u64 / 100;
                        let who = usize::from(by_bob);
                        if to > cursors[who] {
                            s.ack(g, if by_bob { &bob } else { &alice }, to).unwrap();
                            cursors[who] = to;
                        }
                    }
                    Op::Fetch(by_bob, share, limit) => {
                        let last = log.last().map(|l| l.0).unwrap_or(0);
                        let after = last * share as u64 / 100;
                        let joined = if by_bob { 1 } else { 0 };
                        let floor = after.max(joined).max(cursors[0].min(cursors[1]));
                        let want: Vec<_> = log.iter().filter(|l| l.0 > floor).take(limit as usize).collect();
                        let got = s.fetch(g, if by_bob { &bob } else { &alice }, after, limit as u32).unwrap();
                        proptest::prop_assert_eq!(got.len(), want.len());
                        for (d, w) in got.iter().zip(want) {
                            proptest::prop_assert_eq!(d.seq, w.0);
                            proptest::prop_assert_eq!(&d.sender, if w.1 { &bob } else { &alice });
                            proptest::prop_assert_eq!((d.epoch, d.kind), (w.2, w.3));
                            proptest::prop_assert_eq!(&d.payload, &w.4);
                        }
                    }
                    Op::Fold => {
                        // A run that everyone read part of is kept, and
                        // counted, whole until its last entry is read.
                        let left = s.stats().unwrap().messages;
                        let read_by_all = cursors[0].min(cursors[1]);
                        let unread = log.iter().filter(|l| l.0 > read_by_all).count() as u64;
                        proptest::prop_assert!(left >= unread && left <= log.len() as u64, "{left} left, {unread} unread");
                    }
                }
            }
        }
    }
}
