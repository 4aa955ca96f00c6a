//! Exporting a conversation as text, JSON or a self-contained HTML page.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sotto_core::{Body, MessageState, StoredMessage};

/// The formats `sotto export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per message.
    Txt,
    /// One JSON document with every message.
    Json,
    /// A page that opens in any browser, offline.
    Html,
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Json => "json",
            Format::Html => "html",
        }
    }
}

fn when(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A message's text with what happened to it: deleted (nothing of it
/// stays), edited (the newest version), the message it answers, and its
/// reactions with who gave them.
fn text(m: &StoredMessage, saved: &Files, all: &[StoredMessage]) -> String {
    if m.detail.deleted {
        return crate::output::DELETED.to_owned();
    }
    let mut out = String::new();
    if let Some(reply_to) = &m.detail.reply_to {
        match all.iter().find(|q| q.id == *reply_to) {
            Some(q) if q.detail.deleted => {
                out.push_str(&format!("(in reply to {}: {}) ", q.sender, crate::output::DELETED))
            }
            Some(q) => {
                let quoted: String = body_text(q, saved).chars().take(60).collect();
                out.push_str(&format!("(in reply to {}: \"{quoted}\") ", q.sender));
            }
            None => out.push_str("(in reply to an earlier message) "),
        }
    }
    out.push_str(&body_text(m, saved));
    if m.detail.edited_at.is_some() {
        out.push_str(" (edited)");
    }
    if !m.detail.reactions.is_empty() {
        let list: Vec<String> = m.detail.reactions.iter().map(|(e, by)| format!("{e} {}", by.join(", "))).collect();
        out.push_str(&format!(" [reactions: {}]", list.join("; ")));
    }
    out
}

fn body_text(m: &StoredMessage, saved: &Files) -> String {
    match &m.body {
        Body::Text { text } => text.clone(),
        Body::File { file, caption } => {
            let name = sotto_core::files::safe_file_name(&file.name);
            let caption = caption.as_ref().map(|c| format!(" {c}")).unwrap_or_default();
            let at = saved.get(&m.id).map(|p| format!(", saved as {p}")).unwrap_or_default();
            format!("[file {name}, {} bytes, {}{at}]{caption}", file.size, file.media_type)
        }
        _ => "[a kind of message this version cannot show]".into(),
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where exported files were saved: message id -> path relative to the export.
pub type Files = std::collections::HashMap<Vec<u8>, String>;

/// Renders a conversation in `format`.
pub fn render(conversation: &str, me: &str, messages: &[StoredMessage], format: Format) -> String {
    render_with_files(conversation, me, messages, format, &Files::new())
}

/// Renders a conversation in `format`, naming where each saved file is.
pub fn render_with_files(
    conversation: &str,
    me: &str,
    messages: &[StoredMessage],
    format: Format,
    saved: &Files,
) -> String {
    let exported = when(chrono::Utc::now().timestamp_millis());
    match format {
        Format::Txt => {
            let mut out = format!("sotto conversation {conversation}, exported by @{me} at {exported}\n\n");
            for m in messages {
                if m.state == MessageState::System {
                    out.push_str(&format!("[{}] -- {}\n", when(m.sent_at), text(m, saved, messages)));
                } else {
                    out.push_str(&format!("[{}] {}: {}\n", when(m.sent_at), m.sender, text(m, saved, messages)));
                }
            }
            out
        }
        Format::Json => {
            let list: Vec<_> = messages
                .iter()
                .map(|m| {
                    let mut v = crate::output::message_json(m);
                    if let Some(p) = saved.get(&m.id) {
                        v["saved_as"] = json!(p);
                    }
                    v
                })
                .collect();
            let doc =
                json!({"conversation": conversation, "exported_by": me, "exported_at": exported, "messages": list});
            serde_json::to_string_pretty(&doc).expect("json") + "\n"
        }
        Format::Html => {
            let mut body = String::new();
            for m in messages {
                let class = if m.state == MessageState::System {
                    "sys"
                } else if m.outgoing {
                    "out"
                } else {
                    "in"
                };
                let who = if m.state == MessageState::System {
                    String::new()
                } else {
                    format!("<b>{}</b> ", escape_html(&m.sender))
                };
                body.push_str(&format!(
                    "<div class=\"msg {class}\"><div class=\"meta\">{who}<time datetime=\"{t}\">{t}</time></div><p>{}</p></div>\n",
                    escape_html(&text(m, saved, messages)),
                    t = when(m.sent_at)
                ));
            }
            format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>sotto: {c}</title><style>\
body{{font:16px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;background:#fff;color:#111}}\
h1{{font-size:1.3rem}}.msg{{margin:.6rem 0;padding:.5rem .8rem;border-radius:.6rem;background:#f1f1f4}}\
.out{{background:#dcecff;margin-left:3rem}}.in{{margin-right:3rem}}.sys{{background:none;color:#555;font-style:italic;text-align:center}}\
.meta{{font-size:.8rem;color:#444}}p{{margin:.2rem 0 0;white-space:pre-wrap;overflow-wrap:anywhere}}\
@media (prefers-color-scheme:dark){{body{{background:#111;color:#eee}}.msg{{background:#23232a}}.out{{background:#1d3552}}.meta{{color:#bbb}}.sys{{color:#aaa}}}}\
</style></head><body><h1>Conversation {c}</h1><p class=\"meta\">Exported by @{me} at {exported}</p>\n{body}</body></html>\n",
                c = escape_html(conversation),
                me = escape_html(me),
            )
        }
    }
}

/// A file name for a conversation that cannot leave the target folder.
pub fn file_name(conversation: &str, format: Format) -> String {
    let safe: String = conversation
        .chars()
        .map(|c| match c {
            '@' => "dm-".to_owned(),
            '#' => "group-".to_owned(),
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') => c.to_string(),
            _ => "_".to_owned(),
        })
        .collect();
    format!("{}.{}", safe.trim_start_matches('.'), format.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_and_names_stay_inside() {
        let m = StoredMessage {
            id: vec![1],
            conversation: "@bob".into(),
            sender: "bob".into(),
            outgoing: false,
            sent_at: 0,
            received_at: 0,
            body: Body::Text { text: "<script>alert(1)</script> & \"x\"".into() },
            state: MessageState::Received,
            seq: Some(1),
            detail: Default::default(),
        };
        let html = render("@bob", "alice", &[m], Format::Html);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert_eq!(file_name("#../../etc", Format::Txt), "group-.._.._etc.txt");
        assert_eq!(file_name("@bob", Format::Json), "dm-bob.json");
    }

    #[test]
    fn file_messages_are_exported_with_name_size_and_type() {
        let info = sotto_core::files::FileInfo {
            blob_id: vec![1; 16],
            key: vec![2; 32],
            nonce: vec![3; 19],
            size: 200_000,
            name: "photo.png".into(),
            media_type: "image/png".into(),
            sha256: vec![4; 32],
            thumbnail: None,
            padded: None,
        };
        let m = StoredMessage {
            id: vec![9],
            conversation: "@bob".into(),
            sender: "bob".into(),
            outgoing: false,
            sent_at: 0,
            received_at: 0,
            body: Body::File { file: info, caption: Some("the beach".into()) },
            state: MessageState::Received,
            seq: Some(1),
            detail: Default::default(),
        };
        for format in [Format::Txt, Format::Html] {
            let out = render("@bob", "alice", std::slice::from_ref(&m), format);
            assert!(out.contains("[file photo.png, 200000 bytes, image/png] the beach"), "{out}");
            assert!(!out.contains("cannot show"), "{out}");
        }
        let json: serde_json::Value = serde_json::from_str(&render("@bob", "alice", &[m], Format::Json)).unwrap();
        let file = &json["messages"][0]["file"];
        assert_eq!((file["name"].as_str(), file["size"].as_u64()), (Some("photo.png"), Some(200_000)));
        assert_eq!(file["media_type"], "image/png");
        assert_eq!(file_name("@bob", Format::Json), "dm-bob.json");
    }

    #[test]
    fn exports_apply_edits_and_deletes_and_list_reactions() {
        let msg = |id: u8, text: &str| StoredMessage {
            id: vec![id],
            conversation: "@bob".into(),
            sender: "bob".into(),
            outgoing: false,
            sent_at: 0,
            received_at: 0,
            body: Body::Text { text: text.into() },
            state: MessageState::Received,
            seq: Some(id as u64),
            detail: Default::default(),
        };
        let mut deleted = msg(1, "");
        deleted.detail.deleted = true;
        let mut edited = msg(2, "fixed typo");
        edited.detail.edited_at = Some(5);
        edited.detail.reactions = vec![("👍".into(), vec!["alice".into(), "carol".into()])];
        let mut reply = msg(3, "answer");
        reply.detail.reply_to = Some(vec![1]);
        let all = [deleted, edited, reply];
        for format in [Format::Txt, Format::Html, Format::Json] {
            let out = render("@bob", "alice", &all, format);
            assert!(out.contains("fixed typo"), "{out}");
            assert!(out.contains("[message deleted]") || format == Format::Json, "{out}");
        }
        let txt = render("@bob", "alice", &all, Format::Txt);
        assert!(txt.contains("fixed typo (edited) [reactions: 👍 alice, carol]"), "{txt}");
        assert!(txt.contains("(in reply to bob: [message deleted]) answer"), "{txt}");
        let json: serde_json::Value = serde_json::from_str(&render("@bob", "alice", &all, Format::Json)).unwrap();
        assert_eq!(json["messages"][0]["deleted"], true);
        assert_eq!(json["messages"][0]["text"], "");
        assert_eq!(json["messages"][1]["edited"], true);
        assert_eq!(json["messages"][1]["reactions"][0]["count"], 2);
        assert_eq!(json["messages"][2]["reply_to"], "01");
    }
}
