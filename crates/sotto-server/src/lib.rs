//! The sotto relay: a blind, ordered mailbox and MLS delivery service.
//!
//! It routes ciphertext between member devices of groups, keeps it until
//! every member device acknowledged it, and can read none of it. The store
//! sits behind the [`store::Store`] trait; transport is HTTPS + WebSocket on
//! one port ([`server::run`]).
#![deny(missing_docs)]

pub mod admin;
pub mod admission;
pub mod blob_files;
pub mod blobs;
pub mod budget;
pub mod config;
pub mod data_dir;
pub mod hub;
pub mod invite;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod pair_budget;
pub mod relay;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
