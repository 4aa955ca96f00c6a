//! `idle`: many authenticated connections doing nothing; what each costs
//! the server, and whether the server burns CPU while they idle.

use std::time::Duration;

use anyhow::Result;
use sotto_proto::ServerAddress;

use crate::client::{Account, Conn};
use crate::proc::{cpu_secs, rss_kib};

pub struct IdleResult {
    pub connections: usize,
    /// What each connection holds once it has idled for the allocator's
    /// decay time (the storm's freed handshake buffers are returned by then).
    pub rss_per_conn_kib: f64,
    /// The same half a second after the storm.
    pub storm_rss_per_conn_kib: f64,
    pub idle_cpu_percent: f64,
    pub fd_limit: u64,
}

pub async fn run(address: &ServerAddress, server_pid: u32, k: usize, fd_limit: u64) -> Result<IdleResult> {
    // Each connection costs this process one descriptor too.
    let k = k.min(fd_limit.saturating_sub(100) as usize);
    let acct = Account::new("idler");
    let first = Conn::open(address, &acct, true).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(server_pid);
    let mut conns = vec![first];
    // Open in parallel batches: a storm, as a restart of many clients is.
    for chunk in (1..k).collect::<Vec<_>>().chunks(200) {
        let opened = futures_util::future::join_all(chunk.iter().map(|_| Conn::open(address, &acct, false))).await;
        for c in opened {
            conns.push(c?);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let storm = rss_kib(server_pid);
    let cpu0 = cpu_secs(server_pid);
    // jemalloc returns pages unused for 10 s (sotto_server::memory).
    let window = Duration::from_secs(12);
    tokio::time::sleep(window).await;
    let cpu1 = cpu_secs(server_pid);
    let settled = rss_kib(server_pid);
    let n = conns.len();
    drop(conns);
    let per_conn = |rss: u64| rss.saturating_sub(before) as f64 / (n.max(2) - 1) as f64;
    Ok(IdleResult {
        connections: n,
        rss_per_conn_kib: per_conn(settled),
        storm_rss_per_conn_kib: per_conn(storm),
        idle_cpu_percent: (cpu1 - cpu0) / window.as_secs_f64() * 100.0,
        fd_limit,
    })
}
