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
        // The dispatcher in main.rs sends only this family's commands here.
        _ => unreachable!("not a people command"),
    }
    Ok(())
}
