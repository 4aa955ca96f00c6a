//! `sotto-server`: run the relay, or manage it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sotto_proto::{ServerAddress, Transport};
use sotto_server::relay::{now_ms, Relay, RelayConfig};
use sotto_server::server::{self, ListenConfig};
use sotto_server::store::{SqliteStore, Store};
use sotto_server::{invite, tls};
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
#[command(
    name = "sotto-server",
    version,
    about = "The sotto relay: a blind, ordered mailbox for end-to-end encrypted messages"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Run(RunArgs),
    /// Mint an invite code (works while the server runs).
    Invite(InviteArgs),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Data directory (database, TLS key).
    #[arg(long, default_value = "./sotto-data")]
    data: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:7443")]
    listen: SocketAddr,
    /// Let anyone register without an invite.
    #[arg(long)]
    open_registration: bool,
    /// Do not tell anyone who is online.
    #[arg(long)]
    no_presence: bool,
    /// Host name clients use, when listening on all interfaces.
    #[arg(long)]
    public_host: Option<String>,
    /// PEM certificate chain (instead of the generated self-signed one).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for running behind a TLS-terminating proxy.
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// Largest file accepted, in bytes (encrypted size).
    #[arg(long, default_value_t = sotto_proto::limits::DEFAULT_MAX_BLOB_BYTES)]
    max_file_size: u64,
    /// Most bytes of files one account may have waiting on the server.
    #[arg(long, default_value_t = 4 * sotto_proto::limits::DEFAULT_MAX_BLOB_BYTES)]
    quota: u64,
    /// How long undelivered messages are kept (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Log format on stderr.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Args)]
struct InviteArgs {
    /// Data directory of the server.
    #[arg(long, default_value = "./sotto-data")]
    data: PathBuf,
    /// How many registrations the code allows.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// How long the code stays valid (e.g. 7d); never expires when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Invite(args)) => mint_invite(&args),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn open_store(data: &Path) -> Result<SqliteStore> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create the data directory {}", data.display()))?;
    SqliteStore::open(&data.join("relay.db")).with_context(|| format!("cannot open the database in {}", data.display()))
}

fn mint_invite(args: &InviteArgs) -> Result<()> {
    if !args.data.join("relay.db").exists() {
        bail!("no server data in {} (start the server once, or pass --data)", args.data.display());
    }
    if args.uses == 0 {
        bail!("--uses must be at least 1");
    }
    let store = open_store(&args.data)?;
    let code = invite::new_code();
    let now = now_ms();
    let expires = args.expires.map(|d| now + d.as_millis() as i64);
    store.create_invite(&code, args.uses, expires, now)?;
    println!("invite: {code}");
    Ok(())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
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

#[tokio::main]
async fn run(args: RunArgs) -> Result<()> {
    init_logging(&args.log_format);
    let first_start = !args.data.join("relay.db").exists();
    let store = Arc::new(open_store(&args.data)?);

    let all_interfaces = args.listen.ip().is_unspecified();
    let host = match (&args.public_host, all_interfaces) {
        (Some(h), _) => h.clone(),
        (None, true) => machine_hostname(),
        (None, false) => args.listen.ip().to_string(),
    };
    let tls = if args.insecure_http {
        None
    } else if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        Some(tls::from_files(cert, key)?)
    } else {
        Some(tls::self_signed(&args.data.join("tls"), std::slice::from_ref(&host))?)
    };
    let pin = tls.as_ref().and_then(|t| t.pin);
    let server_id = match pin {
        Some(pin) => pin.to_vec(),
        None => server_id(&args.data)?,
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another server running there?)", args.listen))?;
    let local = listener.local_addr()?;
    let transport = match (&tls, pin) {
        (None, _) => Transport::Insecure,
        (Some(_), Some(pin)) => Transport::Pinned(pin),
        (Some(_), None) => Transport::WebPki,
    };
    let address = ServerAddress { host, port: local.port(), transport };

    let blob_dir = args.data.join("blobs");
    std::fs::create_dir_all(&blob_dir).with_context(|| format!("cannot create {}", blob_dir.display()))?;
    let relay = Arc::new(Relay::new(
        store.clone(),
        RelayConfig {
            open_registration: args.open_registration,
            retention: args.retention,
            presence: !args.no_presence,
            max_blob_bytes: args.max_file_size,
            blob_quota: args.quota,
            ..Default::default()
        },
        server_id,
        blob_dir,
    ));

    let mut out = tokio::io::stdout();
    if first_start && !args.open_registration {
        let code = invite::new_code();
        store.create_invite(&code, 1, None, now_ms())?;
        out.write_all(format!("invite: {code}\n").as_bytes()).await?;
    }
    if all_interfaces && args.public_host.is_none() {
        eprintln!(
            "note: listening on all interfaces; the address uses this machine's name {:?}. Use --public-host NAME to change it.",
            address.host
        );
    }
    if args.insecure_http {
        eprintln!("warning: plain HTTP; only run this behind a TLS-terminating proxy");
    }
    tracing::info!(listen = %local, open_registration = args.open_registration, "sotto-server ready");
    out.write_all(format!("address: {address}\n").as_bytes()).await?;
    out.flush().await?;

    let purge_relay = relay.clone();
    let retention_ms = args.retention.as_millis() as i64;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let s = purge_relay.store.clone();
            match tokio::task::spawn_blocking(move || s.purge_expired(now_ms(), retention_ms)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "retention purge"),
                Ok(Err(e)) => tracing::error!(error = %e, "retention purge failed"),
                _ => {}
            }
            let s = purge_relay.store.clone();
            if let Ok(Ok(ids)) = tokio::task::spawn_blocking(move || s.expire_blobs(now_ms() - retention_ms)).await {
                for id in &ids {
                    sotto_server::blobs::remove_bytes(&purge_relay.blob_dir, id).await;
                }
                if !ids.is_empty() {
                    tracing::info!(deleted = ids.len(), "expired files removed");
                }
            }
        }
    });

    server::run(listener, tls.map(|t| t.config), relay, ListenConfig::default(), shutdown_signal()).await?;
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
