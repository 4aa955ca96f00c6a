//! The network side of every long-running front end: owns the session,
//! keeps it connected (reconnecting with backoff), turns what arrives into
//! [`Event`]s and carries out [`Request`]s, answering each with its
//! [`Outcome`].

use std::time::{Duration, Instant};

use sotto_client::{ClientError, Session, SessionError};
use sotto_core::{Event as CoreEvent, Messenger};
use tokio::sync::{mpsc, watch};

use super::local::{confirm, export, members, mute, preference, retry, search, trust, verify};
use super::{Command, Event, Link, Outcome, Request};

pub(super) type Events = mpsc::UnboundedSender<Event>;

pub(crate) use super::online::device_entries;
use super::online::run_command;

pub(super) fn history(m: &Messenger, ev: &Events, conversation: &str) {
    if let Ok(messages) = m.history(conversation) {
        let _ = ev.send(Event::History { conversation: conversation.to_owned(), messages });
    }
    settings(m, ev, conversation);
}

/// Someone's profile as this device has it.
fn profile(m: &Messenger, ev: &Events, handle: &str) {
    if let Ok(Some(p)) = m.profile_of(handle) {
        let _ = ev.send(Event::Profile { handle: handle.to_owned(), name: p.name, avatar: p.avatar });
    }
}

/// A conversation's timer and description, as they are now.
fn settings(m: &Messenger, ev: &Events, conversation: &str) {
    if let Ok(secs) = m.timer(conversation) {
        let _ = ev.send(Event::Timer { conversation: conversation.to_owned(), secs });
    }
    if m.is_muted(conversation).unwrap_or(false) {
        let _ = ev.send(Event::Muted { conversation: conversation.to_owned(), muted: true });
    }
    if let Some(post_quantum) = m.is_post_quantum(conversation) {
        let _ = ev.send(Event::Encryption { conversation: conversation.to_owned(), post_quantum });
    }
    if conversation.starts_with('#') {
        if let Ok(text) = m.description(conversation) {
            let _ = ev.send(Event::Description { conversation: conversation.to_owned(), text });
        }
        if let Ok(picture) = m.group_picture(conversation) {
            let _ = ev.send(Event::GroupPicture { conversation: conversation.to_owned(), picture });
        }
    }
}

fn forward(m: &Messenger, ev: &Events, events: Vec<CoreEvent>) {
    for e in events {
        match e {
            CoreEvent::Message(msg) => {
                // A timer line: the conversation's timer changed with it.
                if msg.state == sotto_core::MessageState::System {
                    settings(m, ev, &msg.conversation);
                }
                let _ = ev.send(Event::Message(msg));
            }
            CoreEvent::Joined { conversation } => history(m, ev, &conversation),
            CoreEvent::Renamed { from, to } => {
                let _ = ev.send(Event::Renamed { from, to: to.clone() });
                history(m, ev, &to);
            }
            CoreEvent::Warning { conversation, text } => {
                let _ = ev.send(Event::Notice { conversation, text });
            }
            CoreEvent::Muted { conversation, muted } => {
                let _ = ev.send(Event::Muted { conversation, muted });
            }
            CoreEvent::Notice(notice) => {
                let _ = m.take_unshown_notices();
                let _ = ev.send(Event::ServerNotice { notice, fresh: true });
            }
            CoreEvent::Profile { handle } => profile(m, ev, &handle),
            CoreEvent::Typing { conversation, handle, typing } => {
                let _ = ev.send(Event::Typing { conversation, handle, typing });
            }
            CoreEvent::Removed { conversation, id } => {
                let _ = ev.send(Event::Removed { conversation, id });
            }
            CoreEvent::Request { conversation, from } => {
                let text = format!(
                    "message request from @{from} ({conversation}): nothing of it shows until you accept it (/accept {conversation}, or Requests in the web page)"
                );
                let _ = ev.send(Event::Notice { conversation: None, text });
            }
        }
    }
}

/// Shows one message as it is now (pending, then sent).
pub(super) fn upsert(m: &Messenger, ev: &Events, id: &Option<Vec<u8>>) {
    let found = id.as_deref().and_then(|id| m.message(id).ok().flatten());
    if let Some(msg) = found {
        let _ = ev.send(Event::Message(Box::new(msg)));
    }
}

/// Ends a request: every front end sees the outcome as an event, and the
/// one that asked gets it on its reply channel too.
fn finish(ev: &Events, request: u64, reply: Option<tokio::sync::oneshot::Sender<Outcome>>, outcome: Outcome) {
    let _ = ev.send(Event::Outcome { request, outcome: outcome.clone() });
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}

fn error(message: impl std::fmt::Display) -> Outcome {
    Outcome::Error { message: message.to_string() }
}

/// What a command given while there is no connection becomes: a text to a
/// known conversation waits in the outbox; local commands work; anything
/// else is refused with a reason, so nothing is silently held in memory
/// and lost on quit.
fn offline_command(m: &Messenger, ev: &Events, command: Command) -> Outcome {
    match command {
        Command::Send { to, text } if m.conversation_group(&to).ok().flatten().is_some() => {
            match m.prepare_text(&to, &text) {
                Ok(item) => {
                    upsert(m, ev, &item.message_id);
                    Outcome::Queued { conversation: to }
                }
                Err(e) => error(e),
            }
        }
        Command::Send { to, .. } => error(format!(
            "not connected, and {to} is a new conversation: it needs the server to start; try again when online"
        )),
        Command::Verify { handle } => verify(m, &handle).unwrap_or_else(error),
        Command::Export { conversation } => export(m, &conversation).unwrap_or_else(error),
        Command::Search { text, conversation } => search(m, text, conversation).unwrap_or_else(error),
        Command::Members { conversation } => members(m, conversation).unwrap_or_else(error),
        Command::Mute { conversation, muted } => mute(m, ev, conversation, muted).unwrap_or_else(error),
        Command::Preference { name, value } => preference(m, ev, name, value).unwrap_or_else(error),
        // Into the outbox; it goes when the connection returns.
        Command::Retry { id } => match retry(m, ev, &id) {
            Ok(conversation) => Outcome::Queued { conversation },
            Err(e) => error(e),
        },
        // Kept here and told to this account's other devices when the
        // connection returns.
        Command::Confirm { handle, digits } => confirm(m, handle, &digits).unwrap_or_else(error),
        Command::Trust { handle } => trust(m, handle).unwrap_or_else(error),
        // Nobody is there to see it: a typing line offline is simply not sent.
        Command::Typing { .. } => Outcome::Signalled,
        command if command.changes_messages() => match change_locally(m, ev, command) {
            // Made and in the outbox: it goes when the connection returns.
            Ok(Outcome::Changed { conversation, change }) if !matches!(change, "delete_for_me" | "read_receipts") => {
                Outcome::Queued { conversation }
            }
            Ok(outcome) => outcome,
            Err(e) => error(e),
        },
        _ => error("not connected; that needs the server, try again when online"),
    }
}

/// Carries out a command that changes messages here and puts what the
/// others must learn into the outbox (sent by the caller, or on the next
/// connection); shows the change at once.
pub(super) fn change_locally(m: &Messenger, ev: &Events, command: Command) -> Result<Outcome, SessionError> {
    let shown = |a: sotto_core::Annotated, change: &'static str| {
        if let Some(changed) = a.changed {
            let _ = ev.send(Event::Message(Box::new(changed)));
        }
        Outcome::Changed { conversation: a.conversation, change }
    };
    Ok(match command {
        Command::Reply { to, text, reply_to } => {
            let item = m.prepare_reply(&to, &text, &reply_to)?;
            upsert(m, ev, &item.message_id);
            Outcome::Changed { conversation: to, change: "reply" }
        }
        Command::React { id, emoji, remove } => shown(m.prepare_reaction(&id, &emoji, remove)?, "react"),
        Command::Edit { id, text } => shown(m.prepare_edit(&id, &text)?, "edit"),
        Command::Delete { id, for_me: false } => shown(m.prepare_delete(&id)?, "delete"),
        Command::Delete { id, for_me: true } => {
            if let sotto_core::Event::Removed { conversation, id } = m.delete_for_me(&id)? {
                let _ = ev.send(Event::Removed { conversation: conversation.clone(), id });
                Outcome::Changed { conversation, change: "delete_for_me" }
            } else {
                Outcome::Changed { conversation: String::new(), change: "delete_for_me" }
            }
        }
        Command::Timer { conversation, secs } => {
            m.prepare_timer(&conversation, secs)?;
            Outcome::Changed { conversation, change: "timer" }
        }
        Command::Read { conversation } => {
            m.mark_read(&conversation)?;
            Outcome::Changed { conversation, change: "read" }
        }
        Command::Pin { id, pinned } => {
            let (conversation, _) = m.prepare_pin(&id, pinned)?;
            Outcome::Changed { conversation, change: "pin" }
        }
        Command::Describe { conversation, text } => {
            m.prepare_description(&conversation, &text)?;
            Outcome::Changed { conversation, change: "describe" }
        }
        Command::ReadReceipts { on } => {
            m.set_read_receipts(on)?;
            Outcome::Changed { conversation: String::new(), change: "read_receipts" }
        }
        other => return Err(SessionError::Other(format!("{other:?} is not a change to messages"))),
    })
}

/// Whether an error means the connection is gone (reconnect) rather than a
/// refused command (report and go on).
pub(super) fn connection_lost(e: &SessionError) -> bool {
    if let SessionError::Queued(inner) = e {
        return connection_lost(inner);
    }
    matches!(
        e,
        SessionError::Client(
            ClientError::Transport(_) | ClientError::Closed(_) | ClientError::Timeout | ClientError::Unreachable { .. }
        )
    )
}

pub(super) async fn presence(m: &Messenger, s: &mut Session<'_>, ev: &Events) -> Result<(), SessionError> {
    let handles: Vec<String> = m.contacts()?.into_iter().map(|c| c.handle).collect();
    if let Some(list) = s.presence(&handles).await? {
        let _ = ev.send(Event::Presence(list));
    }
    Ok(())
}

/// Runs until `quit` turns true.
pub async fn run(
    m: &Messenger,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    ev: Events,
    quit: watch::Receiver<bool>,
) {
    let _ = ev.send(Event::Identity { me: m.identity().handle.clone(), server: m.server().unwrap_or_default() });
    for c in m.conversations().unwrap_or_default() {
        history(m, &ev, &c);
    }
    for c in m.contacts().unwrap_or_default() {
        profile(m, &ev, &c.handle);
    }
    // The operator's recent notices (they are kept in the profile; the
    // newest show again at each start, marked as not encrypted).
    for (name, value) in m.preferences().unwrap_or_default() {
        let _ = ev.send(Event::Preference { name, value });
    }
    let unshown: Vec<u64> = m.take_unshown_notices().unwrap_or_default().iter().map(|n| n.id).collect();
    for notice in m.notices(crate::frontend::model::NOTICES_SHOWN).unwrap_or_default() {
        let fresh = unshown.contains(&notice.id);
        let _ = ev.send(Event::ServerNotice { notice, fresh });
    }
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        if *quit.borrow() {
            return;
        }
        let mut session = match Session::open(m).await {
            Ok(s) => s,
            Err(e) => {
                let link = if first { Link::Connecting } else { Link::Reconnecting { reason: e.to_string() } };
                let _ = ev.send(Event::Connection(link));
                let text = format!("cannot connect: {e}; retrying in {}s", backoff.as_secs());
                let _ = ev.send(Event::Notice { conversation: None, text });
                let until = Instant::now() + backoff;
                while Instant::now() < until && !*quit.borrow() {
                    while let Ok(r) = requests.try_recv() {
                        let outcome = match r.command.validate() {
                            Ok(()) => offline_command(m, &ev, r.command),
                            Err(e) => error(e),
                        };
                        finish(&ev, r.id, r.reply, outcome);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                first = false;
                continue;
            }
        };
        first = false;
        backoff = Duration::from_secs(1);
        let _ = ev.send(Event::Connection(Link::Online));
        // Opening the session sent what waited in the outbox: show those
        // messages as sent now.
        for c in m.conversations().unwrap_or_default() {
            history(m, &ev, &c);
        }
        match session.sync().await {
            Ok(events) => forward(m, &ev, events),
            Err(e) => {
                let _ = ev.send(Event::Connection(Link::Reconnecting { reason: e.to_string() }));
                continue;
            }
        }
        let _ = presence(m, &mut session, &ev).await;
        let mut last_presence = Instant::now();
        loop {
            if *quit.borrow() {
                session.close().await;
                return;
            }
            while let Ok(r) = requests.try_recv() {
                if let Err(e) = r.command.validate() {
                    finish(&ev, r.id, r.reply, error(e));
                    continue;
                }
                let to = match &r.command {
                    Command::Send { to, .. } | Command::Reply { to, .. } => to.clone(),
                    Command::Timer { conversation, .. } | Command::Read { conversation } => conversation.clone(),
                    _ => String::new(),
                };
                match run_command(m, &mut session, &ev, r.id, r.command).await {
                    Ok(outcome) => finish(&ev, r.id, r.reply, outcome),
                    Err(e) => {
                        let lost = connection_lost(&e);
                        let outcome = if e.is_queued() { Outcome::Queued { conversation: to } } else { error(&e) };
                        finish(&ev, r.id, r.reply, outcome);
                        if lost {
                            break;
                        }
                    }
                }
            }
            match session.pump(Duration::from_millis(200)).await {
                Ok(events) => forward(m, &ev, events),
                Err(e) => {
                    let _ = ev.send(Event::Connection(Link::Reconnecting { reason: e.to_string() }));
                    break;
                }
            }
            if let Some(got) = session.take_imported_history() {
                // Older messages from another device of the account: every
                // conversation is shown afresh, with them ahead.
                let text = format!("history from your other device: {} messages and {} files", got.messages, got.files);
                let _ = ev.send(Event::Notice { conversation: None, text });
                for c in m.conversations().unwrap_or_default() {
                    history(m, &ev, &c);
                }
            }
            // Disappearing messages go on time, also while nothing arrives.
            if let Ok(gone) = m.expire_due() {
                forward(m, &ev, gone);
            }
            if last_presence.elapsed() > Duration::from_secs(15) {
                last_presence = Instant::now();
                let _ = presence(m, &mut session, &ev).await;
            }
        }
    }
}
