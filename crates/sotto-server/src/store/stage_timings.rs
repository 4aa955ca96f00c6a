//! How long a write spends in each stage of the store, for operators
//! (`/metrics`) and for the benchmark (`sotto-bench relay` prints the
//! quantiles). A slow disk shows up here first: a message is answered only
//! once it is on disk, so when its latency grows, the stage that grew says
//! whether the writer was busy (queue), SQLite was slow (commit) or the
//! disk was (sync).
//!
//! Fixed buckets and plain atomics: recording costs a few nanoseconds and
//! takes no lock, on the writer's thread as on the syncer's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, microseconds (the last bucket is open).
pub const BOUNDS_MICROS: [u64; 18] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000,
];

/// One stage's durations.
pub struct Histogram {
    /// Observations per bucket ([`BOUNDS_MICROS`], then one for the rest).
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_micros: AtomicU64::new(0) }
    }
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|&b| b < micros);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative): one per bound of
    /// [`BOUNDS_MICROS`], then the open last one.
    pub buckets: Vec<u64>,
    /// Their durations added up, microseconds.
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound of the bucket that holds quantile `q` (0..=1): the
    /// true value is at most this. `None` when nothing was observed, or
    /// when it lies in the open last bucket (over a second).
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BOUNDS_MICROS.get(i).map(|&b| Duration::from_micros(b));
            }
        }
        None
    }
}

/// The stages of a write through the SQLite store.
#[derive(Default)]
pub struct StageTimings {
    /// From queueing a job to the writer starting the batch that holds it.
    pub queue: Histogram,
    /// One batch's transaction, waiting for the connection included.
    pub commit: Histogram,
    /// From a batch's commit to the start of the sync that covers it.
    pub sync_wait: Histogram,
    /// One `fdatasync` of the log.
    pub sync: Histogram,
    /// From queueing an append to its answer being ready (on disk).
    pub durable: Histogram,
}

/// Names and help for `/metrics`, in the order of [`StageTimings::snapshot`].
pub const STAGES: [(&str, &str); 5] = [
    ("queue", "waiting for the writer (per job)"),
    ("commit", "one batch's transaction (per batch)"),
    ("sync_wait", "from a commit to the sync that covers it (per batch)"),
    ("sync", "one fdatasync of the log (per sync)"),
    ("durable", "from queueing an append to its answer, on disk (per append)"),
];

impl StageTimings {
    /// Every stage's counts, in the order of [`STAGES`].
    pub fn snapshot(&self) -> Vec<HistogramSnapshot> {
        [&self.queue, &self.commit, &self.sync_wait, &self.sync, &self.durable].iter().map(|h| h.snapshot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets_and_quantiles_are_bounds() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile_bound(0.5), None, "nothing observed");
        for _ in 0..98 {
            h.observe(Duration::from_micros(120)); // in (100, 200]
        }
        h.observe(Duration::from_micros(50)); // exactly a bound: that bucket
        h.observe(Duration::from_secs(3)); // past the last bound
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[2], 98);
        assert_eq!(s.buckets[BOUNDS_MICROS.len()], 1);
        assert_eq!(s.sum_micros, 98 * 120 + 50 + 3_000_000);
        assert_eq!(s.quantile_bound(0.0), Some(Duration::from_micros(50)));
        assert_eq!(s.quantile_bound(0.5), Some(Duration::from_micros(200)));
        assert_eq!(s.quantile_bound(0.99), Some(Duration::from_micros(200)));
        assert_eq!(s.quantile_bound(1.0), None, "the slowest is over a second: no bound to give");
    }
}
