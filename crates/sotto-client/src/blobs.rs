//! HTTP requests to the blob endpoints over the same pinned TLS as the
//! WebSocket. Bodies are streamed both ways; nothing is held whole.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sotto_proto::ServerAddress;
use tokio::sync::mpsc;

use crate::error::ClientError;

/// A blob's state on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobStatus {
    /// Declared size.
    pub size: u64,
    /// Bytes stored.
    pub stored: u64,
    /// All stored.
    pub complete: bool,
}

/// Blob requests for one device (one token).
pub struct BlobClient {
    address: ServerAddress,
    token: String,
}

fn header_u64(r: &Response<Incoming>, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn error_text(r: Response<Incoming>) -> String {
    let status = r.status();
    let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if text.is_empty() {
        status.to_string()
    } else {
        text
    }
}

impl BlobClient {
    /// A client using `token` (from the `BlobToken` request).
    pub fn new(address: ServerAddress, token: &[u8]) -> Self {
        Self { address, token: hex::encode(token) }
    }

    async fn send<B>(&self, req: Request<B>) -> Result<Response<Incoming>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (io, _) = crate::transport::open(&self.address).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender.send_request(req).await.map_err(|e| ClientError::Transport(e.to_string()))
    }

    fn request(&self, method: &str, id: &[u8]) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("/v1/blobs/{}", hex::encode(id)))
            .header("host", self.address.authority())
            .header("authorization", format!("Bearer {}", self.token))
    }

    /// The blob's state, or `None` if the server has none (or not for us).
    pub async fn status(&self, id: &[u8]) -> Result<Option<BlobStatus>, ClientError> {
        let req = self.request("HEAD", id).body(Empty::<Bytes>::new()).expect("request");
        let r = self.send(req).await?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(BlobStatus {
                size: header_u64(&r, "x-sotto-size").unwrap_or(0),
                stored: header_u64(&r, "x-sotto-stored").unwrap_or(0),
                complete: r.headers().get("x-sotto-complete").is_some_and(|v| v == "1"),
            })),
            _ => Err(ClientError::Protocol(error_text(r).await)),
        }
    }

    /// Uploads from `offset`, streaming what arrives on `chunks`. Returns
    /// the bytes stored afterwards (the size when complete).
    pub async fn upload(
        &self,
        id: &[u8],
        size: u64,
        offset: u64,
        chunks: mpsc::Receiver<Bytes>,
    ) -> Result<u64, ClientError> {
        let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let req = self
            .request("PUT", id)
            .uri(format!("/v1/blobs/{}?offset={offset}", hex::encode(id)))
            .header("x-sotto-size", size)
            .body(StreamBody::new(stream))
            .expect("request");
        let r = self.send(req).await?;
        match r.status() {
            s if s.is_success() => Ok(header_u64(&r, "x-sotto-stored").unwrap_or(0)),
            StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ClientError::Protocol(format!("the server refused the file: {}", error_text(r).await)))
            }
            _ => Err(ClientError::Protocol(error_text(r).await)),
        }
    }

    /// Starts downloading from byte `from`; returns the body to read.
    pub async fn download(&self, id: &[u8], from: u64) -> Result<Incoming, ClientError> {
        let req = self
            .request("GET", id)
            .header("range", format!("bytes={from}-"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let r = self.send(req).await?;
        match r.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(r.into_body()),
            StatusCode::NOT_FOUND => Err(ClientError::Protocol(
                "the server has no such file for this device (not shared with you, or already removed)".into(),
            )),
            _ => Err(ClientError::Protocol(error_text(r).await)),
        }
    }
}
