//! `sotto link`, `sotto device add|remove`, `sotto devices`: several devices
//! per account.

#[allow(unused_imports)]
use super::*;
use sotto_client::devices::wait_for_link;
use sotto_core::link::LinkRequest;

/// Runs one of this family's commands.
pub(crate) async fn run(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    match &cli.command {
        Command::Link { server, name, no_passphrase, wait } => {
            link(dir, server, name.as_deref(), *no_passphrase, *wait).await
        }
        Command::Device(DeviceCommand::Add { code, yes, wait, history }) => {
            add(cli, dir, code, *yes, *wait, *history).await
        }
        Command::Device(DeviceCommand::Remove { id, yes }) => remove(cli, dir, *id, *yes).await,
        Command::Devices { json } => list(cli, dir, *json).await,
        _ => unreachable!("not a device command"),
    }
}

/// The computer's name, for a device that was not given one.
pub(crate) fn default_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 64)
        .unwrap_or_else(|| "new device".into())
}

fn confirm(question: &str, yes: bool, how: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("{question} Nothing was done: confirm with `{how} --yes`");
    }
    eprint!("{question} [y/N] ");
    let mut typed = String::new();
    std::io::stdin().read_line(&mut typed)?;
    if !matches!(typed.trim(), "y" | "Y" | "yes") {
        bail!("not confirmed; nothing was done");
    }
    Ok(())
}

async fn link(
    dir: &std::path::Path,
    server: &str,
    name: Option<&str>,
    no_passphrase: bool,
    wait: Duration,
) -> Result<()> {
    let address = ServerAddress::parse(server)?;
    if sotto_core::db::exists(dir) {
        bail!("a profile exists already in {}; link into a new one with --profile NAME", dir.display());
    }
    let name = name.map(str::to_owned).unwrap_or_else(default_name);
    // The passphrase first: the person is at this device now, and may
    // not be when the other device answers.
    let key = profile::new_key(no_passphrase)?;
    let request = LinkRequest::new(&name)?;
    let code = request.code();
    say!("{}", output::qr(&code));
    say!("code: {code}");
    say!("On your account's first device, run:\n  sotto device add {code}");
    say!("waiting for it (up to {})...", humantime::format_duration(wait));
    let Some((identity, mut handover)) = wait_for_link(&address, request, wait).await? else {
        bail!(
            "no device linked this one within {}; nothing was kept. Run `sotto link` again for a new code",
            humantime::format_duration(wait)
        );
    };
    // This device reaches the server by the address it was given.
    handover.server = address.to_string();
    let handle = identity.handle.clone();
    let device_id = identity.device_id;
    let messenger =
        sotto_core::Messenger::create_linked(dir, &key, identity, &handover).map_err(|e| profile::explain(dir, e))?;
    // Log in once: the server learns this device's keys, so the linking
    // device can add it to the conversations.
    let mut session = Session::open(&messenger)
        .await
        .context("linked, but this device could not log in yet; run `sotto receive` to finish")?;
    let mut joined = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let events = session.sync().await?;
    report(&events);
    joined += events.iter().filter(|e| matches!(e, Event::Joined { .. })).count();
    while tokio::time::Instant::now() < deadline {
        let events = session.pump(Duration::from_millis(500)).await?;
        report(&events);
        joined += events.iter().filter(|e| matches!(e, Event::Joined { .. })).count();
    }
    // The linking device hands it over right after adding this one
    // everywhere; if it gave up waiting for this one, it does so at its
    // next connection, and a later command here takes it in.
    let history = if handover.history_days > 0 {
        wait_for_history(&mut session, wait.min(Duration::from_secs(120))).await
    } else {
        None
    };
    session.close().await;
    say!("linked: @{handle} (device {device_id}, \"{name}\")");
    say!("profile: {}", dir.display());
    if joined > 0 {
        say!("joined {joined} conversation(s) so far; the rest arrive with `sotto receive`");
    } else {
        say!("your conversations arrive with `sotto receive` as the other device adds this one");
    }
    match history {
        Some(s) => say!("history: {} messages and {} files from your other device", s.messages, s.files),
        None if handover.history_days > 0 => {
            say!("your history has not arrived yet; it is taken in by a later `sotto receive` (or any command)")
        }
        None => {}
    }
    Ok(())
}

/// Waits (up to `wait`) for the history the linking device hands over
/// after adding this one everywhere, and imports it.
async fn wait_for_history(session: &mut Session<'_>, wait: Duration) -> Option<sotto_core::archive::ArchiveSummary> {
    let deadline = tokio::time::Instant::now() + wait;
    say!("waiting for your history from the other device...");
    while tokio::time::Instant::now() < deadline {
        // Taken in as soon as it arrives (by the session, whatever
        // command runs).
        if let Some(summary) = session.take_imported_history() {
            return Some(summary);
        }
        if matches!(session.messenger().history_offer(), Ok(Some(_))) {
            // Arrived, but could not be taken in just now.
            return None;
        }
        match session.pump(Duration::from_millis(500)).await {
            Ok(events) => report(&events),
            Err(e) => {
                eprintln!("warning: the connection broke off while waiting for your history: {e}");
                return None;
            }
        }
    }
    None
}

async fn add(cli: &Cli, dir: &std::path::Path, code: &str, yes: bool, wait: Duration, history: u32) -> Result<()> {
    let messenger = messenger(cli, dir).await?;
    if !messenger.identity().can_certify() {
        bail!(
            "only your account's first device (it holds the account key) can link new devices; run `sotto device add` there"
        );
    }
    let mut session = Session::open(&messenger).await?;
    report(&session.sync().await?);
    let candidate = session.fetch_link(code).await?;
    let handle = messenger.identity().handle.clone();
    confirm(
        &format!(
            "Link the device named \"{}\" to @{handle}? It will get your contacts and take part in every conversation from now on.",
            candidate.name
        ),
        yes,
        "sotto device add CODE",
    )?;
    let linked = session.complete_link(&candidate, wait, history).await?;
    session.close().await;
    say!("added device {} (\"{}\") to @{handle}", linked.device_id, candidate.name);
    if linked.complete {
        say!("it is in every conversation ({} added now)", linked.conversations);
    } else {
        say!(
            "it has not come online yet; it joins your conversations the next time this device connects (any command)"
        );
    }
    match (history, linked.history) {
        (0, _) => {}
        (days, Some(s)) => say!(
            "history handed over: {} messages and {} files from the last {days} days, encrypted for it alone",
            s.messages,
            s.files
        ),
        (days, None) => {
            say!("the last {days} days of history go to it the next time this device connects, once it is online")
        }
    }
    Ok(())
}

async fn remove(cli: &Cli, dir: &std::path::Path, id: u32, yes: bool) -> Result<()> {
    let messenger = messenger(cli, dir).await?;
    let name = messenger.own_devices()?.into_iter().find(|d| d.device_id == id).map(|d| d.name);
    let label = match &name {
        Some(n) => format!("device {id} (\"{n}\")"),
        None => format!("device {id}"),
    };
    confirm(
        &format!("Remove {label} for good? It leaves every conversation and can never log in again."),
        yes,
        "sotto device remove ID",
    )?;
    let mut session = Session::open(&messenger).await?;
    report(&session.sync().await?);
    let n = session.remove_device(id).await?;
    session.close().await;
    say!("removed {label}: taken out of {n} conversation(s); it can no longer log in or read what is sent");
    Ok(())
}

async fn list(cli: &Cli, dir: &std::path::Path, json: bool) -> Result<()> {
    let messenger = messenger(cli, dir).await?;
    let mut session = Session::open(&messenger).await?;
    let devices = crate::frontend::driver::device_entries(&messenger, &mut session).await?;
    session.close().await;
    let time = crate::frontend::event::time_of;
    for d in devices {
        if json {
            say!(
                "{}",
                serde_json::json!({
                    "id": d.id,
                    "name": d.name,
                    "this": d.this,
                    "added_at": time(d.added_at),
                    "last_seen": time(d.last_seen),
                })
            );
        } else {
            let shown = if d.name.is_empty() { "(unnamed)".to_owned() } else { d.name };
            say!(
                "{:>3}  {shown}{}  added {}  last seen {}",
                d.id,
                if d.this { " (this device)" } else { "" },
                time(d.added_at),
                if d.this { "now".to_owned() } else { time(d.last_seen) }
            );
        }
    }
    Ok(())
}
