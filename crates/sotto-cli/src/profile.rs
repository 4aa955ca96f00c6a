//! Finding, unlocking and creating the profile a command works on.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sotto_core::db;
use sotto_core::{Messenger, ProfileKey};
use zeroize::Zeroizing;

/// The default profile directory: `$XDG_DATA_HOME/sotto/default` or the
/// platform's equivalent.
pub fn default_dir() -> Result<PathBuf> {
    let dirs =
        directories::ProjectDirs::from("", "", "sotto").context("cannot find a home directory; pass --profile DIR")?;
    Ok(dirs.data_dir().join("default"))
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
    let key = if db::uses_key_file(dir) {
        ProfileKey::KeyFile
    } else {
        ProfileKey::Passphrase(passphrase("Passphrase: ", false)?)
    };
    let m = Messenger::open(dir, &key)?;
    if !m.is_registered()? {
        bail!("the profile in {} was never registered; remove it and run `sotto init` again", dir.display());
    }
    Ok(m)
}

/// Creates a profile in `dir`.
pub fn create(dir: &Path, no_passphrase: bool, handle: &str, server: &str) -> Result<Messenger> {
    let key = if no_passphrase {
        eprintln!(
            "warning: no passphrase: the profile's key is stored in {} next to the data. \
             Anyone who can read that folder can read your messages. This is weaker than a passphrase.",
            db::db_path(dir).with_file_name("profile.key").display()
        );
        ProfileKey::KeyFile
    } else {
        ProfileKey::Passphrase(passphrase("Choose a passphrase for this profile: ", true)?)
    };
    Ok(Messenger::create(dir, &key, handle, server)?)
}
