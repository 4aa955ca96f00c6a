//! The work the writer takes (`writer.rs`) and what each job came to.

use std::time::Instant;

use sotto_proto::DeviceRef;

use crate::store::{Appended, StoreError, StoreResult};

/// Work waiting for the writer.
pub(super) enum Job {
    /// An append.
    Append {
        msg: crate::store::queued::OwnedMessage,
        now: i64,
        reply: tokio::sync::oneshot::Sender<StoreResult<Appended>>,
        /// When it was queued (`StageTimings`).
        queued: Instant,
    },
    /// A device read a group up to `seq`.
    Ack {
        group_id: Vec<u8>,
        device: DeviceRef,
        seq: u64,
        reply: tokio::sync::oneshot::Sender<StoreResult<()>>,
        queued: Instant,
    },
    /// Fold what the writer holds (`pending.rs`) now, before counting.
    Fold { reply: std::sync::mpsc::SyncSender<StoreResult<()>> },
}

/// What a job came to.
pub(super) enum Outcome {
    Appended(StoreResult<Appended>),
    Acked(StoreResult<()>),
}

impl Outcome {
    pub(super) fn failed(e: StoreError) -> Self {
        // The kind does not matter for a failure: `reply` maps it back.
        Outcome::Acked(Err(e))
    }

    pub(super) fn is_backend_failure(&self) -> bool {
        matches!(self, Outcome::Appended(Err(StoreError::Backend(_))) | Outcome::Acked(Err(StoreError::Backend(_))))
    }
}

impl Job {
    /// When it was queued (a fold: now, it is not timed).
    pub(super) fn queued(&self) -> Instant {
        match self {
            Job::Append { queued, .. } | Job::Ack { queued, .. } => *queued,
            Job::Fold { .. } => Instant::now(),
        }
    }

    pub(super) fn reply(self, outcome: Outcome) {
        let err = |o: Outcome| match o {
            Outcome::Appended(Err(e)) | Outcome::Acked(Err(e)) => e,
            _ => StoreError::Backend("the store writer mixed up its answers".into()),
        };
        match (self, outcome) {
            (Job::Append { reply, .. }, Outcome::Appended(r)) => drop(reply.send(r)),
            (Job::Append { reply, .. }, o) => drop(reply.send(Err(err(o)))),
            (Job::Ack { reply, .. }, Outcome::Acked(r)) => drop(reply.send(r)),
            (Job::Ack { reply, .. }, o) => drop(reply.send(Err(err(o)))),
            // Answered by the writer loop itself, never in a batch.
            (Job::Fold { reply }, o) => drop(reply.send(Err(err(o)))),
        }
    }
}
