//! Group state other than membership and the timer: the description and
//! pinned messages. Both travel as ordered control messages, so every
//! member applies them in the server's order.

#[allow(unused_imports)]
use super::*;

impl Messenger {
    /// Sets the group's description for everyone (empty clears it).
    pub fn prepare_description(&self, conversation: &str, text: &str) -> CoreResult<OutboxItem> {
        if !conversation.starts_with('#') {
            return Err(CoreError::Invalid("only a group has a description".into()));
        }
        let text = text.trim();
        if text.len() > crate::content::MAX_DESCRIPTION_BYTES {
            return Err(CoreError::Invalid(format!(
                "a description is at most {} bytes",
                crate::content::MAX_DESCRIPTION_BYTES
            )));
        }
        let content = Content::new(self.new_id(), self.now(), Body::Description { text: text.to_owned() });
        self.prepare_content(conversation, &content)
    }

    /// A group's description ("" when none).
    pub fn description(&self, conversation: &str) -> CoreResult<String> {
        Ok(self
            .conn
            .row(
                "SELECT description FROM groups WHERE conversation=? ORDER BY active DESC, successor IS NOT NULL, group_id LIMIT 1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Sets the group's picture for everyone (an empty one removes it).
    pub fn prepare_group_picture(&self, conversation: &str, picture: Vec<u8>) -> CoreResult<OutboxItem> {
        if !conversation.starts_with('#') {
            return Err(CoreError::Invalid("only a group has a picture of its own".into()));
        }
        if !picture.is_empty() {
            if picture.len() > crate::content::MAX_AVATAR_BYTES {
                return Err(CoreError::Invalid(format!(
                    "a group picture is at most {} KiB; make a smaller copy of it",
                    crate::content::MAX_AVATAR_BYTES / 1024
                )));
            }
            if crate::content::image_type(&picture).is_none() {
                return Err(CoreError::Invalid("a group picture must be a PNG, JPEG, GIF or WebP image".into()));
            }
        }
        let avatar = (!picture.is_empty()).then(|| ByteBuf::from(picture));
        let content = Content::new(self.new_id(), self.now(), Body::GroupPicture { avatar });
        self.prepare_content(conversation, &content)
    }

    /// A group's picture (media type, bytes), if it has one.
    pub fn group_picture(&self, conversation: &str) -> CoreResult<Option<(String, Vec<u8>)>> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .row(
                "SELECT picture FROM groups WHERE conversation=? ORDER BY active DESC, successor IS NOT NULL, group_id LIMIT 1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(bytes.and_then(|b| crate::content::image_type(&b).map(|t| (t.to_owned(), b))))
    }

    /// Pins (or unpins) a message for everyone in its conversation.
    pub fn prepare_pin(&self, id_hex: &str, pinned: bool) -> CoreResult<(String, OutboxItem)> {
        let target = self.message_by_hex(id_hex)?;
        if target.state == MessageState::System || target.detail.deleted {
            return Err(CoreError::Invalid("a notice or a deleted message cannot be pinned".into()));
        }
        if target.detail.pinned == pinned {
            return Err(CoreError::Invalid(
                if pinned { "that message is pinned already" } else { "that message is not pinned" }.into(),
            ));
        }
        let mut content = Content::new(self.new_id(), self.now(), Body::Pin { pinned });
        content.in_reply_to = Some(ByteBuf::from(target.id.clone()));
        let item = self.prepare_content(&target.conversation, &content)?;
        Ok((target.conversation, item))
    }

    /// The pinned messages of a conversation, oldest first.
    pub fn pinned(&self, conversation: &str) -> CoreResult<Vec<StoredMessage>> {
        self.messages_where("annotation=0 AND pinned=1 AND conversation=?", &conversation)
    }

    /// A description or pin at `seq` from `sender`: applied, with a line in
    /// history saying who did what.
    pub(crate) fn apply_group_state(
        &self,
        group_id: &[u8],
        conversation: &str,
        sender: &str,
        seq: u64,
        content: &Content,
    ) -> CoreResult<Vec<Event>> {
        let who = if sender == self.identity.handle { "you".to_owned() } else { format!("@{sender}") };
        let mut events = Vec::new();
        let text = match &content.body {
            Body::Description { text } => {
                if self.group_kind(group_id) != GroupKind::Group || text.len() > crate::content::MAX_DESCRIPTION_BYTES {
                    return Ok(vec![]);
                }
                let changed = self.conn.exec(
                    "UPDATE groups SET description=?, description_seq=? WHERE group_id=? AND description_seq < ?",
                    params![text, seq, group_id, seq],
                )?;
                if changed == 0 {
                    return Ok(vec![]);
                }
                if text.is_empty() {
                    format!("{who} removed the group's description")
                } else {
                    format!("{who} set the group's description: {text}")
                }
            }
            Body::GroupPicture { avatar } => {
                if self.group_kind(group_id) != GroupKind::Group {
                    return Ok(vec![]);
                }
                let changed = self.conn.exec(
                    "UPDATE groups SET picture=?, picture_seq=? WHERE group_id=? AND picture_seq < ?",
                    params![avatar.as_ref().map(|a| a.to_vec()), seq, group_id, seq],
                )?;
                if changed == 0 {
                    return Ok(vec![]);
                }
                if avatar.is_some() {
                    format!("{who} changed the group's picture")
                } else {
                    format!("{who} removed the group's picture")
                }
            }
            Body::Pin { pinned } => {
                let Some(target) = content.in_reply_to.as_ref().and_then(|t| self.message(t).ok().flatten()) else {
                    return Ok(vec![]);
                };
                if target.conversation != conversation || target.detail.annotation {
                    return Ok(vec![]);
                }
                self.conn.exec("UPDATE messages SET pinned=? WHERE id=?", params![pinned, target.id])?;
                if let Some(now) = self.message(&target.id)? {
                    events.push(Event::Message(Box::new(now)));
                }
                let preview: String = match &target.body {
                    Body::Text { text } => text.chars().take(40).collect(),
                    _ => "a file".into(),
                };
                format!("{who} {} a message: {preview}", if *pinned { "pinned" } else { "unpinned" })
            }
            _ => return Ok(vec![]),
        };
        let m = self.insert_system(conversation, group_id, seq, &text)?;
        events.push(Event::Message(Box::new(m)));
        Ok(events)
    }

    /// Mutes a conversation on this device (no bell, no notification, not
    /// counted in unread totals), or unmutes it. Kept in the encrypted
    /// profile: which conversations someone mutes says whom they talk to.
    pub fn set_muted(&self, conversation: &str, muted: bool) -> CoreResult<()> {
        self.tx(|me| {
            let n = me.conn.exec("UPDATE groups SET muted=? WHERE conversation=?", params![muted, conversation])?;
            if n == 0 {
                return Err(CoreError::NotFound(format!("no conversation {conversation}")));
            }
            // This person's other devices mute it too (they know the
            // conversation by its group, not by this device's name for it).
            if let Some(group_id) = me.conversation_group(conversation)? {
                me.tell_own_devices(Body::Mute { group_id: ByteBuf::from(group_id), muted })?;
            }
            Ok(())
        })
    }

    /// Whether a conversation is muted on this device.
    pub fn is_muted(&self, conversation: &str) -> CoreResult<bool> {
        Ok(self.conn.row(
            "SELECT EXISTS(SELECT 1 FROM groups WHERE conversation=? AND muted=1)",
            [conversation],
            |r| r.get(0),
        )?)
    }
}
