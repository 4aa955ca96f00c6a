//! The network side of `sotto chat`: owns the session, keeps it connected
//! (reconnecting with backoff), turns what arrives into [`NetEvent`]s and
//! carries out [`Command`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sotto_client::{ClientError, Session, SessionError};
use sotto_core::{Event, Messenger};
use tokio::sync::{mpsc, watch};

use super::app::{Command, Link, NetEvent};

type Events = mpsc::UnboundedSender<NetEvent>;

fn history(m: &Messenger, ev: &Events, conversation: &str) {
    if let Ok(messages) = m.history(conversation) {
        let _ = ev.send(NetEvent::History { conversation: conversation.to_owned(), messages });
    }
}

fn forward(m: &Messenger, ev: &Events, events: Vec<Event>) {
    for e in events {
        match e {
            Event::Message(msg) => {
                let _ = ev.send(NetEvent::Message(msg));
            }
            Event::Joined { conversation } => history(m, ev, &conversation),
            Event::Renamed { from, to } => {
                let _ = ev.send(NetEvent::Renamed { from, to: to.clone() });
                history(m, ev, &to);
            }
            Event::Warning { conversation, text } => {
                let _ = ev.send(NetEvent::Info(format!(
                    "{}{text}",
                    conversation.map(|c| format!("{c}: ")).unwrap_or_default()
                )));
            }
        }
    }
}

/// Puts a text into the outbox (one transaction with its pending history
/// row) and shows it; returns its id. Works without a connection for a
/// conversation that exists.
fn queue_text(m: &Messenger, ev: &Events, to: &str, text: &str) -> Result<Option<Vec<u8>>, SessionError> {
    let item = m.prepare_text(to, text)?;
    let id = item.message_id.clone();
    if let Some(pending) = find_message(m, to, &id) {
        let _ = ev.send(NetEvent::Message(Box::new(pending)));
    }
    Ok(id)
}

fn find_message(m: &Messenger, to: &str, id: &Option<Vec<u8>>) -> Option<sotto_core::StoredMessage> {
    m.history(to).ok().and_then(|h| h.into_iter().rev().find(|x| Some(&x.id) == id.as_ref()))
}

/// What a command typed while there is no connection becomes: a text to a
/// known conversation waits in the outbox; anything else is refused with a
/// reason, so nothing is silently held in memory and lost on quit.
fn offline_command(m: &Messenger, ev: &Events, cmd: Command) {
    let said = match cmd {
        Command::Send { to, text } if m.conversation_group(&to).ok().flatten().is_some() => {
            match queue_text(m, ev, &to, &text) {
                Ok(_) => format!("{to}: not connected; the message is saved and goes out when the connection returns"),
                Err(e) => format!("error: {e}"),
            }
        }
        Command::Send { to, .. } => {
            format!("error: not connected, and {to} is a new conversation: it needs the server to start; try again when online")
        }
        Command::Verify { .. } | Command::Export { .. } => {
            // Local only: they work offline too.
            return offline_local(m, ev, cmd);
        }
        _ => "error: not connected; that needs the server, try again when online".into(),
    };
    let _ = ev.send(NetEvent::Info(said));
}

fn offline_local(m: &Messenger, ev: &Events, cmd: Command) {
    let r = match cmd {
        Command::Verify { handle } => m
            .safety_number(&handle)
            .map(|n| format!("safety number with @{handle}: {}", sotto_core::trust::grouped(&n)))
            .map_err(|e| e.to_string()),
        Command::Export { conversation } => export(m, &conversation).map_err(|e| e.to_string()),
        _ => return,
    };
    let _ = ev.send(NetEvent::Info(r.unwrap_or_else(|e| format!("error: {e}"))));
}

fn export(m: &Messenger, conversation: &str) -> Result<String, SessionError> {
    let messages = m.history(conversation)?;
    let name = crate::export::file_name(conversation, crate::export::Format::Txt);
    let text = crate::export::render(conversation, &m.identity().handle, &messages, crate::export::Format::Txt);
    let path = std::env::current_dir()
        .unwrap_or_default()
        .join(format!("sotto-export-{}-{name}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    std::fs::write(&path, text).map_err(|e| SessionError::Other(format!("{}: {e}", path.display())))?;
    Ok(format!("exported to {}", path.display()))
}

/// Whether an error means the connection is gone (reconnect) rather than a
/// refused command (report and go on).
fn connection_lost(e: &SessionError) -> bool {
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

async fn presence(m: &Messenger, s: &mut Session<'_>, ev: &Events) -> Result<(), SessionError> {
    let handles: Vec<String> = m.contacts()?.into_iter().map(|c| c.handle).collect();
    if let Some(list) = s.presence(&handles).await? {
        let _ = ev.send(NetEvent::Presence(list));
    }
    Ok(())
}

async fn run_command(m: &Messenger, s: &mut Session<'_>, ev: &Events, cmd: Command) -> Result<(), SessionError> {
    let progress = |what: &'static str| -> sotto_client::Progress {
        let ev = ev.clone();
        let last = std::sync::Mutex::new(Instant::now());
        Arc::new(move |done, total| {
            let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
            if done == total || l.elapsed() > Duration::from_millis(100) {
                *l = Instant::now();
                let _ = ev.send(NetEvent::Progress { what: what.into(), done, total });
            }
        })
    };
    match cmd {
        Command::Send { to, text } => {
            if let Some(h) = to.strip_prefix('@') {
                if m.conversation_group(&to)?.is_none() {
                    s.ensure_direct(h).await?;
                } else {
                    s.check_peer(h).await?;
                }
            }
            // Into the outbox (durable) and on screen as pending first;
            // the outbox sends it, now or on the next connection.
            let id = queue_text(m, ev, &to, &text)?;
            let sent = s.flush_outbox().await;
            if let Some(msg) = find_message(m, &to, &id) {
                let _ = ev.send(NetEvent::Message(Box::new(msg)));
            }
            sent.map_err(|e| SessionError::Queued(Box::new(e)))?;
        }
        Command::SendFile { to, path } => {
            let file = std::path::Path::new(&path);
            let sent = s.send_file(std::slice::from_ref(&to), file, None, progress("upload")).await;
            // A copy a front end staged in the profile (the web UI's upload)
            // is plaintext: it goes as soon as it is encrypted and sent, or
            // could not be. The person's own files are never touched.
            if let (Some(outgoing), Some(staging)) = (m.outgoing_dir(), file.parent()) {
                if staging.parent() == Some(outgoing.as_path()) {
                    let _ = std::fs::remove_dir_all(staging);
                }
            }
            sent?;
            history(m, ev, &to);
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = ev.send(NetEvent::Info(format!("sent {name} to {to}")));
        }
        Command::Broadcast { text } => {
            let targets: Vec<String> = m.conversations()?.into_iter().filter(|c| c.starts_with('@')).collect();
            for t in &targets {
                s.send_text(t, &text).await?;
                history(m, ev, t);
            }
            let _ = ev.send(NetEvent::Info(format!("broadcast to {} contacts", targets.len())));
        }
        Command::Download { id } => {
            let path = s.download_file(&id, None, progress("download")).await?;
            let _ = ev.send(NetEvent::Info(format!("saved {}", path.display())));
        }
        Command::Group(args) => {
            let name = args[1].trim_start_matches('#').to_owned();
            let conv = format!("#{name}");
            let people: Vec<String> = args[2..].iter().map(|h| h.trim_start_matches('@').to_owned()).collect();
            match args[0].as_str() {
                "create" => s.create_group(&name, &people).await?,
                "add" => s.add_to_group(&conv, &people).await?,
                "remove" => s.remove_from_group(&conv, &people).await?,
                "leave" => s.leave_group(&conv).await?,
                "rename" => {
                    let new = people.first().ok_or_else(|| SessionError::Other("/group rename NAME NEW".into()))?;
                    s.rename_group(&conv, new).await?;
                    let _ = ev.send(NetEvent::Renamed { from: conv.clone(), to: format!("#{new}") });
                    history(m, ev, &format!("#{new}"));
                    return Ok(());
                }
                other => {
                    return Err(SessionError::Other(format!(
                        "/group {other}: use create, add, remove, leave or rename"
                    )))
                }
            }
            history(m, ev, &conv);
            let _ = ev.send(NetEvent::Info(format!("{} {conv}: done", args[0])));
        }
        Command::Verify { handle } => {
            let n = m.safety_number(&handle)?;
            let _ =
                ev.send(NetEvent::Info(format!("safety number with @{handle}: {}", sotto_core::trust::grouped(&n))));
        }
        Command::Export { conversation } => {
            let said = export(m, &conversation)?;
            let _ = ev.send(NetEvent::Info(said));
        }
        Command::Presence => {
            presence(m, s, ev).await?;
            let _ = ev.send(NetEvent::Info("contacts: ● online, ○ offline (in the list on the left)".into()));
        }
    }
    Ok(())
}

/// Runs until `quit` turns true.
pub async fn run(m: &Messenger, cmds: &mut mpsc::UnboundedReceiver<Command>, ev: Events, quit: watch::Receiver<bool>) {
    let _ = ev.send(NetEvent::Identity { me: m.identity().handle.clone(), server: m.server().unwrap_or_default() });
    for c in m.conversations().unwrap_or_default() {
        history(m, &ev, &c);
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
                let _ =
                    ev.send(NetEvent::Link(if first { Link::Connecting } else { Link::Reconnecting(e.to_string()) }));
                let _ = ev.send(NetEvent::Info(format!("cannot connect: {e}; retrying in {}s", backoff.as_secs())));
                let until = Instant::now() + backoff;
                while Instant::now() < until && !*quit.borrow() {
                    while let Ok(cmd) = cmds.try_recv() {
                        offline_command(m, &ev, cmd);
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
        let _ = ev.send(NetEvent::Link(Link::Online));
        // Opening the session sent what waited in the outbox: show those
        // messages as sent now.
        for c in m.conversations().unwrap_or_default() {
            history(m, &ev, &c);
        }
        match session.sync().await {
            Ok(events) => forward(m, &ev, events),
            Err(e) => {
                let _ = ev.send(NetEvent::Link(Link::Reconnecting(e.to_string())));
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
            while let Ok(cmd) = cmds.try_recv() {
                if let Err(e) = run_command(m, &mut session, &ev, cmd).await {
                    let said = if e.is_queued() {
                        "not sent yet; the message is saved and goes out when the connection returns".to_owned()
                    } else {
                        format!("error: {e}")
                    };
                    let _ = ev.send(NetEvent::Info(said));
                    if connection_lost(&e) {
                        break;
                    }
                }
            }
            match session.pump(Duration::from_millis(200)).await {
                Ok(events) => forward(m, &ev, events),
                Err(e) => {
                    let _ = ev.send(NetEvent::Link(Link::Reconnecting(e.to_string())));
                    break;
                }
            }
            if last_presence.elapsed() > Duration::from_secs(15) {
                last_presence = Instant::now();
                let _ = presence(m, &mut session, &ev).await;
            }
        }
    }
}
