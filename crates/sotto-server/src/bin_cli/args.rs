//! The command line of `sotto-server`.

#[allow(unused_imports)]
use super::*;

#[derive(Parser)]
#[command(
    name = "sotto-server",
    version,
    about = "The sotto relay: a blind, ordered mailbox for end-to-end encrypted messages"
)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Send a notice to every user: shown apart from conversations, marked
    /// as from this server's operator and NOT end-to-end encrypted. Users
    /// offline now get it when they next connect.
    Announce(AnnounceArgs),
    /// Check a configuration file and explain each mistake.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigAction {
    /// Validate FILE.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Args, Clone, Default)]
pub(crate) struct RunArgs {
    /// TOML configuration file; flags override what it says.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (database, TLS key, files) [default: ./sotto-data].
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Keep the state in PostgreSQL (postgresql://user@host/db), shared by
    /// several nodes, instead of the embedded SQLite in the data directory.
    #[arg(long, value_name = "URL")]
    pub(crate) store: Option<String>,
    /// Folder for file bytes [default: DATA/blobs]. Nodes sharing a
    /// PostgreSQL store must share it too (a network filesystem).
    #[arg(long, value_name = "DIR")]
    pub(crate) blobs: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 0.0.0.0:7443].
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Let anyone register without an invite.
    #[arg(long)]
    pub(crate) open_registration: bool,
    /// Do not tell anyone who is online.
    #[arg(long)]
    pub(crate) no_presence: bool,
    /// Host name clients use, when listening on all interfaces.
    #[arg(long)]
    pub(crate) public_host: Option<String>,
    /// PEM certificate chain (instead of the generated self-signed one).
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve plain HTTP, for running behind a TLS-terminating proxy.
    #[arg(long, conflicts_with = "tls_cert")]
    pub(crate) insecure_http: bool,
    /// Largest file accepted, in bytes [default: 2 GiB].
    #[arg(long)]
    pub(crate) max_file_size: Option<u64>,
    /// Most bytes of files one account may have waiting [default: 8 GiB].
    #[arg(long)]
    pub(crate) quota: Option<u64>,
    /// How long undelivered messages and files are kept (e.g. 30d) [default: 30d].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) retention: Option<Duration>,
    /// Log format on stderr: text or json [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    pub(crate) log_format: Option<String>,
    /// Also write daily-rotated logs under DATA/logs.
    #[arg(long)]
    pub(crate) log_files: bool,
    /// Serve Prometheus /metrics on this address (off by default).
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Most simultaneous connections from one IP address [default: 200].
    #[arg(long)]
    pub(crate) max_connections_per_ip: Option<usize>,
}

#[derive(Args, Clone)]
pub(crate) struct DataArg {
    /// Data directory of the server.
    #[arg(long, default_value = "./sotto-data", global = true)]
    pub(crate) data: PathBuf,
    /// The deployment's PostgreSQL (as the nodes' --store), instead of the
    /// SQLite database in the data directory.
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) store: Option<String>,
}

#[derive(Args, Clone)]
pub(crate) struct HandleArg {
    /// The account.
    pub(crate) handle: String,
    #[command(flatten)]
    pub(crate) data: DataArg,
}

#[derive(Args)]
pub(crate) struct AnnounceArgs {
    /// The notice (plain text, at most 2000 bytes).
    pub(crate) text: String,
    #[command(flatten)]
    pub(crate) data: DataArg,
}

#[derive(Args)]
pub(crate) struct InviteArgs {
    #[command(flatten)]
    pub(crate) data: DataArg,
    /// How many registrations the code allows.
    #[arg(long, default_value_t = 1)]
    pub(crate) uses: u32,
    /// How long the code stays valid (e.g. 7d); never expires when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) expires: Option<Duration>,
    /// List live invites (codes are not stored, so ids are shown).
    #[arg(long, conflicts_with_all = ["revoke", "uses", "expires"])]
    pub(crate) list: bool,
    /// Revoke an invite by id (from --list) or by its code.
    #[arg(long, value_name = "ID_OR_CODE")]
    pub(crate) revoke: Option<String>,
}

#[derive(Args)]
pub(crate) struct UsersArgs {
    #[command(flatten)]
    pub(crate) data: DataArg,
    #[command(subcommand)]
    pub(crate) action: Option<UsersAction>,
}

#[derive(Subcommand)]
pub(crate) enum UsersAction {
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
