//! `relay` and `latency`: sender/receiver pairs exchanging opaque 1 KiB
//! payloads through one group each, over the real server.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use serde_bytes::ByteBuf;
use sotto_proto::{codec, Push, Request, Response, ServerAddress, ServerMessage};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{frame, Account, Conn};

pub const PAYLOAD: usize = 1024;

/// One pair, set up: the sender's and receiver's connections and the group.
pub struct Pair {
    pub sender: Conn,
    pub receiver: Conn,
    pub group: Vec<u8>,
}

/// Registers `n` pairs, each in its own group, receivers synced.
pub async fn pairs(address: &ServerAddress, n: usize, tag: &str) -> Result<Vec<Pair>> {
    pairs_across(std::slice::from_ref(address), n, tag).await
}

/// The same over several nodes of one deployment: pair `i`'s sender on
/// node `i`, its receiver on the next, so with two or more nodes every
/// message crosses from one node to another.
pub async fn pairs_across(addresses: &[ServerAddress], n: usize, tag: &str) -> Result<Vec<Pair>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (sa, ra) = (Account::new(&format!("{tag}s{i}")), Account::new(&format!("{tag}r{i}")));
        let mut sender = Conn::open(&addresses[i % addresses.len()], &sa, true).await?;
        let mut receiver = Conn::open(&addresses[(i + 1) % addresses.len()], &ra, true).await?;
        let mut group: Vec<u8> = rand::random::<[u8; 16]>().to_vec();
        group[0] = 2;
        sender.request(Request::CreateGroup { group_id: group.clone(), roles: false }).await?;
        sender
            .request(Request::Commit {
                group_id: group.clone(),
                epoch: 0,
                client_id: vec![1],
                commit: vec![0; 64],
                welcome: Some(ByteBuf::from(vec![0; 64])),
                added: vec![sotto_proto::DeviceRef { handle: ra.handle.clone(), device_id: 1 }],
                removed: vec![],
            })
            .await?;
        // The sender acknowledges its own commit so deliveries can be freed.
        sender.request(Request::Ack { group_id: group.clone(), seq: 1 }).await?;
        receiver.request(Request::Sync).await?;
        loop {
            match receiver.read().await? {
                ServerMessage::Push(Push::SyncDone) => break,
                ServerMessage::Push(Push::Welcome { welcome_id, .. }) => {
                    let id = receiver.take_id();
                    receiver.sink.send(frame(id, Request::AckWelcome { welcome_id })).await?;
                }
                _ => {}
            }
        }
        out.push(Pair { sender, receiver, group });
    }
    Ok(out)
}

/// Counts of one run.
#[derive(Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub duplicated: AtomicU64,
    pub refused: AtomicU64,
}

fn payload(t0: Instant) -> Vec<u8> {
    let mut p = vec![0x5a; PAYLOAD];
    p[..8].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_le_bytes());
    p
}

/// Receiver loop: counts deliveries, notes duplicates, acknowledges every 64
/// and records latencies. Ends when `stop` is set and nothing came for 300 ms.
async fn receive(
    mut pair_rx: Conn,
    group: Vec<u8>,
    counts: Arc<Counts>,
    t0: Instant,
    stop: Arc<AtomicU64>,
    latencies: Arc<std::sync::Mutex<Vec<u64>>>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut last = 0;
    let mut pending = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(300), pair_rx.stream.next()).await;
        let msg = match next {
            Err(_) if stop.load(Ordering::Relaxed) == 1 => break,
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(m)) => m?,
        };
        let Message::Binary(b) = msg else { continue };
        if let ServerMessage::Push(Push::Deliver(d)) = codec::decode_server(&b)? {
            if !seen.insert(d.seq) {
                counts.duplicated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            counts.received.fetch_add(1, Ordering::Relaxed);
            let sent_ns = u64::from_le_bytes(d.payload[..8].try_into().unwrap_or([0; 8]));
            let now_ns = t0.elapsed().as_nanos() as u64;
            latencies.lock().unwrap_or_else(|p| p.into_inner()).push(now_ns.saturating_sub(sent_ns));
            last = last.max(d.seq);
            pending += 1;
            if pending >= 64 {
                pending = 0;
                let id = pair_rx.take_id();
                pair_rx.sink.send(frame(id, Request::Ack { group_id: group.clone(), seq: last })).await?;
            }
        }
    }
    Ok(())
}

/// Result of a run.
pub struct RelayResult {
    pub elapsed: f64,
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub refused: u64,
    pub latencies_ns: Vec<u64>,
}

/// Request ids of a sender's own acknowledgements (`run_with`): far above
/// any send's, which count up from 1.
const OWN_ACK_IDS: u64 = 1 << 62;

/// Runs the pairs for `duration`: at full speed with `window` outstanding
/// sends per sender, or at `rate` messages/s in all when given.
pub async fn run(pairs: Vec<Pair>, duration: Duration, window: usize, rate: Option<u64>) -> Result<RelayResult> {
    run_with(pairs, duration, window, rate, false).await
}

/// [`run`]; with `own_acks`, each sender also acknowledges its own stored
/// messages (every 64), as a real client does when its own messages come
/// back to it: the store can then reclaim what both members read, which
/// it never does in [`run`] (the sender's cursor stays at the start).
pub async fn run_with(
    pairs: Vec<Pair>,
    duration: Duration,
    window: usize,
    rate: Option<u64>,
    own_acks: bool,
) -> Result<RelayResult> {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let n = pairs.len() as u64;
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (k, p) in pairs.into_iter().enumerate() {
        receivers.push(tokio::spawn(receive(
            p.receiver,
            p.group.clone(),
            counts.clone(),
            t0,
            stop.clone(),
            latencies.clone(),
        )));
        let (mut sink, mut stream) = (p.sender.sink, p.sender.stream);
        let permits = Arc::new(Semaphore::new(window));
        let c2 = counts.clone();
        let p2 = permits.clone();
        // The newest sequence number the store gave this sender's messages.
        let stored = Arc::new(AtomicU64::new(0));
        let stored2 = stored.clone();
        // Responses come back on the stream: each frees a window slot.
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Binary(b) = m {
                    // Every answer to a send frees a window slot; only
                    // successes count as acknowledged. Answers to own
                    // acknowledgements (ids from the top) are not sends'.
                    if let Ok(ServerMessage::Response { id, result }) = codec::decode_server(&b) {
                        if id >= OWN_ACK_IDS {
                            if result.is_err() {
                                c2.refused.fetch_add(1, Ordering::Relaxed);
                            }
                            continue;
                        }
                        if let Ok(Response::Appended { seq, .. }) = &result {
                            stored2.fetch_max(*seq, Ordering::Relaxed);
                        }
                        if result.is_ok() {
                            c2.acked.fetch_add(1, Ordering::Relaxed);
                        } else {
                            c2.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        p2.add_permits(1);
                    }
                }
            }
        });
        let counts = counts.clone();
        let group = p.group;
        senders.push(tokio::spawn(async move {
            let deadline = t0 + duration;
            let mut i: u64 = 0;
            let mut acked_own = 0u64;
            let interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r as f64));
            let mut tick = interval.map(|iv| {
                // Senders are spread evenly over the interval: independent
                // people do not all press enter in the same millisecond.
                let start = tokio::time::Instant::now() + iv.mul_f64(k as f64 / n as f64);
                let mut t = tokio::time::interval_at(start, iv);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            while Instant::now() < deadline {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Ok(permit)) = tokio::time::timeout(left, permits.acquire()).await else { break };
                permit.forget();
                // At full speed, every free slot of the window goes out in
                // one flush, as a real client pipelining its outbox would.
                let mut burst = 1;
                if tick.is_none() {
                    while let Ok(p) = permits.try_acquire() {
                        p.forget();
                        burst += 1;
                    }
                }
                let mut ok = true;
                let newest = stored.load(Ordering::Relaxed);
                if own_acks && newest >= acked_own + 64 {
                    acked_own = newest;
                    let ack = Request::Ack { group_id: group.clone(), seq: newest };
                    ok = sink.feed(frame(OWN_ACK_IDS + newest, ack)).await.is_ok();
                }
                for _ in 0..burst {
                    if !ok {
                        break;
                    }
                    i += 1;
                    let req = Request::Send {
                        group_id: group.clone(),
                        epoch: 1,
                        // Ordered like the app's (`Messenger::new_client_id`).
                        client_id: i.to_be_bytes().to_vec(),
                        payload: payload(t0),
                    };
                    if sink.feed(frame(i, req)).await.is_err() {
                        ok = false;
                        break;
                    }
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                }
                if !ok || sink.flush().await.is_err() {
                    break;
                }
            }
            // Wait for the window to drain, then hang up.
            let _ = tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(window as u32)).await;
            reader.abort();
            let _ = sink.close().await;
        }));
    }
    for s in senders {
        s.await?;
    }
    let sending_done = t0.elapsed().as_secs_f64();
    let (sent, acked, received) = drain_and_stop(&counts, &stop, receivers).await?;
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    Ok(RelayResult {
        elapsed: sending_done,
        sent,
        acked,
        received,
        lost: acked.saturating_sub(received),
        duplicated: counts.duplicated.load(Ordering::Relaxed),
        refused: counts.refused.load(Ordering::Relaxed),
        latencies_ns: lat,
    })
}

/// Lets the receivers take what is still in flight (10 s at most), stops
/// them, and returns (sent, acknowledged, received). Shared with
/// `compare-mqtt`, which counts the same way.
pub async fn drain_and_stop(
    counts: &Counts,
    stop: &AtomicU64,
    receivers: Vec<tokio::task::JoinHandle<Result<()>>>,
) -> Result<(u64, u64, u64)> {
    let drain_until = Instant::now() + Duration::from_secs(10);
    while counts.received.load(Ordering::Relaxed) < counts.acked.load(Ordering::Relaxed) && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(1, Ordering::Relaxed);
    for r in receivers {
        r.await??;
    }
    Ok((
        counts.sent.load(Ordering::Relaxed),
        counts.acked.load(Ordering::Relaxed),
        counts.received.load(Ordering::Relaxed),
    ))
}

/// The q-th quantile of sorted latencies, in milliseconds.
pub fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1e6
}
