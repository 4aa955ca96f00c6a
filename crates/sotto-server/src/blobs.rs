//! Blob endpoints: encrypted files, streamed to and from disk, never held
//! in memory. The server sees only opaque ciphertext and its size.
//!
//! - `PUT /v1/blobs/{id}?offset=N` with `x-sotto-size: TOTAL`: write the
//!   body at N (N may not exceed what is stored; a smaller N truncates, so a
//!   client resumes from a chunk boundary). Answers 201 when complete, 200
//!   with `x-sotto-stored` otherwise.
//! - `HEAD /v1/blobs/{id}`: `x-sotto-size`, `x-sotto-stored`, `x-sotto-complete`.
//! - `GET /v1/blobs/{id}` with optional `Range: bytes=N-`: the ciphertext.
//!
//! All need `Authorization: Bearer <hex token>` from the `BlobToken` request.

// Handlers return a ready response as their error: built once per request
// on the failure path, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use futures_util::StreamExt;
use sotto_proto::DeviceRef;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::blob_files::{paths, remove_bytes};
use crate::relay::{now_ms, Relay};
use crate::store::StoreError;

/// The blob routes.
pub fn routes() -> Router<Arc<Relay>> {
    Router::new().route("/v1/blobs/{id}", put(upload).head(status).get(download))
}

fn reply(code: StatusCode, text: &str) -> Response {
    (code, format!("{text}\n")).into_response()
}

/// The connection's slot, told when a request shows a valid token.
type Slot = Option<axum::Extension<crate::admission::ConnSlot>>;

fn auth(relay: &Relay, headers: &HeaderMap, slot: &Slot) -> Result<DeviceRef, Response> {
    let device = auth_token(relay, headers)?;
    if let Some(s) = slot {
        s.authenticated();
    }
    Ok(device)
}

fn auth_token(relay: &Relay, headers: &HeaderMap) -> Result<DeviceRef, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| hex::decode(t.trim()).ok());
    token
        .and_then(|t| relay.token_device(&t))
        .ok_or_else(|| reply(StatusCode::UNAUTHORIZED, "a valid blob token is needed (request blob_token)"))
}

fn blob_id(hex_id: &str) -> Result<Vec<u8>, Response> {
    hex::decode(hex_id)
        .ok()
        .filter(|b| b.len() == sotto_proto::limits::BLOB_ID_LEN)
        .ok_or_else(|| reply(StatusCode::BAD_REQUEST, "a blob id is 32 hex digits"))
}

async fn store<T: Send + 'static>(
    relay: &Arc<Relay>,
    f: impl FnOnce(&dyn crate::store::Store) -> crate::store::StoreResult<T> + Send + 'static,
) -> Result<T, Response> {
    let s = relay.store.clone();
    match tokio::task::spawn_blocking(move || f(&*s)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::LimitExceeded(m))) => Err(reply(StatusCode::PAYLOAD_TOO_LARGE, &m)),
        Ok(Err(StoreError::UnknownBlob)) => Err(reply(StatusCode::NOT_FOUND, "no such file, or it is not for you")),
        Ok(Err(StoreError::Invalid(m))) => Err(reply(StatusCode::CONFLICT, &m)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "blob store failure");
            Err(reply(StatusCode::INTERNAL_SERVER_ERROR, "server failure"))
        }
        Err(_) => Err(reply(StatusCode::INTERNAL_SERVER_ERROR, "server failure")),
    }
}

/// An unfinished upload whose bytes stopped arriving this long ago is
/// removed (its record, its bytes and its share of the owner's quota).
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes an unfinished upload: its bytes and its record.
async fn abandon(relay: &Arc<Relay>, id: &[u8]) {
    remove_bytes(&relay.blob_dir, id).await;
    let idc = id.to_vec();
    let _ = store(relay, move |s| s.remove_blob(&idc)).await;
}

/// Removes unfinished uploads that nobody wrote to for `idle` (the client
/// gave up, or its disk-full attempt left a record). Returns how many.
pub async fn remove_abandoned(relay: &Arc<Relay>, idle: std::time::Duration) -> usize {
    let Ok(records) = store(relay, |s| s.incomplete_blobs()).await else { return 0 };
    let mut removed = 0;
    for r in records {
        if relay.uploading.lock().unwrap_or_else(|p| p.into_inner()).contains(&r.id) {
            continue;
        }
        let (_, part) = paths(&relay.blob_dir, &r.id);
        let last_write = match tokio::fs::metadata(&part).await.and_then(|m| m.modified()) {
            Ok(t) => t,
            // No bytes at all: idle since the record was made.
            Err(_) => std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.created_at.max(0) as u64),
        };
        if last_write.elapsed().is_ok_and(|e| e >= idle) {
            abandon(relay, &r.id).await;
            removed += 1;
        }
    }
    removed
}

/// Releases the one-writer-per-blob lock.
struct Writing<'a>(&'a Relay, Vec<u8>);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.uploading.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

#[derive(serde::Deserialize)]
struct UploadQuery {
    #[serde(default)]
    offset: u64,
}

async fn upload(
    State(relay): State<Arc<Relay>>,
    UrlPath(hex_id): UrlPath<String>,
    Query(q): Query<UploadQuery>,
    slot: Slot,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match upload_inner(&relay, &hex_id, q.offset, &headers, &slot, body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn upload_inner(
    relay: &Arc<Relay>,
    hex_id: &str,
    offset: u64,
    headers: &HeaderMap,
    slot: &Slot,
    body: Body,
) -> Result<Response, Response> {
    let me = auth(relay, headers, slot)?;
    let id = blob_id(hex_id)?;
    let size: u64 = headers
        .get("x-sotto-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| reply(StatusCode::BAD_REQUEST, "x-sotto-size (the total size) is required"))?;
    let (max, quota) = (relay.config.max_blob_bytes, relay.config.blob_quota);
    let (idc, mec) = (id.clone(), me.clone());
    // Checked before a byte of the body is read: an oversized file is
    // refused before it is sent.
    let record = store(relay, move |s| s.begin_blob(&idc, &mec, size, max, quota, now_ms())).await?;
    if record.complete {
        return Ok(stored_reply(StatusCode::OK, size, size));
    }
    if !relay.uploading.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone()) {
        return Err(reply(StatusCode::CONFLICT, "this blob is being uploaded on another connection"));
    }
    let _writing = Writing(relay, id.clone());
    let (done_path, part_path) = paths(&relay.blob_dir, &id);
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "blob write failed");
        reply(StatusCode::INTERNAL_SERVER_ERROR, "server failure")
    };
    let mut file =
        tokio::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&part_path).await.map_err(io)?;
    // Nodes sharing a blob folder: one writer per blob across all of them
    // (an advisory lock on the partial file, released when it is closed).
    let locked = file.try_clone().await.map_err(io)?.into_std().await;
    if locked.try_lock().is_err() {
        return Err(reply(StatusCode::CONFLICT, "this blob is being uploaded on another connection"));
    }
    let have = file.metadata().await.map_err(io)?.len();
    if offset > have {
        return Err(stored_reply(StatusCode::CONFLICT, size, have));
    }
    file.set_len(offset).await.map_err(io)?;
    file.seek(SeekFrom::Start(offset)).await.map_err(io)?;
    let mut written = offset;
    let mut stream = body.into_data_stream();
    loop {
        // A client that stops sending is dropped after `upload_idle`, so it
        // cannot hold its connection (and the one-writer lock) for good.
        let chunk = match tokio::time::timeout(relay.config.upload_idle, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                tracing::debug!("blob upload stalled; closing it");
                break;
            }
        };
        match chunk {
            Ok(bytes) => {
                if written + bytes.len() as u64 > size {
                    file.set_len(written).await.map_err(io)?;
                    return Err(reply(StatusCode::PAYLOAD_TOO_LARGE, "more bytes than the declared size"));
                }
                if let Err(e) = file.write_all(&bytes).await {
                    // Disk full (or worse): give the space and the quota
                    // back at once; the client starts over when it retries.
                    drop(file);
                    abandon(relay, &id).await;
                    return Err(io(e));
                }
                written += bytes.len() as u64;
            }
            // The client went away: keep what arrived for a resume.
            Err(_) => break,
        }
    }
    if let Err(e) = file.flush().await.and(file.sync_data().await) {
        drop(file);
        abandon(relay, &id).await;
        return Err(io(e));
    }
    drop(file);
    if written < size {
        return Ok(stored_reply(StatusCode::OK, size, written));
    }
    tokio::fs::rename(&part_path, &done_path).await.map_err(io)?;
    store(relay, move |s| s.complete_blob(&id)).await?;
    Ok(stored_reply(StatusCode::CREATED, size, size))
}

fn stored_reply(code: StatusCode, size: u64, stored: u64) -> Response {
    let mut r = (code, "").into_response();
    let h = r.headers_mut();
    h.insert("x-sotto-size", HeaderValue::from(size));
    h.insert("x-sotto-stored", HeaderValue::from(stored));
    h.insert("x-sotto-complete", HeaderValue::from_static(if stored == size { "1" } else { "0" }));
    r
}

async fn readable(
    relay: &Arc<Relay>,
    headers: &HeaderMap,
    slot: &Slot,
    hex_id: &str,
) -> Result<crate::store::BlobRecord, Response> {
    let me = auth(relay, headers, slot)?;
    let id = blob_id(hex_id)?;
    let idc = id.clone();
    let allowed = store(relay, move |s| s.may_read_blob(&idc, &me)).await?;
    // Unknown and forbidden look the same: no probing for blob ids.
    let record = if allowed { store(relay, move |s| s.blob(&id)).await? } else { None };
    record.ok_or_else(|| reply(StatusCode::NOT_FOUND, "no such file, or it is not for you"))
}

async fn status(
    State(relay): State<Arc<Relay>>,
    UrlPath(hex_id): UrlPath<String>,
    slot: Slot,
    headers: HeaderMap,
) -> Response {
    let record = match readable(&relay, &headers, &slot, &hex_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (_, part) = paths(&relay.blob_dir, &record.id);
    let stored =
        if record.complete { record.size } else { tokio::fs::metadata(part).await.map(|m| m.len()).unwrap_or(0) };
    stored_reply(StatusCode::OK, record.size, stored)
}

async fn download(
    State(relay): State<Arc<Relay>>,
    UrlPath(hex_id): UrlPath<String>,
    slot: Slot,
    headers: HeaderMap,
) -> Response {
    let record = match readable(&relay, &headers, &slot, &hex_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !record.complete {
        return reply(StatusCode::CONFLICT, "the upload of this file has not finished");
    }
    let start = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => 0,
        Some(r) => match r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) if n <= record.size => n,
            _ => return reply(StatusCode::RANGE_NOT_SATISFIABLE, "only `bytes=N-` ranges within the file are served"),
        },
    };
    let (done, _) = paths(&relay.blob_dir, &record.id);
    let mut file = match tokio::fs::File::open(&done).await {
        Ok(f) => f,
        Err(_) => return reply(StatusCode::NOT_FOUND, "no such file"),
    };
    if file.seek(SeekFrom::Start(start)).await.is_err() {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "server failure");
    }
    let len = record.size - start;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if headers.contains_key(header::RANGE) {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{}", record.size.saturating_sub(1), record.size))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    r
}
