//! `backpressure`: a receiver stops reading while its sender floods the
//! conversation. What the server must show: the other conversations'
//! latency barely moves, its memory stays bounded (wake-ups merge per group
//! and carried entries are capped, so a stuck reader costs memory per group,
//! not per message), and the stuck connection is dropped once it took no
//! bytes for the write timeout; its messages wait in the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use sotto_proto::{codec, Request, ServerAddress, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{frame, Conn};
use crate::proc::{fds, rss_kib};
use crate::relay;

/// Flood payloads are large so the stuck connection's socket buffers fill
/// quickly.
const FLOOD_PAYLOAD: usize = 16 * 1024;
const FLOOD_WINDOW: usize = 64;

pub struct BackpressureResult {
    pub quiet_p99_ms: f64,
    pub flood_p99_ms: f64,
    pub flood_sent: u64,
    pub flood_acked: u64,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// Seconds from the start of the flood until the server closed the
    /// stuck connection; `None` if it had not by `write_timeout` + 10 s
    /// after the flood.
    pub stuck_dropped_after_s: Option<f64>,
}

/// `pairs` talk at `rate` messages/s in all for `secs`, first quietly, then
/// while one more sender floods a receiver that never reads.
pub async fn run(
    address: &ServerAddress,
    pid: u32,
    pairs: usize,
    rate: u64,
    secs: u64,
    write_timeout: Duration,
) -> Result<BackpressureResult> {
    let span = Duration::from_secs(secs);
    let quiet = relay::run(relay::pairs(address, pairs, "bq").await?, span, 1024, Some(rate)).await?;
    // The server's descriptors with none of the connections below open
    // (once it has closed the quiet run's).
    let fds_without = settled_fds(pid).await;
    let talkers = relay::pairs(address, pairs, "bt").await?;
    let flood_pair = relay::pairs(address, 1, "bf").await?.remove(0);
    // Synced, then never read again (but kept open).
    let stuck = flood_pair.receiver;
    let rss_before_kib = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    // Every connection of this scenario is open now; while the talkers
    // talk, the only one the server may close is the stuck one.
    let fds_all = settled_fds(pid).await;
    let flood_start = Instant::now();
    let flood = tokio::spawn(flood(flood_pair.sender, flood_pair.group, stop.clone(), sent.clone(), acked.clone()));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut peak, mut dropped) = (0, None);
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                // Until the talkers hang up at the end of their span.
                let talking = flood_start.elapsed() + Duration::from_millis(200) < span;
                if dropped.is_none() && talking && fds(pid) < fds_all {
                    dropped = Some(flood_start.elapsed().as_secs_f64());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (peak, dropped)
        })
    };
    let busy = relay::run(talkers, span, 1024, Some(rate)).await?;
    stop.store(true, Ordering::Relaxed);
    flood.await??;
    let (rss_peak_kib, mut stuck_dropped_after_s) = sampler.await?;
    // Not yet: everyone else hangs up now, the stuck connection stays open
    // and unread. Once the server's descriptors are back where they were
    // before any of these connections, the server dropped it too.
    let limit = flood_start.elapsed() + write_timeout + Duration::from_secs(10);
    while stuck_dropped_after_s.is_none() && flood_start.elapsed() < limit {
        if fds(pid) <= fds_without {
            stuck_dropped_after_s = Some(flood_start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stuck);

    Ok(BackpressureResult {
        quiet_p99_ms: relay::quantile_ms(&quiet.latencies_ns, 0.99),
        flood_p99_ms: relay::quantile_ms(&busy.latencies_ns, 0.99),
        flood_sent: sent.load(Ordering::Relaxed),
        flood_acked: acked.load(Ordering::Relaxed),
        rss_before_kib,
        rss_peak_kib,
        stuck_dropped_after_s,
    })
}

/// Sends 16 KiB messages with a window of outstanding sends until `stop`.
async fn flood(
    sender: Conn,
    group: Vec<u8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
) -> Result<()> {
    let (mut sink, mut stream) = (sender.sink, sender.stream);
    let mut outstanding = 0;
    let mut i: u64 = 0;
    let mut refused = false;
    while !stop.load(Ordering::Relaxed) {
        // Told to slow down, it pauses as a real client does (one that did
        // not would only make the server refuse it faster).
        if std::mem::take(&mut refused) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while outstanding < FLOOD_WINDOW {
            i += 1;
            let req = Request::Send {
                group_id: group.clone(),
                epoch: 1,
                client_id: i.to_le_bytes().to_vec(),
                payload: vec![0xf1; FLOOD_PAYLOAD],
            };
            sink.feed(frame(i, req)).await?;
            sent.fetch_add(1, Ordering::Relaxed);
            outstanding += 1;
        }
        sink.flush().await?;
        let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        let Ok(Some(m)) = next else { continue };
        if let Message::Binary(b) = m? {
            if let Ok(ServerMessage::Response { result, .. }) = codec::decode_server(&b) {
                outstanding -= 1;
                match result {
                    Ok(_) => _ = acked.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused = true,
                }
            }
        }
    }
    let _ = sink.close().await;
    Ok(())
}

/// The server's open descriptors once the count has not changed for half a
/// second (connections that just hung up are closed a moment later; the
/// stuck-reader timing counts descriptors, so they must be gone first).
async fn settled_fds(pid: u32) -> usize {
    let mut last = fds(pid);
    let mut same = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fds(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if same >= 5 {
            break;
        }
    }
    last
}
