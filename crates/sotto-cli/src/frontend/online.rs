//! One command carried out against an open session (the driver keeps the
//! session; offline commands are handled where it waits to reconnect).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sotto_client::{Session, SessionError};
use sotto_core::Messenger;

use super::driver::{change_locally, connection_lost, history, presence, upsert, Events};
use super::event::{DeviceEntry, RequestEntry};
use super::local::{confirm, export, members, mute, preference, retry, search, trust, verify};
use super::{Command, Event, GroupChange, Outcome, Transfer};

pub(super) async fn run_command(
    m: &Messenger,
    s: &mut Session<'_>,
    ev: &Events,
    request: u64,
    command: Command,
) -> Result<Outcome, SessionError> {
    let progress = |transfer: Transfer| -> sotto_client::Progress {
        let ev = ev.clone();
        let last = std::sync::Mutex::new(Instant::now());
        Arc::new(move |done, total| {
            let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
            if done == total || l.elapsed() > Duration::from_millis(100) {
                *l = Instant::now();
                let _ = ev.send(Event::Progress { request, transfer, done, total });
            }
        })
    };
    Ok(match command {
        Command::Send { to, text } => {
            // Into the outbox (durable) and on screen as pending first;
            // the outbox sends it, now or on the next connection.
            let item = match s.queue_text(&to, &text).await {
                Ok(item) => item,
                // The connection went during the checks before queueing (the
                // server died a moment ago): keep the message exactly as
                // when offline, never drop it with an error.
                Err(e) if connection_lost(&e) && m.conversation_group(&to)?.is_some() => {
                    let item = m.prepare_text(&to, &text)?;
                    upsert(m, ev, &item.message_id);
                    return Err(SessionError::Queued(Box::new(e)));
                }
                Err(e) => return Err(e),
            };
            upsert(m, ev, &item.message_id);
            let sent = s.flush_outbox().await;
            upsert(m, ev, &item.message_id);
            sent.map_err(|e| SessionError::Queued(Box::new(e)))?;
            Outcome::Sent { conversation: to }
        }
        Command::SendFile { to, path } => {
            let sent = s.send_file(std::slice::from_ref(&to), &path, None, progress(Transfer::Upload)).await;
            // A copy a front end staged in the profile (the web UI's upload)
            // is plaintext: it goes as soon as it is encrypted and sent, or
            // when it cannot be; it stays (inside the profile, for a day at
            // most) only while its upload can resume when the person sends
            // the same file again. The person's own files are never touched.
            if let (Some(outgoing), Some(staging)) = (m.outgoing_dir(), path.parent()) {
                let resumable = sent.is_err() && m.staged_upload_resumable(&path).unwrap_or(false);
                if staging.parent() == Some(outgoing.as_path()) && !resumable {
                    let _ = std::fs::remove_dir_all(staging);
                }
            }
            let sent = sent.map_err(|e| match e {
                SessionError::Core(_) | SessionError::Queued(_) => e,
                other if m.staged_upload_resumable(&path).unwrap_or(false) => SessionError::Other(format!(
                    "{other}; the upload broke off and resumes where it stopped when you send the same file again"
                )),
                other => other,
            });
            sent?;
            history(m, ev, &to);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Outcome::FileSent { conversation: to, name }
        }
        Command::Broadcast { text } => {
            let targets: Vec<String> = m.conversations()?.into_iter().filter(|c| c.starts_with('@')).collect();
            for t in &targets {
                s.send_text(t, &text).await?;
                history(m, ev, t);
            }
            Outcome::Broadcast { count: targets.len() }
        }
        Command::Download { id } => {
            let path = s.download_file(&id, None, progress(Transfer::Download)).await?;
            Outcome::Saved { path: path.display().to_string() }
        }
        Command::Group(change) => {
            let conversation = change.conversation();
            let verb = change.verb();
            let shown = match change {
                GroupChange::Create { name, people } => {
                    s.create_group(&name, &people).await?;
                    conversation
                }
                GroupChange::Add { people, .. } => {
                    s.add_to_group(&conversation, &people).await?;
                    conversation
                }
                GroupChange::Remove { people, .. } => {
                    s.remove_from_group(&conversation, &people).await?;
                    conversation
                }
                GroupChange::Leave { .. } => {
                    s.leave_group(&conversation).await?;
                    conversation
                }
                GroupChange::Rename { to, .. } => {
                    s.rename_group(&conversation, &to).await?;
                    let new = format!("#{to}");
                    let _ = ev.send(Event::Renamed { from: conversation, to: new.clone() });
                    new
                }
            };
            history(m, ev, &shown);
            Outcome::GroupChanged { conversation: shown, change: verb }
        }
        Command::Verify { handle } => verify(m, &handle)?,
        Command::Export { conversation } => export(m, &conversation)?,
        Command::Presence => {
            presence(m, s, ev).await?;
            Outcome::Presence
        }
        Command::Typing { conversation, typing } => {
            s.send_typing(&conversation, typing).await?;
            Outcome::Signalled
        }
        Command::Devices => Outcome::Devices { devices: device_entries(m, s).await? },
        Command::LinkDevice { code, history_days } => {
            let candidate = s.fetch_link(&code).await?;
            // The front end does not wait for the new device: it joins the
            // conversations at this device's next connection if need be.
            let days = history_days.unwrap_or(sotto_client::devices::DEFAULT_HISTORY_DAYS);
            let linked = s.complete_link(&candidate, Duration::from_secs(20), days).await?;
            Outcome::DeviceLinked { id: linked.device_id, name: candidate.name, complete: linked.complete }
        }
        Command::RemoveDevice { id } => {
            let conversations = s.remove_device(id).await?;
            Outcome::DeviceRemoved { id, conversations }
        }
        Command::Search { text, conversation } => search(m, text, conversation)?,
        Command::Members { conversation } => members(m, conversation)?,
        Command::Preference { name, value } => preference(m, ev, name, value)?,
        Command::Retry { id } => {
            let conversation = retry(m, ev, &id)?;
            let sent = s.flush_outbox().await;
            history(m, ev, &conversation);
            sent.map_err(|e| SessionError::Queued(Box::new(e)))?;
            Outcome::Sent { conversation }
        }
        Command::Mute { conversation, muted } => {
            let outcome = mute(m, ev, conversation, muted)?;
            // This person's other devices hear of it now.
            s.flush_outbox().await.map_err(|e| SessionError::Queued(Box::new(e)))?;
            outcome
        }
        Command::Confirm { handle, digits } => {
            let outcome = confirm(m, handle, &digits)?;
            s.flush_outbox().await.map_err(|e| SessionError::Queued(Box::new(e)))?;
            outcome
        }
        Command::Trust { handle } => {
            let outcome = trust(m, handle)?;
            s.flush_outbox().await.map_err(|e| SessionError::Queued(Box::new(e)))?;
            outcome
        }
        Command::Requests => Outcome::Requests {
            requests: m
                .requests()?
                .into_iter()
                .map(|r| RequestEntry { conversation: r.conversation, from: r.from, messages: r.messages })
                .collect(),
        },
        Command::AcceptRequest { conversation } => {
            s.accept_request(&conversation).await?;
            history(m, ev, &conversation);
            Outcome::RequestAccepted { conversation }
        }
        Command::DeclineRequest { conversation } => {
            s.decline_request(&conversation).await?;
            Outcome::RequestDeclined { conversation }
        }
        // What is left changes messages here first (`Command::changes_messages`).
        command => {
            let outcome = change_locally(m, ev, command)?;
            s.flush_outbox().await.map_err(|e| SessionError::Queued(Box::new(e)))?;
            s.tell_retention().await;
            if let Outcome::Changed { conversation, change: "timer" | "reply" | "describe" | "pin" } = &outcome {
                // The timer's line (and the reply, now sent) show from
                // history.
                history(m, ev, conversation);
            }
            outcome
        }
    })
}

/// This account's devices as the server lists them, with the names this
/// device knows.
pub(crate) async fn device_entries(m: &Messenger, s: &mut Session<'_>) -> Result<Vec<DeviceEntry>, SessionError> {
    let devices = s.list_devices().await?;
    let names = m.own_devices()?;
    let me = m.identity().device_id;
    Ok(devices
        .into_iter()
        .map(|d| DeviceEntry {
            id: d.device_id,
            name: names.iter().find(|n| n.device_id == d.device_id).map(|n| n.name.clone()).unwrap_or_default(),
            this: d.device_id == me,
            added_at: d.added_at,
            last_seen: d.last_seen,
        })
        .collect())
}
