//! Reading the local history.

#[allow(unused_imports)]
use super::*;

impl Messenger {
    pub(crate) fn messages_where(&self, clause: &str, arg: &dyn rusqlite::ToSql) -> CoreResult<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT id, conversation, sender, outgoing, sent_at, received_at, body, state, seq,
                    reply_to, annotation, target, edited_at, deleted, expires_at, reactions, group_id, pinned
             FROM messages WHERE state != 'control' AND conversation != '{OWN_CONVERSATION}' AND {clause} ORDER BY n"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            let body: Vec<u8> = r.get(6)?;
            let reactions: Option<Vec<u8>> = r.get(15)?;
            Ok((
                StoredMessage {
                    id: r.get(0)?,
                    conversation: r.get(1)?,
                    sender: r.get(2)?,
                    outgoing: r.get(3)?,
                    sent_at: r.get(4)?,
                    received_at: r.get(5)?,
                    body: ciborium::from_reader(body.as_slice()).unwrap_or(Body::Unknown),
                    state: r.get(7)?,
                    seq: r.get(8)?,
                    detail: MessageDetail {
                        reply_to: r.get(9)?,
                        annotation: r.get(10)?,
                        target: r.get(11)?,
                        edited_at: r.get(12)?,
                        deleted: r.get(13)?,
                        expires_at: r.get(14)?,
                        reactions: reactions.and_then(|b| ciborium::from_reader(b.as_slice()).ok()).unwrap_or_default(),
                        receipt: None,
                        pinned: r.get(17)?,
                        mentions: Vec::new(),
                    },
                },
                r.get::<_, Option<Vec<u8>>>(16)?,
            ))
        })?;
        let rows: Vec<(StoredMessage, Option<Vec<u8>>)> = rows.collect::<Result<_, _>>()?;
        // How far the others got with this person's own messages: one
        // look at each group's members and marks per listing.
        let mut views = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for (mut m, group_id) in rows {
            if let (Body::Text { text }, false) = (&m.body, m.state == MessageState::System) {
                m.detail.mentions = mentions_in(text);
            }
            if let (true, false, Some(seq), Some(g)) = (m.outgoing, m.detail.annotation, m.seq, group_id) {
                if m.state == MessageState::Sent {
                    self.receipt_view(&g, &mut views)?;
                    m.detail.receipt = views.get(&g).and_then(|v| v.as_ref()).map(|v| v.of(seq));
                }
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Incoming messages not yet handed out by `receive`, marking them so.
    pub fn take_unfetched(&self) -> CoreResult<Vec<StoredMessage>> {
        self.expire_due()?;
        self.tx(|me| {
            // What this device wrote is stored as fetched already; what the
            // person sent from another device is news here.
            // A message request's messages wait until it is accepted.
            const SHOWN: &str =
                "conversation NOT IN (SELECT conversation FROM groups WHERE request_from IS NOT NULL AND active=1)";
            let out = me.messages_where(&format!("fetched=? AND {SHOWN}"), &0)?;
            me.conn.exec(&format!("UPDATE messages SET fetched=1 WHERE fetched=0 AND {SHOWN}"), [])?;
            Ok(out)
        })
    }

    /// One message by its id, if this device has it.
    pub fn message(&self, id: &[u8]) -> CoreResult<Option<StoredMessage>> {
        Ok(self.messages_where("id=?", &id)?.into_iter().next())
    }

    /// A conversation's history, in order.
    pub fn history(&self, conversation: &str) -> CoreResult<Vec<StoredMessage>> {
        self.expire_due()?;
        self.messages_where("annotation=0 AND conversation=?", &conversation)
    }

    /// Every conversation name, with its newest activity first.
    pub fn conversations(&self) -> CoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT g.conversation, max(coalesce(m.n, 0)) AS last FROM groups g LEFT JOIN messages m ON m.conversation = g.conversation
             WHERE g.request_from IS NULL AND g.conversation != '{OWN_CONVERSATION}' GROUP BY g.conversation ORDER BY last DESC, g.conversation",
        ))?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
