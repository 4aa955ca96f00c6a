//! `baseline`: the ceiling of this machine for the same traffic: a minimal
//! relay with no TLS, no store and no crypto, forwarding length-prefixed
//! 1 KiB frames from each sender to its receiver over loopback TCP. Like
//! sotto's relay it answers every frame (one byte back to the sender), and
//! senders keep the same window of frames in flight, so the two do the same
//! per-message work apart from what sotto adds: TLS, WebSocket, CBOR, the
//! durable store and the wake-ups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// Runs the minimal relay (in its own process: `sotto-bench baseline-serve`).
pub async fn serve() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        tokio::spawn(async move {
            // Hello: 1 byte role (0 sender, 1 receiver) + u32 pair.
            let mut hello = [0u8; 5];
            if s.read_exact(&mut hello).await.is_err() {
                return;
            }
            let pair = u32::from_le_bytes(hello[1..].try_into().unwrap_or([0; 4]));
            if hello[0] == 1 {
                // A receiver waits, parked, for its sender to arrive.
                let _ = s.write_all(&[1]).await;
                PARKED.lock().unwrap_or_else(|p| p.into_inner()).insert(pair, s);
                return;
            }
            let out = loop {
                if let Some(r) = PARKED.lock().unwrap_or_else(|p| p.into_inner()).remove(&pair) {
                    break r;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let (rd, back) = s.into_split();
            let mut rd = BufReader::with_capacity(64 * 1024, rd);
            let mut back = BufWriter::with_capacity(4 * 1024, back);
            let mut wr = BufWriter::with_capacity(64 * 1024, out);
            let mut buf = vec![0u8; 64 * 1024];
            let frame = (4 + crate::relay::PAYLOAD) as u64;
            let mut forwarded = 0u64;
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if wr.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                // One answer byte per whole frame passed on.
                let before = forwarded / frame;
                forwarded += n as u64;
                let answers = vec![1u8; (forwarded / frame - before) as usize];
                if back.write_all(&answers).await.is_err() {
                    break;
                }
                if rd.buffer().is_empty() && (wr.flush().await.is_err() || back.flush().await.is_err()) {
                    break;
                }
            }
            let _ = wr.flush().await;
        });
    }
}

static PARKED: std::sync::LazyLock<Mutex<HashMap<u32, TcpStream>>> = std::sync::LazyLock::new(Mutex::default);

/// Drives `pairs` pairs through the minimal relay at `addr` for `duration`,
/// each sender with `window` frames in flight, at full speed or at `rate`
/// frames per second in all. Returns frames received, seconds, and
/// send-to-receipt latencies (ns, sorted).
pub async fn run(
    addr: &str,
    pairs: u32,
    duration: Duration,
    window: usize,
    rate: Option<u64>,
) -> Result<(u64, f64, Vec<u64>)> {
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..pairs {
        let mut r = TcpStream::connect(addr).await?;
        r.set_nodelay(true)?;
        let mut hello = [1u8; 5];
        hello[1..].copy_from_slice(&p.to_le_bytes());
        r.write_all(&hello).await?;
        let mut ok = [0u8; 1];
        r.read_exact(&mut ok).await?;
        let (received, latencies, stop) = (received.clone(), latencies.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rd = BufReader::with_capacity(64 * 1024, r);
            let mut frame = vec![0u8; 4 + crate::relay::PAYLOAD];
            let mut mine = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_millis(300), rd.read_exact(&mut frame)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => break,
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => continue,
                }
                received.fetch_add(1, Ordering::Relaxed);
                if rate.is_some() {
                    let sent = u64::from_le_bytes(frame[4..12].try_into().unwrap_or([0; 8]));
                    mine.push((t0.elapsed().as_nanos() as u64).saturating_sub(sent));
                }
            }
            latencies.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
        }));
    }
    let mut senders = Vec::new();
    for p in 0..pairs {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (mut answers, s) = s.into_split();
        let permits = Arc::new(tokio::sync::Semaphore::new(window));
        let p2 = permits.clone();
        // Each answer byte frees a slot of the window.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = answers.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                p2.add_permits(n);
            }
        });
        senders.push(tokio::spawn(async move {
            let mut wr = BufWriter::with_capacity(64 * 1024, s);
            let mut hello = [0u8; 5];
            hello[1..].copy_from_slice(&p.to_le_bytes());
            wr.write_all(&hello).await?;
            let mut frame = vec![0x5au8; 4 + crate::relay::PAYLOAD];
            frame[..4].copy_from_slice(&(crate::relay::PAYLOAD as u32).to_le_bytes());
            let mut tick = rate.map(|r| {
                // Spread over the interval, as in the relay scenario.
                let iv = Duration::from_secs_f64(f64::from(pairs) / r as f64);
                let start = tokio::time::Instant::now() + iv.mul_f64(f64::from(p) / f64::from(pairs));
                let mut t = tokio::time::interval_at(start, iv);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            while t0.elapsed() < duration {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let Ok(Ok(permit)) = tokio::time::timeout(Duration::from_secs(1), permits.acquire()).await else {
                    break;
                };
                permit.forget();
                let mut burst = 1;
                if tick.is_none() {
                    while let Ok(p) = permits.try_acquire() {
                        p.forget();
                        burst += 1;
                    }
                }
                for _ in 0..burst {
                    frame[4..12].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_le_bytes());
                    wr.write_all(&frame).await?;
                }
                wr.flush().await?;
            }
            reader.abort();
            anyhow::Ok(())
        }));
    }
    for s in senders {
        s.await??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    Ok((received.load(Ordering::Relaxed), elapsed, lat))
}
