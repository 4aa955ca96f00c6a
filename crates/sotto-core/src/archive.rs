//! The history archive a device hands to a newly linked one: the messages
//! of the last days (and the files this device still has a copy of), in
//! the backup's container (`backup.rs`: SQLCipher under a passphrase, here
//! a random one that travels inside MLS). Never the MLS state or the
//! identity: a linked device is a device of its own, not a copy.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use rusqlite::params;
use sha2::{Digest, Sha256};

use crate::backup::open_container;
use crate::content::Body;
use crate::error::{CoreError, CoreResult};
use crate::files::{free_path, safe_file_name, FileInfo};
use crate::messenger::{Messenger, OWN_CONVERSATION};
use crate::sql::Cached;

/// Bytes of a file per archive row: files go in parts, so neither side
/// holds a whole file in memory.
const PART: usize = 1024 * 1024;

/// What an archive holds, or what was taken from one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Messages.
    pub messages: usize,
    /// Files with their bytes.
    pub files: usize,
}

impl Messenger {
    /// Remembers where this device keeps the file of a message (a download,
    /// or the file it sent), so a history archive can carry its bytes.
    pub fn record_file_copy(&self, message_id: &[u8], path: &Path) -> CoreResult<()> {
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        self.conn.exec(
            "INSERT OR REPLACE INTO file_copies(message_id, path) VALUES(?,?)",
            params![message_id, path.to_string_lossy()],
        )?;
        Ok(())
    }

    /// Where this device keeps the file of a message, if it recorded one.
    pub fn file_copy(&self, message_id: &[u8]) -> CoreResult<Option<std::path::PathBuf>> {
        use rusqlite::OptionalExtension;
        let path: Option<String> =
            self.conn.row("SELECT path FROM file_copies WHERE message_id=?", [message_id], |r| r.get(0)).optional()?;
        Ok(path.map(Into::into))
    }

    /// Writes the history of the conversations this person sees (not
    /// message requests, not what is still unsent) from `since_ms` on,
    /// with the bytes of each file this device still has unchanged, into
    /// a new container at `file` under a new random secret, which it
    /// returns (it travels to the new device inside MLS).
    pub fn write_history_archive(&self, file: &Path, since_ms: i64) -> CoreResult<(ArchiveSummary, String)> {
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let mut summary = ArchiveSummary::default();
        self.write_container(file, &secret, |me| {
            me.conn.execute_batch(
                "CREATE TABLE backup.archive_messages(
                    n INTEGER PRIMARY KEY, id BLOB NOT NULL, conversation TEXT NOT NULL, group_id BLOB,
                    sender TEXT NOT NULL, outgoing INTEGER NOT NULL, sent_at INTEGER NOT NULL,
                    received_at INTEGER NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL,
                    reply_to BLOB, edited_at INTEGER, deleted INTEGER NOT NULL DEFAULT 0, expires_at INTEGER,
                    reactions BLOB);
                 CREATE TABLE backup.archive_files(message_id BLOB NOT NULL, part INTEGER NOT NULL, bytes BLOB NOT NULL,
                    PRIMARY KEY(message_id, part));",
            )?;
            summary.messages = me.conn.exec(
                &format!(
                    "INSERT INTO backup.archive_messages
                     SELECT n, id, conversation, group_id, sender, outgoing, sent_at, received_at, body, state,
                            reply_to, edited_at, deleted, expires_at, reactions
                     FROM main.messages
                     WHERE sent_at >= ?1 AND state IN ('sent', 'received', 'system', 'not_sent') AND annotation=0
                       AND conversation != '{OWN_CONVERSATION}'
                       AND conversation NOT IN (SELECT conversation FROM main.groups WHERE request_from IS NOT NULL AND active=1)"
                ),
                [since_ms],
            )?;
            let copies: Vec<(Vec<u8>, Vec<u8>, String)> = {
                let mut stmt = me.conn.prepare(
                    "SELECT a.id, a.body, c.path FROM backup.archive_messages a JOIN main.file_copies c ON c.message_id = a.id",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, body, path) in copies {
                let Ok(Body::File { file, .. }) = ciborium::from_reader::<Body, _>(body.as_slice()) else { continue };
                if me.archive_file(&id, &file, Path::new(&path))? {
                    summary.files += 1;
                } else {
                    me.conn.exec("DELETE FROM backup.archive_files WHERE message_id=?", [&id])?;
                }
            }
            Ok(())
        })?;
        Ok((summary, secret))
    }

    /// Copies one file into the archive in parts; false (and nothing kept
    /// by the caller) when the copy is gone or no longer the file that was
    /// sent.
    fn archive_file(&self, id: &[u8], info: &FileInfo, path: &Path) -> CoreResult<bool> {
        let Ok(mut f) = fs::File::open(path) else { return Ok(false) };
        if f.metadata().map(|m| m.len()).ok() != Some(info.size) {
            return Ok(false);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; PART];
        let mut part = 0i64;
        loop {
            let n = read_full(&mut f, &mut buf)?;
            if n == 0 && part > 0 {
                break;
            }
            hasher.update(&buf[..n]);
            self.conn.exec(
                "INSERT INTO backup.archive_files(message_id, part, bytes) VALUES(?,?,?)",
                params![id, part, &buf[..n]],
            )?;
            part += 1;
            if n < PART {
                break;
            }
        }
        Ok(hasher.finalize().as_slice() == info.sha256.as_slice())
    }

    /// Takes the messages (and files) of an archive into this profile: in
    /// their conversations, ahead of everything this device has (they are
    /// older), without duplicates (a message already here stays as it
    /// is). Files go to the download folder, checked against their
    /// checksum. `near` is a folder inside the profile for the decrypted
    /// copy while it is read.
    pub fn import_history_archive(&self, file: &Path, secret: &str, near: &Path) -> CoreResult<ArchiveSummary> {
        let src = open_container(file, secret, near).map_err(|e| match e {
            CoreError::Invalid(_) => CoreError::Invalid("the history archive does not open with its key".into()),
            other => other,
        })?;
        type Row = (Vec<u8>, String, Option<Vec<u8>>, String, bool, i64, i64, Vec<u8>, String, Extra);
        // What replies, edits, deletes, reactions and timers left on a
        // message (absent in archives from before them).
        type Extra = (Option<Vec<u8>>, Option<i64>, bool, Option<i64>, Option<Vec<u8>>);
        let with_extra = src.conn.prepare("SELECT reply_to FROM archive_messages LIMIT 0").is_ok();
        let rows: Vec<Row> = {
            let extra = if with_extra {
                "reply_to, edited_at, deleted, expires_at, reactions"
            } else {
                "NULL, NULL, 0, NULL, NULL"
            };
            let mut stmt = src.conn.prepare(&format!(
                "SELECT id, conversation, group_id, sender, outgoing, sent_at, received_at, body, state, {extra}
                 FROM archive_messages ORDER BY n"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    (r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?),
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut summary = ArchiveSummary::default();
        self.tx(|me| {
            // Older than anything here: numbered below this device's first
            // message, so history shows them first.
            let low: i64 = me.conn.row("SELECT coalesce(min(n), 1) FROM messages", [], |r| r.get(0))?;
            let count = rows.len() as i64;
            for (i, (id, conversation, group_id, sender, outgoing, sent_at, received_at, body, state, extra)) in
                rows.iter().enumerate()
            {
                if !matches!(state.as_str(), "sent" | "received" | "system" | "not_sent") || id.is_empty() {
                    continue;
                }
                // The conversation's name here (a group may be named
                // differently on this device), else the archive's.
                let local: Option<String> = match group_id {
                    Some(g) => me
                        .conn
                        .row("SELECT conversation FROM groups WHERE group_id=?", [g], |r| r.get(0))
                        .ok(),
                    None => None,
                };
                let conversation = local.unwrap_or_else(|| conversation.clone());
                if conversation == OWN_CONVERSATION {
                    continue;
                }
                let added = me.conn.exec(
                    "INSERT OR IGNORE INTO messages(n, id, conversation, group_id, seq, sender, outgoing, sent_at, received_at, body, state, fetched,
                        reply_to, edited_at, deleted, expires_at, reactions)
                     VALUES(?,?,?,?,NULL,?,?,?,?,?,?,1,?,?,?,?,?)",
                    params![
                        low - count + i as i64 - 1,
                        id,
                        conversation,
                        group_id,
                        sender,
                        outgoing,
                        sent_at,
                        received_at,
                        body,
                        state,
                        extra.0,
                        extra.1,
                        extra.2,
                        extra.3,
                        extra.4
                    ],
                )?;
                summary.messages += added;
            }
            Ok(())
        })?;
        let Some(downloads) = self.downloads_dir() else { return Ok(summary) };
        for (id, _, _, _, _, _, _, body, _, _) in &rows {
            let Ok(Body::File { file, .. }) = ciborium::from_reader::<Body, _>(body.as_slice()) else { continue };
            if self.restore_file(&src.conn, id, &file, &downloads)? {
                summary.files += 1;
            }
        }
        Ok(summary)
    }

    /// Writes one archived file into `dir` (never over another file) if
    /// its parts are there and match the checksum, and records the copy.
    fn restore_file(&self, src: &rusqlite::Connection, id: &[u8], info: &FileInfo, dir: &Path) -> CoreResult<bool> {
        let parts: i64 = src.query_row("SELECT count(*) FROM archive_files WHERE message_id=?", [id], |r| r.get(0))?;
        if parts == 0 {
            return Ok(false);
        }
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        let part_path = dir.join(format!(".{}.part", hex::encode(&info.blob_id)));
        let mut opts = fs::OpenOptions::new();
        opts.create(true).truncate(true).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut out = opts.open(&part_path)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        for part in 0..parts {
            let bytes: Vec<u8> = src.query_row(
                "SELECT bytes FROM archive_files WHERE message_id=? AND part=?",
                params![id, part],
                |r| r.get(0),
            )?;
            hasher.update(&bytes);
            size += bytes.len() as u64;
            out.write_all(&bytes)?;
        }
        out.sync_all()?;
        drop(out);
        if size != info.size || hasher.finalize().as_slice() != info.sha256.as_slice() {
            let _ = fs::remove_file(&part_path);
            return Ok(false);
        }
        let target = free_path(dir, &safe_file_name(&info.name));
        fs::rename(&part_path, &target)?;
        self.record_file_copy(id, &target)?;
        Ok(true)
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> CoreResult<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
