//! The messenger's side of files: resumable upload state, file messages,
//! the folders for downloads and for plaintext staged by a front end. The
//! encryption itself is in `crate::files`, which knows nothing of the
//! messenger (so content -> files does not lead back here).

#[allow(unused_imports)]
use super::*;
use crate::files::{ChunkCipher, FileInfo};

/// How long a file staged by a front end (plaintext, inside the profile)
/// is kept after its upload broke off, so that sending the same file again
/// resumes it: a day.
pub const STAGED_RESUME_MS: i64 = 24 * 3600 * 1000;

/// An upload in progress, remembered so the same command resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    /// The blob id.
    pub blob_id: Vec<u8>,
    /// The file key.
    pub key: Vec<u8>,
    /// The nonce prefix.
    pub nonce: Vec<u8>,
}

impl Messenger {
    /// The upload of this file (same path, size and modification time)
    /// that was started before, or a new one (remembered at once).
    pub fn upload_for(&self, path: &str, size: u64, mtime: i64) -> CoreResult<UploadState> {
        use rusqlite::OptionalExtension;
        let found: Option<UploadState> = self
            .conn
            .row(
                "SELECT blob_id, key, nonce FROM uploads WHERE path=? AND size=? AND mtime=?",
                rusqlite::params![path, size, mtime],
                |r| Ok(UploadState { blob_id: r.get(0)?, key: r.get(1)?, nonce: r.get(2)? }),
            )
            .optional()?;
        if let Some(f) = found {
            return Ok(f);
        }
        let (key, nonce) = ChunkCipher::new_key();
        let state = UploadState { blob_id: self.new_id().to_vec(), key: key.to_vec(), nonce: nonce.to_vec() };
        self.conn.exec(
            "INSERT OR REPLACE INTO uploads(path, size, mtime, blob_id, key, nonce, created_at) VALUES(?,?,?,?,?,?,?)",
            rusqlite::params![path, size, mtime, state.blob_id, state.key, state.nonce, self.now()],
        )?;
        Ok(state)
    }

    /// Forgets a finished upload.
    pub fn upload_done(&self, path: &str) -> CoreResult<()> {
        self.conn.exec("DELETE FROM uploads WHERE path=?", [path])?;
        Ok(())
    }

    /// Queues a file message to a conversation; `None` if this upload's
    /// message to that conversation was queued before. The message id
    /// follows from the blob and the conversation, so running an
    /// interrupted `send --file` again never sends the file twice: the
    /// first message is already in the outbox, which re-sends it.
    pub fn prepare_file(
        &self,
        conversation: &str,
        file: FileInfo,
        caption: Option<String>,
    ) -> CoreResult<Option<crate::OutboxItem>> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"sotto file message\0");
        h.update(&file.blob_id);
        h.update(conversation.as_bytes());
        let id = h.finalize()[..16].to_vec();
        if !self.messages_where("id=?", &id)?.is_empty() {
            return Ok(None);
        }
        let content =
            crate::Content { id, ..crate::Content::new([0; 16], self.now(), crate::Body::File { file, caption }) };
        self.prepare_content(conversation, &content).map(Some)
    }

    /// A file message by its id (hex, as `receive --json` prints it).
    pub fn file_message(&self, id_hex: &str) -> CoreResult<(crate::StoredMessage, FileInfo)> {
        let id =
            hex::decode(id_hex.trim()).map_err(|_| CoreError::Invalid(format!("{id_hex:?} is not a message id")))?;
        let Some(m) = self.message(&id)? else {
            return Err(CoreError::NotFound(format!(
                "no file with id {id_hex}; see `sotto receive` or `sotto history`"
            )));
        };
        match &m.body {
            crate::Body::File { file, .. } => {
                let file = file.clone();
                Ok((m, file))
            }
            _ => Err(CoreError::Invalid("that message is not a file".into())),
        }
    }

    /// Where a front end that receives a file's bytes (the web UI) keeps
    /// them until they are encrypted: inside the profile (0700), never in
    /// the shared temp folder. `None` for an ephemeral profile, which keeps
    /// nothing on disk.
    pub fn outgoing_dir(&self) -> Option<std::path::PathBuf> {
        if self.is_ephemeral() {
            None
        } else {
            Some(self.dir().join("outgoing"))
        }
    }

    /// Whether a staged file's upload began and can resume (it has an
    /// upload record younger than [`STAGED_RESUME_MS`]).
    pub fn staged_upload_resumable(&self, path: &std::path::Path) -> CoreResult<bool> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()).to_string_lossy().into_owned();
        let since: Option<i64> =
            self.conn.row("SELECT created_at FROM uploads WHERE path=?", [&key], |r| r.get(0)).optional()?;
        Ok(since.is_some_and(|t| self.now() - t < STAGED_RESUME_MS))
    }

    /// Removes the plaintext a front end left staged (after a crash or a
    /// failed send), except a file whose upload began recently and can
    /// resume when the person sends the same file again. Everything else
    /// (half-received copies, uploads older than a day) goes, with its
    /// upload record.
    pub fn clear_outgoing(&self) {
        let Some(dir) = self.outgoing_dir() else { return };
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for e in entries.flatten() {
            let staging = e.path();
            let files: Vec<std::path::PathBuf> = match std::fs::read_dir(&staging) {
                Ok(inner) => inner.flatten().map(|f| f.path()).collect(),
                Err(_) => vec![],
            };
            let keep = staging.is_dir() && files.len() == 1 && self.staged_upload_resumable(&files[0]).unwrap_or(false);
            if !keep {
                for f in &files {
                    let key = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
                    let _ = self.upload_done(&key.to_string_lossy());
                }
                let _ = std::fs::remove_dir_all(&staging);
                let _ = std::fs::remove_file(&staging);
            }
        }
    }

    /// Where downloads go by default.
    pub fn downloads_dir(&self) -> Option<std::path::PathBuf> {
        if self.is_ephemeral() {
            None
        } else {
            Some(self.dir().join("downloads"))
        }
    }
}
