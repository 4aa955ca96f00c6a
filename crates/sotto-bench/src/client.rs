//! A bare protocol client for load: WebSocket split in two halves so
//! requests can be pipelined, over the same pinned TLS as real clients.

use anyhow::{bail, Context, Result};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use sotto_client::transport::{self, Io};
use sotto_proto::{codec, ClientMessage, DeviceInfo, Hello, Request, ServerAddress, ServerMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Sink = SplitSink<WebSocketStream<Box<dyn Io>>, Message>;
pub type Stream = SplitStream<WebSocketStream<Box<dyn Io>>>;

/// An account's keys.
pub struct Account {
    pub handle: String,
    account: SigningKey,
    device: SigningKey,
}

impl Account {
    pub fn new(handle: &str) -> Self {
        let mut rng = rand::rngs::OsRng;
        Self { handle: handle.into(), account: SigningKey::generate(&mut rng), device: SigningKey::generate(&mut rng) }
    }

    fn device_info(&self) -> DeviceInfo {
        let key = self.device.verifying_key().to_bytes().to_vec();
        let cert = self.account.sign(&sotto_proto::signing::device_certificate_payload(&self.handle, 1, &key));
        DeviceInfo { device_id: 1, device_key: key, certificate: cert.to_bytes().to_vec() }
    }
}

/// A logged-in connection, split.
pub struct Conn {
    pub sink: Sink,
    pub stream: Stream,
    next_id: u64,
}

pub fn frame(id: u64, request: Request) -> Message {
    Message::Binary(codec::encode(&ClientMessage { id, request }).expect("encodes").into())
}

impl Conn {
    /// Connects and registers (`register`) or logs in.
    pub async fn open(address: &ServerAddress, acct: &Account, register: bool) -> Result<Self> {
        let (io, tls) = transport::open(address).await?;
        let url = format!("{}://{}/v1/ws", if tls { "wss" } else { "ws" }, address.authority());
        let (ws, _) = tokio_tungstenite::client_async(url, io).await?;
        let (sink, stream) = ws.split();
        let mut c = Self { sink, stream, next_id: 1 };
        let hello = match c.read().await? {
            ServerMessage::Hello(h) => h,
            other => bail!("expected hello, got {other:?}"),
        };
        let req = c.auth_request(&hello, acct, register);
        c.request(req).await?;
        Ok(c)
    }

    fn auth_request(&self, hello: &Hello, acct: &Account, register: bool) -> Request {
        let payload = sotto_proto::signing::login_payload(&hello.server_id, &hello.challenge);
        let signature = acct.device.sign(&payload).to_bytes().to_vec();
        if register {
            Request::Register {
                handle: acct.handle.clone(),
                account_key: acct.account.verifying_key().to_bytes().to_vec(),
                device: acct.device_info(),
                invite: None,
                signature,
            }
        } else {
            Request::Login { handle: acct.handle.clone(), device_id: 1, signature, copy: None, takeover: false }
        }
    }

    pub async fn read(&mut self) -> Result<ServerMessage> {
        loop {
            match self.stream.next().await.context("closed")?? {
                Message::Binary(b) => return Ok(codec::decode_server(&b)?),
                Message::Close(_) => bail!("closed"),
                _ => {}
            }
        }
    }

    /// One request, waiting for its response (pushes in between are dropped).
    pub async fn request(&mut self, request: Request) -> Result<sotto_proto::Response> {
        let id = self.next_id;
        self.next_id += 1;
        self.sink.send(frame(id, request)).await?;
        loop {
            if let ServerMessage::Response { id: rid, result } = self.read().await? {
                if rid == id {
                    return result.map_err(|e| anyhow::anyhow!("{e}"));
                }
            }
        }
    }

    pub fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
