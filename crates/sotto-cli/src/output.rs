//! How messages and contacts are printed: a line for people, or one JSON
//! object per line for scripts.

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde_json::json;
use sotto_core::{Body, Contact, MessageState, StoredMessage};

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn text_of(body: &Body) -> &str {
    match body {
        Body::Text { text } => text,
        Body::File { file, caption } => caption.as_deref().unwrap_or(&file.name),
        _ => "[a kind of message this version cannot show]",
    }
}

/// A message as one JSON object.
pub fn message_json(m: &StoredMessage) -> serde_json::Value {
    let kind = if m.state == MessageState::System { "system" } else { m.body.kind() };
    let mut v = json!({
        "id": hex::encode(&m.id),
        "conversation": m.conversation,
        "from": m.sender,
        "kind": kind,
        "text": text_of(&m.body),
        "sent_at": rfc3339(m.sent_at),
        "outgoing": m.outgoing,
        "state": m.state.as_str(),
        "seq": m.seq,
    });
    if let Body::File { file, caption } = &m.body {
        v["file"] = json!({
            "id": hex::encode(&m.id),
            "name": sotto_core::files::safe_file_name(&file.name),
            "size": file.size,
            "media_type": file.media_type,
        });
        v["text"] = json!(caption.clone().unwrap_or_default());
    }
    v
}

/// A message as a line for people.
pub fn message_line(m: &StoredMessage) -> String {
    let when = DateTime::<Utc>::from_timestamp_millis(m.sent_at)
        .unwrap_or_default()
        .with_timezone(&Local)
        .format("%Y-%m-%d %H:%M");
    if m.state == MessageState::System {
        return format!("{when} {} -- {}", m.conversation, text_of(&m.body));
    }
    let mark = match m.state {
        MessageState::Pending => " (not yet sent)",
        MessageState::NotSent => " (not sent: you were removed from the conversation first)",
        _ => "",
    };
    if let Body::File { file, caption } = &m.body {
        let caption = caption.as_ref().map(|c| format!(" {c}")).unwrap_or_default();
        return format!(
            "{when} {} <{}> [file {} ({} bytes); sotto download {}]{caption}{mark}",
            m.conversation,
            m.sender,
            sotto_core::files::safe_file_name(&file.name),
            file.size,
            hex::encode(&m.id)
        );
    }
    format!("{when} {} <{}> {}{mark}", m.conversation, m.sender, text_of(&m.body))
}

/// Prints a message in the chosen format.
pub fn print_message(m: &StoredMessage, as_json: bool) {
    if as_json {
        say!("{}", message_json(m));
    } else {
        say!("{}", message_line(m));
    }
}

/// Prints a contact in the chosen format.
pub fn print_contact(c: &Contact, online: Option<bool>, request: bool, as_json: bool) {
    if as_json {
        say!(
            "{}",
            json!({
                "handle": c.handle,
                "account_key": hex::encode(&c.account_key),
                "verified": c.verified,
                "key_changed": c.key_changed,
                "request": request,
                "online": online,
            })
        );
    } else {
        let mut flags = Vec::new();
        match online {
            Some(true) => flags.push("online"),
            Some(false) => flags.push("offline"),
            None => {}
        }
        if c.verified {
            flags.push("verified");
        }
        if c.key_changed {
            flags.push("KEY CHANGED");
        }
        if request {
            flags.push("message request waiting: `sotto requests`");
        }
        let flags = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
        say!("@{}{flags}", c.handle);
    }
}

/// A QR code of the digits, drawn with half-block characters so it fits a
/// terminal (two rows of modules per line).
pub fn qr(digits: &str) -> String {
    match qrcode::QrCode::new(digits.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        Err(_) => String::new(),
    }
}

/// Writes one line to standard output. When the reader has gone away
/// (`sotto verify @bob | head -1`), the command stops quietly with exit
/// code 0, as ripgrep does: what was asked for was printed, and Rust's
/// `println!` would panic instead.
pub fn line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(crate::exit::OK);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(crate::exit::ERROR);
    }
}

/// Writes text as it is (no newline added), like [`line`].
pub fn text(t: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(t.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(crate::exit::OK);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(crate::exit::ERROR);
    }
}
