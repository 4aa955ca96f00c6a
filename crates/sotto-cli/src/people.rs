//! `sotto` commands about people and groups: contacts, groups, verify, trust,
//! block.

#[allow(unused_imports)]
use super::*;

/// Runs one of this family's commands.
pub(crate) async fn run(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    let dir = dir.to_owned();
    match &cli.command {
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
            // A stranger whose conversation waits is listed (their key was
            // seen) but marked, so nobody mistakes them for a contact.
            let waiting: Vec<String> = messenger.requests()?.into_iter().map(|r| r.from).collect();
            for c in contacts {
                let on = online.as_ref().map(|list| list.iter().any(|(h, on)| *h == c.handle && *on));
                let profile = messenger.profile_of(&c.handle)?;
                output::print_contact(&c, profile.as_ref(), on, waiting.contains(&c.handle), json);
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
                    if !g.description.is_empty() {
                        say!("  {}", g.description);
                    }
                    if !g.admins.is_empty() {
                        let admins: Vec<String> = g.admins.iter().map(|a| format!("@{a}")).collect();
                        let adding =
                            if g.members_can_add { "all members may add people" } else { "only admins add people" };
                        say!("  admins: {}; {adding}", admins.join(" "));
                    }
                }
            }
        }
        Command::Info { conversation, json } => {
            let messenger = messenger(cli, &dir).await?;
            let info = messenger.conversation_info(&conversation_arg(conversation)?)?;
            if *json {
                say!("{}", serde_json::to_string(&info)?);
            } else {
                say!("{} ({})", info.conversation, info.kind);
                let pq = if info.post_quantum {
                    "yes: hybrid key exchange (ML-KEM-768 with X25519)".to_owned()
                } else {
                    "no: classical key exchange (X25519); someone's app here does not offer post-quantum keys"
                        .to_owned()
                };
                say!("  post-quantum: {pq}");
                say!("  suite: {} (0x{:04X})", info.suite, info.suite_id);
                say!("  epoch: {}", info.epoch);
                say!("  devices ({}):", info.devices.len());
                for d in &info.devices {
                    say!("    @{} device {}", d.handle, d.device_id);
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
                GroupCommand::Role { name, member, role } => {
                    let conversation = group_arg(name)?;
                    let handle = contact_arg(member)?;
                    session.set_role(&conversation, &handle, role == "admin").await?;
                    say!("@{handle} is {} of {conversation}", if role == "admin" { "an admin" } else { "a member" });
                }
                GroupCommand::Adding { name, who } => {
                    let conversation = group_arg(name)?;
                    session.set_members_can_add(&conversation, who == "members").await?;
                    say!(
                        "in {conversation}, {} add people",
                        if who == "members" { "all members may" } else { "only admins may" }
                    );
                }
                GroupCommand::Picture { name, file, remove: _ } => {
                    let conversation = group_arg(name)?;
                    let bytes = match file {
                        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
                        None => Vec::new(),
                    };
                    messenger.prepare_group_picture(&conversation, bytes)?;
                    if let Err(e) = session.flush_outbox().await {
                        return Err(exit::Queued { conversation, reason: e.to_string() }.into());
                    }
                }
                GroupCommand::Describe { name, text } => {
                    messenger.prepare_description(&group_arg(name)?, text)?;
                    if let Err(e) = session.flush_outbox().await {
                        return Err(exit::Queued { conversation: group_arg(name)?, reason: e.to_string() }.into());
                    }
                }
            }
            session.close().await;
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
            // Withdrawing the one-to-one's acceptance stops the server
            // showing them whether you are online; unlike leaving, they see
            // nothing of it.
            let conversation = format!("@{handle}");
            if messenger.conversation_group(&conversation)?.is_some() {
                match Session::open(&messenger).await {
                    Ok(mut session) => {
                        if let Err(e) = session.accept_direct(&handle, false).await {
                            eprintln!("warning: the server could not be told ({e}); their messages are hidden all the same, run `sotto block @{handle}` again later to hide your presence too");
                        }
                        session.close().await;
                    }
                    Err(e) => eprintln!(
                        "warning: cannot reach the server ({e}); @{handle} is blocked here, run `sotto block @{handle}` again when online to hide your presence from them too"
                    ),
                }
            }
            say!("blocked @{handle}: their messages and invitations are dropped; `sotto unblock @{handle}` undoes it");
        }
        Command::Unblock { contact } => {
            let handle = contact_arg(contact)?;
            let messenger = messenger(cli, &dir).await?;
            if messenger.unblock(&handle)? {
                if messenger.conversation_group(&format!("@{handle}"))?.is_some() {
                    if let Ok(mut session) = Session::open(&messenger).await {
                        let _ = session.accept_direct(&handle, true).await;
                        session.close().await;
                    }
                }
                say!("unblocked @{handle}; what they send from now on shows again");
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
        Command::Requests { json, auto_accept } => {
            let messenger = messenger(cli, &dir).await?;
            if let Some(v) = auto_accept {
                messenger.set_auto_accept(v == "on")?;
                say!(
                    "auto-accept is {v}: {}",
                    if v == "on" {
                        "conversations from anyone show at once"
                    } else {
                        "conversations from people you have not written to wait as requests"
                    }
                );
                return Ok(());
            }
            let requests = messenger.requests()?;
            for r in &requests {
                if *json {
                    say!(
                        "{}",
                        serde_json::json!({"conversation": r.conversation, "from": r.from, "messages": r.messages, "since": r.since})
                    );
                } else {
                    say!("{}  from @{}, {} message(s)", r.conversation, r.from, r.messages);
                }
            }
            if requests.is_empty() && !*json {
                say!("no message requests");
            }
        }
        Command::Accept { conversation } => answer_request(cli, &dir, conversation, true).await?,
        Command::Decline { conversation } => answer_request(cli, &dir, conversation, false).await?,
        Command::Trust { contact } => {
            let handle = contact_arg(contact)?;
            let messenger = messenger(cli, &dir).await?;
            if messenger.trust(&handle)? {
                say!("now trusting the new key of @{handle}; compare safety numbers to verify it (`sotto verify @{handle}`)");
            } else {
                say!("the key of @{handle} has not changed; nothing to do");
            }
        }
        // The dispatcher in main.rs sends only this family's commands here.
        _ => unreachable!("not a people command"),
    }
    Ok(())
}

/// Who a conversation is a request from, or an error that says what there is.
fn request_of(messenger: &sotto_core::Messenger, conversation: &str) -> Result<String> {
    match messenger.request_from(conversation)? {
        Some(from) => Ok(from),
        None if messenger.conversation_group(conversation)?.is_some() => {
            bail!("{conversation} is not a message request: it shows already")
        }
        None => bail!("no message request {conversation}; `sotto requests` lists them"),
    }
}

/// `sotto accept` (`accept`) or `sotto decline`: syncs first (what arrived
/// since the last receive may be the request; no need to announce it, it
/// is being answered), then answers it on the server and here.
async fn answer_request(cli: &Cli, dir: &std::path::Path, conversation: &str, accept: bool) -> Result<()> {
    let conversation = conversation_arg(conversation)?;
    let messenger = messenger(cli, dir).await?;
    let mut session = Session::open(&messenger).await?;
    let mut events = session.sync().await?;
    events.retain(|e| !matches!(e, sotto_core::Event::Request { .. }));
    report(&events);
    let from = request_of(&messenger, &conversation)?;
    if accept {
        session.accept_request(&conversation).await?;
        say!("accepted {conversation} from @{from}; `sotto receive` shows its messages");
    } else {
        session.decline_request(&conversation).await?;
        say!("declined {conversation} from @{from}; its messages are deleted (`sotto block @{from}` refuses them for good)");
    }
    session.close().await;
    Ok(())
}
