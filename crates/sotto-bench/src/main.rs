//! `sotto-bench`: measures a real `sotto-server` (TLS, WebSocket, durable
//! SQLite store) and the client's MLS work, against the ceiling of a
//! minimal relay on the same machine. Figures go to docs/performance.md.

mod all;
mod backpressure;
mod baseline;
mod client;
mod compare;
mod crash;
mod devices;
mod files;
mod idle;
mod mls;
mod mqtt;
mod nodes;
mod proc;
mod proxy;
mod relay;
mod relay_cmd;
mod search;
mod soak;
mod store_stages;
mod thumbnail;
mod tls;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use sotto_proto::ServerAddress;

/// A benchmark's person: conversations from anyone show at once (message
/// requests would only hide what is being measured).
pub(crate) fn bench_person(
    m: Result<sotto_core::Messenger, sotto_core::CoreError>,
) -> Result<sotto_core::Messenger, sotto_core::CoreError> {
    let m = m?;
    m.set_auto_accept(true)?;
    Ok(m)
}

#[derive(Parser)]
#[command(name = "sotto-bench", about = "Benchmarks of sotto against a real server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The shape of a relay load (`relay`, `compare-mqtt`).
#[derive(clap::Args)]
struct Load {
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Outstanding sends per sender.
    #[arg(long, default_value_t = 64)]
    window: usize,
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
        /// Several server nodes on one PostgreSQL (needs --store): a random
        /// node is killed each time, and every third time every node's
        /// database connections are cut instead.
        #[arg(long, default_value_t = 1, requires = "store", conflicts_with_all = ["cut", "file_mib"])]
        nodes: usize,
        /// The PostgreSQL for --nodes (a connection string); each run
        /// works in a fresh schema of it, dropped at the end.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
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
    Relay(relay_cmd::Options),
    /// The same load as `relay` against an MQTT broker (QoS 1) and against
    /// sotto, in interleaved rounds; prints both and the ratio.
    CompareMqtt {
        /// A broker already running (host:port). Without it each round
        /// starts Debian's `mosquitto` on a free port, pinned like the server.
        #[arg(long, value_name = "HOST:PORT")]
        broker: Option<String>,
        #[command(flatten)]
        load: Load,
        /// Rounds, each one run of the broker then one of sotto.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// CPUs for the server and the broker (a taskset list); `any`
        /// leaves both unpinned.
        #[arg(long, value_name = "LIST", default_value = "0")]
        server_cpus: String,
        /// sotto's senders also acknowledge their own messages, so its
        /// store reclaims them (as the broker drops what was delivered).
        #[arg(long)]
        sender_acks: bool,
    },
    /// TLS 1.3 handshakes against a fresh server: the hybrid
    /// post-quantum X25519MLKEM768 (the default) against classical X25519.
    Tls {
        /// Handshakes per key exchange.
        #[arg(long, default_value_t = 500)]
        handshakes: usize,
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
    /// Several devices per account (no server): a one-to-one with 1 and
    /// 3 devices each, and linking a device into many conversations.
    /// Search over a history of many messages in a real SQLCipher profile,
    /// in the process and through `sotto search` (needs the `sotto` binary
    /// beside this one: `cargo build --release -p sotto-cli`).
    Search {
        /// Messages in the history.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Skip the timing through the CLI.
        #[arg(long)]
        no_cli: bool,
        /// Keep the filled profile in this folder (it must not exist).
        #[arg(long, value_name = "DIR")]
        keep: Option<std::path::PathBuf>,
    },
    /// Making a picture's preview on the sender's side, for camera sizes.
    Thumbnail {
        /// Runs per size (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    Devices {
        /// Texts sent in each one-to-one.
        #[arg(long, default_value_t = 500)]
        messages: u64,
        /// Conversations the linked device is added to.
        #[arg(long, default_value_t = 100)]
        groups: usize,
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
        /// A PostgreSQL store shared with other nodes.
        #[arg(long)]
        store: Option<String>,
        /// Every table in this schema of it (one run's own).
        #[arg(long, requires = "store")]
        schema: Option<String>,
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
        Command::Serve { data, port, write_timeout_secs, rate_limited, store, schema } => {
            let store = store.map(|url| (url, schema));
            rt.block_on(serve(&data, port, Duration::from_secs(write_timeout_secs), rate_limited, store))
        }
        Command::Crash { kills, messages, pairs, cut, file_mib, nodes, store } => rt.block_on(async {
            let r = crash::run(kills, messages, pairs, cut, file_mib, store.map(|s| (s, nodes.max(1)))).await?;
            if let Some(f) = &r.file {
                println!(
                    "file bytes={} upload_attempts={} download_attempts={} cuts={} identical={}",
                    f.bytes, f.upload_attempts, f.download_attempts, f.cuts, f.identical
                );
            }
            println!(
                "kills={} db_cuts={} cuts={} out_of_order={}\nsent={} acked={} delivered={} lost={} duplicated={}",
                r.kills, r.db_cuts, r.cuts, r.out_of_order, r.sent, r.acked, r.delivered, r.lost, r.duplicated
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
        Command::Relay(o) => rt.block_on(relay_cmd::run(o)),
        Command::CompareMqtt { broker, load: Load { pairs, secs, window }, rounds, server_cpus, sender_acks } => {
            let server_cpus = (server_cpus != "any").then_some(server_cpus);
            rt.block_on(compare::run(compare::Options {
                broker,
                pairs,
                secs,
                window,
                rounds,
                server_cpus,
                sender_acks,
            }))
        }
        Command::Tls { handshakes } => rt.block_on(async {
            let tmp = tempfile::tempdir()?;
            let (_server, address) = start_server(tmp.path())?;
            for h in tls::run(&address, handshakes).await? {
                println!(
                    "tls group={} handshakes={handshakes} p50_ms={:.3} p99_ms={:.3} mean_ms={:.3}",
                    h.group, h.p50_ms, h.p99_ms, h.mean_ms
                );
            }
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
            for m in mls::run(messages, backlog, &sizes)? {
                let suite = if sotto_core::suite::is_post_quantum(m.suite) { "xwing" } else { "classical" };
                println!("suite={suite} ({})", sotto_core::suite::describe(m.suite));
                println!("suite={suite} key_package_bytes={}", m.key_package_bytes);
                println!("suite={suite} mls_raw_msgs_per_s={:.0}", m.raw_msgs_per_s);
                println!(
                    "suite={suite} mls_msgs_per_s={:.0} backlog={} backlog_secs={:.2}",
                    m.msgs_per_s, m.backlog, m.backlog_secs
                );
                for g in &m.groups {
                    println!(
                        "suite={suite} group size={} add_ms={:.1} join_ms={:.1} send_ms={:.2} commit_bytes={} welcome_bytes={}",
                        g.size, g.add_ms, g.join_ms, g.send_ms, g.commit_bytes, g.welcome_bytes
                    );
                }
            }
            Ok(())
        }
        Command::Search { messages, no_cli, keep } => {
            let r = search::run(messages, !no_cli, keep.as_deref())?;
            println!("search messages={} fill_secs={:.1}", r.messages, r.fill_secs);
            for (q, hits, ms, cli_ms) in &r.queries {
                let cli = cli_ms.map(|ms| format!(" cli_ms={ms:.1}")).unwrap_or_default();
                println!("query={q:?} hits={hits} in_process_ms={ms:.2}{cli}");
            }
            Ok(())
        }
        Command::Thumbnail { runs } => {
            for r in thumbnail::run(runs)? {
                println!(
                    "thumbnail {}x{} source_bytes={} median_ms={:.1} preview_bytes={}",
                    r.width, r.height, r.source_bytes, r.median_ms, r.preview_bytes
                );
            }
            Ok(())
        }
        Command::Devices { messages, groups } => {
            let r = devices::run(messages, groups)?;
            for c in &r.conversations {
                println!(
                    "one_to_one devices_each={} send_ms={:.3} read_ms_all_devices={:.3} start_commit_bytes={}",
                    c.devices_each, c.send_ms, c.read_ms_all_devices, c.start_commit_bytes
                );
            }
            let l = &r.link;
            println!(
                "link groups={} approve_ms={:.1} accept_ms={:.1} commits_ms={:.0} welcomes_ms={:.0} peer_commit_ms={:.2} commit_bytes={} welcome_bytes={}",
                l.groups, l.approve_ms, l.accept_ms, l.commits_ms, l.welcomes_ms, l.peer_commit_ms, l.commit_bytes, l.welcome_bytes
            );
            Ok(())
        }
        Command::BaselineServe => rt.block_on(baseline::serve()),
        Command::FilesChild { server, size } => rt.block_on(files::child(&server, size)),
        Command::All { quick, json, pairs, idle, file_mib } => {
            rt.block_on(all::all(quick, json, pairs, idle, file_mib))
        }
    }
}

async fn serve(
    data: &std::path::Path,
    port: u16,
    write_timeout: Duration,
    rate_limited: bool,
    store: Option<(String, Option<String>)>,
) -> Result<()> {
    use sotto_server::node::{Node, Services};
    use sotto_server::relay::RelayConfig;
    sotto_server::memory::return_freed_memory_when_idle()?;
    // Nodes on one PostgreSQL present the deployment's key, as the real
    // binary's do.
    let pg = match &store {
        None => None,
        Some((url, schema)) => {
            let pg = tokio::task::block_in_place(|| sotto_server::store::PgStore::open_in(url, schema.as_deref()))?;
            let fresh = sotto_server::tls::new_key_pem()?.into_bytes();
            let key = tokio::task::block_in_place(|| pg.shared_value("tls_key", || fresh))?;
            sotto_server::tls::adopt_key(&data.join("tls"), &String::from_utf8_lossy(&key))?;
            Some(std::sync::Arc::new(pg))
        }
    };
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
    let node = match pg {
        None => Node::open(data, config, pin.to_vec())?,
        Some(pg) => Node::with_store(pg, data, config, pin.to_vec())?,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address = ServerAddress {
        host: "127.0.0.1".into(),
        port: listener.local_addr()?.port(),
        transport: sotto_proto::Transport::Pinned(pin),
    };
    // Its own address for `/metrics`, where `relay` reads the store's
    // stage timings (`store_stages.rs`).
    let metrics = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    std::fs::write(data.join(store_stages::METRICS_FILE), metrics.local_addr()?.to_string())?;
    println!("{address}");
    let listen = sotto_server::server::ListenConfig {
        max_connections: 100_000,
        max_connections_per_ip: 100_000,
        ..Default::default()
    };
    let services = Services { metrics: Some(metrics), ..Services::default() };
    node.serve(listener, Some(tls.config), listen, services, std::future::pending()).await?;
    Ok(())
}

/// The relay scenario with the server pinned to CPU 0 and this process to
/// CPU 1: (msgs/s, server CPU %).
async fn relay_pinned(pairs: usize, run_for: Duration) -> Result<(f64, f64)> {
    proc::pin_self("1");
    let r = relay_cmd::round(pairs, run_for, 64, Some("0"), false).await;
    proc::pin_self("0-1023");
    let r = r?;
    anyhow::ensure!(r.lost == 0 && r.duplicated == 0, "one-core relay lost or duplicated messages");
    Ok((r.msgs_per_s, r.cpu_percent))
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

pub(crate) fn start_server(dir: &std::path::Path) -> Result<(proc::Proc, ServerAddress)> {
    let p = proc::Proc::spawn(&["serve", "--data", dir.to_str().context("path")?])?;
    let address = ServerAddress::parse(&p.line)?;
    Ok((p, address))
}
