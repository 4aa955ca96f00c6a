//! `relay` from the command line: one server (or several nodes on a
//! PostgreSQL), sender/receiver pairs at full speed or a fixed rate, and
//! what it cost the server.

use std::time::Duration;

use anyhow::{Context, Result};
use sotto_proto::ServerAddress;

use crate::{nodes, proc, relay, start_server, store_stages};

/// The command's flags.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub load: crate::Load,
    /// A fixed rate in messages/s (all pairs together) instead of full
    /// speed; prints the latency quantiles.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Keep the state in this PostgreSQL (a connection string; the run
    /// uses a fresh schema of it) instead of SQLite.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Server nodes on that PostgreSQL; each pair's sender and receiver
    /// sit on different nodes when there are two or more.
    #[arg(long, default_value_t = 1, requires = "store")]
    pub nodes: usize,
    /// Pin the server to these CPUs (a taskset list: `0`, `0,1`, `2-3`)
    /// and the load generator to the others, if any (as `compare-mqtt`
    /// and `all`'s one-core row do). The printed server CPU share then
    /// says whether the server was the limit.
    #[arg(long, value_name = "LIST", conflicts_with = "store")]
    pub server_cpus: Option<String>,
    /// Each sender also acknowledges its own messages, as a real client
    /// does, so the store reclaims what both members read (without it
    /// the store keeps every message for the whole run).
    #[arg(long)]
    pub sender_acks: bool,
}

/// A fresh server on `dir`, pinned to `cpus` when given.
fn one_server(dir: &std::path::Path, cpus: Option<&str>) -> Result<(proc::Proc, ServerAddress)> {
    match cpus {
        Some(cpus) => {
            let data = dir.to_str().context("path")?;
            let p = proc::Proc::spawn_pinned(cpus, &["serve", "--data", data])?;
            let a = ServerAddress::parse(&p.line)?;
            Ok((p, a))
        }
        None => start_server(dir),
    }
}

/// One full-speed run on a fresh single server (`compare-mqtt`, `all`'s
/// one-core row).
pub struct Round {
    pub msgs_per_s: f64,
    pub elapsed: f64,
    pub lost: u64,
    pub duplicated: u64,
    /// The server's CPU time over the run's time, in percent of one core.
    pub cpu_percent: f64,
}

/// One full-speed run against a fresh server; with `sender_acks`, senders
/// acknowledge their own messages (`relay::run_with`).
pub async fn round(
    pairs: usize,
    run_for: Duration,
    window: usize,
    server_cpus: Option<&str>,
    sender_acks: bool,
) -> Result<Round> {
    let tmp = tempfile::tempdir()?;
    let (server, address) = one_server(tmp.path(), server_cpus)?;
    let set = relay::pairs(&address, pairs, "p").await?;
    let cpu0 = proc::cpu_secs(server.pid());
    let r = relay::run_with(set, run_for, window, None, sender_acks).await?;
    let cpu = proc::cpu_secs(server.pid()) - cpu0;
    Ok(Round {
        msgs_per_s: r.received as f64 / r.elapsed,
        elapsed: r.elapsed,
        lost: r.lost,
        duplicated: r.duplicated,
        cpu_percent: cpu / r.elapsed * 100.0,
    })
}

pub async fn run(o: Options) -> Result<()> {
    let Options { load: crate::Load { pairs, secs, window }, rate, store, nodes, server_cpus, sender_acks } = o;
    proc::raise_fd_limit();
    // The load generator off the server's CPUs: unpinned, it took turns
    // with the server on them, and the server's latency included its work.
    if let Some(rest) = server_cpus.as_deref().and_then(proc::other_cpus) {
        proc::pin_self(&rest);
    }
    let tmp = tempfile::tempdir()?;
    let deployment = match &store {
        Some(url) => Some(nodes::Nodes::new(tmp.path(), url, nodes.max(1))?),
        None => None,
    };
    let mut servers = Vec::new();
    let mut addresses = Vec::new();
    match &deployment {
        Some(d) => {
            for i in 0..d.len() {
                let (p, a) = d.start(i)?;
                servers.push(p);
                addresses.push(a);
            }
        }
        None => {
            let (p, a) = one_server(tmp.path(), server_cpus.as_deref())?;
            servers.push(p);
            addresses.push(a);
        }
    }
    let pids: Vec<u32> = servers.iter().map(proc::Proc::pid).collect();
    println!("server pids {pids:?}");
    let set = relay::pairs_across(&addresses, pairs, "p").await?;
    let servers_cpu = || pids.iter().map(|p| proc::cpu_secs(*p)).sum::<f64>();
    let db_cpu = || if store.is_some() { proc::cpu_secs_named("postgres") } else { 0.0 };
    let (cpu0, db0, me0) = (servers_cpu(), db_cpu(), proc::cpu_secs(std::process::id()));
    let r = relay::run_with(set, Duration::from_secs(secs), window, rate, sender_acks).await?;
    let cpu = servers_cpu() - cpu0;
    // The run's figures stand without them: a failed read is only noted.
    let stages = match &deployment {
        None => store_stages::scrape(tmp.path()).await.unwrap_or_else(|e| {
            eprintln!("the server's stage timings could not be read: {e:#}");
            None
        }),
        Some(_) => None,
    };
    if store.is_some() {
        let (db, me) = (db_cpu() - db0, proc::cpu_secs(std::process::id()) - me0);
        let per_k = |s: f64| s / (r.received.max(1) as f64) * 1000.0;
        println!(
            "cpu_secs_per_1000_msgs nodes={:.4} postgresql={:.4} load_generator={:.4} total={:.4}",
            per_k(cpu),
            per_k(db),
            per_k(me),
            per_k(cpu + db + me)
        );
    }
    drop(servers);
    drop(deployment);
    if rate.is_some() {
        let l = &r.latencies_ns;
        println!(
            "latency p50={:.3} p90={:.3} p99={:.3} max={:.3} ms",
            relay::quantile_ms(l, 0.5),
            relay::quantile_ms(l, 0.9),
            relay::quantile_ms(l, 0.99),
            relay::quantile_ms(l, 1.0)
        );
    }
    if let Some(stages) = stages {
        println!("{stages}");
    }
    // CPU share of the CPUs the server may use: well under 100 %
    // means something other than its CPU was the limit.
    let server_cores = server_cpus
        .as_deref()
        .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), proc::cpus_in_list);
    println!(
        "relay msgs_per_s={:.0} sent={} acked={} received={} lost={} duplicated={} server_cpu_percent={:.0} \
         server_cores={server_cores} server_share_of_its_cores_percent={:.0}",
        r.received as f64 / r.elapsed,
        r.sent,
        r.acked,
        r.received,
        r.lost,
        r.duplicated,
        cpu / r.elapsed * 100.0,
        cpu / r.elapsed * 100.0 / server_cores as f64
    );
    Ok(())
}
