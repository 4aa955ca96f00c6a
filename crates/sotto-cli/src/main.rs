//! `sotto`: the command-line client.

/// `println!` that survives a closed pipe (see [`output::line`]). Defined
/// before the modules so every one of them can use it.
macro_rules! say {
    () => { $crate::output::line(format_args!("")) };
    ($($t:tt)*) => { $crate::output::line(format_args!($($t)*)) };
}

mod agent;
mod args;
mod chat;
mod conversation_cmds;
mod data_home;
mod devices_cmds;
mod exit;
mod export;
mod export_files;
mod formatting;
mod frontend;
mod messaging;
mod output;
mod people;
mod profile;
mod profile_cmds;
mod progress;
mod web;

use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use args::{AccountCommand, BackupCommand, Cli, Command, DeviceCommand, GroupCommand, ProfileCommand};
use clap::Parser;
use sotto_client::Session;
use sotto_core::Event;
use sotto_proto::ServerAddress;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOTTO_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let missing = e.kind() == clap::error::ErrorKind::MissingRequiredArgument;
            let _ = e.print();
            if missing {
                // `sotto send #crew hi`: the shell took `#crew hi` for a comment.
                eprintln!(
                    "note: if you typed a #group, put it in quotes ('#crew'): the shell ignores everything after an unquoted #"
                );
            }
            std::process::exit(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(exit::ERROR);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        let code = exit::code_for(&e);
        let label = if code == exit::QUEUED { "queued" } else { "error" };
        eprintln!("{label}: {e:#}");
        std::process::exit(code);
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

/// Writes a file that must not exist yet: an export never overwrites
/// anything silently.
fn write_new(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it may exist already)", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn report(events: &[Event]) {
    for e in events {
        match e {
            Event::Warning { conversation, text } => {
                eprintln!("warning: {}{text}", conversation.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())
            }
            Event::Request { conversation, from } => eprintln!("{}", request_line(conversation, from)),
            _ => {}
        }
    }
}

/// The line that tells a person about a message request.
fn request_line(conversation: &str, from: &str) -> String {
    format!(
        "message request from @{from} ({conversation}): `sotto history {conversation}` shows it, `sotto accept {conversation}` lets it in, `sotto decline {conversation}` or `sotto block @{from}` refuses it"
    )
}

thread_local! {
    /// The ephemeral identity of this run, kept so its account can be
    /// deleted when the command ends (the runtime is single-threaded).
    static EPHEMERAL: std::cell::RefCell<Option<Rc<sotto_core::Messenger>>> = const { std::cell::RefCell::new(None) };
}

/// Opens the profile, or with --ephemeral registers a throwaway identity in
/// memory.
async fn messenger(cli: &Cli, dir: &std::path::Path) -> Result<Rc<sotto_core::Messenger>> {
    if !cli.ephemeral {
        return Ok(Rc::new(profile::open(dir)?));
    }
    if let Some(m) = EPHEMERAL.with(|e| e.borrow().clone()) {
        return Ok(m);
    }
    let (Some(server), Some(name)) = (&cli.ephemeral_server, &cli.ephemeral_name) else {
        bail!("--ephemeral needs --server ADDRESS and --as HANDLE");
    };
    let address = ServerAddress::parse(server)?;
    let m = Rc::new(sotto_core::Messenger::create_ephemeral(name, &address.to_string())?);
    // It lives for this one command: a request it could only accept in a
    // later command would never be read.
    m.set_auto_accept(true)?;
    Session::register(&m, cli.ephemeral_invite.clone()).await?.close().await;
    EPHEMERAL.with(|e| *e.borrow_mut() = Some(m.clone()));
    Ok(m)
}

/// Says on leaving a front end how many messages still wait for the
/// server (they go out on the next connection of any command).
fn waiting_note(m: &sotto_core::Messenger) {
    let n = m.waiting_messages().unwrap_or(0);
    if n > 0 {
        eprintln!(
            "{n} message{} still waiting to be sent; {} out the next time sotto connects (any command, e.g. `sotto receive`)",
            if n == 1 { " is" } else { "s are" },
            if n == 1 { "it goes" } else { "they go" }
        );
    }
}

fn contact_arg(s: &str) -> Result<String> {
    let handle = s.strip_prefix('@').unwrap_or(s);
    sotto_proto::validate_handle(handle).map_err(|e| anyhow::anyhow!("{s}: {e}"))?;
    Ok(handle.to_owned())
}

/// An ephemeral identity lives for one command: it is registered first
/// (in `messenger`) and its account deleted at the end, whatever the
/// command's outcome, so the handle and the invite are not used up for good.
async fn ephemeral(cli: Cli, dir: std::path::PathBuf) -> Result<()> {
    let outcome = command(&cli, &dir).await;
    let Some(m) = EPHEMERAL.with(|e| e.borrow_mut().take()) else { return outcome };
    let cleanup = async {
        let mut session = Session::open(&m).await?;
        let _ = session.sync().await;
        session.delete_account().await?;
        session.close().await;
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = cleanup.await {
        eprintln!(
            "warning: the ephemeral account @{} could not be deleted on the server ({e:#}); the operator can remove it",
            m.identity().handle
        );
    }
    outcome
}

async fn run(cli: Cli) -> Result<()> {
    let dir = profile::resolve(cli.profile.as_deref())?;
    if cli.ephemeral
        && matches!(
            cli.command,
            Command::Init { .. }
                | Command::Link { .. }
                | Command::Device(_)
                | Command::Backup(_)
                | Command::Passphrase { .. }
                | Command::Unlock { .. }
        )
    {
        bail!("--ephemeral keeps nothing, so init, link, device, backup, passphrase and unlock do not apply");
    }
    if cli.ephemeral && !matches!(cli.command, Command::Account(_)) {
        return ephemeral(cli, dir).await;
    }
    command(&cli, &dir).await
}

/// Runs the command on the profile in `dir` (or the ephemeral identity).
async fn command(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    match &cli.command {
        Command::Init { .. }
        | Command::Send { .. }
        | Command::Receive { .. }
        | Command::History { .. }
        | Command::Search { .. }
        | Command::Download { .. }
        | Command::Broadcast { .. }
        | Command::Export { .. } => messaging::run(cli, dir).await,
        Command::React { .. }
        | Command::Edit { .. }
        | Command::Delete { .. }
        | Command::Timer { .. }
        | Command::Typing { .. }
        | Command::Pin { .. }
        | Command::Profile(..)
        | Command::Read { .. } => conversation_cmds::run(cli, dir).await,
        Command::Contacts { .. }
        | Command::Groups { .. }
        | Command::Info { .. }
        | Command::Group(..)
        | Command::Verify { .. }
        | Command::Requests { .. }
        | Command::Accept { .. }
        | Command::Decline { .. }
        | Command::Block { .. }
        | Command::Unblock { .. }
        | Command::Blocked
        | Command::Trust { .. } => people::run(cli, dir).await,
        Command::Web { .. }
        | Command::Chat
        | Command::Account(..)
        | Command::Backup(..)
        | Command::Profiles
        | Command::Unlock { .. }
        | Command::Lock
        | Command::Agent { .. }
        | Command::Passphrase { .. } => profile_cmds::run(cli, dir).await,
        Command::Link { .. } | Command::Device(..) | Command::Devices { .. } => devices_cmds::run(cli, dir).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
