//! The async driver of the sotto protocol: a pinned TLS WebSocket to the
//! relay, requests with ids, and the server's pushes in order.
//!
//! It knows nothing of MLS or keys: the caller signs the login payload and
//! interprets what arrives (that is `sotto-core`'s job).
#![deny(missing_docs)]

pub mod blobs;
mod claims;
mod connection;
mod conversation;
pub mod devices;
mod error;
mod files;
mod history;
mod requests;
mod session;
mod successor;
pub mod tls;
pub mod transport;

pub use connection::{connect_with_retry, Connection};
pub use error::ClientError;
pub use files::Progress;
pub use session::{Session, SessionError, SessionResult};
