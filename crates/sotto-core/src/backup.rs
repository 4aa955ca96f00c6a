//! Encrypted profile backups: the whole profile (identity, contacts,
//! history, MLS state) exported by SQLCipher into a database encrypted under
//! a key derived from a backup passphrase with Argon2id.
//!
//! File layout: a text line `SOTTO-BACKUP 1`, a line with the Argon2id
//! parameters and salt, then the SQLCipher database bytes.

use crate::sql::Cached;
use std::fs;
use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

use crate::db::{self, ProfileKey};
use crate::error::{CoreError, CoreResult};
use crate::messenger::Messenger;

const MAGIC: &str = "SOTTO-BACKUP 1\n";

fn bad(detail: &str) -> CoreError {
    CoreError::decode("backup file", detail)
}

impl Messenger {
    /// Writes an encrypted backup of this profile to `file` (which must not
    /// exist).
    pub fn backup(&self, file: &Path, passphrase: &str) -> CoreResult<()> {
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
            let export = self.conn.row("SELECT sqlcipher_export('backup')", [], |_| Ok(()));
            self.conn.execute_batch("DETACH DATABASE backup")?;
            export?;
            let mut out = fs::OpenOptions::new().write(true).create_new(true).open(file)?;
            out.write_all(MAGIC.as_bytes())?;
            out.write_all(kdf_line.as_bytes())?;
            out.write_all(&fs::read(&exported)?)?;
            out.sync_all()?;
            Ok(())
        })();
        let _ = fs::remove_dir_all(&work);
        if result.is_err() {
            let _ = fs::remove_file(file);
        }
        result
    }

    /// Restores a backup into a new profile in `dir`, protected by `key`.
    pub fn restore(file: &Path, passphrase: &str, dir: &Path, key: &ProfileKey) -> CoreResult<Self> {
        if db::exists(dir) {
            return Err(CoreError::ProfileExists(dir.display().to_string()));
        }
        let bytes = fs::read(file)?;
        let rest = bytes.strip_prefix(MAGIC.as_bytes()).ok_or_else(|| bad("not a sotto backup"))?;
        let nl = rest.iter().position(|b| *b == b'\n').ok_or_else(|| bad("truncated header"))?;
        let (kdf_line, data) = (&rest[..=nl], &rest[nl + 1..]);
        fs::create_dir_all(dir)?;
        let work = tempdir_beside(&dir.join("restore"))?;
        let result = (|| {
            let kdf_dir = work.join("kdf");
            fs::create_dir(&kdf_dir)?;
            fs::write(kdf_dir.join("profile.kdf"), kdf_line)?;
            let backup_key =
                db::key_from_files(&kdf_dir, &ProfileKey::Passphrase(Zeroizing::new(passphrase.to_owned())))?;
            let src_path = work.join("backup.db");
            fs::write(&src_path, data)?;
            let src = db::open_keyed(&src_path, &backup_key).map_err(|e| match e {
                CoreError::WrongPassphrase => CoreError::Invalid("wrong passphrase for this backup".into()),
                other => other,
            })?;
            let profile_key = db::new_key(dir, key)?;
            src.execute(
                "ATTACH DATABASE ?1 AS restored KEY ?2",
                rusqlite::params![db::db_path(dir).to_string_lossy(), db::key_literal(&profile_key).as_str()],
            )?;
            src.query_row("SELECT sqlcipher_export('restored')", [], |_| Ok(()))?;
            src.execute_batch("DETACH DATABASE restored")?;
            Ok(())
        })();
        let _ = fs::remove_dir_all(&work);
        if let Err(e) = result {
            db::remove(dir);
            return Err(e);
        }
        let m = Messenger::open(dir, key)?;
        m.become_new_copy()?;
        Ok(m)
    }
}

fn tempdir_beside(file: &Path) -> CoreResult<std::path::PathBuf> {
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
