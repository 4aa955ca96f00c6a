//! `sotto-server`: run the relay, or manage it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use sotto_proto::{ServerAddress, Transport};
use sotto_server::config::{self, FileConfig, Settings};
use sotto_server::node::{Node, Services};
use sotto_server::relay::{now_ms, RelayConfig};
use sotto_server::server::ListenConfig;
use sotto_server::store::Accounts;
use sotto_server::store::KeyPackages;
use sotto_server::store::OperatorViews;
use sotto_server::store::SqliteStore;
use sotto_server::{admin, data_dir, invite, tls};
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
    Run(Box<RunArgs>),
    /// Mint, list or revoke invite codes (works while the server runs).
    Invite(InviteArgs),
    /// List, show or remove accounts.
    Users(UsersArgs),
    /// Live connections of the running server.
    Sessions(DataArg),
    /// Ban an account: its connections close at once and it cannot log in.
    Ban(HandleArg),
    /// Lift a ban.
    Unban(HandleArg),
    /// What the server stores and how many are connected.
    Stats(DataArg),
    /// Check a configuration file and explain each mistake.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate FILE.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// TOML configuration file; flags override what it says.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (database, TLS key, files) [default: ./sotto-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 0.0.0.0:7443].
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    /// Largest file accepted, in bytes [default: 2 GiB].
    #[arg(long)]
    max_file_size: Option<u64>,
    /// Most bytes of files one account may have waiting [default: 8 GiB].
    #[arg(long)]
    quota: Option<u64>,
    /// How long undelivered messages and files are kept (e.g. 30d) [default: 30d].
    #[arg(long, value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
    /// Log format on stderr: text or json [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Also write daily-rotated logs under DATA/logs.
    #[arg(long)]
    log_files: bool,
    /// Serve Prometheus /metrics on this address (off by default).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Most simultaneous connections from one IP address [default: 200].
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
}

#[derive(Args, Clone)]
struct DataArg {
    /// Data directory of the server.
    #[arg(long, default_value = "./sotto-data", global = true)]
    data: PathBuf,
}

#[derive(Args, Clone)]
struct HandleArg {
    /// The account.
    handle: String,
    #[command(flatten)]
    data: DataArg,
}

#[derive(Args)]
struct InviteArgs {
    #[command(flatten)]
    data: DataArg,
    /// How many registrations the code allows.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// How long the code stays valid (e.g. 7d); never expires when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
    /// List live invites (codes are not stored, so ids are shown).
    #[arg(long, conflicts_with_all = ["revoke", "uses", "expires"])]
    list: bool,
    /// Revoke an invite by id (from --list) or by its code.
    #[arg(long, value_name = "ID_OR_CODE")]
    revoke: Option<String>,
}

#[derive(Args)]
struct UsersArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(subcommand)]
    action: Option<UsersAction>,
}

#[derive(Subcommand)]
enum UsersAction {
    /// Every account (the default).
    List,
    /// One account's devices and groups.
    Show {
        /// The account.
        handle: String,
    },
    /// Delete an account and everything the server holds for it.
    Remove {
        /// The account.
        handle: String,
    },
}

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
        Some(Command::Sessions(d)) => rt.block_on(sessions(&d.data)),
        Some(Command::Ban(h)) => rt.block_on(ban(&h, true)),
        Some(Command::Unban(h)) => rt.block_on(ban(&h, false)),
        Some(Command::Stats(d)) => rt.block_on(stats(&d.data)),
        Some(Command::Config { action: ConfigAction::Check { file } }) => check_config(&file),
    }
}

fn open_store(data: &Path) -> Result<SqliteStore> {
    Ok(sotto_server::node::open_store(data)?)
}

/// The store of an existing server (operator commands never create one).
fn existing_store(data: &Path) -> Result<SqliteStore> {
    if !data.join("relay.db").exists() {
        bail!("no server data in {} (start the server once, or pass --data)", data.display());
    }
    open_store(data)
}

fn when(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn invites(a: &InviteArgs) -> Result<()> {
    let store = existing_store(&a.data.data)?;
    if a.list {
        for i in store.list_invites()? {
            let exp = i.expires_at.map(when).unwrap_or_else(|| "never".into());
            println!("id {}\tuses left {}\texpires {exp}\tcreated {}", i.id, i.uses_left, when(i.created_at));
        }
        return Ok(());
    }
    if let Some(r) = &a.revoke {
        if !store.revoke_invite(r)? {
            bail!("no such invite (see `sotto-server invite --list`)");
        }
        println!("revoked");
        return Ok(());
    }
    if a.uses == 0 {
        bail!("--uses must be at least 1");
    }
    let code = invite::new_code();
    let now = now_ms();
    store.create_invite(&code, a.uses, a.expires.map(|d| now + d.as_millis() as i64), now)?;
    println!("invite: {code}");
    Ok(())
}

async fn users(a: UsersArgs) -> Result<()> {
    let store = existing_store(&a.data.data)?;
    match a.action.unwrap_or(UsersAction::List) {
        UsersAction::List => {
            for u in store.list_accounts()? {
                let banned = if u.banned { "\tBANNED" } else { "" };
                println!(
                    "@{}\tdevices {}\tgroups {}\tsince {}{banned}",
                    u.handle,
                    u.devices,
                    u.groups,
                    when(u.created_at)
                );
            }
        }
        UsersAction::Show { handle } => {
            let acct = store.account(&handle)?.with_context(|| format!("no account @{handle}"))?;
            let summary = store.list_accounts()?.into_iter().find(|s| s.handle == handle);
            println!("@{}{}", acct.handle, if acct.banned { " (banned)" } else { "" });
            println!("account key: {}", hex::encode(&acct.account_key));
            for d in &acct.devices {
                let dref = sotto_proto::DeviceRef { handle: handle.clone(), device_id: d.device_id };
                println!(
                    "device {}: key {}, key packages {}",
                    d.device_id,
                    hex::encode(&d.device_key),
                    store.key_package_count(&dref)?
                );
            }
            if let Some(s) = summary {
                println!("groups: {}\nregistered: {}", s.groups, when(s.created_at));
            }
        }
        UsersAction::Remove { handle } => {
            store.remove_account(&handle).map_err(|_| anyhow::anyhow!("no account @{handle}"))?;
            admin::request(&a.data.data, json!({"cmd": "kick", "handle": handle})).await;
            println!("removed @{handle}");
        }
    }
    Ok(())
}

async fn sessions(data: &Path) -> Result<()> {
    let answer = admin::request(data, json!({"cmd": "sessions"}))
        .await
        .with_context(|| format!("no server is running on {}", data.display()))?;
    for s in answer["sessions"].as_array().into_iter().flatten() {
        println!(
            "@{}/{}\t{}\tsince {}\tin {} B\tout {} B",
            s["handle"].as_str().unwrap_or_default(),
            s["device_id"],
            s["remote"].as_str().unwrap_or_default(),
            when(s["since"].as_i64().unwrap_or(0) * 1000),
            s["bytes_in"],
            s["bytes_out"]
        );
    }
    Ok(())
}

async fn ban(h: &HandleArg, banned: bool) -> Result<()> {
    let store = existing_store(&h.data.data)?;
    let handle = h.handle.trim_start_matches('@');
    store.set_banned(handle, banned).map_err(|_| anyhow::anyhow!("no account @{handle}"))?;
    if banned {
        let kicked = admin::request(&h.data.data, json!({"cmd": "kick", "handle": handle})).await;
        let n = kicked.and_then(|k| k["kicked"].as_u64()).unwrap_or(0);
        println!("banned @{handle}; {n} live connection(s) closed");
    } else {
        println!("unbanned @{handle}");
    }
    Ok(())
}

async fn stats(data: &Path) -> Result<()> {
    let store = existing_store(data)?;
    let s = store.stats()?;
    println!(
        "accounts: {}\ngroups: {}\nmessages waiting: {}\nwelcomes waiting: {}\nfiles: {} ({} bytes)",
        s.accounts, s.groups, s.messages, s.welcomes, s.blobs, s.blob_bytes
    );
    match admin::request(data, json!({"cmd": "stats"})).await {
        Some(live) => println!("connected devices: {}", live["connections"]),
        None => println!("server: not running"),
    }
    Ok(())
}

fn check_config(file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match config::check(&text) {
        Ok(s) => {
            println!("{}: ok", file.display());
            println!("{s:#?}");
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            bail!("{} mistake(s) in {}", errors.len(), file.display())
        }
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
    let tls = if s.insecure_http {
        None
    } else if let Some((cert, key)) = &s.tls_files {
        Some(tls::from_files(cert, key)?)
    } else {
        Some(tls::self_signed(&s.data.join("tls"), std::slice::from_ref(&host))?)
    };
    let pin = tls.as_ref().and_then(|t| t.pin);
    let server_id = match pin {
        Some(pin) => pin.to_vec(),
        None => server_id(&s.data)?,
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
        ..Default::default()
    };
    let node = Node::open(&s.data, config, server_id)?;
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
