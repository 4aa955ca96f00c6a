//! The SQLite store's single writer: appends and acknowledgements queued by
//! every session are committed together (group commit), in the order they
//! were queued. An acknowledgement is as durable as before (its cursor is
//! on disk before the device hears "done"), but it shares the batch's one
//! fsync instead of paying its own while holding the connection.

use std::time::Instant;

use super::append::{append_in, Ids};
use super::durability::{WalSync, LOG_FAILED};
use super::id_filter::IdFilter;
use super::job::{Job, Outcome};
use super::pending::{Pending, FOLD_GROUPS};
use super::runs::Runs;
#[allow(unused_imports)]
use super::*;
use crate::store::stage_timings::StageTimings;

/// Most yields of the writer before one commit (see `writer`): enough for
/// a burst to be queued, few enough that a steady trickle of jobs cannot
/// hold a commit back for long.
const MAX_YIELDS: usize = 16;

/// Most appends committed together.
pub(super) const MAX_BATCH: usize = 1024;

/// Who is in each group, as the writer last read it: an application
/// message (nearly every append) needs the member list twice, to check the
/// sender and to know whom to wake, and it only changes with a commit. The
/// writer owns this; it is dropped whenever membership may have changed
/// outside the writer (`changes` moved on) or a batch was rolled back, and
/// per group after each of its commits.
#[derive(Default)]
pub(super) struct MembersCache {
    seen_changes: u64,
    pub(super) groups: HashMap<Vec<u8>, Arc<[DeviceRef]>>,
}

/// Within one batch, each group's (epoch, last sequence number) as the
/// batch's appends move them; written back once per group at the end of the
/// batch instead of one UPDATE per message.
pub(super) type GroupHeads = HashMap<Vec<u8>, (u64, u64)>;

impl MembersCache {
    pub(super) fn get(&mut self, tx: &Connection, group_id: &[u8]) -> StoreResult<Arc<[DeviceRef]>> {
        if let Some(m) = self.groups.get(group_id) {
            return Ok(m.clone());
        }
        let m: Arc<[DeviceRef]> = members_of(tx, group_id)?.into();
        self.groups.insert(group_id.to_vec(), m.clone());
        Ok(m)
    }
}

/// The writer thread. With `durable` (a database on disk), each committed
/// batch goes to the syncer, which answers it once it is on disk
/// (`durability.rs`); without (in memory), it is answered at once.
pub(super) fn writer(
    conn: Arc<Mutex<Connection>>,
    jobs: mpsc::Receiver<Job>,
    changes: Arc<AtomicU64>,
    durable: Option<(mpsc::Sender<super::durability::Committed>, Arc<WalSync>)>,
    timings: Arc<StageTimings>,
    known: IdFilter,
) {
    let mut cache = MembersCache::default();
    let mut pending = Pending::with_known(known);
    // A job taken while a fold was under way: the next batch starts with it.
    let mut carried: Option<Job> = None;
    // SQLite's own checkpoint, turned off once a sync failed.
    let mut checkpoints_off = false;
    loop {
        // After a failed sync nothing more goes into the log, which may
        // have a hole (`durability.rs`): no batch, no fold, and no
        // checkpoint by SQLite inside a commit made outside the writer.
        let failed = durable.as_ref().is_some_and(|(_, log)| log.has_failed());
        if failed && !checkpoints_off {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            checkpoints_off = conn.execute_batch("PRAGMA wal_autocheckpoint=0;").is_ok();
        }
        // With ids or reclaims waiting, wake up to fold them even if no
        // work comes (`pending.rs`).
        let first = match (carried.take(), pending.wait().filter(|_| !failed)) {
            (Some(job), _) => Some(job),
            (None, None) => jobs.recv().ok(),
            (None, Some(wait)) => match jobs.recv_timeout(wait) {
                Ok(j) => Some(j),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A failure is logged inside and retried later.
                    let _ = fold(&conn, &mut pending, Some((&jobs, &mut carried)));
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        let mut batch = Vec::new();
        let mut folds = Vec::new();
        let mut next = Some(first);
        let mut yields = 0;
        while let Some(job) = next.take() {
            match job {
                Job::Fold { reply } => folds.push(reply),
                job => batch.push(job),
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
                if next.is_none() && yields < MAX_YIELDS {
                    // Before committing what came so far, let the sessions
                    // queue the rest of what they are decoding: woken by the
                    // first message of a burst on a busy core, the writer
                    // used to commit it alone and the rest in a second
                    // commit and sync. Yielding while that brings more (at
                    // no cost when the core is otherwise idle) took p99 at
                    // 10,000 msgs/s on one core from 5.6-9.2 to 4.3-5.1 ms
                    // and the server's CPU down by up to 8 points; full
                    // speed did not move (docs/performance.md).
                    std::thread::yield_now();
                    yields += 1;
                    next = jobs.try_recv().ok();
                }
            }
        }
        // Checked again: the sync may have failed while this waited.
        let failed = durable.as_ref().is_some_and(|(_, log)| log.has_failed());
        if failed {
            for job in batch {
                job.reply(Outcome::failed(StoreError::Backend(LOG_FAILED.into())));
            }
            for reply in folds {
                let _ = reply.send(Err(StoreError::Backend(LOG_FAILED.into())));
            }
            continue;
        }
        if !batch.is_empty() {
            let started = Instant::now();
            for job in &batch {
                timings.queue.observe(started.saturating_duration_since(job.queued()));
            }
            let results = {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                // Read under the connection lock, which every membership
                // change also holds: nothing can change between this and
                // the batch.
                let now_changes = changes.load(Ordering::SeqCst);
                if now_changes != cache.seen_changes {
                    cache = MembersCache { seen_changes: now_changes, ..Default::default() };
                }
                commit_batch(&mut conn, &batch, &mut cache, &mut pending)
            };
            let committed = Instant::now();
            timings.commit.observe(committed - started);
            match &durable {
                Some((syncer, _)) => {
                    if let Err(mpsc::SendError((batch, _, _))) = syncer.send((batch, results, committed)) {
                        for job in batch {
                            job.reply(Outcome::failed(StoreError::Backend("the store's syncer stopped".into())));
                        }
                    }
                }
                None => {
                    for (job, r) in batch.into_iter().zip(results) {
                        if matches!(job, Job::Append { .. }) {
                            timings.durable.observe(committed.saturating_duration_since(job.queued()));
                        }
                        job.reply(r);
                    }
                }
            }
        }
        if !folds.is_empty() || pending.due() {
            // Asked for (by `stats`): all of it now; otherwise a few
            // groups at a time, yielding to queued work.
            let yield_to = if folds.is_empty() { Some((&jobs, &mut carried)) } else { None };
            let r = fold(&conn, &mut pending, yield_to);
            for reply in folds {
                let _ = reply.send(match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::Backend(e.to_string())),
                });
            }
        }
    }
    // The last ids and reclaims on the way out (they are safe without: the
    // next open recovers them).
    let _ = fold(&conn, &mut pending, None);
}

/// Folds, a few groups per transaction, each under the connection lock.
/// With `yield_to`, stops as soon as a job is queued (it is carried to the
/// next batch; the rest of the fold comes after that batch). A failure is
/// logged and retried at the next fold (nothing is forgotten).
fn fold(
    conn: &Mutex<Connection>,
    pending: &mut Pending,
    mut yield_to: Option<(&mpsc::Receiver<Job>, &mut Option<Job>)>,
) -> StoreResult<()> {
    pending.forget_purged();
    while !pending.is_empty() {
        let r = {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            pending.fold_some(&mut conn, FOLD_GROUPS)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "the store could not fold its recent ids; it tries again shortly");
            return Err(e);
        }
        if let Some((jobs, carried)) = yield_to.as_mut() {
            if let Ok(job) = jobs.try_recv() {
                **carried = Some(job);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Commits a batch of jobs in one transaction. Nobody hears "stored" (or
/// "done") before the commit. A refused job writes nothing (see
/// [`append_in`], [`ack_in`]), so the batch runs straight through; only if
/// a write fails is it rolled back and run again with a savepoint around
/// each job, so that one failing job cannot take the others down with it.
pub(super) fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    cache: &mut MembersCache,
    pending: &mut Pending,
) -> Vec<Outcome> {
    if let Some(results) = commit_straight(conn, batch, cache, pending) {
        pending.batch_committed();
        return results;
    }
    pending.batch_rolled_back();
    // Whatever the failed batch read may not be true any more.
    cache.groups.clear();
    commit_isolated(conn, batch, pending)
}

/// The fast path: `None` when a write failed and nothing was committed.
pub(super) fn commit_straight(
    conn: &mut Connection,
    batch: &[Job],
    cache: &mut MembersCache,
    pending: &mut Pending,
) -> Option<Vec<Outcome>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ok()?;
    let mut results = Vec::with_capacity(batch.len());
    let mut heads = GroupHeads::new();
    let mut runs = Runs::default();
    for job in batch {
        let outcome = match job {
            Job::Append { msg, now, .. } => Outcome::Appended(append_in(
                &tx,
                &msg.view(),
                *now,
                Some((&mut *cache, &mut heads, &mut runs)),
                Ids::Deferred(&mut *pending),
            )),
            Job::Ack { group_id, device, seq, .. } => {
                let last_seq = heads.get(group_id).map(|h| h.1);
                let r = ack_in(&tx, group_id, device, *seq, last_seq);
                if let Ok(moved) = &r {
                    if moved.membership_changed {
                        cache.groups.remove(group_id);
                    }
                    // What every reader read goes at the next fold.
                    if moved.cursor_moved {
                        pending.reclaim(group_id);
                    }
                }
                Outcome::Acked(r.map(drop))
            }
            Job::Fold { .. } => Outcome::failed(StoreError::Backend("a fold is not part of a batch".into())),
        };
        // Dropping the transaction rolls it back.
        if outcome.is_backend_failure() {
            return None;
        }
        results.push(outcome);
    }
    runs.write(&tx).ok()?;
    for (group_id, (epoch, last_seq)) in &heads {
        tx.exec("UPDATE groups SET epoch=?, last_seq=? WHERE group_id=?", params![epoch, last_seq, group_id]).ok()?;
    }
    tx.commit().ok()?;
    Some(results)
}

/// Each job in its own savepoint (a failed one leaves no trace), all
/// committed at once.
pub(super) fn commit_isolated(conn: &mut Connection, batch: &[Job], pending: &mut Pending) -> Vec<Outcome> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            return batch.iter().map(|_| Outcome::failed(StoreError::Backend(msg.clone()))).collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let started = tx.exec("SAVEPOINT one", []).map_err(backend);
        let outcome = match job {
            Job::Append { msg, now, .. } => Outcome::Appended(
                started.and_then(|_| append_in(&tx, &msg.view(), *now, None, Ids::Direct(&mut *pending))),
            ),
            Job::Ack { group_id, device, seq, .. } => Outcome::Acked(started.and_then(|_| {
                let moved = ack_in(&tx, group_id, device, *seq, None)?;
                if moved.cursor_moved {
                    pending.reclaim(group_id);
                }
                Ok(())
            })),
            Job::Fold { .. } => Outcome::failed(StoreError::Backend("a fold is not part of a batch".into())),
        };
        let ok = matches!(outcome, Outcome::Appended(Ok(_)) | Outcome::Acked(Ok(_)));
        let undo = if ok { Ok(0) } else { tx.exec("ROLLBACK TO one", []) };
        let released = undo.and_then(|_| tx.exec("RELEASE one", [])).map_err(backend);
        results.push(match (released, outcome) {
            (Err(e), _) => Outcome::failed(e),
            (Ok(_), o) => o,
        });
    }
    if let Err(e) = tx.commit() {
        let msg = e.to_string();
        return results.into_iter().map(|_| Outcome::failed(StoreError::Backend(msg.clone()))).collect();
    }
    results
}

/// What an acknowledgement changed.
pub(super) struct AckMoved {
    /// The reader's cursor moved forward (something may be reclaimable).
    pub(super) cursor_moved: bool,
    /// A removed device read its removal and is gone from the group.
    pub(super) membership_changed: bool,
}

/// One acknowledgement inside an open transaction. `last_seq` is the
/// group's head as this batch moved it (the `groups` row is written at the
/// batch's end). Every check comes before the one write.
pub(super) fn ack_in(
    tx: &Connection,
    group_id: &[u8],
    device: &DeviceRef,
    seq: u64,
    last_seq: Option<u64>,
) -> StoreResult<AckMoved> {
    let last_seq = match last_seq {
        Some(s) => s,
        None => group_row(tx, group_id)?.ok_or(StoreError::UnknownGroup)?.1,
    };
    let (_, cursor, until) = reader_row(tx, group_id, device)?.ok_or(StoreError::NotMember)?;
    if until.is_some_and(|until| seq >= until) {
        // A removed device has read its removal: it is gone.
        tx.exec(
            "DELETE FROM members WHERE group_id=? AND handle=? AND device_id=?",
            params![group_id, device.handle, device.device_id],
        )
        .map_err(backend)?;
        return Ok(AckMoved { cursor_moved: true, membership_changed: true });
    }
    // Cursors only move forward, and never past the end of the log.
    let new = seq.min(last_seq);
    if new <= cursor {
        return Ok(AckMoved { cursor_moved: false, membership_changed: false });
    }
    tx.exec(
        "UPDATE members SET cursor=? WHERE group_id=? AND handle=? AND device_id=?",
        params![new, group_id, device.handle, device.device_id],
    )
    .map_err(backend)?;
    Ok(AckMoved { cursor_moved: true, membership_changed: false })
}
