//! Making commits durable beside the writer instead of inside it.
//!
//! With `synchronous=FULL` every commit waited for its fsync while holding
//! the one connection, so the writer stood idle for the disk, and the
//! clients waiting for "stored" stopped sending meanwhile: the relay's rate
//! followed the disk's fsync time (issue 22). Now the connection runs with
//! `synchronous=NORMAL` (a commit writes the write-ahead log without
//! syncing it) and durability is ours: nobody hears "stored" or "done"
//! before an `fdatasync` of the log that began after their commit ended.
//! SQLite recovers every transaction whose frames are in the synced log
//! (checkpoints still sync the log before copying it and the database
//! after), so that promise is the one FULL gave. The writer hands each
//! committed batch to the syncer thread and goes on with the next batch
//! while the disk works; the syncer makes one `fdatasync` for every batch
//! that queued up meanwhile, then answers them all.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use super::job::{Job, Outcome};
use crate::store::stage_timings::StageTimings;
use crate::store::StoreError;

/// The database's write-ahead log, to sync.
pub(super) struct WalSync {
    db: PathBuf,
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// A sync failed: see [`WalSync::sync`].
    failed: AtomicBool,
}

impl WalSync {
    /// The log of the database at `db` (SQLite names it `<db>-wal`).
    pub(super) fn new(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        Self { db: db.to_owned(), path: PathBuf::from(name), file: Mutex::new(None), failed: AtomicBool::new(false) }
    }

    /// Everything committed so far is on disk when this returns `Ok`.
    ///
    /// Once a sync has failed, every later one fails too, until the server
    /// restarts. After a failed `fdatasync` Linux forgets the pages it
    /// could not write and reports the error once: the next sync would
    /// succeed over a log with a hole in it, and SQLite's recovery stops at
    /// the hole, so whatever was acknowledged after it would be lost. A
    /// restart recovers the log up to the hole, which holds everything
    /// acknowledged before the failure; clients send the rest again.
    pub(super) fn sync(&self) -> std::io::Result<()> {
        if self.has_failed() {
            return Err(std::io::Error::other(LOG_FAILED));
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            // The log exists from the first write on; it is emptied by
            // checkpoints, never replaced while the store is open.
            *file = Some(match File::open(&self.path) {
                Ok(f) => f,
                // No log (a file system where SQLite could not keep one and
                // fell back to its rollback journal): the database itself.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::open(&self.db)?,
                Err(e) => return Err(e),
            });
        }
        let synced = match file.as_ref() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        };
        if let Err(e) = &synced {
            if !self.failed.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    error = %e,
                    "the disk failed to store the message log; to lose nothing already acknowledged, the server \
                     accepts no more writes: check the disk, then restart the server"
                );
            }
        }
        synced
    }

    /// Whether a sync has failed since the store opened.
    pub(super) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Why nothing is written once a sync has failed ([`WalSync::sync`]).
pub(super) const LOG_FAILED: &str =
    "an earlier sync of the log failed, so nothing more is accepted until the server restarts";

/// A committed batch waiting for its answers, and when it was committed.
pub(super) type Committed = (Vec<Job>, Vec<Outcome>, Instant);

/// The syncer thread: one `fdatasync` for all batches committed since the
/// last, then their answers. A failed sync answers every job of those
/// batches with an error: the client sends again, and the store knows the
/// message by its client id (so it is stored once).
pub(super) fn syncer(
    wal: Arc<WalSync>,
    committed: mpsc::Receiver<Committed>,
    synced: mpsc::SyncSender<()>,
    timings: Arc<StageTimings>,
) {
    while let Ok(first) = committed.recv() {
        let mut ready = vec![first];
        while let Ok(more) = committed.try_recv() {
            ready.push(more);
        }
        let started = Instant::now();
        let result = wal.sync();
        let done = Instant::now();
        timings.sync.observe(done - started);
        // Wakes the checkpointer (a wake-up already waiting is enough).
        let _ = synced.try_send(());
        let synced = result;
        for (jobs, outcomes, at) in ready {
            timings.sync_wait.observe(started.saturating_duration_since(at));
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                if matches!(job, Job::Append { .. }) {
                    timings.durable.observe(done.saturating_duration_since(job.queued()));
                }
                match &synced {
                    Ok(()) => job.reply(outcome),
                    Err(e) => job.reply(Outcome::failed(StoreError::Backend(format!("could not sync to disk: {e}")))),
                }
            }
        }
    }
}

/// At most one checkpoint per this time. Each pass copies what the writer
/// added since the last, so the shorter the wait, the less is left for the
/// one step that holds the writer ([`RESTART_AT_FRAMES`]); 20 ms rather
/// than 100 ms took p99 at 10,000 msgs/s from 8.8-9.8 to 6.7-7.8 ms
/// (docs/performance.md). An idle server is not polled: the syncer wakes
/// this thread only after it synced something.
const CHECKPOINT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The log's size below which the checkpointer leaves it alone.
const CHECKPOINT_AT_BYTES: u64 = 4 << 20;

/// Log frames (4 KiB pages) past which a checkpoint that could not copy
/// everything is finished with the writer held, so that the log starts
/// over from its beginning at the writer's next commit.
const RESTART_AT_FRAMES: u64 = 2048;

/// Checkpoints on a connection of their own, beside the writer: SQLite's
/// automatic checkpoint ran inside whichever commit crossed the threshold,
/// and that commit (and every append queued behind it) waited for the
/// database file to be written and synced (issue 22: with this thread the
/// relay went from 48,700 to 56,000 msgs/s unpinned, p90 at 10,000 msgs/s
/// from 4.2-4.9 to 2.5 ms).
///
/// A passive checkpoint never blocks the writer, but under constant
/// writing it never copies the whole log either (the writer adds frames
/// while it copies), and only a complete checkpoint lets the log start
/// over. So the writer's own checkpoint (at 16 MiB) used to be what
/// bounded the log, several times a second at 10,000 msgs/s, each one
/// copying what the passive ones had not reached and syncing the database
/// inside a commit: the commits behind it waited 2-8 ms (measured per
/// stage, docs/performance.md). Now, past [`RESTART_AT_FRAMES`], this
/// thread holds the writer's connection for a second pass, which has only
/// the last few milliseconds of frames left to copy; the writer's own
/// checkpoint stays as the bound for when this thread falls behind.
pub(super) fn checkpointer(synced: mpsc::Receiver<()>, writer: Arc<Mutex<rusqlite::Connection>>, log: Arc<WalSync>) {
    let conn = match rusqlite::Connection::open(&log.db) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no checkpointer; the writer checkpoints by itself");
            return;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    while synced.recv().is_ok() {
        let started = std::time::Instant::now();
        // After a failed sync the log may have a hole: copying it into the
        // database could spread the damage. It waits for the restart.
        if log.has_failed() {
            return;
        }
        // Below this size SQLite's own bound is far off: leave the log be
        // (as SQLite would until 4 MiB).
        let big = std::fs::metadata(&log.path).map(|m| m.len() >= CHECKPOINT_AT_BYTES).unwrap_or(false);
        if big {
            if let Err(e) = checkpoint_round(&conn, &writer, RESTART_AT_FRAMES) {
                tracing::warn!(error = %e, "a checkpoint did not run; the next try comes shortly");
            }
        }
        std::thread::sleep(CHECKPOINT_POLL.saturating_sub(started.elapsed()));
    }
}

/// How far a checkpoint got: frames in the log, frames copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogProgress {
    pub(super) frames: u64,
    pub(super) copied: u64,
}

/// One passive checkpoint on `conn`; if the log has `restart_at` frames or
/// more, a second one with `writer` held, in RESTART mode: nothing can be
/// added meanwhile, so it copies the rest, and it makes sure the writer's
/// next commit starts the log over. (A passive checkpoint that happens to
/// copy everything is not enough: a commit that began reading while it ran
/// goes on appending to the old log.) Returns how far the last pass got.
pub(super) fn checkpoint_round(
    conn: &rusqlite::Connection,
    writer: &Mutex<rusqlite::Connection>,
    restart_at: u64,
) -> rusqlite::Result<LogProgress> {
    let checkpoint = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok(LogProgress { frames: r.get::<_, i64>(1)?.max(0) as u64, copied: r.get::<_, i64>(2)?.max(0) as u64 })
        })
    };
    let first = checkpoint("PASSIVE")?;
    if first.frames < restart_at {
        return Ok(first);
    }
    // The writer's connection lock is what every write takes; nothing else
    // waits on this thread while it is held, so this cannot deadlock. A
    // reader still on the old log makes RESTART wait: not for long, with
    // the writer held; the next round tries again.
    let _held = writer.lock().unwrap_or_else(|p| p.into_inner());
    conn.busy_timeout(RESTART_PATIENCE)?;
    let second = checkpoint("RESTART");
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    second
}

/// How long the restarting pass waits for readers on the old log.
const RESTART_PATIENCE: std::time::Duration = std::time::Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;

    /// After a failed sync nothing is acknowledged any more, also if the
    /// disk seems fine again: every job is answered with an error that
    /// says to restart, and the log is not synced (or trusted) again.
    #[test]
    fn after_a_failed_sync_nothing_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        // A log the kernel cannot sync (procfs has no fsync): fdatasync
        // fails, as it does on a failing disk.
        std::os::unix::fs::symlink("/proc/self/stat", dir.path().join("t.db-wal")).unwrap();
        let wal = Arc::new(WalSync::new(&db));
        let (committed, rx) = mpsc::channel();
        let (synced, _ticks) = mpsc::sync_channel(1);
        let w = wal.clone();
        let syncer = std::thread::spawn(move || syncer(w, rx, synced, Arc::new(StageTimings::default())));
        let ack = || {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let device = sotto_proto::DeviceRef { handle: "alice".into(), device_id: 1 };
            let job = Job::Ack { group_id: b"g".to_vec(), device, seq: 1, reply, queued: Instant::now() };
            committed.send((vec![job], vec![Outcome::Acked(Ok(()))], Instant::now())).unwrap();
            answer.blocking_recv().unwrap()
        };
        let first = ack().unwrap_err().to_string();
        assert!(first.contains("could not sync to disk"), "{first}");
        assert!(wal.has_failed());
        for _ in 0..2 {
            let later = ack().unwrap_err().to_string();
            assert!(later.contains("until the server restarts"), "not synced again: {later}");
        }
        let direct = wal.sync().unwrap_err().to_string();
        assert!(direct.contains("until the server restarts"), "{direct}");
        drop(committed);
        syncer.join().unwrap();
    }

    /// Under constant writing, a round past the threshold copies the whole
    /// log, and the writer's next commit starts the log over.
    #[test]
    fn a_round_under_constant_writing_lets_the_log_start_over() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let w = rusqlite::Connection::open(&db).unwrap();
        w.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x BLOB);",
        )
        .unwrap();
        let writer = Arc::new(Mutex::new(w));
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (w2, s2, n2) = (writer.clone(), stop.clone(), commits.clone());
        let busy = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let c = w2.lock().unwrap();
                c.execute("INSERT INTO t VALUES(randomblob(3000))", []).unwrap();
                n2.fetch_add(1, Ordering::Relaxed);
            }
        });
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        // Let the log grow past the threshold while the writer keeps going.
        let restart_at = 1000;
        let mut last = LogProgress { frames: 0, copied: 0 };
        let salt = |wal: &Path| std::fs::read(wal).unwrap()[16..20].to_vec();
        let wal = WalSync::new(&db).path;
        let mut before = Vec::new();
        for _ in 0..200 {
            before = salt(&wal);
            last = checkpoint_round(&conn, &writer, restart_at).unwrap();
            if last.frames >= restart_at {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(last.frames >= restart_at, "the log grew to {} frames only", last.frames);
        assert_eq!(last.copied, last.frames, "a round past the threshold copies everything");
        // The writer's next commit starts the log over: SQLite changes the
        // log header's first salt each time it does.
        let seen = commits.load(Ordering::Relaxed);
        while commits.load(Ordering::Relaxed) < seen + 2 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        assert_ne!(salt(&wal), before, "the log started over");
    }
}
