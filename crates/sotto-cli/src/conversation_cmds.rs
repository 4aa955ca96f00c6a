//! `sotto` commands that act on messages already in a conversation:
//! react, edit, delete, timer, read.

#[allow(unused_imports)]
use super::*;

use sotto_core::Messenger;

/// Runs one of this family's commands.
pub(crate) async fn run(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    let messenger = messenger(cli, dir).await?;
    match &cli.command {
        Command::React { id, emoji, remove } => {
            let done = messenger.prepare_reaction(id, emoji, *remove)?;
            deliver(&messenger, &done.conversation).await?;
        }
        Command::Profile(ProfileCommand::Set { name, avatar, no_avatar }) => {
            if name.is_none() && avatar.is_none() && !no_avatar {
                bail!("say what to set: --name NAME, --avatar FILE or --no-avatar");
            }
            let picture = match (avatar, no_avatar) {
                (Some(path), _) => {
                    Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
                }
                (None, true) => Some(Vec::new()),
                (None, false) => None,
            };
            let p = messenger.set_own_profile(name.as_deref(), picture)?;
            say!(
                "profile: {}{}",
                if p.name.is_empty() { "(no name)" } else { &p.name },
                if p.avatar.is_some() { ", with a picture" } else { "" }
            );
            // Into every conversation now (or the next time sotto connects).
            match Session::open(&messenger).await {
                Ok(session) => session.close().await,
                Err(e) => {
                    return Err(exit::Queued { conversation: "your conversations".into(), reason: e.to_string() }.into())
                }
            }
        }
        Command::Profile(ProfileCommand::Show { handle, avatar_out, json }) => {
            let handle = match handle {
                Some(h) => contact_arg(h)?,
                None => messenger.identity().handle.clone(),
            };
            let p = messenger
                .profile_of(&handle)?
                .unwrap_or_else(|| sotto_core::PersonProfile { handle: handle.clone(), ..Default::default() });
            if let (Some(path), Some((_, bytes))) = (avatar_out, &p.avatar) {
                write_new_bytes(path, bytes)?;
            } else if avatar_out.is_some() {
                bail!("@{handle} shared no picture");
            }
            if *json {
                say!("{}", output::profile_json(&p));
            } else {
                let name = if p.name.is_empty() { "(no name shared)".to_owned() } else { p.name.clone() };
                let picture = match &p.avatar {
                    Some((kind, bytes)) => format!("a picture ({kind}, {} bytes)", bytes.len()),
                    None => "no picture".into(),
                };
                say!("@{handle}: {name}; {picture}");
            }
        }
        Command::Pin { id, remove } => {
            let (conversation, _) = messenger.prepare_pin(id, !remove)?;
            deliver(&messenger, &conversation).await?;
        }
        Command::Edit { id, text } => {
            let done = messenger.prepare_edit(id, text)?;
            deliver(&messenger, &done.conversation).await?;
        }
        Command::Delete { id, for_me: true } => {
            messenger.delete_for_me(id)?;
            say!("deleted from this device (the others keep it)");
        }
        Command::Delete { id, for_me: false } => {
            let done = messenger.prepare_delete(id)?;
            deliver(&messenger, &done.conversation).await?;
        }
        Command::Timer { conversation, duration: None } => {
            let conversation = conversation_arg(conversation)?;
            say!("{conversation}: disappearing messages {}", sotto_core::timer_words(messenger.timer(&conversation)?));
        }
        Command::Timer { conversation, duration: Some(duration) } => {
            let conversation = conversation_arg(conversation)?;
            let secs = parse_timer(duration)?;
            messenger.prepare_timer(&conversation, secs)?;
            deliver(&messenger, &conversation).await?;
            say!("{conversation}: disappearing messages {}", sotto_core::timer_words(messenger.timer(&conversation)?));
        }
        Command::Typing { conversation, stop } => {
            let conversation = conversation_arg(conversation)?;
            if messenger.conversation_group(&conversation)?.is_none() {
                bail!("no conversation {conversation}");
            }
            let mut session = Session::open(&messenger).await?;
            let sent = session.send_typing(&conversation, !stop).await;
            session.close().await;
            sent?;
        }
        Command::Read { conversation, receipts } => {
            if let Some(on) = receipts {
                messenger.set_read_receipts(on == "on")?;
                say!("read receipts {on}");
            }
            if let Some(conversation) = conversation {
                let conversation = conversation_arg(conversation)?;
                if messenger.mark_read(&conversation)? > 0 {
                    deliver(&messenger, &conversation).await?;
                }
            }
        }
        // The dispatcher in main.rs sends only this family's commands here.
        _ => unreachable!("not a conversation command"),
    }
    Ok(())
}

/// Writes bytes to a new file (never over an existing one).
fn write_new_bytes(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it may exist already)", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// `off`, or a duration as people write it (5m, 1h, 1d, 1w, 4w, 90s).
fn parse_timer(s: &str) -> Result<u64> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") || s == "0" {
        return Ok(0);
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| anyhow::anyhow!("{s:?} is not a timer: use off, or a duration such as 5m, 1h, 1d, 1w or 4w"))?;
    if d.as_secs() == 0 {
        bail!("a timer of less than a second would delete messages as they arrive; use at least 1s, or off");
    }
    if d.as_secs() > sotto_core::MAX_TIMER_SECS {
        bail!("a disappearing-message timer is at most one year");
    }
    Ok(d.as_secs())
}

/// What was just put into the outbox goes out: exit 0 once the server has
/// it, or exit 3 (queued) when it could not be reached; nothing is lost
/// either way.
async fn deliver(messenger: &Messenger, conversation: &str) -> Result<()> {
    let mut session = match Session::open(messenger).await {
        Ok(s) => s,
        Err(e) => return Err(exit::Queued { conversation: conversation.to_owned(), reason: e.to_string() }.into()),
    };
    let flushed = session.flush_outbox().await;
    session.tell_retention().await;
    session.close().await;
    flushed.map_err(|e| exit::Queued { conversation: conversation.to_owned(), reason: e.to_string() }.into())
}

#[cfg(test)]
mod tests {
    use super::parse_timer;

    #[test]
    fn timers_are_written_as_people_write_them() {
        assert_eq!(parse_timer("off").unwrap(), 0);
        assert_eq!(parse_timer("5m").unwrap(), 300);
        assert_eq!(parse_timer("1h").unwrap(), 3600);
        assert_eq!(parse_timer("4w").unwrap(), 4 * 7 * 86_400);
        assert!(parse_timer("soon").is_err());
        assert!(parse_timer("2years").is_err());
    }
}
