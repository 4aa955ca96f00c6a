//! The profile's encrypted database: SQLCipher, keyed either from a
//! passphrase with Argon2id or from a random key in a 0600 key file.
//!
//! Files in a profile directory:
//! - `profile.db`: the SQLCipher database (identity, contacts, history,
//!   MLS state);
//! - `profile.kdf`: Argon2id parameters and salt (passphrase mode; not secret);
//! - `profile.key`: the raw database key (key-file mode; weaker, since
//!   anyone who can read the file can read the profile).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CoreError, CoreResult};

/// How the database key is obtained.
pub enum ProfileKey {
    /// Derived from this passphrase.
    Passphrase(Zeroizing<String>),
    /// Read from (or, on creation, written to) `profile.key`.
    KeyFile,
    /// The database key itself, as an unlock agent holds it after the
    /// person typed the passphrase once ([`derive_key`]). Only for opening.
    Raw(Zeroizing<[u8; 32]>),
}

/// The database key of the existing profile in `dir` for `key` (Argon2id
/// from the passphrase, or the key file), without opening the database.
/// Wrong passphrases are found only by opening: check with [`open`].
pub fn derive_key(dir: &Path, key: &ProfileKey) -> CoreResult<Zeroizing<[u8; 32]>> {
    key_for(dir, key, false)
}

const DB: &str = "profile.db";
const KDF: &str = "profile.kdf";
const KEYFILE: &str = "profile.key";

/// Argon2id cost: 64 MiB, 3 passes, 1 lane. About a quarter second on a
/// laptop; each guess costs an attacker the same.
const M_COST: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

/// Whether a profile exists in `dir`.
pub fn exists(dir: &Path) -> bool {
    dir.join(DB).exists()
}

/// Whether the profile in `dir` keeps its key in a key file (no passphrase).
pub fn uses_key_file(dir: &Path) -> bool {
    dir.join(KEYFILE).exists()
}

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> CoreResult<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| CoreError::Invalid(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| CoreError::Invalid(e.to_string()))?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> CoreResult<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn key_for(dir: &Path, key: &ProfileKey, create: bool) -> CoreResult<Zeroizing<[u8; 32]>> {
    match key {
        ProfileKey::Raw(_) if create => {
            Err(CoreError::Invalid("a new profile needs a passphrase or a key file, not a raw key".into()))
        }
        ProfileKey::Raw(k) => Ok(k.clone()),
        ProfileKey::KeyFile => {
            let path = dir.join(KEYFILE);
            if create {
                let k: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
                write_private(&path, hex::encode(k.as_ref()).as_bytes())?;
                return Ok(k);
            }
            let mut text = fs::read_to_string(&path)?;
            let mut k = Zeroizing::new([0u8; 32]);
            let ok = hex::decode_to_slice(text.trim(), k.as_mut()).is_ok();
            text.zeroize();
            if !ok {
                return Err(CoreError::decode("profile key file", format!("{} is damaged", path.display())));
            }
            Ok(k)
        }
        ProfileKey::Passphrase(pass) => {
            let path = dir.join(KDF);
            if create {
                let salt: [u8; 16] = rand::random();
                let line = format!("argon2id m={M_COST} t={T_COST} p={P_COST} salt={}\n", hex::encode(salt));
                write_private(&path, line.as_bytes())?;
                return derive(pass, &salt, M_COST, T_COST, P_COST);
            }
            let text = fs::read_to_string(&path)?;
            let field = |name: &str| -> CoreResult<&str> {
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .ok_or_else(|| CoreError::decode("profile.kdf", format!("missing {name}")))
            };
            let num = |name: &str| -> CoreResult<u32> {
                field(name)?.parse().map_err(|e| CoreError::decode("profile.kdf", e))
            };
            let salt = hex::decode(field("salt=")?).map_err(|e| CoreError::decode("profile.kdf", e))?;
            derive(pass, &salt, num("m=")?, num("t=")?, num("p=")?)
        }
    }
}

fn keyed(path: &Path, key: &[u8; 32]) -> CoreResult<Connection> {
    let conn = Connection::open(path)?;
    // Room for every statement the client and openmls' storage run.
    conn.set_prepared_statement_cache_capacity(128);
    conn.pragma_update(None, "key", key_literal(key).as_str())?;
    // SQLCipher logs a wrong key as three ERROR lines on stderr before we
    // can say "wrong passphrase"; the person needs only our one line. (Set
    // after the key: attaching the codec resets the level to WARN.)
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
    // PRAGMA key always succeeds; a wrong key shows at the first read.
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::NotADatabase => {
            return Err(CoreError::WrongPassphrase)
        }
        Err(e) => return Err(e.into()),
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // The search index's triggers call it on every write to history.
    crate::messenger::register_search(&conn)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    // The folder is 0700 already; the files are the owner's alone too, so
    // copying the folder elsewhere keeps them private. (-wal and -shm take
    // the database's mode.)
    #[cfg(unix)]
    if let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let p = path.with_file_name(format!("{name}{suffix}"));
            if p.exists() {
                let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
            }
        }
    }
    Ok(conn)
}

/// Creates a new profile database in `dir` (which may exist but must hold
/// no profile).
pub fn create(dir: &Path, key: &ProfileKey) -> CoreResult<Connection> {
    if exists(dir) {
        return Err(CoreError::ProfileExists(dir.display().to_string()));
    }
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    // Leftovers of an earlier failed init would confuse key selection.
    for f in [KDF, KEYFILE] {
        let _ = fs::remove_file(dir.join(f));
    }
    let k = key_for(dir, key, true)?;
    keyed(&dir.join(DB), &k)
}

/// Opens the profile database in `dir`.
pub fn open(dir: &Path, key: &ProfileKey) -> CoreResult<Connection> {
    if !exists(dir) {
        return Err(CoreError::NoProfile(dir.display().to_string()));
    }
    let k = key_for(dir, key, false)?;
    keyed(&dir.join(DB), &k)
}

/// Makes a fresh key for a new database in `dir` (writing `profile.kdf`
/// or `profile.key`).
pub(crate) fn new_key(dir: &Path, key: &ProfileKey) -> CoreResult<Zeroizing<[u8; 32]>> {
    for f in [KDF, KEYFILE] {
        let _ = fs::remove_file(dir.join(f));
    }
    key_for(dir, key, true)
}

/// The key of an existing `profile.kdf`/`profile.key` in `dir`.
pub(crate) fn key_from_files(dir: &Path, key: &ProfileKey) -> CoreResult<Zeroizing<[u8; 32]>> {
    key_for(dir, key, false)
}

/// SQLCipher's raw-key literal for a key.
pub(crate) fn key_literal(key: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!("x'{}'", hex::encode(key)))
}

/// Opens a SQLCipher database file with a raw key, checking the key.
pub(crate) fn open_keyed(path: &Path, key: &[u8; 32]) -> CoreResult<Connection> {
    keyed(path, key)
}

/// Re-keys the open profile database in `dir` under `new` (a passphrase or
/// a key file). The new key's parameters are written beside the old ones
/// first and moved into place after the re-key, so a crash leaves a profile
/// that opens with one of the two.
pub fn rekey(conn: &Connection, dir: &Path, new: &ProfileKey) -> CoreResult<()> {
    let staging = tempfile_dir(dir)?;
    let k = key_for(&staging, new, true)?;
    // Re-keying rewrites every page; WAL would keep old pages around.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;")?;
    conn.pragma_update(None, "rekey", key_literal(&k).as_str())?;
    conn.execute_batch("PRAGMA journal_mode=WAL;")?;
    for f in [KDF, KEYFILE] {
        let _ = fs::remove_file(dir.join(f));
        if staging.join(f).exists() {
            fs::rename(staging.join(f), dir.join(f))?;
        }
    }
    let _ = fs::remove_dir(&staging);
    Ok(())
}

fn tempfile_dir(dir: &Path) -> CoreResult<PathBuf> {
    let staging = dir.join(".rekey");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging)?;
    Ok(staging)
}

/// Removes a profile's files (used when `init` fails half-way).
pub fn remove(dir: &Path) {
    for f in [DB, KDF, KEYFILE, "profile.db-wal", "profile.db-shm"] {
        let _ = fs::remove_file(dir.join(f));
    }
}

/// The database file, for tests that look at the bytes on disk.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passphrase_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let good = ProfileKey::Passphrase(Zeroizing::new("correct horse".into()));
        let conn = create(dir.path(), &good).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES('secret words');").unwrap();
        drop(conn);
        let bad = ProfileKey::Passphrase(Zeroizing::new("wrong".into()));
        assert!(matches!(open(dir.path(), &bad), Err(CoreError::WrongPassphrase)));
        let conn = open(dir.path(), &good).unwrap();
        let x: String = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, "secret words");
        drop(conn);
        // The bytes on disk do not show the plaintext.
        let raw = fs::read(db_path(dir.path())).unwrap();
        assert!(!raw.windows(12).any(|w| w == b"secret words"));
        assert!(matches!(create(dir.path(), &good), Err(CoreError::ProfileExists(_))));
    }

    #[test]
    fn key_file_mode_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), &ProfileKey::KeyFile).unwrap();
        assert!(uses_key_file(dir.path()));
        open(dir.path(), &ProfileKey::KeyFile).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEYFILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
