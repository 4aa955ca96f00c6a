//! One connection to a relay.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sotto_proto::codec;
use sotto_proto::{
    ClientMessage, Hello, Push, Request, Response, ServerAddress, ServerMessage, Transport, PROTOCOL_VERSION,
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::error::ClientError;

/// A WebSocket to the relay with requests matched to responses. Pushes that
/// arrive while a request waits are kept, in order, for [`Connection::next_push`].
pub struct Connection {
    ws: WebSocketStream<Box<dyn crate::transport::Io>>,
    hello: Hello,
    next_id: u64,
    pushes: VecDeque<Push>,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
}

impl Connection {
    /// Connects, checks the server's key against the address, and reads the
    /// server's hello.
    pub async fn connect(address: &ServerAddress) -> Result<Self, ClientError> {
        let authority = address.authority();
        let (io, tls) = crate::transport::open(address).await?;
        let scheme = if tls { "wss" } else { "ws" };
        let url = format!("{scheme}://{authority}/v1/ws");
        let limit = sotto_proto::limits::MAX_FRAME_BYTES;
        let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async_with_config(url, io, Some(config)),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut conn = Self {
            ws,
            hello: Hello {
                protocol_version: 0,
                server_id: vec![],
                challenge: vec![],
                invite_only: true,
                max_blob_bytes: 0,
                notices: false,
            },
            next_id: 1,
            pushes: VecDeque::new(),
            request_timeout: Duration::from_secs(30),
        };
        let hello = match tokio::time::timeout(Duration::from_secs(10), conn.read_frame()).await {
            Err(_) => return Err(ClientError::Timeout),
            Ok(Ok(ServerMessage::Hello(h))) => h,
            Ok(Ok(other)) => return Err(ClientError::Protocol(format!("expected hello, got {other:?}"))),
            Ok(Err(e)) => return Err(e),
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::Version { server: hello.protocol_version, client: PROTOCOL_VERSION });
        }
        if let Transport::Pinned(pin) = &address.transport {
            // The login signature binds to server_id; with a pinned key it
            // must be that key, or a relay could forward our signature.
            if hello.server_id != pin {
                return Err(ClientError::Protocol("the server's id does not match its pinned key".into()));
            }
        }
        conn.hello = hello;
        Ok(conn)
    }

    /// The server's hello (challenge, server id, registration policy).
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The bytes to sign for `Register` or `Login` on this connection.
    pub fn login_payload(&self) -> Vec<u8> {
        sotto_proto::signing::login_payload(&self.hello.server_id, &self.hello.challenge)
    }

    async fn read_frame(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed(None)),
                Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
                Some(Ok(Message::Binary(bytes))) => {
                    let msg = codec::decode_server(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
                    if let ServerMessage::Goodbye(reason) = msg {
                        return Err(ClientError::Closed(Some(reason)));
                    }
                    return Ok(msg);
                }
                Some(Ok(Message::Close(_))) => return Err(ClientError::Closed(None)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends raw bytes as one binary frame (for tests of hostile input).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(Message::Binary(bytes.into())).await.map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Reads the next frame of any kind (for tests of hostile input).
    pub async fn read_any(&mut self) -> Result<ServerMessage, ClientError> {
        self.read_frame().await
    }

    /// Sends a request and waits for its response, keeping pushes that come
    /// first.
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = codec::encode(&ClientMessage { id, request }).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.ws.send(Message::Binary(bytes.into())).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let frame =
                tokio::time::timeout_at(deadline, self.read_frame()).await.map_err(|_| ClientError::Timeout)??;
            match frame {
                ServerMessage::Response { id: rid, result } if rid == id => return result.map_err(ClientError::Server),
                ServerMessage::Response { id: 0, result: Err(e) } => return Err(ClientError::Server(e)),
                ServerMessage::Response { .. } => {}
                ServerMessage::Push(p) => self.pushes.push_back(p),
                ServerMessage::Hello(_) => return Err(ClientError::Protocol("second hello".into())),
                ServerMessage::Goodbye(reason) => return Err(ClientError::Closed(Some(reason))),
            }
        }
    }

    /// The next push, waiting as long as it takes.
    pub async fn next_push(&mut self) -> Result<Push, ClientError> {
        if let Some(p) = self.pushes.pop_front() {
            return Ok(p);
        }
        loop {
            match self.read_frame().await? {
                ServerMessage::Push(p) => return Ok(p),
                ServerMessage::Response { .. } => {}
                other => return Err(ClientError::Protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    /// The next push, or `None` if none comes within `wait`.
    pub async fn next_push_within(&mut self, wait: Duration) -> Result<Option<Push>, ClientError> {
        match tokio::time::timeout(wait, self.next_push()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Connects, retrying with exponential backoff (0.25 s doubling to 8 s)
/// while the server is unreachable. Errors that a retry cannot fix (a pin
/// mismatch, a version mismatch) return at once.
pub async fn connect_with_retry(address: &ServerAddress, attempts: u32) -> Result<Connection, ClientError> {
    let mut delay = Duration::from_millis(250);
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        match Connection::connect(address).await {
            Ok(c) => return Ok(c),
            Err(e @ (ClientError::PinMismatch { .. } | ClientError::Unpinned { .. } | ClientError::Version { .. })) => {
                return Err(e)
            }
            Err(e) => {
                tracing::debug!(attempt, error = %e, "connect failed; retrying");
                last = Some(e);
            }
        }
        if attempt + 1 < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }
    Err(last.unwrap_or(ClientError::Timeout))
}
