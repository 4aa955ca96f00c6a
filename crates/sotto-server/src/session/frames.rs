//! Frames on one WebSocket: writing them with a deadline (queued and
//! flushed per burst), and reading what one incoming message is.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use sotto_proto::codec::{self, DecodeError};
use sotto_proto::{ErrorBody, ErrorCode, Push, Request, Response, ServerMessage};

/// A closed or failed socket: the session ends.
pub(super) struct Gone;

/// Bytes sent on this connection, for operators.
pub(super) static NO_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes outside a session (hello, login answers) wait at most this long.
pub(super) const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends a frame; a peer that takes no bytes within `limit` is dropped, so
/// a client that stops reading cannot hold its session (and the pushes
/// meant for it) forever.
pub(super) async fn send_counted(
    socket: &mut WebSocket,
    msg: &ServerMessage,
    counter: &AtomicU64,
    total: &AtomicU64,
    limit: std::time::Duration,
) -> Result<(), Gone> {
    feed_counted(socket, msg, counter, total, limit).await?;
    flush(socket, limit).await
}

/// Queues a frame without flushing: a burst of pushes or answers goes out
/// in a few TLS records and system calls instead of one each (the largest
/// per-message cost after SQL parsing). Callers flush at the end of the
/// burst. tungstenite writes out by itself once its buffer is full.
pub(super) async fn feed_counted(
    socket: &mut WebSocket,
    msg: &ServerMessage,
    counter: &AtomicU64,
    total: &AtomicU64,
    limit: std::time::Duration,
) -> Result<(), Gone> {
    let bytes = match msg {
        ServerMessage::Push(Push::Deliver(d)) => {
            codec::encode_with_capacity(msg, d.payload.len() + codec::FRAME_OVERHEAD)
        }
        _ => codec::encode(msg),
    }
    .map_err(|_| Gone)?;
    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    feed_frame(socket, bytes.into(), total, limit).await
}

/// Queues an encoded frame, counting its bytes into `total`.
pub(super) async fn feed_frame(
    socket: &mut WebSocket,
    frame: bytes::Bytes,
    total: &AtomicU64,
    limit: std::time::Duration,
) -> Result<(), Gone> {
    total.fetch_add(frame.len() as u64, Ordering::Relaxed);
    match tokio::time::timeout(limit, socket.feed(Message::Binary(frame))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Gone),
    }
}

pub(super) async fn flush(socket: &mut WebSocket, limit: std::time::Duration) -> Result<(), Gone> {
    match tokio::time::timeout(limit, socket.flush()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Gone),
    }
}

pub(super) async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), Gone> {
    send_counted(socket, msg, &NO_COUNTER, &NO_COUNTER, WRITE_TIMEOUT).await
}

pub(super) async fn respond(socket: &mut WebSocket, id: u64, result: Result<Response, ErrorBody>) -> Result<(), Gone> {
    send(socket, &ServerMessage::Response { id, result }).await
}

pub(super) async fn goodbye(socket: &mut WebSocket, reason: ErrorBody) {
    let _ = send(socket, &ServerMessage::Goodbye(reason)).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// What one incoming WebSocket message turned out to be.
pub(super) enum Incoming {
    Request(u64, Request),
    Malformed(DecodeError),
    Other,
    Closed,
    TooLarge,
}

/// Whether a read failed because the peer's message exceeds the frame limit
/// (tungstenite's capacity error; axum gives it only as an opaque error).
pub(super) fn is_too_large(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Message too long") || text.contains("Space limit exceeded")
}

/// Closes with 1009 ("message too big"), as docs/protocol.md says.
pub(super) async fn close_too_large(socket: &mut WebSocket) {
    let frame = axum::extract::ws::CloseFrame {
        code: 1009,
        reason: format!("a frame may be at most {} bytes", sotto_proto::limits::MAX_FRAME_BYTES).into(),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

pub(super) fn classify(msg: Option<Result<Message, axum::Error>>) -> Incoming {
    match msg {
        // tungstenite refuses a message over max_message_size while reading
        // it; the protocol promises close code 1009 for that.
        Some(Err(e)) if is_too_large(&e) => Incoming::TooLarge,
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Incoming::Closed,
        Some(Ok(Message::Binary(bytes))) => match codec::decode_client(&bytes) {
            Ok(m) => Incoming::Request(m.id, m.request),
            Err(e) => Incoming::Malformed(e),
        },
        Some(Ok(Message::Text(_))) => {
            Incoming::Malformed(DecodeError::Malformed("text frames are not part of the protocol".into()))
        }
        Some(Ok(_)) => Incoming::Other,
    }
}

pub(super) fn malformed_error(e: &DecodeError) -> ErrorBody {
    let code = match e {
        DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        DecodeError::Malformed(_) => ErrorCode::MalformedFrame,
    };
    ErrorBody::with_message(code, e.to_string())
}
