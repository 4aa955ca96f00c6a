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
mod exit;
mod export;
mod frontend;
mod output;
mod profile;
mod progress;
mod web;

use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use args::{AccountCommand, BackupCommand, Cli, Command, GroupCommand};
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
        if let Event::Warning { conversation, text } = e {
            eprintln!("warning: {}{text}", conversation.as_ref().map(|c| format!("{c}: ")).unwrap_or_default());
        }
    }
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
    Session::register(&m, cli.ephemeral_invite.clone()).await?.close().await;
    EPHEMERAL.with(|e| *e.borrow_mut() = Some(m.clone()));
    Ok(m)
}

/// Says on leaving a front end how many messages still wait for the
/// server (they go out on the next connection of any command).
fn waiting_note(m: &sotto_core::Messenger) {
    let n = m.outbox().map(|o| o.iter().filter(|i| i.message_id.is_some()).count()).unwrap_or(0);
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
            Command::Init { .. } | Command::Backup(_) | Command::Passphrase { .. } | Command::Unlock { .. }
        )
    {
        bail!("--ephemeral keeps nothing, so init, backup, passphrase and unlock do not apply");
    }
    if cli.ephemeral && !matches!(cli.command, Command::Account(_)) {
        return ephemeral(cli, dir).await;
    }
    command(&cli, &dir).await
}

/// Runs the command on the profile in `dir` (or the ephemeral identity).
async fn command(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    let dir = dir.to_owned();
    match &cli.command {
        Command::Init { server, name, invite, no_passphrase } => {
            let address = ServerAddress::parse(server)?;
            sotto_proto::validate_handle(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let messenger = profile::create(&dir, *no_passphrase, name, &address.to_string())?;
            match Session::register(&messenger, invite.clone()).await {
                Ok(session) => session.close().await,
                Err(e) => {
                    drop(messenger);
                    sotto_core::db::remove(&dir);
                    return Err(anyhow::Error::new(e)
                        .context("registration failed; nothing was kept, fix the cause and run init again"));
                }
            }
            say!("registered @{name} on {address}");
            say!("profile: {}", dir.display());
        }
        Command::Send { to, text, file } => {
            let conversation = conversation_arg(to)?;
            let messenger = messenger(cli, &dir).await?;
            let mut session = match Session::open(&messenger).await {
                Ok(s) => s,
                // The server is away: a text to a conversation that exists
                // goes into the outbox now (encrypted in the epoch this
                // device knows; re-encrypted on reconnect if it moved on).
                Err(e)
                    if file.is_none() && !cli.ephemeral && messenger.conversation_group(&conversation)?.is_some() =>
                {
                    messenger.prepare_text(&conversation, text.as_deref().unwrap_or_default())?;
                    return Err(exit::Queued { conversation, reason: e.to_string() }.into());
                }
                Err(e) => return Err(e.into()),
            };
            report(&session.sync().await?);
            let sent = match file {
                Some(path) => {
                    let bar = progress::bar("upload");
                    let r = session
                        .send_file(std::slice::from_ref(&conversation), path, text.clone(), bar.callback())
                        .await;
                    bar.finish(r.is_ok());
                    r
                }
                None => session.send_text(&conversation, text.as_deref().unwrap_or_default()).await,
            };
            if let Err(e) = sent {
                let what = if e.is_queued() { conversation } else { format!("could not send to {conversation}") };
                return Err(anyhow::Error::new(e).context(what));
            }
            session.close().await;
        }
        Command::Receive { json, wait } => {
            let (json, wait) = (*json, *wait);
            let messenger = messenger(cli, &dir).await?;
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
            let conversation = conversation_arg(conversation)?;
            let messenger = messenger(cli, &dir).await?;
            for m in messenger.history(&conversation)? {
                output::print_message(&m, *json);
            }
        }
        Command::Contacts { json } => {
            let json = *json;
            let messenger = messenger(cli, &dir).await?;
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
            let messenger = messenger(cli, &dir).await?;
            for g in messenger.groups()? {
                if *json {
                    say!("{}", serde_json::to_string(&g)?);
                } else {
                    let state = if g.active { String::new() } else { " (left)".to_owned() };
                    let members: Vec<String> = g.members.iter().map(|m| format!("@{m}")).collect();
                    say!("{}{state}: {}", g.conversation, members.join(" "));
                }
            }
        }
        Command::Group(cmd) => {
            let messenger = messenger(cli, &dir).await?;
            let mut session = Session::open(&messenger).await?;
            report(&session.sync().await?);
            match cmd {
                GroupCommand::Create { name, members } => {
                    let conversation = group_arg(name)?;
                    session.create_group(&conversation[1..], &handles_arg(members)?).await?;
                    say!("created {conversation}");
                }
                GroupCommand::Add { name, members } => {
                    session.add_to_group(&group_arg(name)?, &handles_arg(members)?).await?;
                }
                GroupCommand::Remove { name, members } => {
                    session.remove_from_group(&group_arg(name)?, &handles_arg(members)?).await?;
                }
                GroupCommand::Leave { name } => session.leave_group(&group_arg(name)?).await?,
                GroupCommand::Rename { name, new } => {
                    let new_conv = group_arg(new)?;
                    session.rename_group(&group_arg(name)?, &new_conv[1..]).await?;
                }
            }
            session.close().await;
        }
        Command::Web { port, no_open } => {
            let messenger = messenger(cli, &dir).await?;
            web::run(messenger.clone(), *port, !*no_open, profile::summaries()).await?;
            waiting_note(&messenger);
        }
        Command::Chat => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
                bail!("`sotto chat` needs a terminal; for scripts use `sotto receive --wait SECONDS` and `sotto send`");
            }
            let mut messenger = messenger(cli, &dir).await?;
            loop {
                let next = chat::run(&messenger, profile::summaries()).await?;
                waiting_note(&messenger);
                let Some(name) = next else { break };
                match profile::resolve(Some(&name)).and_then(|d| profile::open(&d)) {
                    Ok(m) => messenger = Rc::new(m),
                    Err(e) => eprintln!("cannot switch to {name}: {e:#}; staying"),
                }
            }
        }
        Command::Download { id, output } => {
            let messenger = messenger(cli, &dir).await?;
            let mut session = Session::open(&messenger).await?;
            let bar = progress::bar("download");
            let r = session.download_file(id, output.as_deref(), bar.callback()).await;
            bar.finish(r.is_ok());
            let path = r?;
            session.close().await;
            say!("saved: {}", path.display());
        }
        Command::Broadcast { text, file, to } => {
            let messenger = messenger(cli, &dir).await?;
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
            let (mut failed, mut queued) = (Vec::new(), Vec::new());
            if let Some(path) = file {
                // One upload, one message per conversation.
                let bar = progress::bar("upload");
                let r = session.send_file(&targets, path, text.clone(), bar.callback()).await;
                bar.finish(r.is_ok());
                r?;
            } else {
                for t in &targets {
                    match session.send_text(t, text.as_deref().unwrap_or_default()).await {
                        Ok(()) => {}
                        Err(e) if e.is_queued() => {
                            eprintln!("queued: {t}: {e}");
                            queued.push(t.clone());
                        }
                        Err(e) => {
                            eprintln!("error: {t}: {e}");
                            failed.push(t.clone());
                        }
                    }
                }
            }
            session.close().await;
            if !failed.is_empty() {
                bail!("not sent to {} of {}: {}", failed.len(), targets.len(), failed.join(", "));
            }
            if !queued.is_empty() {
                return Err(exit::Queued {
                    conversation: queued.join(", "),
                    reason: "the server did not confirm".into(),
                }
                .into());
            }
            say!("sent to {}", targets.join(", "));
        }
        Command::Verify { contact, confirm } => {
            let handle = contact_arg(contact)?;
            let messenger = messenger(cli, &dir).await?;
            match confirm {
                Some(digits) => {
                    messenger.confirm_verified(&handle, digits)?;
                    say!("@{handle} is verified");
                }
                None => {
                    let number = messenger.safety_number(&handle)?;
                    say!("safety number: {}", sotto_core::trust::grouped(&number));
                    say!("{}", output::qr(&number));
                    say!(
                        "Compare these digits with @{handle} in person or on a call; if they match, run\n  sotto verify @{handle} --confirm '{}'",
                        sotto_core::trust::grouped(&number)
                    );
                }
            }
        }
        Command::Block { contact } => {
            let handle = contact_arg(contact)?;
            let messenger = messenger(cli, &dir).await?;
            if handle == messenger.identity().handle {
                bail!("you cannot block yourself");
            }
            messenger.block(&handle)?;
            // Leaving the one-to-one stops the server routing it and
            // showing them whether you are online.
            let conversation = format!("@{handle}");
            if messenger.conversation_group(&conversation)?.is_some() {
                match Session::open(&messenger).await {
                    Ok(mut session) => {
                        let _ = session.sync().await;
                        if let Err(e) = session.leave_group(&conversation).await {
                            eprintln!("warning: could not leave {conversation} yet ({e}); their messages are hidden all the same");
                        }
                        session.close().await;
                    }
                    Err(e) => eprintln!(
                        "warning: cannot reach the server ({e}); @{handle} is blocked here, and {conversation} is left the next time you block while online"
                    ),
                }
            }
            say!("blocked @{handle}: their messages and invitations are dropped; `sotto unblock @{handle}` undoes it");
        }
        Command::Unblock { contact } => {
            let handle = contact_arg(contact)?;
            let messenger = messenger(cli, &dir).await?;
            if messenger.unblock(&handle)? {
                say!("unblocked @{handle}; write to them to start a new conversation");
            } else {
                say!("@{handle} was not blocked");
            }
        }
        Command::Blocked => {
            let messenger = messenger(cli, &dir).await?;
            for h in messenger.blocked()? {
                say!("@{h}");
            }
        }
        Command::Trust { contact } => {
            let handle = contact_arg(contact)?;
            let messenger = messenger(cli, &dir).await?;
            if messenger.trust(&handle)? {
                say!("now trusting the new key of @{handle}; compare safety numbers to verify it (`sotto verify @{handle}`)");
            } else {
                say!("the key of @{handle} has not changed; nothing to do");
            }
        }
        Command::Export { conversation, format, output, all } => {
            let messenger = messenger(cli, &dir).await?;
            let me = messenger.identity().handle.clone();
            if let Some(folder) = all {
                std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
                let mut n = 0;
                for c in messenger.conversations()? {
                    let path = folder.join(export::file_name(&c, *format));
                    write_new(&path, &export::render(&c, &me, &messenger.history(&c)?, *format))?;
                    n += 1;
                }
                say!("exported {n} conversations to {}", folder.display());
            } else {
                let Some(c) = conversation else { bail!("name a conversation (@handle or #group), or use --all DIR") };
                let c = conversation_arg(c)?;
                let history = messenger.history(&c)?;
                if history.is_empty() && messenger.conversation_group(&c)?.is_none() {
                    bail!("no conversation {c}");
                }
                let text = export::render(&c, &me, &history, *format);
                match output {
                    Some(path) => write_new(path, &text)?,
                    None => output::text(&text),
                }
            }
        }
        Command::Account(AccountCommand::Delete { yes }) => {
            let messenger = messenger(cli, &dir).await?;
            let handle = messenger.identity().handle.clone();
            if !*yes {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    bail!("deleting @{handle} cannot be undone: run `sotto account delete --yes` to confirm");
                }
                eprint!("This deletes @{handle} on the server and this profile with its history. Type the handle to confirm: ");
                let mut typed = String::new();
                std::io::stdin().read_line(&mut typed)?;
                if typed.trim().trim_start_matches('@') != handle {
                    bail!("not confirmed; nothing was deleted");
                }
            }
            let mut session = Session::open(&messenger).await?;
            report(&session.sync().await?);
            let left = session.delete_account().await.context("the account was not deleted; run the command again")?;
            session.close().await;
            let downloads = messenger.downloads_dir().filter(|d| d.exists());
            messenger.clear_outgoing();
            drop(messenger);
            if !cli.ephemeral {
                sotto_core::db::remove(&dir);
                // Gone when empty; received files are the person's to keep.
                let _ = std::fs::remove_dir(&dir);
            }
            say!("deleted @{handle}; left {} conversation(s); the handle is free on the server", left.len());
            if let Some(d) = downloads {
                say!("the files you received are still in {}", d.display());
            }
            return Ok(());
        }
        Command::Backup(BackupCommand::Create { file }) => {
            let messenger = profile::open(&dir)?;
            let pass = profile::backup_passphrase(true)?;
            messenger.backup(file, &pass)?;
            say!("backup written to {} (keep the backup passphrase; without it the file is useless)", file.display());
        }
        Command::Backup(BackupCommand::Restore { file, no_passphrase }) => {
            let pass = profile::backup_passphrase(false)?;
            let key = profile::new_key(*no_passphrase)?;
            let existed = dir.exists();
            let messenger = match sotto_core::Messenger::restore(file, &pass, &dir, &key) {
                Ok(m) => m,
                Err(e) => {
                    // Leave no half-made profile folder behind.
                    if !existed {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    return Err(profile::explain(&dir, e));
                }
            };
            say!("restored @{} into {}", messenger.identity().handle, dir.display());
        }
        Command::Profiles => profile::list()?,
        Command::Unlock { hold } => {
            let key = profile::unlock_key(&dir)?;
            agent::put(&dir, &key, *hold)?;
            say!(
                "unlocked {} for {}; `sotto lock` forgets it sooner",
                dir.display(),
                humantime::format_duration(*hold)
            );
        }
        Command::Lock => {
            if agent::forget(None)? {
                say!("locked: the agent forgot every key; commands ask for the passphrase again");
            } else {
                say!("nothing was unlocked");
            }
        }
        Command::Agent { socket } => agent::serve(socket).await?,
        Command::Passphrase { no_passphrase } => {
            let messenger = profile::open(&dir)?;
            let key = profile::new_key(*no_passphrase)?;
            messenger.change_key(&key)?;
            // The old key opens nothing now.
            let _ = agent::forget(Some(&dir));
            say!(
                "the profile is now protected by {}",
                if *no_passphrase { "a key file (weaker)" } else { "the new passphrase" }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
