//! `sotto export --with-files`: the files of the exported conversations,
//! saved beside the export. A file this device already saved (in its
//! downloads folder, with the same SHA-256) is copied; any other is fetched
//! and checked like `sotto download` (into the downloads folder too, so a
//! later export finds it after the server deleted its copy). A file the
//! server no longer has is named in the report, never silently left out.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use sotto_client::Session;
use sotto_core::{Body, Messenger, StoredMessage};

/// What saving the files did.
#[derive(Debug, Default)]
pub struct Saved {
    /// Message id -> the file's path relative to the export.
    pub paths: HashMap<Vec<u8>, String>,
    /// Files that could not be saved, with the reason.
    pub missing: Vec<String>,
}

fn sha256_of(path: &Path) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            return Some(h.finalize().to_vec());
        }
        h.update(&buf[..n]);
    }
}

/// A name in `dir` not taken yet: `name`, else `<id>-name`.
fn free_name(dir: &Path, name: &str, id: &[u8]) -> PathBuf {
    let plain = dir.join(name);
    if !plain.exists() {
        return plain;
    }
    dir.join(format!("{}-{name}", hex::encode(&id[..id.len().min(4)])))
}

/// Saves every file of `messages` into `dir`; `relative` is how the export
/// names that folder.
pub async fn save(m: &Messenger, messages: &[StoredMessage], dir: &Path, relative: &str) -> Result<Saved> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut saved = Saved::default();
    let mut session: Option<Session<'_>> = None;
    for msg in messages {
        let Body::File { file, .. } = &msg.body else { continue };
        let name = sotto_core::files::safe_file_name(&file.name);
        let target = free_name(dir, &name, &msg.id);
        let local = m.downloads_dir().map(|d| d.join(&name)).filter(|p| sha256_of(p).as_deref() == Some(&file.sha256));
        let result = match local {
            Some(copy) => std::fs::copy(&copy, &target).map(drop).map_err(|e| format!("{}: {e}", copy.display())),
            None => {
                if session.is_none() {
                    session = Some(Session::open(m).await.context("cannot reach the server to fetch the files")?);
                }
                let s = session.as_mut().expect("opened above");
                let quiet: sotto_client::Progress = Arc::new(|_, _| {});
                let id = hex::encode(&msg.id);
                if m.downloads_dir().is_some() {
                    // Into the downloads folder first, as `sotto download`
                    // does: the server deletes a file once every recipient
                    // fetched it, so the profile's own copy is what a later
                    // export (or the person) finds.
                    match s.download_file(&id, None, quiet).await {
                        Ok(kept) => {
                            std::fs::copy(&kept, &target).map(drop).map_err(|e| format!("{}: {e}", kept.display()))
                        }
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    s.download_file(&id, Some(&target), quiet).await.map(drop).map_err(|e| e.to_string())
                }
            }
        };
        match result {
            Ok(()) => {
                let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name);
                saved.paths.insert(msg.id.clone(), format!("{relative}/{file_name}"));
            }
            Err(e) => saved.missing.push(format!("{name} ({}): {e}", msg.conversation)),
        }
    }
    if let Some(s) = session {
        s.close().await;
    }
    Ok(saved)
}
