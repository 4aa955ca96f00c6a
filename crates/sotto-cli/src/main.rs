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
        /// `@handle` or `#group`.
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
    /// List contacts (and who of them is online).
    Contacts {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Manage group conversations.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List group conversations.
    Groups {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send one message to many conversations, each copy encrypted for its own.
    Broadcast {
        /// The text.
        text: String,
        /// Comma-separated `@handle`s and `#group`s (default: every one-to-one contact).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group with these people.
    Create {
        /// Group name.
        name: String,
        /// Members, as `@handle`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add people.
    Add {
        /// Group name.
        name: String,
        /// As `@handle`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove people.
    Remove {
        /// Group name.
        name: String,
        /// As `@handle`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// Group name.
        name: String,
    },
    /// Rename a group.
    Rename {
        /// Current name.
        name: String,
        /// New name.
        new: String,
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
    if let Some(name) = s.strip_prefix('#') {
        sotto_core::validate_group_name(name)?;
        return Ok(s.to_owned());
    }
    let Some(handle) = s.strip_prefix('@') else {
        bail!("name a person as @handle or a group as #name (got {s:?})");
    };
    sotto_proto::validate_handle(handle).map_err(|e| anyhow::anyhow!("{s}: {e}"))?;
    Ok(s.to_owned())
}

fn group_arg(s: &str) -> Result<String> {
    let name = s.strip_prefix('#').unwrap_or(s);
    sotto_core::validate_group_name(name)?;
    Ok(format!("#{name}"))
}

fn handles_arg(list: &[String]) -> Result<Vec<String>> {
    list.iter()
        .map(|h| {
            let handle = h.strip_prefix('@').unwrap_or(h);
            sotto_proto::validate_handle(handle).map_err(|e| anyhow::anyhow!("{h}: {e}"))?;
            Ok(handle.to_owned())
        })
        .collect()
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
            let contacts = messenger.contacts()?;
            let handles: Vec<String> = contacts.iter().map(|c| c.handle.clone()).collect();
            // Presence needs the server; the list does not.
            let online = match Session::open(&messenger).await {
                Ok(mut session) => {
                    let p = session.presence(&handles).await.ok().flatten();
                    session.close().await;
                    p
                }
                Err(e) => {
                    eprintln!("warning: cannot tell who is online: {e}");
                    None
                }
            };
            for c in contacts {
                let on = online.as_ref().map(|list| list.iter().any(|(h, on)| *h == c.handle && *on));
                output::print_contact(&c, on, json);
            }
        }
        Command::Groups { json } => {
            let messenger = profile::open(&dir)?;
            for g in messenger.groups()? {
                if json {
                    println!("{}", serde_json::to_string(&g)?);
                } else {
                    let state = if g.active { String::new() } else { " (left)".to_owned() };
                    let members: Vec<String> = g.members.iter().map(|m| format!("@{m}")).collect();
                    println!("{}{state}: {}", g.conversation, members.join(" "));
                }
            }
        }
        Command::Group(cmd) => {
            let messenger = profile::open(&dir)?;
            let mut session = Session::open(&messenger).await?;
            report(&session.sync().await?);
            match cmd {
                GroupCommand::Create { name, members } => {
                    let conversation = group_arg(&name)?;
                    session.create_group(&conversation[1..], &handles_arg(&members)?).await?;
                    println!("created {conversation}");
                }
                GroupCommand::Add { name, members } => {
                    session.add_to_group(&group_arg(&name)?, &handles_arg(&members)?).await?;
                }
                GroupCommand::Remove { name, members } => {
                    session.remove_from_group(&group_arg(&name)?, &handles_arg(&members)?).await?;
                }
                GroupCommand::Leave { name } => session.leave_group(&group_arg(&name)?).await?,
                GroupCommand::Rename { name, new } => {
                    let new_conv = group_arg(&new)?;
                    session.rename_group(&group_arg(&name)?, &new_conv[1..]).await?;
                }
            }
            session.close().await;
        }
        Command::Broadcast { text, to } => {
            let messenger = profile::open(&dir)?;
            let targets: Vec<String> = if to.is_empty() {
                messenger.conversations()?.into_iter().filter(|c| c.starts_with('@')).collect()
            } else {
                to.iter().map(|t| conversation_arg(t.trim())).collect::<Result<_>>()?
            };
            if targets.is_empty() {
                bail!("nobody to broadcast to: start a conversation first, or name recipients with --to");
            }
            let mut session = Session::open(&messenger).await?;
            report(&session.sync().await?);
            let mut failed = Vec::new();
            for t in &targets {
                if let Err(e) = session.send_text(t, &text).await {
                    eprintln!("error: {t}: {e}");
                    failed.push(t.clone());
                }
            }
            session.close().await;
            if !failed.is_empty() {
                bail!("not delivered to {} of {}: {}", failed.len(), targets.len(), failed.join(", "));
            }
            println!("sent to {}", targets.join(", "));
        }
    }
    Ok(())
}
