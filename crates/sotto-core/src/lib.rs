//! The sotto client's heart: identity, MLS conversations and the encrypted
//! local store, with no sockets. Feed it what the server delivered, ask it
//! what to send, tell it what the server accepted.
//!
//! Every conversation, one-to-one included, is an MLS group (RFC 9420, via
//! `openmls`). State lives in one SQLCipher database per profile, keyed from
//! a passphrase with Argon2id; MLS state is in the same database, and each
//! step that changes it commits together with its effect on history, so a
//! crash never leaves the two apart.
#![deny(missing_docs)]

pub mod archive;
#[cfg(test)]
mod archive_tests;
pub mod backup;
pub mod content;
pub mod db;
pub mod error;
pub mod files;
pub mod groups;
#[cfg(test)]
mod hostile_server_tests;
pub mod identity;
pub mod link;
pub mod messenger;
pub mod padding;
pub mod policy;
#[cfg(test)]
mod policy_tests;
mod provider;
#[cfg(test)]
mod roles_tests;
mod sql;
pub mod suite;
pub mod thumbnail;
pub mod trust;

pub use content::{Body, Content};
pub use db::ProfileKey;
pub use error::CoreError;
pub use groups::{validate_group_name, GroupSummary, PictureInfo};
pub use identity::{Identity, SottoCredential};
pub use messenger::{
    timer_words, Annotated, Contact, ConversationInfo, Environment, Event, GroupKind, GroupRoles, Intent, Invitee,
    LinkCandidate, MemberDevice, MessageDetail, MessageState, Messenger, OutboxItem, OwnDevice, PendingCommit,
    PersonProfile, Receipt, RoleChange, RoleRight, ServerNotice, StoredMessage, MAX_TIMER_SECS,
};
pub use policy::{Answer, Policy, PolicyError, Step, Task};
