//! Commands a front end's profile answers by itself, online or not: the
//! safety number, verifying and trusting a contact, members, search,
//! exporting a conversation to a file.

use sotto_client::SessionError;
use sotto_core::Messenger;

use super::event::{MemberEntry, SearchHit};
use super::{Event, Outcome};

pub(super) fn confirm(m: &Messenger, handle: String, digits: &str) -> Result<Outcome, SessionError> {
    let handle = handle.trim_start_matches('@').to_owned();
    m.confirm_verified(&handle, digits)?;
    Ok(Outcome::Verified { handle })
}

pub(super) fn trust(m: &Messenger, handle: String) -> Result<Outcome, SessionError> {
    let handle = handle.trim_start_matches('@').to_owned();
    let changed = m.trust(&handle)?;
    Ok(Outcome::Trusted { handle, changed })
}

/// Who is in a conversation, by its MLS state; admins by its roles.
pub(super) fn members(m: &Messenger, conversation: String) -> Result<Outcome, SessionError> {
    let group = m
        .conversation_group(&conversation)?
        .ok_or_else(|| SessionError::Other(format!("no conversation {conversation}")))?;
    let roles = m.roles(&group)?;
    let me = m.identity().handle.clone();
    let members = m
        .members_of(&group)?
        .into_iter()
        .map(|handle| MemberEntry {
            admin: roles.as_ref().is_some_and(|r| r.admins.contains(&handle)),
            me: handle == me,
            handle,
        })
        .collect();
    Ok(Outcome::Members { conversation, members })
}

/// Searches this device's history: no server needed.
pub(super) fn search(m: &Messenger, text: String, conversation: Option<String>) -> Result<Outcome, SessionError> {
    let hits = m.search(&text, conversation.as_deref(), 100)?.iter().map(SearchHit::of).collect();
    Ok(Outcome::Found { query: text, hits })
}

pub(super) fn verify(m: &Messenger, handle: &str) -> Result<Outcome, SessionError> {
    let handle = handle.trim_start_matches('@').to_owned();
    let n = m.safety_number(&handle)?;
    let contact = m.contacts()?.into_iter().find(|c| c.handle == handle);
    let (verified, key_changed) = contact.map(|c| (c.verified, c.key_changed)).unwrap_or_default();
    Ok(Outcome::SafetyNumber { handle, number: sotto_core::trust::grouped(&n), verified, key_changed })
}

pub(super) fn export(m: &Messenger, conversation: &str) -> Result<Outcome, SessionError> {
    let messages = m.history(conversation)?;
    let name = crate::export::file_name(conversation, crate::export::Format::Txt);
    let text = crate::export::render(conversation, &m.identity().handle, &messages, crate::export::Format::Txt);
    let path = std::env::current_dir()
        .unwrap_or_default()
        .join(format!("sotto-export-{}-{name}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    std::fs::write(&path, text).map_err(|e| SessionError::Other(format!("{}: {e}", path.display())))?;
    Ok(Outcome::Exported { path: path.display().to_string() })
}

/// Mutes a conversation here, or unmutes it; every front end is told.
pub(super) fn mute(
    m: &Messenger,
    ev: &super::driver::Events,
    conversation: String,
    muted: bool,
) -> Result<Outcome, SessionError> {
    m.set_muted(&conversation, muted)?;
    let _ = ev.send(Event::Muted { conversation: conversation.clone(), muted });
    Ok(Outcome::Changed { conversation, change: if muted { "mute" } else { "unmute" } })
}

/// Keeps a front end's preference in the profile; every front end is told.
pub(super) fn preference(
    m: &Messenger,
    ev: &super::driver::Events,
    name: String,
    value: String,
) -> Result<Outcome, SessionError> {
    m.set_preference(&name, &value)?;
    let _ = ev.send(Event::Preference { name: name.clone(), value });
    Ok(Outcome::Remembered { name })
}

/// Puts a text that was not sent back in the outbox as a new message; the
/// conversation's history is sent again (the failed one is gone from it).
/// Returns the conversation.
pub(super) fn retry(m: &Messenger, ev: &super::driver::Events, id_hex: &str) -> Result<String, SessionError> {
    let id = hex::decode(id_hex.trim()).map_err(|_| SessionError::Other(format!("{id_hex:?} is not a message id")))?;
    let conversation = m
        .message(&id)?
        .map(|msg| msg.conversation)
        .ok_or_else(|| SessionError::Other("no such message on this device".into()))?;
    m.retry(&id)?;
    let _ = ev.send(Event::Removed { conversation: conversation.clone(), id });
    super::driver::history(m, ev, &conversation);
    Ok(conversation)
}
