//! The contract every long-running front end (`sotto chat`, `sotto web`,
//! and any third one: a bot, a mobile shell) has with the network side.
//!
//! A front end sends typed [`Command`]s, each in a [`Request`] with its own
//! id and, if the front end wants to wait for it, its own reply channel; it
//! receives typed [`Event`]s: a message upserted (new or changed, by id), a
//! conversation's history, a rename, the connection state, presence,
//! transfer progress for request N, the outcome of request N. No front end
//! learns an outcome by reading human text. `driver.rs` is the one
//! implementation that carries the commands out over a `Session`.
//!
//! The web UI exposes the same commands and events as JSON (see
//! docs/frontend-events.md); `json.rs` is that encoding.

pub mod command;
pub(crate) mod driver;
pub mod event;
pub mod json;
mod local;
pub mod model;
mod online;

pub use command::{Command, GroupChange};
pub use event::{Event, Link, Outcome, Transfer};

use tokio::sync::oneshot;

/// A command with its id and, optionally, where its outcome goes.
#[derive(Debug)]
pub struct Request {
    /// Chosen by the front end; echoed in progress and outcome events.
    pub id: u64,
    /// What to do.
    pub command: Command,
    /// The outcome, besides the [`Event::Outcome`] every front end sees.
    pub reply: Option<oneshot::Sender<Outcome>>,
}

impl Request {
    /// A request whose outcome arrives only as an event.
    pub fn new(id: u64, command: Command) -> Self {
        Self { id, command, reply: None }
    }

    /// A request whose outcome also comes back on the returned channel.
    pub fn with_reply(id: u64, command: Command) -> (Self, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (Self { id, command, reply: Some(tx) }, rx)
    }
}
