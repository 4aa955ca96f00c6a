//! The JSON form of events, for the web API's event stream (and any front
//! end that reads it). docs/frontend-events.md describes every field.

use serde_json::{json, Value};

use super::event::Event;

/// A message as the event stream and `/api/history` carry it: as
/// `history --json` prints it, plus `formatted` (the tree of its
/// formatting, see `formatting.rs`) when a text has any.
pub fn message_json(m: &sotto_core::StoredMessage) -> Value {
    let mut v = crate::output::message_json(m);
    if let (sotto_core::Body::Text { text }, false) = (&m.body, m.detail.deleted) {
        if let Some(f) = crate::formatting::formatted(text) {
            v["formatted"] = f;
        }
    }
    v
}

/// One event as the JSON object the event stream carries.
pub fn event_json(ev: &Event) -> Value {
    match ev {
        Event::Identity { me, server } => json!({"type": "identity", "me": me, "server": server}),
        Event::History { conversation, messages } => json!({
            "type": "history",
            "conversation": conversation,
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
        }),
        Event::Message(m) => json!({"type": "message", "message": message_json(m)}),
        Event::Renamed { from, to } => json!({"type": "renamed", "from": from, "to": to}),
        Event::Removed { conversation, id } => {
            json!({"type": "removed", "conversation": conversation, "id": hex::encode(id)})
        }
        Event::Profile { handle, name, avatar } => {
            // The picture as a data URL (the page's CSP allows `data:`
            // images, nothing else from outside).
            let avatar = avatar
                .as_ref()
                .map(|(kind, bytes)| format!("data:{kind};base64,{}", data_encoding::BASE64.encode(bytes)));
            json!({"type": "profile", "handle": handle, "display_name": name, "avatar": avatar})
        }
        Event::GroupPicture { conversation, picture } => {
            let avatar = picture
                .as_ref()
                .map(|(kind, bytes)| format!("data:{kind};base64,{}", data_encoding::BASE64.encode(bytes)));
            json!({"type": "group_picture", "conversation": conversation, "avatar": avatar})
        }
        Event::Muted { conversation, muted } => {
            json!({"type": "muted", "conversation": conversation, "muted": muted})
        }
        Event::Encryption { conversation, post_quantum } => {
            json!({"type": "encryption", "conversation": conversation, "post_quantum": post_quantum})
        }
        Event::Description { conversation, text } => {
            json!({"type": "description", "conversation": conversation, "text": text})
        }
        Event::Timer { conversation, secs } => json!({"type": "timer", "conversation": conversation, "secs": secs}),
        Event::Typing { conversation, handle, typing } => {
            json!({"type": "typing", "conversation": conversation, "from": handle, "typing": typing})
        }
        Event::Connection(link) => json!({"type": "connection", "link": link}),
        Event::Presence(online) => {
            let online: Vec<Value> = online.iter().map(|(h, on)| json!({"handle": h, "online": on})).collect();
            json!({"type": "presence", "online": online})
        }
        Event::Progress { request, transfer, done, total } => {
            json!({"type": "progress", "request": request, "transfer": transfer, "done": done, "total": total})
        }
        Event::Notice { conversation, text } => json!({"type": "notice", "conversation": conversation, "text": text}),
        Event::Preference { name, value } => json!({"type": "preference", "name": name, "value": value}),
        Event::ServerNotice { notice: n, fresh } => json!({
            "type": "server_notice", "id": n.id, "text": n.text, "sent_at": n.sent_at,
            "from": "operator", "encrypted": false, "fresh": fresh,
        }),
        Event::Outcome { request, outcome } => json!({"type": "outcome", "request": request, "outcome": outcome}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::{Link, Outcome};

    #[test]
    fn events_carry_typed_fields_not_debug_text() {
        let v = event_json(&Event::Connection(Link::Reconnecting { reason: "the server went away".into() }));
        assert_eq!(
            v,
            json!({"type": "connection", "link": {"state": "reconnecting", "reason": "the server went away"}})
        );
        let v = event_json(&Event::Outcome { request: 7, outcome: Outcome::Saved { path: "/d/x".into() } });
        assert_eq!(v, json!({"type": "outcome", "request": 7, "outcome": {"outcome": "saved", "path": "/d/x"}}));
        let v = event_json(&Event::Presence(vec![("bob".into(), true)]));
        assert_eq!(v["online"][0], json!({"handle": "bob", "online": true}));
    }
}
