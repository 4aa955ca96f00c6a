//! Files through the web UI: the browser's upload staged privately in the
//! profile and sent like `sotto send --file`; a received file fetched,
//! checked and streamed to the browser.

#[allow(unused_imports)]
use super::*;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    to: String,
    name: String,
}

/// The browser posts the file's bytes; they are written to a private file
/// in the profile (streamed, never whole in memory), then sent like `sotto
/// send --file`. The staged copy is named by its content, so when an upload
/// broke off, sending the same file again finds the copy it began with and
/// resumes the encrypted upload where it stopped, as the CLI does.
pub(super) async fn upload(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Response {
    guard!(s, headers, None);
    if !(q.to.starts_with('@') || q.to.starts_with('#')) {
        return (StatusCode::BAD_REQUEST, "to must be @handle or #group").into_response();
    }
    // The plaintext waits inside the profile's own private folder, never in
    // the shared temp folder, and is removed once encrypted and uploaded
    // (net.rs), or at the next start after a crash.
    let Some(outgoing) = s.outgoing.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
        return (
            StatusCode::BAD_REQUEST,
            "an ephemeral profile keeps nothing on disk, so it cannot take files here; use `sotto --ephemeral ... send --file PATH`",
        )
            .into_response();
    };
    if private_dir(&outgoing).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot stage the file in the profile folder").into_response();
    }
    let incoming = outgoing.join(format!(".incoming-{}", hex::encode(rand::random::<[u8; 8]>())));
    let Ok(mut file) = staged_file(&incoming).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot stage the file in the profile folder").into_response();
    };
    let mut stream = body.into_data_stream();
    let mut digest = Sha256::new();
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = stream.next().await {
        let failed = match chunk {
            Ok(b) => {
                digest.update(&b);
                file.write_all(&b).await.err().map(|_| (StatusCode::INTERNAL_SERVER_ERROR, "cannot stage the file"))
            }
            Err(_) => Some((StatusCode::BAD_REQUEST, "the upload broke off; send the file again")),
        };
        if let Some(answer) = failed {
            drop(file);
            let _ = tokio::fs::remove_file(&incoming).await;
            return answer.into_response();
        }
    }
    if file.flush().await.is_err() {
        drop(file);
        let _ = tokio::fs::remove_file(&incoming).await;
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot stage the file").into_response();
    }
    drop(file);
    // Same bytes under the same name: the same staging place. A copy found
    // there is the one an interrupted upload began with (its modification
    // time is part of the upload's record), so it is kept and this one
    // dropped.
    let name = sotto_core::files::safe_file_name(&q.name);
    let dir = outgoing.join(hex::encode(&digest.finalize()[..16]));
    let path = dir.join(&name);
    if private_dir(&dir).is_err() {
        let _ = tokio::fs::remove_file(&incoming).await;
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot stage the file in the profile folder").into_response();
    }
    let kept = tokio::fs::metadata(&path).await.is_ok();
    let placed = if kept { tokio::fs::remove_file(&incoming).await } else { tokio::fs::rename(&incoming, &path).await };
    if placed.is_err() {
        let _ = tokio::fs::remove_file(&incoming).await;
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot stage the file").into_response();
    }
    let (id, outcome) = s.ask(Command::SendFile { to: q.to, path }).await;
    outcome_response(id, &outcome)
}

/// Creates a folder only its owner can enter (or tightens an existing one).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A new file only its owner can read.
async fn staged_file(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path).await
}

#[derive(Deserialize)]
pub(super) struct IdQuery {
    id: String,
    /// Present (`view=1`): show the picture in the page instead of saving it.
    view: Option<String>,
}

/// A picture's preview, from the message it came in (decrypted already:
/// nothing is fetched).
pub(super) async fn thumbnail(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<IdQuery>) -> Response {
    guard!(s, headers, None);
    let Ok(id) = hex::decode(&q.id) else {
        return (StatusCode::BAD_REQUEST, "id: a message id in hex").into_response();
    };
    let jpeg = {
        let app = s.model.lock().unwrap_or_else(|p| p.into_inner());
        app.conversations.values().flat_map(|c| c.messages.iter()).find(|m| m.id == id).and_then(|m| match &m.body {
            sotto_core::Body::File { file, .. } => file.thumbnail.as_ref().map(|t| t.jpeg.clone()),
            _ => None,
        })
    };
    let Some(jpeg) = jpeg else { return (StatusCode::NOT_FOUND, "that message has no preview").into_response() };
    let mut r = Response::new(Body::from(jpeg));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    r
}

/// Fetches and verifies a received file, then hands it to the browser.
pub(super) async fn download(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<IdQuery>) -> Response {
    guard!(s, headers, None);
    let Some(dir) = s.downloads.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
        return (StatusCode::BAD_REQUEST, "an ephemeral profile has no download folder").into_response();
    };
    let path = match s.ask(Command::Download { id: q.id.clone() }).await {
        (_, Outcome::Saved { path }) => PathBuf::from(path),
        (_, Outcome::Error { message }) => return (StatusCode::BAD_GATEWAY, message).into_response(),
        (_, other) => return (StatusCode::INTERNAL_SERVER_ERROR, other.describe()).into_response(),
    };
    if !path.starts_with(&dir) {
        return (StatusCode::FORBIDDEN, "refused").into_response();
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return (StatusCode::NOT_FOUND, "the file is gone").into_response();
    };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) { c } else { '_' }).collect();
    // Shown in the page only when its first bytes say it is a PNG, JPEG,
    // GIF or WebP picture (never SVG, never what its name claims), and
    // the browser is told not to guess otherwise.
    let mut head = [0u8; 16];
    let read = {
        use tokio::io::AsyncReadExt;
        let mut f = file;
        let n = f.read(&mut head).await.unwrap_or(0);
        match tokio::io::AsyncSeekExt::rewind(&mut f).await {
            Ok(_) => (f, n),
            Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file").into_response(),
        }
    };
    let (file, n) = read;
    let shown = if q.view.is_some() { sotto_core::content::image_type(&head[..n]) } else { None };
    let mut r = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(shown.unwrap_or("application/octet-stream")));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let disposition = if shown.is_some() { "inline" } else { "attachment" };
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{ascii}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
