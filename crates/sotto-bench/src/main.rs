//! `sotto-bench`: measures a real `sotto-server` (TLS, WebSocket, durable
//! SQLite store) and the client's MLS work, against the ceiling of a
//! minimal relay on the same machine. Figures go to docs/performance.md.

mod backpressure;
mod baseline;
mod client;
mod crash;
mod files;
mod idle;
mod mls;
mod proc;
mod proxy;
mod relay;
mod soak;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use sotto_proto::ServerAddress;

#[derive(Parser)]
#[command(name = "sotto-bench", about = "Benchmarks of sotto against a real server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every scenario, then a table (and with --json a last line of JSON).
    All {
        /// Short runs (for CI: proves the bench works, asserts nothing).
        #[arg(long)]
        quick: bool,
        /// Print the figures as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Sender/receiver pairs for relay.
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Idle connections.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// File size for the files scenario, MiB.
        #[arg(long, default_value_t = 1024)]
        file_mib: u64,
    },
    /// Clients send numbered messages while the server is killed (SIGKILL)
    /// and restarted; checks nothing acknowledged is lost or duplicated.
    Crash {
        /// How many times to kill the server.
        #[arg(long, default_value_t = 20)]
        kills: u32,
        /// Messages in all.
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 4)]
        pairs: usize,
        /// Also cut the clients' connections at random byte offsets
        /// (a proxy between them and the server).
        #[arg(long)]
        cut: bool,
        /// Then send a file of this many MiB through a cutting proxy,
        /// resuming after every cut (0: no file).
        #[arg(long, default_value_t = 0)]
        file_mib: u64,
    },
    /// Idle connections plus moderate traffic for a bounded time, sampling
    /// the server's memory and descriptors.
    Soak {
        /// How long, seconds.
        #[arg(long, default_value_t = 1800)]
        secs: u64,
        /// Idle connections.
        #[arg(long, default_value_t = 5000)]
        idle: usize,
        /// Talking pairs.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Seconds to keep sampling memory after everyone disconnected.
        #[arg(long, default_value_t = 15)]
        settle: u64,
        /// Target a running server (it must allow open registration)
        /// instead of starting one.
        #[arg(long, requires = "server_pid")]
        server: Option<String>,
        /// That server's process id (for its memory and descriptors).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// A receiver stops reading while its sender floods: the others'
    /// latency, the server's memory, and when the stuck peer is dropped.
    Backpressure {
        /// Pairs talking at a fixed rate beside the flood.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Their messages per second, in all.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of quiet talk, then as many of talk during the flood.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// The server's write timeout for this run, seconds.
        #[arg(long, default_value_t = 5)]
        write_timeout: u64,
        /// Lift the server's per-connection request and byte budgets, so
        /// the flood is as fast as this machine can carry it.
        #[arg(long)]
        unlimited: bool,
    },
    /// Only the relay scenario, against a fresh server (for profiling).
    Relay {
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Outstanding sends per sender.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// A fixed rate in messages/s (all pairs together) instead of full
        /// speed; prints the latency quantiles.
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Only the idle scenario, against a fresh server.
    Idle {
        /// Idle authenticated connections.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// Only the client's MLS work (no server): encrypt+decrypt, backlog,
    /// group changes.
    Mls {
        /// Messages to encrypt and decrypt.
        #[arg(long, default_value_t = 5000)]
        messages: u64,
        /// Backlog processed into a real SQLCipher profile.
        #[arg(long, default_value_t = 10_000)]
        backlog: u64,
        /// Group sizes to time adding a member to.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
        sizes: Vec<usize>,
    },
    /// Runs a server for the bench (internal).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        data: std::path::PathBuf,
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Drop a connection that takes no bytes for this long.
        #[arg(long, default_value_t = 30)]
        write_timeout_secs: u64,
        /// Keep the server's per-connection request and byte budgets
        /// (lifted otherwise: the load generator is the noisy client by
        /// design).
        #[arg(long)]
        rate_limited: bool,
    },
    /// Runs the minimal relay (internal).
    #[command(hide = true)]
    BaselineServe,
    /// Runs the file transfer (internal).
    #[command(hide = true)]
    FilesChild {
        #[arg(long)]
        server: String,
        #[arg(long)]
        size: u64,
    },
}

// The bench's `serve` child is the server under test: same allocator as
// the real `sotto-server` binary.
#[global_allocator]
static ALLOCATOR: sotto_server::memory::Jemalloc = sotto_server::memory::Jemalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Store calls run on the blocking pool; a small pool keeps memory flat
    // under a login storm (each extra thread costs its stack and arena).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(32).build()?;
    match cli.command {
        Command::Soak { secs, idle, pairs, settle, server, server_pid } => rt.block_on(async {
            proc::raise_fd_limit();
            let r = soak::run(secs, idle, pairs, Duration::from_secs(settle), server.zip(server_pid)).await?;
            for (t, rss, fds) in &r.samples {
                println!("t={t:.0}s rss_kib={rss} fds={fds}");
            }
            println!(
                "baseline_kib={} warm_kib={} end_kib={} after_disconnect_kib={} messages={}",
                r.baseline_kib, r.warm_kib, r.end_kib, r.after_kib, r.messages
            );
            Ok(())
        }),
        Command::Serve { data, port, write_timeout_secs, rate_limited } => {
            rt.block_on(serve(&data, port, Duration::from_secs(write_timeout_secs), rate_limited))
        }
        Command::Crash { kills, messages, pairs, cut, file_mib } => rt.block_on(async {
            let r = crash::run(kills, messages, pairs, cut, file_mib).await?;
            if let Some(f) = &r.file {
                println!(
                    "file bytes={} upload_attempts={} download_attempts={} cuts={} identical={}",
                    f.bytes, f.upload_attempts, f.download_attempts, f.cuts, f.identical
                );
            }
            println!(
                "kills={} cuts={} out_of_order={}\nsent={} acked={} delivered={} lost={} duplicated={}",
                r.kills, r.cuts, r.out_of_order, r.sent, r.acked, r.delivered, r.lost, r.duplicated
            );
            if r.lost > 0 || r.duplicated > 0 || r.out_of_order > 0 {
                anyhow::bail!("acknowledged messages were lost, duplicated or reordered");
            }
            if r.file.as_ref().is_some_and(|f| !f.identical) {
                anyhow::bail!("the file that arrived differs from the one sent");
            }
            Ok(())
        }),
        Command::Backpressure { pairs, rate, secs, write_timeout, unlimited } => rt.block_on(async {
            let tmp = tempfile::tempdir()?;
            let r = backpressure_on_fresh_server(tmp.path(), pairs, rate, secs, write_timeout, !unlimited).await?;
            println!("{}", backpressure_line(&r));
            Ok(())
        }),
        Command::Relay { pairs, secs, window, rate } => rt.block_on(async {
            proc::raise_fd_limit();
            let tmp = tempfile::tempdir()?;
            let (server, address) = start_server(tmp.path())?;
            println!("server pid {}", server.pid());
            let set = relay::pairs(&address, pairs, "p").await?;
            let cpu0 = proc::cpu_secs(server.pid());
            let r = relay::run(set, Duration::from_secs(secs), window, rate).await?;
            let cpu = proc::cpu_secs(server.pid()) - cpu0;
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
            println!(
                "relay msgs_per_s={:.0} sent={} acked={} received={} lost={} duplicated={} server_cpu_percent={:.0}",
                r.received as f64 / r.elapsed,
                r.sent,
                r.acked,
                r.received,
                r.lost,
                r.duplicated,
                cpu / r.elapsed * 100.0
            );
            Ok(())
        }),
        Command::Idle { connections } => rt.block_on(async {
            let fd_limit = proc::raise_fd_limit();
            let tmp = tempfile::tempdir()?;
            let (server, address) = start_server(tmp.path())?;
            let r = idle::run(&address, server.pid(), connections, fd_limit).await?;
            println!(
                "idle connections={} rss_per_conn_kib={:.1} storm_rss_per_conn_kib={:.1} idle_cpu_percent={:.2}",
                r.connections, r.rss_per_conn_kib, r.storm_rss_per_conn_kib, r.idle_cpu_percent
            );
            Ok(())
        }),
        Command::Mls { messages, backlog, sizes } => {
            let m = mls::run(messages, backlog, &sizes)?;
            println!("mls_raw_msgs_per_s={:.0}", m.raw_msgs_per_s);
            println!("mls_msgs_per_s={:.0} backlog={} backlog_secs={:.2}", m.msgs_per_s, m.backlog, m.backlog_secs);
            for g in &m.groups {
                println!(
                    "group size={} add_ms={:.1} join_ms={:.1} send_ms={:.2} commit_bytes={}",
                    g.size, g.add_ms, g.join_ms, g.send_ms, g.commit_bytes
                );
            }
            Ok(())
        }
        Command::BaselineServe => rt.block_on(baseline::serve()),
        Command::FilesChild { server, size } => rt.block_on(files::child(&server, size)),
        Command::All { quick, json, pairs, idle, file_mib } => rt.block_on(all(quick, json, pairs, idle, file_mib)),
    }
}

async fn serve(data: &std::path::Path, port: u16, write_timeout: Duration, rate_limited: bool) -> Result<()> {
    use sotto_server::node::{Node, Services};
    use sotto_server::relay::RelayConfig;
    sotto_server::memory::return_freed_memory_when_idle()?;
    let tls = sotto_server::tls::self_signed(&data.join("tls"), &[])?;
    let pin = tls.pin.context("pin")?;
    let mut config = RelayConfig { open_registration: true, write_timeout, ..Default::default() };
    if !rate_limited {
        // The per-connection request and byte budgets protect a real server
        // from one noisy client; a load generator is that client by design,
        // so they are lifted here (and the bench says so).
        config.request_rate = 1_000_000;
        config.request_burst = 1_000_000;
        config.byte_rate = 1 << 40;
        config.byte_burst = 1 << 40;
    }
    // The binary's own composition root, with what runs beside it (the
    // operator socket, hourly maintenance) left out of the measurement.
    let node = Node::open(data, config, pin.to_vec())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address = ServerAddress {
        host: "127.0.0.1".into(),
        port: listener.local_addr()?.port(),
        transport: sotto_proto::Transport::Pinned(pin),
    };
    println!("{address}");
    let listen = sotto_server::server::ListenConfig {
        max_connections: 100_000,
        max_connections_per_ip: 100_000,
        ..Default::default()
    };
    node.serve(listener, Some(tls.config), listen, Services::default(), std::future::pending()).await?;
    Ok(())
}

/// The relay scenario with the server pinned to CPU 0 and this process to
/// CPU 1: (msgs/s, server CPU %).
async fn relay_pinned(dir: &std::path::Path, pairs: usize, run_for: Duration) -> Result<(f64, f64)> {
    let p = proc::Proc::spawn_pinned(0, &["serve", "--data", dir.to_str().context("path")?])?;
    let address = ServerAddress::parse(&p.line)?;
    let set = relay::pairs(&address, pairs, "q").await?;
    let cpu0 = proc::cpu_secs(p.pid());
    proc::pin_self("1");
    let r = relay::run(set, run_for, 64, None).await;
    proc::pin_self("0-1023");
    let r = r?;
    let cpu = (proc::cpu_secs(p.pid()) - cpu0) / r.elapsed * 100.0;
    anyhow::ensure!(r.lost == 0 && r.duplicated == 0, "one-core relay lost or duplicated messages");
    Ok((r.received as f64 / r.elapsed, cpu))
}

async fn backpressure_on_fresh_server(
    dir: &std::path::Path,
    pairs: usize,
    rate: u64,
    secs: u64,
    write_timeout: u64,
    rate_limited: bool,
) -> Result<backpressure::BackpressureResult> {
    let timeout = write_timeout.to_string();
    let mut args = vec!["serve", "--data", dir.to_str().context("path")?, "--write-timeout-secs", &timeout];
    if rate_limited {
        args.push("--rate-limited");
    }
    let p = proc::Proc::spawn(&args)?;
    let address = ServerAddress::parse(&p.line)?;
    backpressure::run(&address, p.pid(), pairs, rate, secs, Duration::from_secs(write_timeout)).await
}

fn backpressure_line(r: &backpressure::BackpressureResult) -> String {
    format!(
        "backpressure quiet_p99_ms={:.2} flood_p99_ms={:.2} flood_sent={} flood_acked={} rss_before_kib={} rss_peak_kib={} stuck_dropped_after_s={}",
        r.quiet_p99_ms,
        r.flood_p99_ms,
        r.flood_sent,
        r.flood_acked,
        r.rss_before_kib,
        r.rss_peak_kib,
        r.stuck_dropped_after_s.map_or("never".into(), |s| format!("{s:.1}"))
    )
}

fn start_server(dir: &std::path::Path) -> Result<(proc::Proc, ServerAddress)> {
    let p = proc::Proc::spawn(&["serve", "--data", dir.to_str().context("path")?])?;
    let address = ServerAddress::parse(&p.line)?;
    Ok((p, address))
}

async fn all(quick: bool, as_json: bool, pairs: usize, idle_n: usize, file_mib: u64) -> Result<()> {
    let fd_limit = proc::raise_fd_limit();
    let (pairs, idle_n, file_mib) =
        if quick { (pairs.min(10), idle_n.min(500), file_mib.min(64)) } else { (pairs, idle_n, file_mib) };
    let run_for = if quick { Duration::from_secs(2) } else { Duration::from_secs(10) };
    let tmp = tempfile::tempdir()?;
    eprintln!(
        "server: real sotto-server code, TLS 1.3 (pinned, self-signed), SQLite store in {} with synchronous=FULL",
        tmp.path().display()
    );

    // relay
    let (server, address) = start_server(&tmp.path().join("relay"))?;
    let set = relay::pairs(&address, pairs, "p").await?;
    let cpu0 = proc::cpu_secs(server.pid());
    let r = relay::run(set, run_for, 64, None).await?;
    let cpu_used = proc::cpu_secs(server.pid()) - cpu0;
    let relay_rate = r.received as f64 / r.elapsed;
    let relay_rss = proc::rss_kib(server.pid());
    eprintln!("relay: {relay_rate:.0} msgs/s, lost {}, duplicated {}", r.lost, r.duplicated);

    // The same with the server held to one core (the fair row against
    // single-threaded peers); the load generator keeps the other.
    let (one_core, one_core_cpu) = if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("relay, server on one core: skipped (this machine has one CPU)");
        (0.0, 0.0)
    } else {
        let r = relay_pinned(&tmp.path().join("relay-one-core"), pairs, run_for).await?;
        eprintln!("relay, server on one core: {:.0} msgs/s", r.0);
        r
    };

    // latency at fixed rates
    let mut latency = Vec::new();
    let rates: &[u64] = if quick { &[1000] } else { &[1000, 10_000] };
    for &rate in rates {
        let set = relay::pairs(&address, 10, &format!("l{rate}x")).await?;
        let lr = relay::run(set, run_for, 1024, Some(rate)).await?;
        let l = &lr.latencies_ns;
        latency.push(json!({
            "rate": rate,
            "received": lr.received,
            "p50_ms": relay::quantile_ms(l, 0.5),
            "p90_ms": relay::quantile_ms(l, 0.9),
            "p99_ms": relay::quantile_ms(l, 0.99),
            "max_ms": relay::quantile_ms(l, 1.0),
        }));
        eprintln!("latency at {rate}/s: p99 {:.2} ms", relay::quantile_ms(l, 0.99));
    }
    drop(server);

    // baseline (after the relay scenarios: run first, it left the relay
    // 10 % slower in the same process on this machine)
    let base = proc::Proc::spawn(&["baseline-serve"])?;
    let (b_count, b_secs, _) = baseline::run(&base.line, pairs as u32, run_for, 64, None).await?;
    let baseline_rate = b_count as f64 / b_secs;
    // The latency floor: the same fixed rate through the minimal relay.
    let (_, _, b_lat) = baseline::run(&base.line, 10, run_for, 1024, Some(1000)).await?;
    drop(base);
    eprintln!("baseline: {baseline_rate:.0} msgs/s, p99 at 1000/s {:.2} ms", relay::quantile_ms(&b_lat, 0.99));

    // idle
    let (server, address) = start_server(&tmp.path().join("idle"))?;
    let idle = idle::run(&address, server.pid(), idle_n, fd_limit).await?;
    drop(server);
    eprintln!("idle: {} connections, {:.1} KiB each", idle.connections, idle.rss_per_conn_kib);

    // mls
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    let (msgs, backlog) = if quick { (500, 1000) } else { (5000, 10_000) };
    let m = tokio::task::spawn_blocking(move || mls::run(msgs, backlog, sizes)).await??;
    eprintln!("mls: {:.0} msgs/s (openmls), {:.0} msgs/s (through sotto-core)", m.raw_msgs_per_s, m.msgs_per_s);

    // files
    let (server, address) = start_server(&tmp.path().join("files"))?;
    let child =
        proc::Proc::spawn(&["files-child", "--server", &address.to_string(), "--size", &(file_mib << 20).to_string()])?;
    let f = files::parse(&child.line)?;
    child.finish()?;
    let server_peak = proc::peak_rss_kib(server.pid());
    drop(server);

    // backpressure: the server's real per-connection limits, 5-s write timeout
    let bp_secs = if quick { 2 } else { 10 };
    let bp = backpressure_on_fresh_server(&tmp.path().join("backpressure"), 10, 1000, bp_secs, 5, true).await?;
    eprintln!("{}", backpressure_line(&bp));

    let ratio = |x: f64| if baseline_rate > 0.0 { x / baseline_rate } else { 0.0 };
    let report = json!({
        "quick": quick,
        "baseline": {"msgs_per_s": baseline_rate, "pairs": pairs, "window": 64,
                     "latency_at_1000": {"p50_ms": relay::quantile_ms(&b_lat, 0.5), "p99_ms": relay::quantile_ms(&b_lat, 0.99)}},
        "relay": {
            "msgs_per_s": relay_rate, "pairs": pairs, "sent": r.sent, "acknowledged": r.acked,
            "received": r.received, "lost": r.lost, "duplicated": r.duplicated, "refused": r.refused,
            "server_cpu_percent": cpu_used / r.elapsed * 100.0, "server_rss_kib": relay_rss,
            "ratio_to_baseline": ratio(relay_rate),
            "one_core_msgs_per_s": one_core, "one_core_server_cpu_percent": one_core_cpu,
        },
        "latency": {
            "p99_ms": latency.first().map(|l| l["p99_ms"].clone()).unwrap_or(json!(0.0)),
            "rates": latency,
        },
        "backpressure": {
            "quiet_p99_ms": bp.quiet_p99_ms, "flood_p99_ms": bp.flood_p99_ms,
            "flood_sent": bp.flood_sent, "flood_acknowledged": bp.flood_acked,
            "server_rss_before_kib": bp.rss_before_kib, "server_rss_peak_kib": bp.rss_peak_kib,
            "stuck_dropped_after_s": bp.stuck_dropped_after_s, "write_timeout_s": 5,
        },
        "idle": {"connections": idle.connections, "rss_per_conn_kib": idle.rss_per_conn_kib,
                 "storm_rss_per_conn_kib": idle.storm_rss_per_conn_kib,
                 "idle_cpu_percent": idle.idle_cpu_percent, "fd_limit": idle.fd_limit},
        "mls": {
            "msgs_per_s": m.raw_msgs_per_s, "client_msgs_per_s": m.msgs_per_s, "backlog": m.backlog, "backlog_secs": m.backlog_secs,
            "groups": m.groups.iter().map(|g| json!({"size": g.size, "add_member_ms": g.add_ms, "join_ms": g.join_ms, "commit_bytes": g.commit_bytes, "send_ms": g.send_ms})).collect::<Vec<_>>(),
        },
        "files": {"bytes": f.bytes, "upload_mb_s": f.upload_mb_s, "download_mb_s": f.download_mb_s,
                  "client_peak_rss_kib": f.client_peak_rss_kib, "server_peak_rss_kib": server_peak},
    });
    print_table(&report);
    if as_json {
        println!("{report}");
    }
    Ok(())
}

fn print_table(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    println!("{:<34} {:>14}", "scenario", "figure");
    println!("{:<34} {:>14.0}", "baseline msgs/s", f(&r["baseline"]["msgs_per_s"]));
    println!(
        "{:<34} {:>14}",
        "baseline @1000/s p50/p99 ms",
        format!(
            "{:.2} / {:.2}",
            f(&r["baseline"]["latency_at_1000"]["p50_ms"]),
            f(&r["baseline"]["latency_at_1000"]["p99_ms"])
        )
    );
    println!("{:<34} {:>14.0}", "relay msgs/s (end to end)", f(&r["relay"]["msgs_per_s"]));
    println!("{:<34} {:>14.2}", "relay / baseline", f(&r["relay"]["ratio_to_baseline"]));
    println!("{:<34} {:>14.0}", "relay msgs/s, server on one core", f(&r["relay"]["one_core_msgs_per_s"]));
    println!(
        "{:<34} {:>14}",
        "relay lost / duplicated",
        format!("{} / {}", r["relay"]["lost"], r["relay"]["duplicated"])
    );
    for l in r["latency"]["rates"].as_array().into_iter().flatten() {
        println!(
            "{:<34} {:>14}",
            format!("latency @{}/s p50/p99 ms", l["rate"]),
            format!("{:.2} / {:.2}", f(&l["p50_ms"]), f(&l["p99_ms"]))
        );
    }
    println!(
        "{:<34} {:>14}",
        "p99 ms quiet / beside a flood",
        format!("{:.2} / {:.2}", f(&r["backpressure"]["quiet_p99_ms"]), f(&r["backpressure"]["flood_p99_ms"]))
    );
    println!(
        "{:<34} {:>14}",
        "stuck reader dropped after s",
        r["backpressure"]["stuck_dropped_after_s"].as_f64().map_or("never".into(), |s| format!("{s:.1}"))
    );
    println!("{:<34} {:>14.1}", "idle KiB per connection", f(&r["idle"]["rss_per_conn_kib"]));
    println!("{:<34} {:>14.1}", "  the same right after the storm", f(&r["idle"]["storm_rss_per_conn_kib"]));
    println!("{:<34} {:>14.2}", "idle server CPU %", f(&r["idle"]["idle_cpu_percent"]));
    println!("{:<34} {:>14.0}", "mls encrypt+decrypt msgs/s", f(&r["mls"]["msgs_per_s"]));
    println!("{:<34} {:>14.0}", "  same through sotto-core msgs/s", f(&r["mls"]["client_msgs_per_s"]));
    println!("{:<34} {:>14.2}", format!("mls backlog of {} s", r["mls"]["backlog"]), f(&r["mls"]["backlog_secs"]));
    for g in r["mls"]["groups"].as_array().into_iter().flatten() {
        println!(
            "{:<34} {:>14}",
            format!("group of {}: add/join/send ms", g["size"]),
            format!("{:.1} / {:.1} / {:.2}", f(&g["add_member_ms"]), f(&g["join_ms"]), f(&g["send_ms"]))
        );
    }
    println!(
        "{:<34} {:>14}",
        "file up / down MB/s",
        format!("{:.0} / {:.0}", f(&r["files"]["upload_mb_s"]), f(&r["files"]["download_mb_s"]))
    );
    println!(
        "{:<34} {:>14}",
        "file peak RSS client/server MiB",
        format!(
            "{} / {}",
            r["files"]["client_peak_rss_kib"].as_u64().unwrap_or(0) / 1024,
            r["files"]["server_peak_rss_kib"].as_u64().unwrap_or(0) / 1024
        )
    );
}
