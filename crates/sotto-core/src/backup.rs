//! Encrypted profile backups: the whole profile (identity, contacts,
//! history, MLS state) exported by SQLCipher into a database encrypted under
//! a key derived from a backup passphrase with Argon2id.
//!
//! File layout: a text line `SOTTO-BACKUP 1`, a line with the Argon2id
//! parameters and salt, then the SQLCipher database bytes. The history
//! archive handed to a newly linked device (`archive.rs`) is the same
//! container holding other tables.

use crate::sql::Cached;
use std::fs;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::db::{self, ProfileKey};
use crate::error::{CoreError, CoreResult};
use crate::messenger::Messenger;

const MAGIC: &str = "SOTTO-BACKUP 1\n";

fn bad(detail: &str) -> CoreError {
    CoreError::decode("backup file", detail)
}

/// A container opened for reading: the decrypted database's connection and
/// the private folder it lives in, removed on drop.
pub(crate) struct OpenContainer {
    pub(crate) conn: Connection,
    work: PathBuf,
}

impl Drop for OpenContainer {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.work);
    }
}

impl Messenger {
    /// Writes `file` (which must not exist): the container header, then an
    /// SQLCipher database under `passphrase` that `fill` writes while it
    /// is attached to this profile's connection as `backup`.
    pub(crate) fn write_container(
        &self,
        file: &Path,
        passphrase: &str,
        fill: impl FnOnce(&Self) -> CoreResult<()>,
    ) -> CoreResult<()> {
        if file.exists() {
            return Err(CoreError::Invalid(format!("{} exists; choose another file name", file.display())));
        }
        let work = tempdir_beside(file)?;
        let result = (|| {
            let kdf_dir = work.join("kdf");
            fs::create_dir(&kdf_dir)?;
            let key = db::new_key(&kdf_dir, &ProfileKey::Passphrase(Zeroizing::new(passphrase.to_owned())))?;
            let kdf_line = fs::read_to_string(kdf_dir.join("profile.kdf"))?;
            let exported = work.join("export.db");
            self.conn.exec(
                "ATTACH DATABASE ?1 AS backup KEY ?2",
                rusqlite::params![exported.to_string_lossy(), db::key_literal(&key).as_str()],
            )?;
            let filled = fill(self);
            self.conn.execute_batch("DETACH DATABASE backup")?;
            filled?;
            let mut out = fs::OpenOptions::new().write(true).create_new(true).open(file)?;
            out.write_all(MAGIC.as_bytes())?;
            out.write_all(kdf_line.as_bytes())?;
            std::io::copy(&mut fs::File::open(&exported)?, &mut out)?;
            out.sync_all()?;
            Ok(())
        })();
        let _ = fs::remove_dir_all(&work);
        if result.is_err() {
            let _ = fs::remove_file(file);
        }
        result
    }

    /// Writes an encrypted backup of this profile to `file` (which must not
    /// exist).
    pub fn backup(&self, file: &Path, passphrase: &str) -> CoreResult<()> {
        self.write_container(file, passphrase, |me| {
            me.conn.row("SELECT sqlcipher_export('backup')", [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// Restores a backup into a new profile in `dir`, protected by `key`:
    /// the same device, replacing the copy in use (which the server then
    /// refuses). See [`Messenger::restore_as_new_device`] for a device of
    /// its own beside the original.
    pub fn restore(file: &Path, passphrase: &str, dir: &Path, key: &ProfileKey) -> CoreResult<Self> {
        let m = Self::restore_files(file, passphrase, dir, key)?;
        m.become_new_copy()?;
        Ok(m)
    }

    /// The backup's database, decrypted into a new profile in `dir`, as it
    /// was when the backup was made.
    pub(crate) fn restore_files(file: &Path, passphrase: &str, dir: &Path, key: &ProfileKey) -> CoreResult<Self> {
        if db::exists(dir) {
            return Err(CoreError::ProfileExists(dir.display().to_string()));
        }
        fs::create_dir_all(dir)?;
        let result = (|| {
            let src = open_container(file, passphrase, &dir.join("restore"))?;
            let profile_key = db::new_key(dir, key)?;
            src.conn.execute(
                "ATTACH DATABASE ?1 AS restored KEY ?2",
                rusqlite::params![db::db_path(dir).to_string_lossy(), db::key_literal(&profile_key).as_str()],
            )?;
            src.conn.query_row("SELECT sqlcipher_export('restored')", [], |_| Ok(()))?;
            src.conn.execute_batch("DETACH DATABASE restored")?;
            Ok(())
        })();
        if let Err(e) = result {
            db::remove(dir);
            return Err(e);
        }
        Messenger::open(dir, key)
    }
}

/// Opens a container written by [`Messenger::write_container`], decrypting
/// it into a private folder beside `near` (inside a profile, never the
/// shared temp folder).
pub(crate) fn open_container(file: &Path, passphrase: &str, near: &Path) -> CoreResult<OpenContainer> {
    let mut input = std::io::BufReader::new(fs::File::open(file)?);
    let mut magic = String::new();
    (&mut input).take(MAGIC.len() as u64).read_line(&mut magic)?;
    if magic != MAGIC {
        return Err(bad("not a sotto backup"));
    }
    let mut kdf_line = String::new();
    (&mut input).take(4096).read_line(&mut kdf_line)?;
    if !kdf_line.ends_with('\n') {
        return Err(bad("truncated header"));
    }
    let work = tempdir_beside(near)?;
    let opened = (|| {
        let kdf_dir = work.join("kdf");
        fs::create_dir(&kdf_dir)?;
        fs::write(kdf_dir.join("profile.kdf"), &kdf_line)?;
        let key = db::key_from_files(&kdf_dir, &ProfileKey::Passphrase(Zeroizing::new(passphrase.to_owned())))?;
        let src_path = work.join("backup.db");
        std::io::copy(&mut input, &mut fs::File::create(&src_path)?)?;
        db::open_keyed(&src_path, &key).map_err(|e| match e {
            CoreError::WrongPassphrase => CoreError::Invalid("wrong passphrase for this backup".into()),
            other => other,
        })
    })();
    match opened {
        Ok(conn) => Ok(OpenContainer { conn, work }),
        Err(e) => {
            let _ = fs::remove_dir_all(&work);
            Err(e)
        }
    }
}

fn tempdir_beside(file: &Path) -> CoreResult<PathBuf> {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = format!(".sotto-backup-{}", hex::encode(rand::random::<[u8; 6]>()));
    let dir = parent.join(name);
    fs::create_dir(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}
