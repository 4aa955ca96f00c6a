//! `sotto` commands about the profile itself and the long-running front ends:
//! web, chat, account, backup, profiles, unlock, passphrase.

#[allow(unused_imports)]
use super::*;

/// Runs one of this family's commands.
pub(crate) async fn run(cli: &Cli, dir: &std::path::Path) -> Result<()> {
    let dir = dir.to_owned();
    match &cli.command {
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
        Command::Backup(BackupCommand::Restore { file, no_passphrase, new_device: true, name }) => {
            let pass = profile::backup_passphrase(false)?;
            let key = profile::new_key(*no_passphrase)?;
            let existed = dir.exists();
            let name = name.clone().unwrap_or_else(crate::devices_cmds::default_name);
            let gone = |e: anyhow::Error| {
                // Leave no half-made profile folder behind; the backup is
                // untouched.
                if !existed {
                    let _ = std::fs::remove_dir_all(&dir);
                } else {
                    sotto_core::db::remove(&dir);
                }
                e
            };
            let mut messenger = sotto_core::Messenger::restore_as_new_device(file, &pass, &dir, &key, &name)
                .map_err(|e| gone(profile::explain(&dir, e)))?;
            let id = match sotto_client::devices::enroll(&mut messenger).await {
                Ok(id) => id,
                Err(e) => {
                    drop(messenger);
                    return Err(gone(anyhow::Error::new(e).context(
                        "the backup was not restored: a new device joins its account on the server, which did not take it",
                    )));
                }
            };
            say!(
                "restored @{} into {} as a new device: device {id} (\"{name}\"), beside the one backed up",
                messenger.identity().handle,
                dir.display()
            );
            say!("its history is here; its conversations resume as your other devices and your contacts add it");
        }
        Command::Backup(BackupCommand::Restore { file, no_passphrase, .. }) => {
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
        // The dispatcher in main.rs sends only this family's commands here.
        _ => unreachable!("not a profile_cmds command"),
    }
    Ok(())
}
