//! Sending and fetching files: encrypt while reading the disk, stream the
//! ciphertext up, stream it down and decrypt while writing the disk. Memory
//! stays at a few chunks whatever the file size; both directions resume.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use sotto_core::files::{cipher_size, free_path, safe_file_name, ChunkCipher, FileInfo, CHUNK, CIPHER_CHUNK, TAG};
use sotto_proto::{Request, Response, ServerAddress};
use tokio::sync::mpsc;

use crate::blobs::BlobClient;
use crate::session::{Session, SessionError, SessionResult};

/// Called with (bytes done, bytes in all) as a transfer goes.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Chunks in flight between the disk and the network: bounds memory.
const IN_FLIGHT: usize = 16;

fn other(e: impl std::fmt::Display) -> SessionError {
    SessionError::Other(e.to_string())
}

impl Session<'_> {
    async fn blob_client(&mut self) -> SessionResult<BlobClient> {
        let address = ServerAddress::parse(&self.messenger().server()?).map_err(other)?;
        match self.connection().request(Request::BlobToken).await? {
            Response::BlobToken { token, .. } => Ok(BlobClient::new(address, &token)),
            r => Err(other(format!("unexpected answer: {r:?}"))),
        }
    }

    /// Uploads a file once and sends it to every conversation, each message
    /// encrypted for its own group. Running it again after an interruption
    /// resumes the upload where the server's copy ends.
    pub async fn send_file(
        &mut self,
        conversations: &[String],
        path: &Path,
        caption: Option<String>,
        progress: Progress,
    ) -> SessionResult<()> {
        let meta = std::fs::metadata(path).map_err(|e| other(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(other(format!("{} is not a file", path.display())));
        }
        // Before anything changes (a conversation started for it, say).
        self.check_size(path, meta.len())?;
        for c in conversations {
            if let Some(h) = c.strip_prefix('@') {
                if self.messenger().conversation_group(c)?.is_some() {
                    self.check_peer(h).await?;
                }
                self.ensure_direct(h).await?;
            } else if let Some(group_id) = self.messenger().conversation_group(c)? {
                self.add_members_missing_devices(&group_id).await;
            } else {
                return Err(other(format!("no conversation {c}; see `sotto groups`")));
            }
        }
        // Padded only where every reader's app reads padded files: the
        // post-quantum conversations (older apps are never in those).
        let mut pad = true;
        for c in conversations {
            pad &= self.messenger().is_post_quantum(c) == Some(true);
        }
        let (info, key) = self.upload_path(path, &meta, pad, progress).await?;
        for c in conversations {
            let group_id =
                self.messenger().conversation_group(c)?.ok_or_else(|| other(format!("no conversation {c}")))?;
            self.connection().request(Request::ShareBlob { blob_id: info.blob_id.clone(), group_id }).await?;
            // Already queued by an earlier, interrupted run: the outbox
            // sends it (again, de-duplicated by the server) on reconnect.
            if let Some(item) = self.messenger().prepare_file(c, info.clone(), caption.clone())? {
                if let Some(id) = &item.message_id {
                    // A history archive for a device linked later carries
                    // this file while it stays where it is.
                    self.messenger().record_file_copy(id, path)?;
                }
                self.post_item(item).await.map_err(|e| crate::SessionError::Queued(Box::new(e)))?;
            }
        }
        self.messenger().upload_done(&key)?;
        Ok(())
    }

    fn check_size(&mut self, path: &Path, size: u64) -> SessionResult<()> {
        let max = self.connection().hello().max_blob_bytes;
        if max > 0 && cipher_size(size) > max {
            return Err(other(format!(
                "{} is {size} bytes; this server takes files up to {} bytes",
                path.display(),
                max.saturating_sub(cipher_size(0))
            )));
        }
        Ok(())
    }

    /// Encrypts `path` while reading it and uploads it, resuming an upload
    /// of the same file begun before. Returns what a message needs to
    /// fetch and check it, and the key its upload is remembered under
    /// (forget it with `upload_done` once nothing needs to resume).
    /// With `pad`, zeros follow the file's bytes up to its size bucket
    /// (`padding::file_bucket`) before sealing, unless that would pass the
    /// server's largest file.
    pub(crate) async fn upload_path(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
        pad: bool,
        progress: Progress,
    ) -> SessionResult<(FileInfo, String)> {
        let size = meta.len();
        self.check_size(path, size)?;
        let max = self.connection().hello().max_blob_bytes;
        let sealed = match sotto_core::padding::file_bucket(size) {
            bucket if pad && (max == 0 || cipher_size(bucket) <= max) => bucket,
            _ => size,
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        // A padded upload is another blob than an unpadded one of the
        // same file: each resumes on its own.
        let key = format!("{}{}", canonical.to_string_lossy(), if sealed > size { "\0padded" } else { "" });
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let state = self.messenger().upload_for(&key, size, mtime)?;
        let client = self.blob_client().await?;
        let total = cipher_size(sealed);
        let status = client.status(&state.blob_id).await?;
        let (stored, complete) = status.map(|s| (s.stored, s.complete)).unwrap_or((0, false));
        let start_chunk = if complete { u64::MAX } else { stored / CIPHER_CHUNK as u64 };

        let cipher = ChunkCipher::new(&state.key, &state.nonce, &state.blob_id, sealed)?;
        let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
        let file_path = path.to_owned();
        let reader = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let mut f = std::fs::File::open(&file_path).map_err(|e| format!("{}: {e}", file_path.display()))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; CHUNK];
            for index in 0..cipher.chunks() {
                let start = index * CHUNK as u64;
                let want = CHUNK.min((sealed - start) as usize);
                // The file's own bytes, then (padded) zeros.
                let real = (size.saturating_sub(start) as usize).min(want);
                f.read_exact(&mut buf[..real])
                    .map_err(|e| format!("{}: {e} (did the file change?)", file_path.display()))?;
                buf[real..want].fill(0);
                hasher.update(&buf[..real]);
                if index >= start_chunk {
                    let sealed = cipher.seal(index, &buf[..want]).map_err(|e| e.to_string())?;
                    if tx.blocking_send(Bytes::from(sealed)).is_err() {
                        return Err("the upload stopped".into());
                    }
                }
                progress((start + want as u64).min(size), size);
            }
            Ok(hasher.finalize().to_vec())
        });
        let upload = if complete {
            drop(rx);
            Ok(total)
        } else {
            let offset = start_chunk * CIPHER_CHUNK as u64;
            client.upload(&state.blob_id, total, offset, rx).await
        };
        let hashed = reader.await.map_err(other)?;
        let stored = upload?;
        let sha256 = hashed.map_err(other)?;
        if stored < total {
            return Err(other(format!(
                "the upload stopped at {stored} of {total} bytes; run the same command again to resume"
            )));
        }

        // A picture gets a preview that travels inside its message; decoding
        // takes a moment, so off the async threads.
        let picture = path.to_owned();
        let thumbnail =
            tokio::task::spawn_blocking(move || sotto_core::thumbnail::of_file(&picture)).await.ok().flatten();
        let media_type = mime_guess::from_path(path).first_or_octet_stream().essence_str().to_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let info = FileInfo {
            blob_id: state.blob_id.clone(),
            key: state.key,
            nonce: state.nonce,
            size,
            name,
            media_type,
            sha256,
            thumbnail,
            padded: (sealed > size).then_some(sealed),
        };
        Ok((info, key))
    }

    /// Fetches, decrypts and verifies the file of message `id_hex`. Writes
    /// to `output`, or into the profile's download folder under a safe name
    /// (never over an existing file). Running it again after an
    /// interruption resumes. Returns where the file is.
    pub async fn download_file(
        &mut self,
        id_hex: &str,
        output: Option<&Path>,
        progress: Progress,
    ) -> SessionResult<PathBuf> {
        let (message, info) = self.messenger().file_message(id_hex)?;
        if output.is_none() {
            if let Some(copy) = self.downloaded_copy(&message.id, &info)? {
                return Ok(copy);
            }
        }
        let path = self.download_info(&info, output, progress).await?;
        self.messenger().record_file_copy(&message.id, &path)?;
        Ok(path)
    }

    /// The copy of this file already in the profile's download folder, when
    /// it is still there and still the file that was sent (checked, as a
    /// download is): opening a picture twice does not make two copies.
    fn downloaded_copy(&mut self, message_id: &[u8], info: &FileInfo) -> SessionResult<Option<PathBuf>> {
        let (Some(copy), Some(downloads)) = (self.messenger().file_copy(message_id)?, self.messenger().downloads_dir())
        else {
            return Ok(None);
        };
        let downloads = std::fs::canonicalize(&downloads).unwrap_or(downloads);
        if !copy.starts_with(&downloads) || std::fs::metadata(&copy).map(|m| m.len()).ok() != Some(info.size) {
            return Ok(None);
        }
        let Ok(mut f) = std::fs::File::open(&copy) else { return Ok(None) };
        let mut hasher = Sha256::new();
        if std::io::copy(&mut f, &mut hasher).is_err() || hasher.finalize().as_slice() != info.sha256.as_slice() {
            return Ok(None);
        }
        Ok(Some(copy))
    }

    /// Fetches, decrypts and checks the blob `info` describes, as
    /// [`Session::download_file`] does for a message's file.
    pub(crate) async fn download_info(
        &mut self,
        info: &FileInfo,
        output: Option<&Path>,
        progress: Progress,
    ) -> SessionResult<PathBuf> {
        let (dir, target) = match output {
            Some(p) => {
                if p.exists() {
                    return Err(other(format!("{} exists; choose another name (nothing is overwritten)", p.display())));
                }
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
                (dir, Some(p.to_owned()))
            }
            None => (
                self.messenger()
                    .downloads_dir()
                    .ok_or_else(|| other("give -o PATH: an ephemeral profile has no download folder"))?,
                None,
            ),
        };
        std::fs::create_dir_all(&dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
        #[cfg(unix)]
        if output.is_none() {
            // The profile's own download folder: decrypted files, the owner's only.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let part = dir.join(format!(".{}.part", hex::encode(&info.blob_id)));

        let client = self.blob_client().await?;
        let total = cipher_size(info.sealed_size());
        match client.status(&info.blob_id).await? {
            None => {
                return Err(other(
                    "the server has no such file for this device (not shared with you, or already removed)",
                ))
            }
            Some(s) if s.size != total => {
                let _ = std::fs::remove_file(&part);
                return Err(other("the server's copy has the wrong size: it was damaged or tampered with"));
            }
            Some(s) if !s.complete => return Err(other("the sender's upload has not finished yet; try again later")),
            Some(_) => {}
        }

        let result = self.fetch_into(&client, info, &part, progress).await;
        match result {
            Ok(()) => {}
            Err(Fetch::Interrupted(e)) => {
                return Err(other(format!("the download stopped ({e}); run the same command again to resume")))
            }
            Err(Fetch::Integrity(e)) => {
                // Nothing of a file that failed its check stays behind.
                let _ = std::fs::remove_file(&part);
                return Err(other(e));
            }
        }
        let final_path = match target {
            Some(p) => p,
            None => free_path(&dir, &safe_file_name(&info.name)),
        };
        // Without overwriting: link the finished file to its name.
        std::fs::hard_link(&part, &final_path)
            .or_else(|_| {
                if final_path.exists() {
                    Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
                } else {
                    std::fs::rename(&part, &final_path)
                }
            })
            .map_err(|e| other(format!("{}: {e}", final_path.display())))?;
        let _ = std::fs::remove_file(&part);
        self.connection().request(Request::BlobFetched { blob_id: info.blob_id.clone() }).await?;
        Ok(final_path)
    }

    async fn fetch_into(
        &mut self,
        client: &BlobClient,
        info: &FileInfo,
        part: &Path,
        progress: Progress,
    ) -> Result<(), Fetch> {
        let io = |e: std::io::Error| Fetch::Interrupted(format!("{}: {e}", part.display()));
        let sealed = info.sealed_size();
        let cipher = ChunkCipher::new(&info.key, &info.nonce, &info.blob_id, sealed)
            .map_err(|e| Fetch::Integrity(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).read(true).write(true);
        // Decrypted bytes: readable by their owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(part).map_err(io)?;
        let have = file.metadata().map_err(io)?.len().min(info.size);
        // Resume at the last whole chunk, re-hashing what is there.
        let mut index = have / CHUNK as u64;
        if index >= cipher.chunks() {
            index = cipher.chunks() - 1;
        }
        let keep = index * CHUNK as u64;
        file.set_len(keep).map_err(io)?;
        let mut hasher = Sha256::new();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut buf = vec![0u8; CHUNK];
        let mut left = keep;
        while left > 0 {
            let n = (left as usize).min(CHUNK);
            file.read_exact(&mut buf[..n]).map_err(io)?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let mut out = std::io::BufWriter::with_capacity(4 * CHUNK, file);
        let mut body = client
            .download(&info.blob_id, index * CIPHER_CHUNK as u64)
            .await
            .map_err(|e| Fetch::Interrupted(e.to_string()))?;
        let chunk_len = |i: u64| -> usize {
            if i + 1 == cipher.chunks() {
                (sealed - i * CHUNK as u64) as usize + TAG
            } else {
                CIPHER_CHUNK
            }
        };
        let mut pending: Vec<u8> = Vec::with_capacity(2 * CIPHER_CHUNK);
        let mut done = keep;
        loop {
            match body.frame().await {
                None => break,
                Some(Err(e)) => {
                    out.flush().map_err(io)?;
                    return Err(Fetch::Interrupted(e.to_string()));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    pending.extend_from_slice(&data);
                    while index < cipher.chunks() && pending.len() >= chunk_len(index) {
                        let n = chunk_len(index);
                        let plain = cipher.open(index, &pending[..n]).map_err(|e| Fetch::Integrity(e.to_string()))?;
                        pending.drain(..n);
                        // The file's own bytes; the padding after them is
                        // authenticated with the rest and dropped.
                        let real = (info.size.saturating_sub(index * CHUNK as u64) as usize).min(plain.len());
                        hasher.update(&plain[..real]);
                        out.write_all(&plain[..real]).map_err(io)?;
                        done += real as u64;
                        index += 1;
                        progress(done, info.size);
                    }
                    if index == cipher.chunks() && !pending.is_empty() {
                        return Err(Fetch::Integrity(
                            "the file has extra bytes after its end: it was tampered with".into(),
                        ));
                    }
                }
            }
        }
        out.flush().map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        if index < cipher.chunks() {
            // The server ended the body cleanly without the final chunk: the
            // file is short (a cut connection shows as an error above).
            return Err(Fetch::Integrity("the file ends early: it was truncated or tampered with".into()));
        }
        if hasher.finalize().as_slice() != info.sha256.as_slice() {
            return Err(Fetch::Integrity("the file's checksum does not match what the sender sent".into()));
        }
        Ok(())
    }
}

/// Why a fetch stopped.
enum Fetch {
    /// The network or disk: resume later.
    Interrupted(String),
    /// The bytes are wrong: never resume, never keep.
    Integrity(String),
}
