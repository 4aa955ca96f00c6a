//! A TCP proxy that cuts connections at random byte offsets: network faults
//! for the crash test. Offsets are counted in raw TCP bytes, so a cut lands
//! inside a TLS record, a WebSocket frame or an HTTP body, never on a
//! boundary the endpoints chose.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy did.
#[derive(Default)]
pub struct ProxyStats {
    /// Connections forwarded.
    pub connections: AtomicU64,
    /// Connections cut before either end closed them.
    pub cuts: AtomicU64,
    /// Cleared: new connections are forwarded without a cut.
    pub armed: std::sync::atomic::AtomicBool,
}

/// A running proxy to `upstream`: each connection is cut after a number of
/// bytes (both directions together) drawn from `budget`.
pub struct CutProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr, budget: Range<u64>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ProxyStats { armed: true.into(), ..Default::default() });
        let s = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let limit = if s.armed.load(Ordering::Relaxed) {
                    rand::thread_rng().gen_range(budget.clone())
                } else {
                    u64::MAX
                };
                let s = s.clone();
                tokio::spawn(async move {
                    // The server may be down (the crash test kills it): the
                    // client sees a closed connection, as it would.
                    let Ok(outbound) = TcpStream::connect(upstream).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    s.connections.fetch_add(1, Ordering::Relaxed);
                    if forward(inbound, outbound, limit).await {
                        s.cuts.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Ok(Self { addr, stats, task })
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until `limit` bytes have passed (returns true: cut) or
/// either side closes (false). A cut drops both sockets mid-stream; the
/// bytes that would cross the limit are sent only up to it.
async fn forward(a: TcpStream, b: TcpStream, limit: u64) -> bool {
    let left = Arc::new(AtomicU64::new(limit));
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let up = pump(ar, bw, left.clone());
    let down = pump(br, aw, left);
    // Whichever direction ends first ends the connection.
    tokio::select! {
        cut = up => cut,
        cut = down => cut,
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    left: Arc<AtomicU64>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let before =
            left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| Some(l.saturating_sub(n as u64))).unwrap_or(0);
        let allowed = (n as u64).min(before) as usize;
        if allowed > 0 && to.write_all(&buf[..allowed]).await.is_err() {
            return false;
        }
        if allowed < n || before == n as u64 {
            return true;
        }
    }
}
