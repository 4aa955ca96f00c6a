//! The sotto wire protocol: every message a client and a server exchange, as
//! typed Rust values, with a CBOR codec that checks the frame size before it
//! decodes a byte.
//!
//! No sockets and no async runtime live here: the server and the client both
//! move bytes, this crate turns them into values and back.
//!
//! ```
//! use sotto_proto::{ClientMessage, Request, codec};
//! let msg = ClientMessage { id: 7, request: Request::Sync };
//! let bytes = codec::encode(&msg).unwrap();
//! assert_eq!(codec::decode_client(&bytes).unwrap(), msg);
//! ```
#![deny(missing_docs)]

pub mod address;
pub mod codec;
pub mod error;
pub mod handle;
pub mod limits;
pub mod link;
pub mod messages;
mod push;
mod responses;
pub mod signing;
pub mod suites;

pub use address::{ServerAddress, Transport};
pub use error::{ErrorBody, ErrorCode};
pub use handle::validate_handle;
pub use link::{link_slot, LINK_SLOT_LEN, LINK_SLOT_TTL_SECS};
pub use messages::*;

/// The protocol version this crate speaks. The server announces it in
/// [`Hello`]; a client that does not know it must refuse to go on.
pub const PROTOCOL_VERSION: u16 = 1;
