//! How messages and contacts are printed: a line for people, or one JSON
//! object per line for scripts.

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde_json::json;
use sotto_core::{Body, Contact, MessageState, StoredMessage};

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn text_of(body: &Body) -> &str {
    match body {
        Body::Text { text } => text,
        Body::File { file, caption } => caption.as_deref().unwrap_or(&file.name),
        Body::Reaction { emoji, .. } => emoji,
        _ => "[a kind of message this version cannot show]",
    }
}

/// The line a message deleted for everyone leaves.
pub const DELETED: &str = "[message deleted]";

/// The kind `receive --json` names: an edit is a text that replaces
/// another; a deleted message is `deleted`, whatever it was.
pub(crate) fn kind_of(m: &StoredMessage) -> &'static str {
    if m.state == MessageState::System {
        "system"
    } else if m.detail.annotation && matches!(m.body, Body::Text { .. }) {
        "edit"
    } else {
        m.body.kind()
    }
}

/// Where an own message stands: pending, sent (✓: the server has it),
/// delivered (✓✓: every device of the others has it), read, not_sent.
pub fn receipt_state(m: &StoredMessage) -> &'static str {
    match (&m.state, &m.detail.receipt) {
        (MessageState::Sent, Some(r)) if !r.read_by.is_empty() => "read",
        (MessageState::Sent, Some(r)) if r.delivered => "delivered",
        (state, _) => state.as_str(),
    }
}

/// A message as one JSON object.
pub fn message_json(m: &StoredMessage) -> serde_json::Value {
    let kind = kind_of(m);
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
    let d = &m.detail;
    if d.annotation {
        v["target"] = json!(d.target.as_ref().map(hex::encode));
        match &m.body {
            Body::Reaction { emoji, remove } => {
                v["emoji"] = json!(emoji);
                v["remove"] = json!(remove);
            }
            Body::Receipt { delivered, read } => {
                v["text"] = json!("");
                v["delivered"] = json!(delivered);
                v["read"] = json!(read);
            }
            Body::Delete => v["text"] = json!(""),
            _ => {}
        }
        return v;
    }
    v["reply_to"] = json!(d.reply_to.as_ref().map(hex::encode));
    v["edited"] = json!(d.edited_at.is_some());
    v["deleted"] = json!(d.deleted);
    if d.deleted {
        v["text"] = json!("");
    }
    v["expires_at"] = json!(d.expires_at.map(rfc3339));
    v["pinned"] = json!(d.pinned);
    v["mentions"] = json!(d.mentions);
    v["reactions"] = json!(d
        .reactions
        .iter()
        .map(|(emoji, by)| json!({"emoji": emoji, "count": by.len(), "by": by}))
        .collect::<Vec<_>>());
    if m.outgoing && m.state != MessageState::System {
        v["state"] = json!(receipt_state(m));
        if let Some(r) = &d.receipt {
            v["receipt"] = json!({"delivered": r.delivered, "read_by": r.read_by});
        }
    }
    if d.deleted {
        return v;
    }
    if let Body::File { file, caption } = &m.body {
        v["file"] = json!({
            "id": hex::encode(&m.id),
            "name": sotto_core::files::safe_file_name(&file.name),
            "size": file.size,
            "media_type": file.media_type,
        });
        if let Some(t) = &file.thumbnail {
            // The preview's shape (the page keeps room for it while it
            // loads); its bytes come from the web UI's /api/thumbnail.
            v["file"]["thumbnail"] = json!({"width": t.width, "height": t.height});
        }
        v["text"] = json!(caption.clone().unwrap_or_default());
    }
    v
}

/// A message as a line for people; `quoted` is the message it answers,
/// when this device has it.
pub fn message_line_quoting(m: &StoredMessage, quoted: Option<&StoredMessage>) -> String {
    let line = message_line(m);
    let Some(reply_to) = &m.detail.reply_to else { return line };
    let quote = match quoted {
        Some(q) if q.detail.deleted => format!("<{}> {DELETED}", q.sender),
        Some(q) => format!("<{}> {}", q.sender, short(text_of(&q.body), 40)),
        None => format!("a message not on this device ({})", &hex::encode(reply_to)[..8.min(reply_to.len() * 2)]),
    };
    format!("{line}\n    ↪ in reply to {quote}")
}

fn short(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max).collect();
    format!("{cut}…")
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
    if m.detail.annotation {
        let target =
            m.detail.target.as_ref().map(|t| hex::encode(t)[..8.min(t.len() * 2)].to_owned()).unwrap_or_default();
        return match &m.body {
            Body::Reaction { emoji, remove: false } => {
                format!("{when} {} <{}> reacted {emoji} to {target}", m.conversation, m.sender)
            }
            Body::Reaction { emoji, remove: true } => {
                format!("{when} {} <{}> took back {emoji} on {target}", m.conversation, m.sender)
            }
            Body::Delete => format!("{when} {} <{}> deleted {target}", m.conversation, m.sender),
            Body::Text { text } => format!("{when} {} <{}> edited {target}: {text}", m.conversation, m.sender),
            Body::Receipt { read: Some(seq), .. } => {
                format!("{when} {} <{}> read up to {seq}", m.conversation, m.sender)
            }
            _ => format!("{when} {} <{}> has the conversation", m.conversation, m.sender),
        };
    }
    if m.detail.deleted {
        return format!("{when} {} <{}> {DELETED}", m.conversation, m.sender);
    }
    let mut mark = match m.state {
        MessageState::Pending => " (not yet sent)".to_owned(),
        MessageState::NotSent => " (not sent: it did not reach the conversation)".to_owned(),
        _ => String::new(),
    };
    if m.detail.edited_at.is_some() {
        mark.push_str(" (edited)");
    }
    if m.outgoing {
        match receipt_state(m) {
            "read" if m.conversation.starts_with('#') => mark.push_str(&format!(
                " ✓✓ read by {}",
                m.detail.receipt.as_ref().map(|r| r.read_by.join(", ")).unwrap_or_default()
            )),
            "read" => mark.push_str(" ✓✓ read"),
            "delivered" => mark.push_str(" ✓✓"),
            "sent" => mark.push_str(" ✓"),
            _ => {}
        }
    }
    if !m.detail.reactions.is_empty() {
        let list: Vec<String> = m.detail.reactions.iter().map(|(e, by)| format!("{e} {}", by.len())).collect();
        mark.push_str(&format!(" [{}]", list.join(" ")));
    }
    if m.detail.expires_at.is_some() {
        mark.push_str(" ⏱");
    }
    if m.detail.pinned {
        mark.push_str(" 📌");
    }
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

/// A profile as one JSON object (the picture as its type and size).
pub fn profile_json(p: &sotto_core::PersonProfile) -> serde_json::Value {
    json!({
        "handle": p.handle,
        "display_name": if p.name.is_empty() { None } else { Some(&p.name) },
        "avatar": p.avatar.as_ref().map(|(kind, bytes)| json!({"media_type": kind, "size": bytes.len()})),
    })
}

/// Prints a contact in the chosen format.
pub fn print_contact(
    c: &Contact,
    profile: Option<&sotto_core::PersonProfile>,
    online: Option<bool>,
    request: bool,
    as_json: bool,
) {
    let shown = profile.filter(|p| !p.name.is_empty()).map(|p| p.name.as_str());
    if as_json {
        let p = profile.map(profile_json);
        say!(
            "{}",
            json!({
                "handle": c.handle,
                "display_name": shown,
                "avatar": p.as_ref().map(|p| p["avatar"].clone()).unwrap_or(serde_json::Value::Null),
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
        let name = shown.map(|n| format!(" {n:?}")).unwrap_or_default();
        say!("@{}{name}{flags}", c.handle);
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
