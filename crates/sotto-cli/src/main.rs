//! `sotto`: the command-line client.

mod output;
mod profile;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sotto_client::Session;
use sotto_core::Event;
use sotto_proto::ServerAddress;

#[derive(Parser)]
#[command(name = "sotto", version, about = "End-to-end encrypted messaging over MLS")]
struct Cli {
    /// Profile directory (one per server account).
    #[arg(long, global = true, env = "SOTTO_PROFILE")]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an identity and register it on a server.
    Init {
        /// The server's address, as `sotto-server` printed it.
        #[arg(long)]
        server: String,
        /// Your handle on that server.
        #[arg(long)]
        name: String,
        /// An invite code from the server's operator.
        #[arg(long)]
        invite: Option<String>,
        /// Keep the database key in a file instead of deriving it from a passphrase (weaker).
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Send a message; exits 0 once the server has it.
    Send {
        /// `@handle`.
        to: String,
        /// The text.
        text: String,
    },
    /// Fetch and print new messages.
    Receive {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep listening this many seconds for more.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Show a conversation's stored history.
    History {
        /// `@handle`.
        conversation: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List contacts.
    Contacts {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOTTO_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn conversation_arg(s: &str) -> Result<String> {
    let Some(handle) = s.strip_prefix('@') else {
        bail!("name a person as @handle (got {s:?})");
    };
    sotto_proto::validate_handle(handle).map_err(|e| anyhow::anyhow!("{s}: {e}"))?;
    Ok(s.to_owned())
}

fn report(events: &[Event]) {
    for e in events {
        if let Event::Warning { conversation, text } = e {
            eprintln!("warning: {}{text}", conversation.as_ref().map(|c| format!("{c}: ")).unwrap_or_default());
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let dir = match cli.profile {
        Some(d) => d,
        None => profile::default_dir()?,
    };
    match cli.command {
        Command::Init { server, name, invite, no_passphrase } => {
            let address = ServerAddress::parse(&server)?;
            sotto_proto::validate_handle(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let messenger = profile::create(&dir, no_passphrase, &name, &address.to_string())?;
            match Session::register(&messenger, invite).await {
                Ok(session) => session.close().await,
                Err(e) => {
                    drop(messenger);
                    sotto_core::db::remove(&dir);
                    return Err(anyhow::Error::new(e)
                        .context("registration failed; nothing was kept, fix the cause and run init again"));
                }
            }
            println!("registered @{name} on {address}");
            println!("profile: {}", dir.display());
        }
        Command::Send { to, text } => {
            let conversation = conversation_arg(&to)?;
            let messenger = profile::open(&dir)?;
            let mut session = Session::open(&messenger).await?;
            report(&session.sync().await?);
            session
                .send_text(&conversation, &text)
                .await
                .with_context(|| format!("could not send to {conversation}"))?;
            session.close().await;
        }
        Command::Receive { json, wait } => {
            let messenger = profile::open(&dir)?;
            let mut session = Session::open(&messenger).await?;
            report(&session.sync().await?);
            for m in messenger.take_unfetched()? {
                output::print_message(&m, json);
            }
            if let Some(secs) = wait {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match session.pump(left).await {
                        Ok(events) => report(&events),
                        Err(e) => {
                            // Dropped connection: reconnect (with backoff) and go on.
                            eprintln!("warning: {e}; reconnecting");
                            session = Session::open(&messenger).await?;
                            report(&session.sync().await?);
                        }
                    }
                    for m in messenger.take_unfetched()? {
                        output::print_message(&m, json);
                    }
                }
            }
            session.close().await;
        }
        Command::History { conversation, json } => {
            let conversation = conversation_arg(&conversation)?;
            let messenger = profile::open(&dir)?;
            for m in messenger.history(&conversation)? {
                output::print_message(&m, json);
            }
        }
        Command::Contacts { json } => {
            let messenger = profile::open(&dir)?;
            for c in messenger.contacts()? {
                output::print_contact(&c, json);
            }
        }
    }
    Ok(())
}
