//! `baseline`: the ceiling of this machine for the same traffic: a minimal
//! relay with no TLS, no store and no crypto, forwarding length-prefixed
//! 1 KiB frames from each sender to its receiver over loopback TCP.

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
            let mut rd = BufReader::with_capacity(64 * 1024, s);
            let mut wr = BufWriter::with_capacity(64 * 1024, out);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if wr.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                if rd.buffer().is_empty() && wr.flush().await.is_err() {
                    break;
                }
            }
            let _ = wr.flush().await;
        });
    }
}

static PARKED: std::sync::LazyLock<Mutex<HashMap<u32, TcpStream>>> = std::sync::LazyLock::new(Mutex::default);

/// Drives `pairs` pairs through the minimal relay at `addr` for `duration`.
pub async fn run(addr: &str, pairs: u32, duration: Duration) -> Result<(u64, f64)> {
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..pairs {
        let mut r = TcpStream::connect(addr).await?;
        r.set_nodelay(true)?;
        let mut hello = [1u8; 5];
        hello[1..].copy_from_slice(&p.to_le_bytes());
        r.write_all(&hello).await?;
        let mut ok = [0u8; 1];
        r.read_exact(&mut ok).await?;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let mut rd = BufReader::with_capacity(64 * 1024, r);
            let mut frame = vec![0u8; 4 + crate::relay::PAYLOAD];
            while rd.read_exact(&mut frame).await.is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t0 = Instant::now();
    let mut senders = Vec::new();
    for p in 0..pairs {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut hello = [0u8; 5];
        hello[1..].copy_from_slice(&p.to_le_bytes());
        s.write_all(&hello).await?;
        senders.push(tokio::spawn(async move {
            let mut wr = BufWriter::with_capacity(64 * 1024, s);
            let mut frame = vec![0x5au8; 4 + crate::relay::PAYLOAD];
            frame[..4].copy_from_slice(&(crate::relay::PAYLOAD as u32).to_le_bytes());
            while t0.elapsed() < duration {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = wr.flush().await;
        }));
    }
    for s in senders {
        s.await?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in &tasks {
        t.abort();
    }
    Ok((received.load(Ordering::Relaxed), elapsed))
}
