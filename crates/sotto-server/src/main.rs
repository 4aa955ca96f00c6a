//! `sotto-server`: run the relay, or manage it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use sotto_proto::{ServerAddress, Transport};
use sotto_server::config::{self, FileConfig, Settings};
use sotto_server::node::{Node, Services};
use sotto_server::relay::{now_ms, RelayConfig};
use sotto_server::server::ListenConfig;
use sotto_server::{data_dir, invite, tls};
use tokio::io::AsyncWriteExt;

#[path = "bin_cli/args.rs"]
mod args;
#[path = "bin_cli/operator.rs"]
mod operator;

use args::*;
use operator::*;

// jemalloc returns the memory of departed connections (see sotto_server::memory).
#[global_allocator]
static ALLOCATOR: sotto_server::memory::Jemalloc = sotto_server::memory::Jemalloc;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // Store calls run on the blocking pool; a small pool keeps memory flat
    // under a login storm (each extra thread costs its stack and arena).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(32).build()?;
    match cli.command {
        Some(Command::Run(args)) => rt.block_on(run(*args)),
        None => rt.block_on(run(cli.run)),
        Some(Command::Invite(a)) => invites(&a),
        Some(Command::Users(a)) => rt.block_on(users(a)),
        Some(Command::Sessions(d)) => rt.block_on(sessions(&d)),
        Some(Command::Ban(h)) => rt.block_on(ban(&h, true)),
        Some(Command::Unban(h)) => rt.block_on(ban(&h, false)),
        Some(Command::Stats(d)) => rt.block_on(stats(&d)),
        Some(Command::Announce(a)) => rt.block_on(announce(&a)),
        Some(Command::Config { action: ConfigAction::Check { file } }) => check_config(&file),
    }
}

/// Defaults, then the file, then flags.
fn settings(args: &RunArgs) -> Result<Settings> {
    let file = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.join("; ")))?
        }
        None => FileConfig::default(),
    };
    let mut s = Settings::default()
        .apply(&file)
        .map_err(|e| anyhow::anyhow!("configuration: {} (run `sotto-server config check FILE`)", e.join("; ")))?;
    if let Some(v) = &args.data {
        s.data = v.clone();
    }
    if let Some(v) = &args.blobs {
        s.blobs = Some(v.clone());
    }
    if let Some(v) = &args.store {
        s.store = config::store_url(v).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
    }
    if let Some(v) = args.listen {
        s.listen = v;
    }
    s.open_registration |= args.open_registration;
    s.presence &= !args.no_presence;
    if let Some(v) = &args.public_host {
        s.public_host = Some(v.clone());
    }
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        s.tls_files = Some((c.clone(), k.clone()));
    }
    s.insecure_http |= args.insecure_http;
    if let Some(v) = args.max_file_size {
        s.max_file_size = v;
    }
    if let Some(v) = args.quota {
        s.quota = v;
    }
    if let Some(v) = args.retention {
        s.retention = v;
    }
    if let Some(v) = &args.log_format {
        s.log_format = v.clone();
    }
    s.log_files |= args.log_files;
    if let Some(v) = args.metrics_listen {
        s.metrics_listen = Some(v);
    }
    if let Some(v) = args.max_connections_per_ip {
        s.max_connections_per_ip = v;
    }
    Ok(s)
}

fn init_logging(s: &Settings) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let json = s.log_format == "json";
    let stderr = if json {
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter()).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter()).boxed()
    };
    let (files, guard) = if s.log_files {
        let appender = tracing_appender::rolling::daily(s.data.join("logs"), "sotto-server.log");
        let (writer, guard) = tracing_appender::non_blocking(appender);
        (Some(tracing_subscriber::fmt::layer().json().with_writer(writer).with_filter(filter()).boxed()), Some(guard))
    } else {
        (None, None)
    };
    tracing_subscriber::registry().with(stderr).with(files).init();
    guard
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A random id kept in the data dir: what logins bind to when there is no
/// pinned key.
fn server_id(data: &Path) -> Result<Vec<u8>> {
    let path = data.join("server-id");
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == 32 {
            return Ok(bytes);
        }
    }
    let id: [u8; 32] = rand::random();
    std::fs::write(&path, id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id.to_vec())
}

async fn run(args: RunArgs) -> Result<()> {
    let s = settings(&args)?;
    let _log_guard = init_logging(&s);
    if let Err(e) = sotto_server::memory::return_freed_memory_when_idle() {
        tracing::warn!("freed memory will be returned to the system only under load: {e}");
    }
    let _lock = data_dir::lock(&s.data)?;
    let first_start = !s.data.join("relay.db").exists();
    // Made private before anything is written into it.
    std::fs::create_dir_all(&s.data)
        .with_context(|| format!("cannot create the data directory {}", s.data.display()))?;
    data_dir::private(&s.data, 0o700)?;

    let all_interfaces = s.listen.ip().is_unspecified();
    let host = match (&s.public_host, all_interfaces) {
        (Some(h), _) => h.clone(),
        (None, true) => machine_hostname(),
        (None, false) => s.listen.ip().to_string(),
    };
    // Several nodes on one PostgreSQL share one deployment: the first to
    // start makes the TLS key (and server id), the others take them from
    // the database, so every node presents the same pinned key.
    let pg = match &s.store {
        None => None,
        Some(url) => Some(std::sync::Arc::new(
            tokio::task::block_in_place(|| sotto_server::store::PgStore::open(url))
                .map_err(|e| anyhow::anyhow!("cannot use the PostgreSQL store: {e}"))?,
        )),
    };
    // The deployment's first node mints the first invite, as one server does
    // on its first start; the nodes that join it later do not.
    let first_start = match &pg {
        None => first_start,
        Some(pg) => {
            let mine = rand::random::<[u8; 16]>().to_vec();
            let got = tokio::task::block_in_place(|| pg.shared_value("created_by", || mine.clone()))
                .map_err(|e| anyhow::anyhow!("cannot read the deployment from PostgreSQL: {e}"))?;
            got == mine
        }
    };
    let shared = |name: &str, make: &dyn Fn() -> Result<Vec<u8>>| -> Result<Option<Vec<u8>>> {
        let Some(pg) = &pg else { return Ok(None) };
        let fresh = make()?;
        let value = tokio::task::block_in_place(|| pg.shared_value(name, || fresh))
            .map_err(|e| anyhow::anyhow!("cannot read the deployment's {name} from PostgreSQL: {e}"))?;
        Ok(Some(value))
    };
    let tls = if s.insecure_http {
        None
    } else if let Some((cert, key)) = &s.tls_files {
        Some(tls::from_files(cert, key)?)
    } else {
        if let Some(pem) = shared("tls_key", &|| Ok(tls::new_key_pem()?.into_bytes()))? {
            tls::adopt_key(&s.data.join("tls"), &String::from_utf8_lossy(&pem))?;
        }
        Some(tls::self_signed(&s.data.join("tls"), std::slice::from_ref(&host))?)
    };
    let pin = tls.as_ref().and_then(|t| t.pin);
    let server_id = match (pin, shared("server_id", &|| Ok(rand::random::<[u8; 32]>().to_vec()))?) {
        (Some(pin), _) => pin.to_vec(),
        (None, Some(id)) => id,
        (None, None) => server_id(&s.data)?,
    };

    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another server running there?)", s.listen))?;
    let local = listener.local_addr()?;
    let transport = match (&tls, pin) {
        (None, _) => Transport::Insecure,
        (Some(_), Some(pin)) => Transport::Pinned(pin),
        (Some(_), None) => Transport::WebPki,
    };
    let address = ServerAddress { host, port: local.port(), transport };

    let config = RelayConfig {
        open_registration: s.open_registration,
        retention: s.retention,
        auth_timeout: s.auth_timeout,
        presence: s.presence,
        max_blob_bytes: s.max_file_size,
        blob_quota: s.quota,
        request_rate: s.request_rate,
        request_burst: s.request_burst,
        byte_rate: s.byte_rate,
        byte_burst: s.byte_burst,
        max_groups_per_device: s.max_groups_per_device,
        max_devices: s.max_devices,
        ..Default::default()
    };
    let blobs = s.blobs.clone().unwrap_or_else(|| s.data.join("blobs"));
    let node = match pg {
        None => Node::open_with_blobs(&s.data, &blobs, config, server_id)?,
        Some(pg) => Node::with_store_and_blobs(pg, &s.data, &blobs, config, server_id)?,
    };
    let relay = node.relay();
    let metrics = match s.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?,
        ),
        None => None,
    };

    let mut out = tokio::io::stdout();
    if first_start && !s.open_registration {
        let code = invite::new_code();
        relay.store.create_invite(&code, 1, None, now_ms())?;
        out.write_all(format!("invite: {code}\n").as_bytes()).await?;
    }
    if all_interfaces && s.public_host.is_none() {
        eprintln!(
            "note: listening on all interfaces; the address uses this machine's name {:?}. Use --public-host NAME to change it.",
            address.host
        );
    }
    if s.insecure_http {
        eprintln!("warning: plain HTTP; only run this behind a TLS-terminating proxy");
    }
    tracing::info!(listen = %local, open_registration = s.open_registration, "sotto-server ready");
    out.write_all(format!("address: {address}\n").as_bytes()).await?;
    out.flush().await?;

    let listen = ListenConfig {
        handshake_timeout: s.auth_timeout,
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        ipv6_prefix: s.ipv6_prefix,
        max_unauthenticated: s.max_unauthenticated,
        ..Default::default()
    };
    node.serve(listener, tls.map(|t| t.config), listen, Services::all(metrics), shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
