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
use std::sync::{mpsc, Mutex};

use super::writer::{Job, Outcome};
use crate::store::StoreError;

/// The database's write-ahead log, to sync.
pub(super) struct WalSync {
    db: PathBuf,
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl WalSync {
    /// The log of the database at `db` (SQLite names it `<db>-wal`).
    pub(super) fn new(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        Self { db: db.to_owned(), path: PathBuf::from(name), file: Mutex::new(None) }
    }

    /// Everything committed so far is on disk when this returns `Ok`.
    pub(super) fn sync(&self) -> std::io::Result<()> {
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
        match file.as_ref() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// A committed batch waiting for its answers.
pub(super) type Committed = (Vec<Job>, Vec<Outcome>);

/// The syncer thread: one `fdatasync` for all batches committed since the
/// last, then their answers. A failed sync answers every job of those
/// batches with an error: the client sends again, and the store knows the
/// message by its client id (so it is stored once).
pub(super) fn syncer(wal: std::sync::Arc<WalSync>, committed: mpsc::Receiver<Committed>, synced: mpsc::SyncSender<()>) {
    while let Ok(first) = committed.recv() {
        let mut ready = vec![first];
        while let Ok(more) = committed.try_recv() {
            ready.push(more);
        }
        let result = wal.sync();
        // Wakes the checkpointer (a wake-up already waiting is enough).
        let _ = synced.try_send(());
        let synced = result;
        if let Err(e) = &synced {
            tracing::error!(error = %e, "the store could not sync its log to disk; the messages are refused for now");
        }
        for (jobs, outcomes) in ready {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                match &synced {
                    Ok(()) => job.reply(outcome),
                    Err(e) => job.reply(Outcome::failed(StoreError::Backend(format!("could not sync to disk: {e}")))),
                }
            }
        }
    }
}

/// The log's size past which the checkpointer folds it into the database.
const CHECKPOINT_AT_BYTES: u64 = 4 << 20;

/// At most one look at the log's size (and checkpoint) per this time.
const CHECKPOINT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Checkpoints on a connection of their own, beside the writer: SQLite's
/// automatic checkpoint ran inside whichever commit crossed the threshold,
/// and that commit (and every append queued behind it) waited for the
/// database file to be written and synced (issue 22: with this thread the
/// relay went from 48,700 to 56,000 msgs/s unpinned, p90 at 10,000 msgs/s
/// from 4.2-4.9 to 2.5 ms). A passive checkpoint never blocks the writer,
/// but it cannot empty a log the writer keeps adding to, so the writer's
/// own automatic checkpoint stays at 16 MiB: it bounds the log (at most
/// 36 MB under full load, measured; at 64 MiB the relay did 7 % more and
/// the log reached 104 MB, a poor trade on a small box).
pub(super) fn checkpointer(db: PathBuf, synced: mpsc::Receiver<()>) {
    let wal = WalSync::new(&db).path;
    let conn = match rusqlite::Connection::open(&db) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no checkpointer; the writer checkpoints by itself");
            return;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    // Woken by the syncer after its syncs (nothing written, no wake-up: an
    // idle server uses no CPU); ends when the syncer does.
    while synced.recv().is_ok() {
        let started = std::time::Instant::now();
        let big = std::fs::metadata(&wal).map(|m| m.len() >= CHECKPOINT_AT_BYTES).unwrap_or(false);
        if big {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "a checkpoint did not run; the next try comes shortly");
            }
        }
        std::thread::sleep(CHECKPOINT_POLL.saturating_sub(started.elapsed()));
    }
}
