//! `soak`: many idle connections plus moderate traffic for a bounded time,
//! sampling the server's memory and open descriptors; then everyone leaves
//! and memory should come back near where it started.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::client::{Account, Conn};
use crate::proc::{fds, rss_kib, Proc};

pub struct SoakResult {
    pub samples: Vec<(f64, u64, usize)>,
    pub baseline_kib: u64,
    pub warm_kib: u64,
    pub end_kib: u64,
    pub after_kib: u64,
    pub messages: u64,
}

/// Runs against a server this bench starts, or against `external`
/// (address and pid; it must allow open registration).
/// `settle`: how long to watch memory after everyone left.
pub async fn run(
    secs: u64,
    idle: usize,
    pairs: usize,
    settle: Duration,
    external: Option<(String, u32)>,
) -> Result<SoakResult> {
    let dir = tempfile::tempdir()?;
    let (server, address, pid) = match external {
        Some((addr, pid)) => (None, sotto_proto::ServerAddress::parse(&addr)?, pid),
        None => {
            let p = Proc::spawn(&["serve", "--data", dir.path().join("soak").to_str().unwrap_or(".")])?;
            let a = sotto_proto::ServerAddress::parse(&p.line)?;
            let pid = p.pid();
            (Some(p), a, pid)
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline_kib = rss_kib(pid);

    let idler = Account::new(&format!("idler{}", rand::random::<u32>()));
    let mut idle_conns = vec![Conn::open(&address, &idler, true).await?];
    for chunk in (1..idle).collect::<Vec<_>>().chunks(200) {
        for c in futures_util::future::join_all(chunk.iter().map(|_| Conn::open(&address, &idler, false))).await {
            idle_conns.push(c?);
        }
    }
    // Idle, not dead: each connection keeps reading, so it answers the
    // server's pings as a real client does.
    let mut readers = Vec::new();
    let mut sinks = Vec::new();
    for c in idle_conns.drain(..) {
        let (sink, mut stream) = (c.sink, c.stream);
        sinks.push(sink);
        readers.push(tokio::spawn(async move {
            while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {}
        }));
    }
    let set = crate::relay::pairs(&address, pairs, &format!("soak{}", rand::random::<u16>())).await?;
    let started = Instant::now();
    // Moderate traffic: 200 messages/s in all, the whole time.
    let traffic = tokio::spawn(crate::relay::run(set, Duration::from_secs(secs), 64, Some(200)));
    let mut samples = Vec::new();
    let mut warm_kib = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1).min(Duration::from_secs(secs) / 10)).await;
        let (t, r, f) = (started.elapsed().as_secs_f64(), rss_kib(pid), fds(pid));
        if warm_kib == 0 && t >= secs as f64 / 4.0 {
            warm_kib = r;
        }
        samples.push((t, r, f));
    }
    let result = traffic.await??;
    let end_kib = rss_kib(pid);
    drop(sinks);
    for r in readers {
        r.abort();
    }
    // The allocator hands freed pages back after they have been unused for
    // its decay time (10 s), so sample beyond that.
    let left = Instant::now();
    while left.elapsed() < settle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((started.elapsed().as_secs_f64(), rss_kib(pid), fds(pid)));
    }
    let after_kib = rss_kib(pid);
    drop(server);
    Ok(SoakResult { samples, baseline_kib, warm_kib, end_kib, after_kib, messages: result.received })
}
