//! Where blob bytes live on disk. Shared by the blob endpoints
//! (`blobs.rs`) and the relay (which deletes bytes once every recipient
//! fetched them), so neither imports the other.

use std::path::{Path, PathBuf};

/// Where a blob's bytes are (complete) and are written (in progress).
pub fn paths(dir: &Path, id: &[u8]) -> (PathBuf, PathBuf) {
    let name = hex::encode(id);
    (dir.join(&name), dir.join(format!("{name}.part")))
}

/// Deletes a blob's bytes, complete or partial.
pub async fn remove_bytes(dir: &Path, id: &[u8]) {
    let (done, part) = paths(dir, id);
    let _ = tokio::fs::remove_file(done).await;
    let _ = tokio::fs::remove_file(part).await;
}
