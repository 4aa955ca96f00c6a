//! What can go wrong talking to a server, each with a sentence a person can
//! act on.

use sotto_proto::ErrorBody;

/// A failure of the connection or a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("cannot reach the server at {address}: {source} (is it running, and is the address right?)")]
    Unreachable {
        /// host:port.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server presented a key other than the pinned one.
    #[error(
        "the server's key does not match the pinned key in the address (expected sha256={expected}, got sha256={actual}). \
         Either the address is wrong or someone is intercepting the connection; do not go on until you know which."
    )]
    PinMismatch {
        /// The pin in the address.
        expected: String,
        /// The pin seen.
        actual: String,
    },
    /// The address has no pin and the server's certificate is not signed by
    /// an authority this computer trusts.
    #[error(
        "the server at {host} has a certificate no authority vouches for, and the address has no #sha256= pin. \
         Use the whole address sotto-server printed, in single quotes so the shell keeps the part after '#': \
         --server 'sotto://{host}#sha256=...'"
    )]
    Unpinned {
        /// host:port.
        host: String,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake with the server failed: {0}")]
    Tls(String),
    /// The WebSocket handshake or transport failed.
    #[error("connection to the server failed: {0}")]
    Transport(String),
    /// The server sent something the protocol does not allow.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// The server speaks another protocol version.
    #[error("the server speaks protocol version {server}, this client {client}; update the older one")]
    Version {
        /// The server's version.
        server: u16,
        /// Ours.
        client: u16,
    },
    /// The server answered the request with an error.
    #[error("server: {0}")]
    Server(ErrorBody),
    /// The server closed the connection.
    #[error("the server closed the connection{}", .0.as_ref().map(|r| format!(": {}", r.message)).unwrap_or_default())]
    Closed(Option<ErrorBody>),
    /// Nothing arrived in time.
    #[error("timed out waiting for the server")]
    Timeout,
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<sotto_proto::ErrorCode> {
        match self {
            Self::Server(b) => Some(b.code),
            Self::Closed(Some(b)) => Some(b.code),
            _ => None,
        }
    }

    /// The server's own words, when it answered with an error.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Self::Server(b) | Self::Closed(Some(b)) => Some(&b.message),
            _ => None,
        }
    }
}
