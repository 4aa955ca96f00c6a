//! `sotto` commands that send and read: init, send, receive, history,
//! download, broadcast, export.

#[allow(unused_imports)]
use super::*;

/// Runs one of this family's commands.
pub(crate) async fn run(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    let dir = dir.to_owned();
    match &cli.command {
        Command::Init { server, name, invite, no_passphrase, auto_accept } => {
            let address = ServerAddress::parse(server)?;
            sotto_proto::validate_handle(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let messenger = profile::create(&dir, *no_passphrase, name, &address.to_string())?;
            messenger.set_auto_accept(*auto_accept)?;
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
        Command::Send { to, text, file, reply_to } => {
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
                    let text = text.as_deref().unwrap_or_default();
                    match reply_to {
                        Some(id) => messenger.prepare_reply(&conversation, text, id)?,
                        None => messenger.prepare_text(&conversation, text)?,
                    };
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
                None => {
                    session.send_message(&conversation, text.as_deref().unwrap_or_default(), reply_to.as_deref()).await
                }
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
                show(&messenger, &m, json);
            }
            show_notices(&messenger, json)?;
            if let Some(secs) = wait {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match session.pump(left).await {
                        Ok(events) => {
                            report(&events);
                            if json {
                                for e in &events {
                                    if let sotto_core::Event::Typing { conversation, handle, typing } = e {
                                        say!(
                                            "{}",
                                            serde_json::json!({"kind": "typing", "conversation": conversation, "from": handle, "typing": typing})
                                        );
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            // Dropped connection: reconnect (with backoff) and go on.
                            eprintln!("warning: {e}; reconnecting");
                            session = Session::open(&messenger).await?;
                            report(&session.sync().await?);
                        }
                    }
                    for m in messenger.take_unfetched()? {
                        show(&messenger, &m, json);
                    }
                    show_notices(&messenger, json)?;
                }
                // What arrived in the last seconds gets its receipt too.
                if let Err(e) = session.send_due_receipts().await {
                    tracing::debug!(error = %e, "receipts go out the next time");
                }
            }
            session.close().await;
        }
        Command::History { conversation, json } => {
            let conversation = conversation_arg(conversation)?;
            let messenger = messenger(cli, &dir).await?;
            for m in messenger.history(&conversation)? {
                show(&messenger, &m, *json);
            }
        }
        Command::Search { text, conversation, limit, json } => {
            let conversation = conversation.as_deref().map(conversation_arg).transpose()?;
            let messenger = messenger(cli, &dir).await?;
            let hits = messenger.search(text, conversation.as_deref(), *limit)?;
            if hits.is_empty() && !*json {
                eprintln!("nothing found for \"{text}\"");
            }
            for m in &hits {
                if !*json && conversation.is_none() {
                    // Across conversations each hit says where it is.
                    say!("{}  {}", m.conversation, output::message_line_quoting(m, None));
                } else {
                    show(&messenger, m, *json);
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
        Command::Export { conversation, format, output, all, with_files } => {
            let messenger = messenger(cli, &dir).await?;
            let me = messenger.identity().handle.clone();
            if let Some(folder) = all {
                std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
                let mut histories = Vec::new();
                for c in messenger.conversations()? {
                    histories.push((c.clone(), messenger.history(&c)?));
                }
                let saved = if *with_files {
                    let every: Vec<_> = histories.iter().flat_map(|(_, h)| h.iter().cloned()).collect();
                    Some(export_files::save(&messenger, &every, &folder.join("files"), "files").await?)
                } else {
                    None
                };
                let files = saved.as_ref().map(|s| s.paths.clone()).unwrap_or_default();
                for (c, history) in &histories {
                    let path = folder.join(export::file_name(c, *format));
                    write_new(&path, &export::render_with_files(c, &me, history, *format, &files))?;
                }
                say!("exported {} conversations to {}", histories.len(), folder.display());
                report_files(saved.as_ref(), &folder.join("files"))?;
            } else {
                let Some(c) = conversation else { bail!("name a conversation (@handle or #group), or use --all DIR") };
                let c = conversation_arg(c)?;
                let history = messenger.history(&c)?;
                if history.is_empty() && messenger.conversation_group(&c)?.is_none() {
                    bail!("no conversation {c}");
                }
                let saved = match (with_files, output) {
                    (false, _) => None,
                    (true, None) => bail!("--with-files saves files beside the export: give -o FILE or --all DIR"),
                    (true, Some(path)) => {
                        let stem =
                            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or("export".into());
                        let relative = format!("{stem}-files");
                        let files_dir = path.parent().unwrap_or(std::path::Path::new("")).join(&relative);
                        Some((export_files::save(&messenger, &history, &files_dir, &relative).await?, files_dir))
                    }
                };
                let files = saved.as_ref().map(|(s, _)| s.paths.clone()).unwrap_or_default();
                let text = export::render_with_files(&c, &me, &history, *format, &files);
                match output {
                    Some(path) => write_new(path, &text)?,
                    None => output::text(&text),
                }
                if let Some((s, files_dir)) = &saved {
                    report_files(Some(s), files_dir)?;
                }
            }
        }
        // The dispatcher in main.rs sends only this family's commands here.
        _ => unreachable!("not a messaging command"),
    }
    Ok(())
}

/// Prints a message: a reply with the line it answers; receipts only for
/// scripts (`--json`), since people see them as ✓✓ on their messages.
/// Notices from the server's operator not shown before, apart from every
/// conversation and marked as not end-to-end encrypted.
fn show_notices(messenger: &sotto_core::Messenger, json: bool) -> Result<()> {
    for n in messenger.take_unshown_notices()? {
        if json {
            say!(
                "{}",
                serde_json::json!({"kind": "notice", "from": "operator", "encrypted": false, "id": n.id, "text": n.text, "sent_at": n.sent_at})
            );
        } else {
            say!("notice from the operator of this server (not end-to-end encrypted): {}", n.text);
        }
    }
    Ok(())
}

fn show(messenger: &sotto_core::Messenger, m: &sotto_core::StoredMessage, json: bool) {
    if json {
        return output::print_message(m, true);
    }
    if matches!(m.body, sotto_core::Body::Receipt { .. }) {
        return;
    }
    let quoted = m.detail.reply_to.as_ref().and_then(|id| messenger.message(id).ok().flatten());
    say!("{}", output::message_line_quoting(m, quoted.as_ref()));
}

/// Says where the files went, and names every one that could not be saved
/// (an error: the export is incomplete, though what was saved stays).
fn report_files(saved: Option<&export_files::Saved>, dir: &std::path::Path) -> Result<()> {
    let Some(saved) = saved else { return Ok(()) };
    say!("saved {} files in {}", saved.paths.len(), dir.display());
    if saved.missing.is_empty() {
        return Ok(());
    }
    for m in &saved.missing {
        eprintln!("not saved: {m}");
    }
    bail!(
        "{} files could not be saved (listed above); the rest of the export is complete. A file the server \
         no longer has can only come from a device that saved it",
        saved.missing.len()
    )
}
