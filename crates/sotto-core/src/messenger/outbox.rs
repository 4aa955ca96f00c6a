//! The outbox: what waits for the server, made, remade when an epoch moved
//! on, and marked accepted.

#[allow(unused_imports)]
use super::*;

/// Something that waits for the server's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Idempotency key.
    pub client_id: Vec<u8>,
    /// The group.
    pub group_id: Vec<u8>,
    /// The epoch it was made in.
    pub epoch: u64,
    /// Commit or application message.
    pub kind: MessageKind,
    /// The MLS message.
    pub payload: Vec<u8>,
    /// For application messages: the content id in history.
    pub message_id: Option<Vec<u8>>,
    /// For commits that add devices: the welcome.
    pub welcome: Option<Vec<u8>>,
    /// For commits: devices added.
    pub added: Vec<DeviceRef>,
    /// For commits: devices removed.
    pub removed: Vec<DeviceRef>,
    /// The group must be created on the server first.
    pub create_group: bool,
    /// For commits: what the commit is for, so it can be made again on a
    /// newer epoch when another member's commit wins.
    pub intent: Option<Intent>,
}

/// What a commit is meant to do. Kept with the commit so that a commit that
/// lost an epoch race can be rebuilt on the winner's epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Intent {
    /// Add these people (with the KeyPackages claimed for them).
    Add(Vec<Invitee>),
    /// Remove every device of these handles.
    Remove(Vec<String>),
    /// Remove these devices (a device removed from its account).
    RemoveDevices(Vec<DeviceRef>),
    /// Refresh this device's keys (post-compromise security).
    Update,
    /// Rejoin by external commit after losing step with the group.
    Rejoin,
    /// Change the group's roles (held in its MLS state).
    Roles(RoleChange),
}

/// Someone to add, with the KeyPackages the server handed out for them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invitee {
    /// Handle.
    pub handle: String,
    /// The account key the server reported.
    #[serde(with = "serde_bytes")]
    pub account_key: Vec<u8>,
    /// One package per device.
    pub packages: Vec<ClaimedKeyPackage>,
}

/// A commit waiting for the server (the same shape as any outbox item).
pub type PendingCommit = OutboxItem;

impl OutboxItem {
    /// The entry the server hands members once it stored this item at
    /// `seq`, sent by `sender` (for code that routes by hand: tests,
    /// benchmarks).
    pub fn delivered_as(&self, sender: DeviceRef, seq: u64) -> Delivery {
        Delivery {
            group_id: self.group_id.clone(),
            seq,
            epoch: self.epoch,
            sender,
            kind: self.kind,
            payload: self.payload.clone(),
            stored_at: 0,
        }
    }

    /// The request that posts it.
    pub fn to_request(&self) -> Request {
        match self.kind {
            MessageKind::Application => Request::Send {
                group_id: self.group_id.clone(),
                epoch: self.epoch,
                client_id: self.client_id.clone(),
                payload: self.payload.clone(),
            },
            MessageKind::Commit => Request::Commit {
                group_id: self.group_id.clone(),
                epoch: self.epoch,
                client_id: self.client_id.clone(),
                commit: self.payload.clone(),
                welcome: self.welcome.clone().map(ByteBuf::from),
                added: self.added.clone(),
                removed: self.removed.clone(),
            },
        }
    }
}

impl Messenger {
    /// Queues a commit for `intent` in a conversation.
    pub(crate) fn queue_commit(&self, group_id: &[u8], intent: Intent) -> CoreResult<Option<PendingCommit>> {
        self.tx(|me| {
            let Some(item) = me.build_commit(group_id, intent)? else { return Ok(None) };
            me.put_outbox(&item)?;
            Ok(Some(item))
        })
    }

    /// A commit lost its epoch to another member's: after catching up,
    /// rebuild it from its intent on the current epoch. `None` when nothing
    /// is left to do.
    pub fn redo_commit(&self, client_id: &[u8]) -> CoreResult<Option<PendingCommit>> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(None) };
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            let mut group = me.load_group(&item.group_id)?;
            if group.pending_commit().is_some() {
                group.clear_pending_commit(me.provider().storage()).map_err(CoreError::mls)?;
            }
            let Some(intent) = item.intent else { return Ok(None) };
            let Some(new) = me.build_commit(&item.group_id, intent)? else { return Ok(None) };
            me.put_outbox(&new)?;
            Ok(Some(new))
        })
    }

    /// Drops an outbox item the server refused for good (a change the
    /// group's roles do not allow): a commit's pending state goes too.
    pub fn drop_refused(&self, client_id: &[u8]) -> CoreResult<()> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(()) };
            if item.kind == MessageKind::Commit {
                let mut group = me.load_group(&item.group_id)?;
                if group.pending_commit().is_some() {
                    group.clear_pending_commit(me.provider().storage()).map_err(CoreError::mls)?;
                }
            }
            if let Some(mid) = &item.message_id {
                me.conn.exec("UPDATE messages SET state='not_sent' WHERE id=? AND state='pending'", [mid])?;
            }
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            Ok(())
        })
    }

    /// How many things this person wrote still wait for the server
    /// (receipts, which the device makes by itself, are not counted).
    pub fn waiting_messages(&self) -> CoreResult<usize> {
        Ok(self.conn.row(
            "SELECT count(*) FROM outbox o JOIN messages m ON m.id = o.message_id
             WHERE NOT (m.annotation = 1 AND m.target IS NULL)",
            [],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }

    pub(crate) fn put_outbox(&self, item: &OutboxItem) -> CoreResult<()> {
        self.conn.exec(
            "INSERT OR REPLACE INTO outbox(client_id, group_id, epoch, kind, payload, message_id, welcome, added, create_group,
             removed, intent, created_at)
             VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            params![
                item.client_id,
                item.group_id,
                item.epoch,
                kind_name(item.kind),
                item.payload,
                item.message_id,
                item.welcome,
                cbor(&item.added),
                item.create_group,
                cbor(&item.removed),
                item.intent.as_ref().map(cbor),
                self.now()
            ],
        )?;
        Ok(())
    }

    /// Everything waiting for the server, oldest first.
    pub fn outbox(&self) -> CoreResult<Vec<OutboxItem>> {
        let mut stmt = self.conn.prepare(
            "SELECT client_id, group_id, epoch, kind, payload, message_id, welcome, added, create_group, removed, intent
             FROM outbox ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let added: Vec<u8> = r.get(7)?;
            Ok(OutboxItem {
                client_id: r.get(0)?,
                group_id: r.get(1)?,
                epoch: r.get(2)?,
                kind: if r.get::<_, String>(3)? == "commit" { MessageKind::Commit } else { MessageKind::Application },
                payload: r.get(4)?,
                message_id: r.get(5)?,
                welcome: r.get(6)?,
                added: ciborium::from_reader(added.as_slice()).unwrap_or_default(),
                create_group: r.get(8)?,
                removed: r
                    .get::<_, Option<Vec<u8>>>(9)?
                    .and_then(|b| ciborium::from_reader(b.as_slice()).ok())
                    .unwrap_or_default(),
                intent: r.get::<_, Option<Vec<u8>>>(10)?.and_then(|b| ciborium::from_reader(b.as_slice()).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The server accepted an outbox item at `seq`: merge a commit, mark a
    /// message sent.
    pub fn accepted(&self, client_id: &[u8], seq: u64) -> CoreResult<()> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(()) };
            if item.kind == MessageKind::Commit {
                let mut group = me.load_group(&item.group_id)?;
                if group.pending_commit().is_some() {
                    group.merge_pending_commit(&me.provider()).map_err(CoreError::mls)?;
                    let conversation = me.conversation_of(&item.group_id)?;
                    me.mirror_roles(&group, &conversation, &me.identity.handle.clone(), Some(seq))?;
                }
            }
            if let (Some(Intent::Remove(handles)), GroupKind::Group) = (&item.intent, self.group_kind(&item.group_id)) {
                // The device that removed someone says so too.
                let conversation = me.conversation_of(&item.group_id)?;
                for h in handles {
                    if me.announced_leaving(&item.group_id, h)? {
                        continue;
                    }
                    me.insert_system(&conversation, &item.group_id, seq, &format!("you removed @{h}"))?;
                }
            }
            if item.intent == Some(Intent::Rejoin) {
                // Everything before our external commit is unreadable to us.
                me.conn.exec(
                    "UPDATE groups SET broken=0, cursor=max(cursor, ?) WHERE group_id=?",
                    params![seq, item.group_id],
                )?;
                let conversation = me.conversation_of(&item.group_id)?;
                me.insert_system(&conversation, &item.group_id, seq, "rejoined the conversation")?;
            }
            if let Some(mid) = &item.message_id {
                // A control message (a group's name) stays out of history.
                me.conn.exec(
                    "UPDATE messages SET state=CASE state WHEN 'control' THEN 'control' ELSE 'sent' END, seq=? WHERE id=?",
                    params![seq, mid],
                )?;
                let row: Option<(Vec<u8>, bool, String)> = me
                    .conn
                    .row("SELECT body, annotation, conversation FROM messages WHERE id=?", [mid], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                if let Some((body, annotation, conversation)) = row {
                    if annotation {
                        // Applied when it was made; nothing more to show.
                        me.conn.exec("DELETE FROM messages WHERE id=?", [mid])?;
                    } else {
                        // Group state takes effect in the server's order,
                        // here as for everyone else.
                        let handle = me.identity.handle.clone();
                        match ciborium::from_reader::<Body, _>(body.as_slice()) {
                            Ok(Body::Timer { secs }) => {
                                me.apply_timer(&item.group_id, &conversation, &handle, seq, secs)?;
                            }
                            Ok(Body::Roles { admins, members_can_add }) => {
                                me.apply_roles(&item.group_id, &conversation, &handle, seq, &admins, members_can_add)?;
                            }
                            Ok(Body::Description { .. } | Body::Pin { .. } | Body::GroupPicture { .. }) => {
                                let content = me.stored_content(mid)?;
                                me.apply_group_state(&item.group_id, &conversation, &handle, seq, &content)?;
                            }
                            _ => {}
                        }
                    }
                }
            }
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            Ok(())
        })
    }

    /// Encrypts a text for a conversation and queues it. The message shows
    /// in history as pending until [`Messenger::accepted`].
    pub fn prepare_text(&self, conversation: &str, text: &str) -> CoreResult<OutboxItem> {
        let content = Content::text(self.new_id(), text, self.now())?;
        self.prepare_content(conversation, &content)
    }

    /// Sends again a text that was not sent (the server refused it, or the
    /// device was out of the group then): a new message with the same
    /// text (and the same reply) replaces it, in the outbox at once. Only
    /// for texts; a file is sent again from its file.
    pub fn retry(&self, id: &[u8]) -> CoreResult<OutboxItem> {
        let m = self.message(id)?.ok_or_else(|| CoreError::NotFound("no such message on this device".into()))?;
        if !m.outgoing || m.state != MessageState::NotSent {
            return Err(CoreError::Invalid("only a message of yours that was not sent can be sent again".into()));
        }
        let Body::Text { text } = &m.body else {
            return Err(CoreError::Invalid("only a text can be sent again this way; send the file again".into()));
        };
        let mut content = Content::text(self.new_id(), text, self.now())?;
        content.in_reply_to = m.detail.reply_to.clone().map(ByteBuf::from);
        self.tx(|me| {
            let item = me.prepare_content(&m.conversation, &content)?;
            me.conn.exec("DELETE FROM messages WHERE id=?", [id])?;
            Ok(item)
        })
    }

    pub(crate) fn prepare_content(&self, conversation: &str, content: &Content) -> CoreResult<OutboxItem> {
        if let Some(handle) = conversation.strip_prefix('@') {
            if !content.body.is_control() && self.is_blocked(handle)? {
                return Err(CoreError::Blocked(handle.to_owned()));
            }
            let changed: Option<bool> =
                self.conn.row("SELECT key_changed FROM contacts WHERE handle=?", [handle], |r| r.get(0)).optional()?;
            if changed == Some(true) {
                return Err(CoreError::KeyChanged(handle.to_owned()));
            }
        }
        if let Some(from) = self.request_from(conversation)?.filter(|_| !content.body.is_control()) {
            return Err(CoreError::Invalid(format!(
                "{conversation} is a message request from @{from}: accept it first (`sotto accept {conversation}`), or refuse it with `sotto block @{from}`"
            )));
        }
        let group_id = self
            .conversation_group(conversation)?
            .ok_or_else(|| CoreError::NotFound(format!("no conversation {conversation}")))?;
        self.queue_in_group(&group_id, conversation, content)
    }

    /// Writes content into `group_id`'s history (pending) and the outbox
    /// in one transaction, stamped with the conversation's disappearing
    /// timer. No checks: the caller made them.
    pub(crate) fn queue_in_group(
        &self,
        group_id: &[u8],
        conversation: &str,
        content: &Content,
    ) -> CoreResult<OutboxItem> {
        let mut content = content.clone();
        if content.expires.is_none() && !content.body.is_control() && !content.is_annotation() {
            content.expires = self.expiry_for(group_id, content.sent_at)?;
        }
        self.tx(|me| {
            let now = self.now();
            let reply_to = match content.body {
                Body::Reaction { .. } => None,
                _ => content.in_reply_to.as_ref().map(|b| b.to_vec()),
            };
            me.conn.exec(
                "INSERT INTO messages(id, conversation, group_id, sender, outgoing, sent_at, received_at, body, state, fetched,
                    reply_to, annotation, target, expires_at)
                 VALUES(?,?,?,?,1,?,?,?,?,1,?,?,?,?)",
                params![
                    content.id,
                    conversation,
                    group_id,
                    me.identity.handle,
                    content.sent_at,
                    now,
                    cbor(&content.body),
                    if content.body.is_control() { "control" } else { "pending" },
                    reply_to,
                    content.is_annotation(),
                    content.target(),
                    content.expires
                ],
            )?;
            let item = me.encrypt(group_id, &content, self.new_client_id())?;
            me.put_outbox(&item)?;
            Ok(item)
        })
    }

    /// The content of a message this device wrote, as it was sent (to
    /// encrypt it again in a newer epoch).
    fn stored_content(&self, id: &[u8]) -> CoreResult<Content> {
        type Row = (Vec<u8>, i64, Option<Vec<u8>>, Option<Vec<u8>>, bool, Option<i64>);
        let (body, sent_at, reply_to, target, annotation, expires): Row = self.conn.row(
            "SELECT body, sent_at, reply_to, target, annotation, expires_at FROM messages WHERE id=?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )?;
        let body: Body = ciborium::from_reader(body.as_slice()).map_err(|e| CoreError::decode("stored message", e))?;
        let mut content = Content { id: id.to_vec(), ..Content::new([0; 16], sent_at, body) };
        content.expires = expires;
        content.in_reply_to = reply_to.map(ByteBuf::from);
        if let Some(target) = target.filter(|_| annotation) {
            if matches!(content.body, Body::Reaction { .. }) {
                content.in_reply_to = Some(ByteBuf::from(target));
            } else {
                content.replaces = Some(ByteBuf::from(target));
            }
        }
        Ok(content)
    }

    pub(crate) fn encrypt(&self, group_id: &[u8], content: &Content, client_id: Vec<u8>) -> CoreResult<OutboxItem> {
        let mut group = self.load_group(group_id)?;
        if !group.is_active() {
            return Err(CoreError::NotAMember);
        }
        // A one-to-one message nobody else can ever read would sit "sent"
        // for good. (A named group of one is allowed: people may be added.)
        if !content.body.is_control()
            && self.group_kind(group_id) == GroupKind::Direct
            && !Self::member_handles(&group).iter().any(|(_, c)| c.handle != self.identity.handle)
        {
            return Err(CoreError::NobodyElse);
        }
        let provider = self.provider();
        let plain = crate::padding::pad_message(content.encode());
        let msg = group.create_message(&provider, &self.identity.signer(), &plain).map_err(CoreError::mls)?;
        Ok(OutboxItem {
            client_id,
            group_id: group_id.to_vec(),
            epoch: group.epoch().as_u64(),
            kind: MessageKind::Application,
            payload: msg.tls_serialize_detached().map_err(CoreError::mls)?,
            message_id: Some(content.id.clone()),
            welcome: None,
            added: vec![],
            removed: vec![],
            create_group: false,
            intent: None,
        })
    }

    /// Empties the outbox of a group this device is no longer in; its
    /// messages become [`MessageState::NotSent`]. Returns them as they are
    /// now.
    pub(crate) fn drop_group_outbox(&self, group_id: &[u8]) -> CoreResult<Vec<StoredMessage>> {
        let ids: Vec<Vec<u8>> = {
            let mut stmt = self
                .conn
                .prepare("SELECT message_id FROM outbox WHERE group_id=? AND message_id IS NOT NULL ORDER BY rowid")?;
            let rows = stmt.query_map([group_id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        self.conn.exec("DELETE FROM outbox WHERE group_id=?", [group_id])?;
        let mut out = Vec::new();
        for id in ids {
            self.conn.exec("UPDATE messages SET state='not_sent' WHERE id=? AND state='pending'", [&id])?;
            if let Some(m) = self.message(&id)? {
                if m.state == MessageState::NotSent {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Re-encrypts a queued message in the group's current epoch (after the
    /// server said the epoch was stale and the group caught up).
    pub fn reencrypt(&self, client_id: &[u8]) -> CoreResult<Option<OutboxItem>> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(None) };
            let Some(mid) = item.message_id.clone() else { return Ok(None) };
            let content = match me.stored_content(&mid) {
                Ok(content) => content,
                // Its message is gone (it disappeared, or was deleted
                // meanwhile): nothing is left to send.
                Err(CoreError::Db(rusqlite::Error::QueryReturnedNoRows)) => {
                    me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            // A fresh client id: the old one may be remembered by the server
            // with the stale epoch.
            let new = me.encrypt(&item.group_id, &content, self.new_client_id())?;
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            me.put_outbox(&new)?;
            Ok(Some(new))
        })
    }
}
