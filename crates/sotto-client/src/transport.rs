//! The byte stream to a server: TCP, then TLS checked against the pin (or
//! the web PKI), or plain TCP for `sotto+insecure://`. Shared by the
//! WebSocket and the blob requests.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sotto_proto::address::base64url_encode;
use sotto_proto::{ServerAddress, Transport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::ClientError;
use crate::tls;

/// Any byte stream: TLS or plain TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens a stream to the server; the bool says whether it is TLS.
pub async fn open(address: &ServerAddress) -> Result<(Box<dyn Io>, bool), ClientError> {
    let authority = address.authority();
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&authority))
        .await
        .map_err(|_| ClientError::Unreachable {
            address: authority.clone(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        })?
        .map_err(|source| ClientError::Unreachable { address: authority.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    match &address.transport {
        Transport::Insecure => Ok((Box::new(tcp), false)),
        Transport::Pinned(pin) => {
            let verifier = Arc::new(tls::PinVerifier::new(*pin, tls::provider()));
            let config = tls::config_pinned(verifier.clone()).map_err(|e| ClientError::Tls(e.to_string()))?;
            let stream = handshake(config, &address.host, tcp).await.map_err(|e| {
                let seen = *verifier.seen.lock().unwrap_or_else(|p| p.into_inner());
                match seen {
                    Some(actual) if actual != *pin => {
                        ClientError::PinMismatch { expected: base64url_encode(pin), actual: base64url_encode(&actual) }
                    }
                    _ => e,
                }
            })?;
            Ok((Box::new(stream), true))
        }
        Transport::WebPki => {
            let config = tls::config_webpki().map_err(|e| ClientError::Tls(e.to_string()))?;
            let stream = handshake(config, &address.host, tcp).await.map_err(|e| match e {
                // A self-signed server reached through an address without its
                // pin (most often cut off by the shell at the `#`).
                ClientError::Tls(m) if m.contains("certificate") => ClientError::Unpinned { host: address.authority() },
                other => other,
            })?;
            Ok((Box::new(stream), true))
        }
    }
}

async fn handshake(
    config: rustls::ClientConfig,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let name =
        ServerName::try_from(host.to_owned()).map_err(|e| ClientError::Tls(format!("bad host name {host:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|e| ClientError::Tls(e.to_string()))
}
