//! Messages that change other messages: replies (which are messages of
//! their own), reactions, edits, deletes for everyone and for me. The
//! shapes are MIMI's: an edit or delete `replaces`, a reaction answers
//! (`in_reply_to`) with a reaction body.

#[allow(unused_imports)]
use super::*;

/// A reaction, edit or delete this person made: where it goes, the
/// outbox item that carries it, and the message as it is now here.
#[derive(Debug, Clone)]
pub struct Annotated {
    /// The conversation.
    pub conversation: String,
    /// What goes to the server.
    pub item: OutboxItem,
    /// The changed message, as this device shows it now.
    pub changed: Option<StoredMessage>,
}

/// Who sent an annotation, as MLS authenticated it.
pub(crate) struct Author<'a> {
    pub handle: &'a str,
    pub device_id: u32,
}

impl Messenger {
    /// A message this device has, by the hex id `receive --json` and
    /// `history --json` print.
    pub fn message_by_hex(&self, id_hex: &str) -> CoreResult<StoredMessage> {
        let id = hex::decode(id_hex.trim()).ok().filter(|id| !id.is_empty() && id.len() <= 32).ok_or_else(|| {
            CoreError::Invalid(format!("{id_hex:?} is not a message id (see `sotto history --json`)"))
        })?;
        match self.message(&id)? {
            Some(m) if !m.detail.annotation => Ok(m),
            _ => Err(CoreError::NotFound(format!(
                "no message with id {id_hex} on this device; see `sotto history @HANDLE --json`"
            ))),
        }
    }

    /// A text that answers the message `reply_to` (hex id) in its
    /// conversation; queued like any text.
    pub fn prepare_reply(&self, conversation: &str, text: &str, reply_to: &str) -> CoreResult<OutboxItem> {
        let target = self.message_by_hex(reply_to)?;
        if target.conversation != conversation {
            return Err(CoreError::Invalid(format!(
                "that message is in {}, not {conversation}: reply there",
                target.conversation
            )));
        }
        let mut content = Content::text(self.new_id(), text, self.now())?;
        content.in_reply_to = Some(ByteBuf::from(target.id));
        self.prepare_content(conversation, &content)
    }

    /// Reacts to a message with `emoji` (or takes the reaction back).
    /// Returns the conversation it went to.
    pub fn prepare_reaction(&self, id_hex: &str, emoji: &str, remove: bool) -> CoreResult<Annotated> {
        let target = self.shown_target(id_hex)?;
        let emoji = emoji.trim();
        if emoji.is_empty() || emoji.len() > crate::content::MAX_REACTION_BYTES {
            return Err(CoreError::Invalid(format!(
                "a reaction is one emoji (or a short text of at most {} bytes)",
                crate::content::MAX_REACTION_BYTES
            )));
        }
        let mine = target.detail.reactions.iter().any(|(e, who)| e == emoji && who.contains(&self.identity.handle));
        if mine != remove {
            return Err(CoreError::Invalid(if remove {
                format!("you have not reacted with {emoji} to that message")
            } else {
                format!("you reacted with {emoji} to that message already")
            }));
        }
        let mut content = Content::new(self.new_id(), self.now(), Body::Reaction { emoji: emoji.to_owned(), remove });
        content.in_reply_to = Some(ByteBuf::from(target.id.clone()));
        self.send_annotation(&target.conversation, content)
    }

    /// Replaces the text of one of this account's messages for everyone.
    pub fn prepare_edit(&self, id_hex: &str, text: &str) -> CoreResult<Annotated> {
        let target = self.own_target(id_hex, "edit")?;
        if !matches!(target.body, Body::Text { .. }) {
            return Err(CoreError::Invalid("only a text message can be edited".into()));
        }
        let mut content = Content::text(self.new_id(), text, self.now())?;
        content.replaces = Some(ByteBuf::from(target.id.clone()));
        self.send_annotation(&target.conversation, content)
    }

    /// Deletes one of this account's messages for everyone: its text (or
    /// file) leaves every member's history; a "message deleted" line stays.
    pub fn prepare_delete(&self, id_hex: &str) -> CoreResult<Annotated> {
        let target = self.own_target(id_hex, "delete for everyone")?;
        let mut content = Content::new(self.new_id(), self.now(), Body::Delete);
        content.replaces = Some(ByteBuf::from(target.id.clone()));
        self.send_annotation(&target.conversation, content)
    }

    /// Removes a message from this device only (anyone's message). Nothing
    /// is sent; the others keep theirs.
    pub fn delete_for_me(&self, id_hex: &str) -> CoreResult<Event> {
        let target = self.message_by_hex(id_hex)?;
        self.tx(|me| me.remove_message(&target.id, false))?;
        Ok(Event::Removed { conversation: target.conversation, id: target.id })
    }

    /// A message that can take a reaction: shown, not deleted, not a marker.
    fn shown_target(&self, id_hex: &str) -> CoreResult<StoredMessage> {
        let target = self.message_by_hex(id_hex)?;
        if target.state == MessageState::System || target.detail.deleted {
            return Err(CoreError::Invalid("that message was deleted or is a notice; it takes no reactions".into()));
        }
        if target.seq.is_none() && target.outgoing {
            return Err(CoreError::Invalid(
                "that message has not reached the server yet; wait until it is sent (✓)".into(),
            ));
        }
        Ok(target)
    }

    /// One of this account's own messages, for an edit or a delete.
    fn own_target(&self, id_hex: &str, what: &str) -> CoreResult<StoredMessage> {
        let target = self.shown_target(id_hex)?;
        if !target.outgoing || target.sender != self.identity.handle {
            return Err(CoreError::Invalid(format!(
                "only its sender can {what} a message; `sotto delete ID --for-me` removes it here"
            )));
        }
        Ok(target)
    }

    /// Queues an annotation and applies it here at once (the person sees
    /// the change as they make it; the others when it arrives).
    fn send_annotation(&self, conversation: &str, content: Content) -> CoreResult<Annotated> {
        self.tx(|me| {
            let item = me.prepare_content(conversation, &content)?;
            let handle = me.identity.handle.clone();
            let author = Author { handle: &handle, device_id: me.identity.device_id };
            let changed = me.apply_annotation(conversation, &author, &content)?;
            Ok(Annotated { conversation: conversation.to_owned(), item, changed })
        })
    }

    /// Applies a reaction, an edit or a delete from `author` to its target
    /// in `conversation`. Returns the target as it is now; `None` when it
    /// is unknown here (expired, deleted for me, never received) or the
    /// author may not change it: an annotation never fails the delivery.
    pub(crate) fn apply_annotation(
        &self,
        conversation: &str,
        author: &Author<'_>,
        content: &Content,
    ) -> CoreResult<Option<StoredMessage>> {
        let Some(target_id) = content.target() else { return Ok(None) };
        let Some(target) = self.message(target_id)? else { return Ok(None) };
        if target.conversation != conversation || target.detail.annotation || target.state == MessageState::System {
            return Ok(None);
        }
        match &content.body {
            Body::Reaction { emoji, remove } => {
                if target.detail.deleted {
                    return Ok(None);
                }
                let mut reactions = target.detail.reactions.clone();
                let who = author.handle.to_owned();
                match reactions.iter_mut().find(|(e, _)| e == emoji) {
                    Some((_, list)) => {
                        list.retain(|h| *h != who);
                        if !remove {
                            list.push(who);
                        }
                    }
                    None if !remove => reactions.push((emoji.clone(), vec![who])),
                    None => {}
                }
                reactions.retain(|(_, list)| !list.is_empty());
                self.conn.exec("UPDATE messages SET reactions=? WHERE id=?", params![cbor(&reactions), target.id])?;
            }
            Body::Text { .. } | Body::Delete => {
                // Only the account that sent a message may change it.
                if target.sender != author.handle || target.detail.deleted {
                    return Ok(None);
                }
                if content.body == Body::Delete {
                    self.remove_message(&target.id, true)?;
                } else {
                    // A later edit that arrives first wins over an older one.
                    if target.detail.edited_at.is_some_and(|at| at > content.sent_at) {
                        return Ok(None);
                    }
                    let old: Vec<u8> =
                        self.conn.row("SELECT body FROM messages WHERE id=?", [&target.id], |r| r.get(0))?;
                    self.conn.exec(
                        "INSERT INTO message_versions(message_id, body, replaced_at) VALUES(?,?,?)",
                        params![target.id, old, self.now()],
                    )?;
                    self.conn.exec(
                        "UPDATE messages SET body=?, edited_at=? WHERE id=?",
                        params![cbor(&content.body), content.sent_at, target.id],
                    )?;
                }
            }
            _ => return Ok(None),
        }
        self.message(&target.id)
    }

    /// Takes a message out of history: for everyone (its sender deleted
    /// it: a "message deleted" line stays, with nothing of what it said)
    /// or entirely (deleted for me, or expired). Earlier versions,
    /// reactions and the annotations that point at it go too; a file
    /// this device saved for it is forgotten (and deleted from the
    /// profile's own download folder when the message expired or was
    /// deleted for everyone).
    pub(crate) fn remove_message(&self, id: &[u8], leave_line: bool) -> CoreResult<()> {
        self.conn.exec("DELETE FROM message_versions WHERE message_id=?", [id])?;
        // (What this device still has to send stays: the outbox needs it.)
        self.conn.exec("DELETE FROM messages WHERE annotation=1 AND target=? AND state != 'pending'", [id])?;
        let copy: Option<String> =
            self.conn.row("SELECT path FROM file_copies WHERE message_id=?", [id], |r| r.get(0)).optional()?;
        self.conn.exec("DELETE FROM file_copies WHERE message_id=?", [id])?;
        if let (Some(path), Some(downloads)) = (copy, self.downloads_dir()) {
            // Only a copy inside the profile's download folder: a file
            // the person saved elsewhere with `-o` is theirs.
            if std::path::Path::new(&path).starts_with(&downloads) {
                let _ = std::fs::remove_file(&path);
            }
        }
        if leave_line {
            self.conn.exec(
                "UPDATE messages SET body=?, deleted=1, reactions=NULL, edited_at=NULL WHERE id=?",
                params![cbor(&Body::Text { text: String::new() }), id],
            )?;
        } else {
            self.conn.exec("DELETE FROM messages WHERE id=?", [id])?;
        }
        Ok(())
    }

    /// Earlier versions of an edited message, oldest first (this device
    /// only: edits do not carry them).
    pub fn earlier_versions(&self, id: &[u8]) -> CoreResult<Vec<Body>> {
        let mut stmt =
            self.conn.prepare("SELECT body FROM message_versions WHERE message_id=? ORDER BY replaced_at, rowid")?;
        let rows = stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for body in rows {
            out.push(ciborium::from_reader(body?.as_slice()).unwrap_or(Body::Unknown));
        }
        Ok(out)
    }
}
