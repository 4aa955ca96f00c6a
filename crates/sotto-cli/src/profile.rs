//! Finding, unlocking and creating the profile a command works on.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::data_home::data_dir;
use sotto_core::db;
use sotto_core::{Messenger, ProfileKey};
use zeroize::Zeroizing;

/// The profile folder for `--profile`: a path when it contains a `/` (or
/// is `.`/`..`), else a name in the data directory; `default` when absent.
pub fn resolve(arg: Option<&str>) -> Result<PathBuf> {
    match arg {
        Some(a) if a.contains('/') || a == "." || a == ".." => Ok(PathBuf::from(a)),
        Some(name) => {
            sotto_proto::validate_handle(name)
                .map_err(|e| anyhow::anyhow!("profile name {name:?}: {e} (or give a path containing '/')"))?;
            Ok(data_dir()?.join(name))
        }
        None => Ok(data_dir()?.join("default")),
    }
}

/// The key for a new or re-keyed profile: a passphrase (asked twice, or
/// from SOTTO_NEW_PASSPHRASE, else SOTTO_PASSPHRASE), or a key file.
pub fn new_key(no_passphrase: bool) -> Result<ProfileKey> {
    if no_passphrase {
        eprintln!(
            "warning: no passphrase: the profile's key is stored in a file next to the data. \
             Anyone who can read that folder can read your messages. This is weaker than a passphrase."
        );
        return Ok(ProfileKey::KeyFile);
    }
    if let Ok(p) = std::env::var("SOTTO_NEW_PASSPHRASE") {
        return Ok(ProfileKey::Passphrase(Zeroizing::new(p)));
    }
    Ok(ProfileKey::Passphrase(passphrase("Choose a passphrase for this profile: ", true)?))
}

/// The passphrase of a backup file.
pub fn backup_passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("SOTTO_BACKUP_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!("a backup passphrase is needed: set SOTTO_BACKUP_PASSPHRASE, or run on a terminal to be asked");
    }
    let first = Zeroizing::new(rpassword::prompt_password("Backup passphrase: ")?);
    if confirm && *first != rpassword::prompt_password("Repeat the backup passphrase: ")? {
        bail!("the two passphrases differ");
    }
    Ok(first)
}

/// Every profile in the data directory: name and "@handle server", or
/// "(locked)" when it cannot be opened without asking.
pub fn summaries() -> Vec<(String, String)> {
    let Ok(root) = data_dir() else { return vec![] };
    let mut entries: Vec<_> = std::fs::read_dir(&root).map(|r| r.flatten().collect()).unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    entries
        .into_iter()
        .filter(|e| db::exists(&e.path()))
        .map(|e| {
            let dir = e.path();
            let key = if db::uses_key_file(&dir) {
                Some(ProfileKey::KeyFile)
            } else {
                std::env::var("SOTTO_PASSPHRASE").ok().map(|p| ProfileKey::Passphrase(Zeroizing::new(p)))
            };
            let detail = match key.map(|k| Messenger::open(&dir, &k)) {
                Some(Ok(m)) => format!("@{} {}", m.identity().handle, m.server().unwrap_or_default()),
                _ => "(locked)".into(),
            };
            (e.file_name().to_string_lossy().into_owned(), detail)
        })
        .collect()
}

/// Prints every profile in the data directory, with handle and server for
/// those that open without asking (key file, or SOTTO_PASSPHRASE fits).
pub fn list() -> Result<()> {
    let root = data_dir()?;
    let mut entries: Vec<_> = std::fs::read_dir(&root).map(|r| r.flatten().collect()).unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    let mut found = false;
    for e in entries {
        let dir = e.path();
        if !db::exists(&dir) {
            continue;
        }
        found = true;
        let name = e.file_name().to_string_lossy().into_owned();
        let key = if db::uses_key_file(&dir) {
            Some(ProfileKey::KeyFile)
        } else {
            std::env::var("SOTTO_PASSPHRASE").ok().map(|p| ProfileKey::Passphrase(Zeroizing::new(p)))
        };
        match key.map(|k| Messenger::open(&dir, &k)) {
            Some(Ok(m)) => say!("{name}\t@{}\t{}", m.identity().handle, m.server().unwrap_or_default()),
            _ => say!("{name}\t(locked)"),
        }
    }
    if !found {
        say!("no profiles in {}; create one with `sotto --profile NAME init ...`", root.display());
    }
    Ok(())
}

fn passphrase(prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("SOTTO_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!("a passphrase is needed: set SOTTO_PASSPHRASE, or run on a terminal to be asked (or use `sotto init --no-passphrase`)");
    }
    let first = Zeroizing::new(rpassword::prompt_password(prompt)?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat the passphrase: ")?);
        if *first != *again {
            bail!("the two passphrases differ");
        }
        if first.is_empty() {
            bail!("an empty passphrase protects nothing; use --no-passphrase if that is what you want");
        }
    }
    Ok(first)
}

/// Opens the profile in `dir`, asking for its passphrase if it has one.
pub fn open(dir: &Path) -> Result<Messenger> {
    if !db::exists(dir) {
        bail!("no profile in {}; create one with `sotto init --server ADDRESS --name HANDLE`", dir.display());
    }
    let from_agent = if db::uses_key_file(dir) || std::env::var_os("SOTTO_PASSPHRASE").is_some() {
        None
    } else {
        // Unlocked earlier with `sotto unlock`? A stale key (the passphrase
        // changed since) just falls through to asking.
        crate::agent::key_for(dir).and_then(|k| Messenger::open(dir, &ProfileKey::Raw(k)).ok())
    };
    let m = if let Some(m) = from_agent {
        m
    } else if db::uses_key_file(dir) {
        Messenger::open(dir, &ProfileKey::KeyFile).map_err(|e| explain(dir, e))?
    } else if std::env::var_os("SOTTO_PASSPHRASE").is_some() || !std::io::stdin().is_terminal() {
        Messenger::open(dir, &ProfileKey::Passphrase(passphrase("", false)?)).map_err(|e| explain(dir, e))?
    } else {
        // At a terminal: say which profile is asking, and allow typos.
        let prompt = format!("Passphrase for the sotto profile {}: ", dir.display());
        let mut tries = 0;
        loop {
            tries += 1;
            let key = ProfileKey::Passphrase(passphrase(&prompt, false)?);
            match Messenger::open(dir, &key).map_err(|e| explain(dir, e)) {
                Ok(m) => break m,
                Err(e)
                    if tries < 3
                        && e.downcast_ref::<sotto_core::CoreError>()
                            .is_some_and(|c| matches!(c, sotto_core::CoreError::WrongPassphrase)) =>
                {
                    eprintln!("wrong passphrase; try again ({} of 3)", tries + 1);
                }
                Err(e) => return Err(e),
            }
        }
    };
    if !m.is_registered()? {
        bail!("the profile in {} was never registered; remove it and run `sotto init` again", dir.display());
    }
    Ok(m)
}

/// Asks for the passphrase of the profile in `dir` (or takes
/// SOTTO_PASSPHRASE) until it opens the profile; returns the database key.
pub fn unlock_key(dir: &Path) -> Result<Zeroizing<[u8; 32]>> {
    if !db::exists(dir) {
        bail!("no profile in {}; create one with `sotto init --server ADDRESS --name HANDLE`", dir.display());
    }
    if db::uses_key_file(dir) {
        bail!("the profile in {} has no passphrase (it uses a key file), so there is nothing to unlock", dir.display());
    }
    let at_terminal = std::env::var_os("SOTTO_PASSPHRASE").is_none() && std::io::stdin().is_terminal();
    let prompt = format!("Passphrase for the sotto profile {}: ", dir.display());
    for tries in 1..=3 {
        let pass = ProfileKey::Passphrase(passphrase(&prompt, false)?);
        let key = db::derive_key(dir, &pass)?;
        match Messenger::open(dir, &ProfileKey::Raw(key.clone())) {
            Ok(_) => return Ok(key),
            Err(sotto_core::CoreError::WrongPassphrase) if at_terminal && tries < 3 => {
                eprintln!("wrong passphrase; try again ({} of 3)", tries + 1);
            }
            Err(e) => return Err(explain(dir, e)),
        }
    }
    bail!("wrong passphrase")
}

/// Creates a profile in `dir`.
pub fn create(dir: &Path, no_passphrase: bool, handle: &str, server: &str) -> Result<Messenger> {
    if db::exists(dir) {
        bail!("a profile exists already in {}; choose another --profile", dir.display());
    }
    let key = new_key(no_passphrase)?;
    Messenger::create(dir, &key, handle, server).map_err(|e| explain(dir, e))
}

/// SQLite's "unable to open database file" names neither the file nor the
/// cause; say where and what to check.
pub fn explain(dir: &Path, e: sotto_core::CoreError) -> anyhow::Error {
    if e.storage_unavailable() {
        return anyhow::anyhow!(
            "cannot open or write the profile in {}: the folder is not writable or the disk is full; \
             check its permissions (it must be yours) and the free space",
            dir.display()
        );
    }
    e.into()
}
