//! Counters for operators, exposed as Prometheus text on a separate listen
//! address. Plain atomics: nothing on the hot path takes a lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use sotto_proto::ErrorCode;

use crate::store::stage_timings::{HistogramSnapshot, BOUNDS_MICROS, STAGES};

/// The server's counters and gauges.
#[derive(Default)]
pub struct Metrics {
    /// TCP connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections refused at accept (per-address or total cap).
    pub connections_refused: AtomicU64,
    /// Connections open now (any stage).
    pub connections_open: AtomicU64,
    /// Log entries appended (messages and commits).
    pub messages_in: AtomicU64,
    /// Deliveries pushed to devices.
    pub messages_out: AtomicU64,
    /// WebSocket bytes received.
    pub bytes_in: AtomicU64,
    /// WebSocket bytes sent.
    pub bytes_out: AtomicU64,
    /// Store calls and their total duration.
    pub store_calls: AtomicU64,
    /// Total store time, microseconds.
    pub store_micros: AtomicU64,
    rejected: [AtomicU64; ErrorCode::ALL.len()],
}

impl Metrics {
    /// Counts a request refused with `code`.
    pub fn rejected(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many requests were refused with `code` so far.
    pub fn rejected_count(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL.iter().position(|c| *c == code).map(|i| self.rejected[i].load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Records one store call's duration.
    pub fn store_time(&self, d: std::time::Duration) {
        self.store_calls.fetch_add(1, Ordering::Relaxed);
        self.store_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition, with the gauges the caller knows and the
    /// store's stage timings when it keeps them.
    pub fn render(
        &self,
        authenticated: usize,
        stats: &crate::store::StoreStats,
        stages: Option<&[HistogramSnapshot]>,
    ) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP sotto_{name} {help}\n# TYPE sotto_{name} {kind}\nsotto_{name} {value}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        metric("connections_accepted_total", "counter", "TCP connections accepted.", get(&self.connections_accepted));
        metric(
            "connections_refused_total",
            "counter",
            "Connections refused by a connection limit.",
            get(&self.connections_refused),
        );
        metric("connections_open", "gauge", "Connections open now.", get(&self.connections_open));
        metric("devices_authenticated", "gauge", "Logged-in connections.", authenticated as u64);
        metric("messages_in_total", "counter", "Messages and commits appended.", get(&self.messages_in));
        metric("messages_out_total", "counter", "Deliveries pushed to devices.", get(&self.messages_out));
        metric("bytes_in_total", "counter", "WebSocket bytes received.", get(&self.bytes_in));
        metric("bytes_out_total", "counter", "WebSocket bytes sent.", get(&self.bytes_out));
        metric("store_calls_total", "counter", "Store calls.", get(&self.store_calls));
        metric("store_seconds_total", "counter", "Time spent in the store, seconds (x1e-6).", get(&self.store_micros));
        metric("stored_messages", "gauge", "Messages waiting for at least one device.", stats.messages);
        metric("stored_welcomes", "gauge", "Welcomes waiting.", stats.welcomes);
        metric("accounts", "gauge", "Registered accounts.", stats.accounts);
        metric("groups", "gauge", "Groups.", stats.groups);
        metric("blobs", "gauge", "Files stored.", stats.blobs);
        metric("blob_bytes", "gauge", "Bytes of files stored.", stats.blob_bytes);
        let _ = writeln!(
            out,
            "# HELP sotto_rejected_total Requests refused, by error code.\n# TYPE sotto_rejected_total counter"
        );
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let name = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let _ =
                writeln!(out, "sotto_rejected_total{{code=\"{name}\"}} {}", self.rejected[i].load(Ordering::Relaxed));
        }
        if let Some(stages) = stages {
            render_stages(&mut out, stages);
        }
        out
    }
}

/// The store's stage timings as one Prometheus histogram, by stage.
fn render_stages(out: &mut String, stages: &[HistogramSnapshot]) {
    let help: Vec<String> = STAGES.iter().map(|(name, what)| format!("{name}: {what}")).collect();
    let _ = writeln!(
        out,
        "# HELP sotto_store_stage_seconds Time a write spent in each stage of the store ({}).\n\
         # TYPE sotto_store_stage_seconds histogram",
        help.join("; ")
    );
    for ((name, _), h) in STAGES.iter().zip(stages) {
        let mut cumulative = 0;
        for (bound, n) in BOUNDS_MICROS.iter().zip(&h.buckets) {
            cumulative += n;
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "sotto_store_stage_seconds_bucket{{stage=\"{name}\",le=\"{le}\"}} {cumulative}");
        }
        let count = h.count();
        let _ = writeln!(out, "sotto_store_stage_seconds_bucket{{stage=\"{name}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "sotto_store_stage_seconds_sum{{stage=\"{name}\"}} {}", h.sum_micros as f64 / 1e6);
        let _ = writeln!(out, "sotto_store_stage_seconds_count{{stage=\"{name}\"}} {count}");
    }
}
