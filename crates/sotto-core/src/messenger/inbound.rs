//! Processing what the server delivered: decrypting, applying commits,
//! storing history, markers for what could not be read.

#[allow(unused_imports)]
use super::*;

/// Why a delivery could not be read, in words a person can use.
pub(crate) fn unreadable_reason(e: &CoreError) -> &'static str {
    match e {
        CoreError::Mls(_) => "a message could not be decrypted (this device fell out of step with the conversation)",
        CoreError::Decode { .. } => "a message arrived damaged",
        CoreError::BadCredential(_) => "a message came from a device whose keys do not check out",
        CoreError::RoleBreach(_) => "a change to the group came from someone without the right to make it",
        CoreError::Db(_) | CoreError::Io(_) => "this device could not store a message",
        _ => "a message could not be processed",
    }
}

impl Messenger {
    /// Processes a run of deliveries in one transaction (one disk sync for
    /// all): each is still applied or skipped on its own. The caller then
    /// acknowledges the highest sequence number per group.
    pub fn handle_deliveries(&self, batch: &[Delivery]) -> CoreResult<Vec<Event>> {
        self.tx(|me| {
            let mut events = Vec::new();
            // Post-quantum groups' entries first (each group's own order
            // kept; between groups there is none): a moved group's messages
            // are then judged by its successor's newest membership in this
            // batch, so someone removed there cannot slip a message in
            // through the old group (`group_successor.rs`).
            let mut order: Vec<&Delivery> = batch.iter().collect();
            order.sort_by_key(|d| d.group_id.first() != Some(&0));
            for d in order {
                events.extend(me.handle_one(d)?);
            }
            me.queue_receipts(batch.iter().map(|d| d.group_id.as_slice()))?;
            // What the batch stored goes into the search index at once
            // (live deliveries wait for the next batch or search).
            super::search::index_queued(&me.conn)?;
            Ok(events)
        })
    }

    /// Processes one entry of a group's log. Returns what to show; the
    /// caller acknowledges `delivery.seq` afterwards. Entries at or below
    /// the cursor are duplicates and change nothing.
    /// A live delivery's receipt is not sent at once: see
    /// [`Messenger::queue_due_receipts`], which sends one per conversation
    /// every few seconds however many messages arrive.
    pub fn handle_delivery(&self, d: &Delivery) -> CoreResult<Vec<Event>> {
        self.tx(|me| me.handle_one(d))
    }

    fn handle_one(&self, d: &Delivery) -> CoreResult<Vec<Event>> {
        let events = self.handle_delivery_unscreened(d)?;
        self.screen_request(&d.group_id, events)
    }

    fn handle_delivery_unscreened(&self, d: &Delivery) -> CoreResult<Vec<Event>> {
        let row: Option<(String, u64, bool)> = self
            .conn
            .row("SELECT conversation, cursor, broken FROM groups WHERE group_id=?", [&d.group_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((conversation, cursor, broken)) = row else {
            return Ok(vec![Event::Warning {
                conversation: None,
                text: "a message arrived for a conversation this device never joined".into(),
            }]);
        };
        if d.seq <= cursor {
            return Ok(vec![]);
        }
        if broken {
            // Out of step already (the marker is shown); what arrives
            // until the rejoin cannot be read.
            self.conn.exec(
                "UPDATE groups SET cursor=? WHERE group_id=? AND cursor < ?",
                params![d.seq, d.group_id, d.seq],
            )?;
            return Ok(vec![]);
        }
        self.tx(|me| {
            me.conn.execute_batch("SAVEPOINT process")?;
            let outcome = me.process(d, &conversation);
            let events = match outcome {
                Ok(events) => {
                    me.conn.execute_batch("RELEASE process")?;
                    events
                }
                Err(e) => {
                    // Undo whatever openmls half-wrote, keep the marker, and
                    // move on: one bad message must not block the rest.
                    me.conn.execute_batch("ROLLBACK TO process; RELEASE process")?;
                    // The library's own words go to the log, not to the
                    // person: they can act on "missing", not on an error name.
                    tracing::warn!(seq = d.seq, error = %e, "a message could not be read; rejoining");
                    let text = match &e {
                        CoreError::RoleBreach(why) => {
                            format!("refused a change to the group: {why}; this device takes no part in it and rejoins")
                        }
                        _ => format!("messages may be missing: {}; rejoining", unreadable_reason(&e)),
                    };
                    let marker = me.insert_system(&conversation, &d.group_id, d.seq, &text)?;
                    me.conn.exec("UPDATE groups SET broken=1 WHERE group_id=?", [&d.group_id])?;
                    vec![
                        Event::Warning { conversation: Some(conversation.clone()), text },
                        Event::Message(Box::new(marker)),
                    ]
                }
            };
            me.conn.exec(
                "UPDATE groups SET cursor=? WHERE group_id=? AND cursor < ?",
                params![d.seq, d.group_id, d.seq],
            )?;
            Ok(events)
        })
    }

    pub(crate) fn process(&self, d: &Delivery, conversation: &str) -> CoreResult<Vec<Event>> {
        let mut group = self.load_group(&d.group_id)?;
        let provider = self.provider();
        if d.sender == self.me() {
            // Our own entry coming back. A commit the server accepted but we
            // did not merge (we crashed in between) is merged now.
            if d.kind == MessageKind::Commit && group.pending_commit().is_some() && group.epoch().as_u64() == d.epoch {
                group.merge_pending_commit(&provider).map_err(CoreError::mls)?;
                return self.mirror_roles(&group, conversation, &self.identity.handle, Some(d.seq));
            }
            return Ok(vec![]);
        }
        let msg = MlsMessageIn::tls_deserialize_exact(d.payload.as_slice())
            .map_err(|e| CoreError::decode("MLS message", e))?;
        let protocol = msg.try_into_protocol_message().map_err(|e| CoreError::decode("MLS message", e))?;
        if d.kind == MessageKind::Commit && group.pending_commit().is_some() {
            // Someone else's commit won this epoch; ours is void. It stays
            // in the outbox and is rebuilt from its intent when re-sent.
            group.clear_pending_commit(provider.storage()).map_err(CoreError::mls)?;
        }
        let processed = group.process_message(&provider, protocol).map_err(CoreError::mls)?;
        let sender = member_credential(processed.credential())?;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let content = Content::decode(&app.into_bytes())?;
                if content.body.is_control() {
                    if let Body::Roles { admins, members_can_add } = &content.body {
                        return self.apply_roles(
                            &d.group_id,
                            conversation,
                            &sender.handle,
                            d.seq,
                            admins,
                            *members_can_add,
                        );
                    }
                    if matches!(content.body, Body::Profile { .. }) {
                        return self.apply_profile(&sender.handle, &content);
                    }
                    if matches!(content.body, Body::Description { .. } | Body::Pin { .. } | Body::GroupPicture { .. }) {
                        return self.apply_group_state(&d.group_id, conversation, &sender.handle, d.seq, &content);
                    }
                    return self.apply_control(&d.group_id, conversation, &sender.handle, d.seq, content.body);
                }
                if self.group_kind(&d.group_id) == GroupKind::Own {
                    // The own group carries control messages only.
                    return Ok(vec![]);
                }
                let exists: Option<i64> =
                    self.conn.row("SELECT 1 FROM messages WHERE id=?", [&content.id], |r| r.get(0)).optional()?;
                if exists.is_some() || self.is_blocked(&sender.handle)? {
                    return Ok(vec![]);
                }
                if !self.speaks_in_moved_group(&d.group_id, &sender.handle)? {
                    // Removed from (or left) the group this one moved to:
                    // the old group is no back door into the conversation.
                    tracing::warn!(sender = %sender.handle, "a message in a moved group from someone no longer in it; dropped");
                    return Ok(vec![]);
                }
                self.store_content(d, conversation, &sender, content)
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                if let Some(leaf) = staged.update_path_leaf_node() {
                    SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice())?;
                }
                for add in staged.add_proposals() {
                    let leaf = add.add_proposal().key_package().leaf_node();
                    let cred = SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice())?;
                    self.note_contact(&cred.handle, &cred.account_key)?;
                }
                let removed = staged.self_removed();
                let before = Self::member_handles(&group);
                let gone: Vec<SottoCredential> = staged
                    .remove_proposals()
                    .filter_map(|r| group.member(r.remove_proposal().removed()).and_then(|c| member_credential(c).ok()))
                    .collect();
                let joined: Vec<SottoCredential> = staged
                    .add_proposals()
                    .filter_map(|a| member_credential(a.add_proposal().key_package().leaf_node().credential()).ok())
                    .collect();
                let before_handles: Vec<String> = before.iter().map(|(_, c)| c.handle.clone()).collect();
                let breach = match self.role_breach(&d.group_id, &sender.handle, &gone, &joined, &before_handles)? {
                    Some(why) => Some(why),
                    None => self.context_breach(&group, &staged, &sender.handle)?,
                };
                if let Some(why) = breach {
                    // Not merged: every member refuses it alike.
                    return Err(CoreError::RoleBreach(why));
                }
                group.merge_staged_commit(&provider, *staged).map_err(CoreError::mls)?;
                let role_lines = self.mirror_roles(&group, conversation, &sender.handle, Some(d.seq))?;
                if removed {
                    self.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [&d.group_id])?;
                    let text = "you were removed from this conversation".to_owned();
                    let marker = self.insert_system(conversation, &d.group_id, d.seq, &text)?;
                    let mut events = vec![
                        Event::Warning { conversation: Some(conversation.to_owned()), text },
                        Event::Message(Box::new(marker)),
                    ];
                    // What still waited to go out never will: the server
                    // refuses posts from a removed device. Say so on each
                    // message instead of showing it as sending for ever.
                    for message in self.drop_group_outbox(&d.group_id)? {
                        events.push(Event::Message(Box::new(message)));
                    }
                    return Ok(events);
                }
                let after = Self::member_handles(&group);
                let device_name = |c: &SottoCredential| match &c.device_name {
                    Some(n) => format!("{n} (device {})", c.device_id),
                    None => format!("device {}", c.device_id),
                };
                let mut notes = Vec::new();
                let is_group = self.group_kind(&d.group_id) == GroupKind::Group;
                for c in &joined {
                    if c.handle == self.identity.handle {
                        // A device of this account this one has not named
                        // yet (enrolled from a backup, or linked from
                        // another device): its name, from its credential.
                        if let Some(name) = &c.device_name {
                            self.conn.exec(
                                "INSERT OR IGNORE INTO own_devices(device_id, name, added_at) VALUES(?,?,?)",
                                params![c.device_id, name, self.now()],
                            )?;
                        }
                    }
                    if before.iter().any(|(_, b)| b.handle == c.handle) || c.handle == self.identity.handle {
                        // A new device of someone already here: a notice,
                        // not a key-change hold (its certificate chains to
                        // the account key this device trusts).
                        let who =
                            if c.handle == self.identity.handle { "you".to_owned() } else { format!("@{}", c.handle) };
                        notes.push(format!("{who} added a device: {}", device_name(c)));
                    } else if is_group && !joined.iter().take_while(|j| *j != c).any(|j| j.handle == c.handle) {
                        notes.push(format!("@{} added @{}", sender.handle, c.handle));
                    }
                }
                for c in &gone {
                    let still_here = after.iter().any(|(_, a)| a.handle == c.handle);
                    if still_here || c.handle == self.identity.handle {
                        let who = if c.handle == self.identity.handle {
                            "your".to_owned()
                        } else {
                            format!("@{}'s", c.handle)
                        };
                        notes.push(format!("{who} device {} was removed", device_name(c)));
                    } else if is_group && !gone.iter().take_while(|g| *g != c).any(|g| g.handle == c.handle) {
                        // Who did it, unless they left by themselves.
                        notes.push(if c.handle == sender.handle {
                            format!("@{} is no longer in the group", c.handle)
                        } else {
                            format!("@{} removed @{}", sender.handle, c.handle)
                        });
                    }
                }
                if self.group_kind(&d.group_id) == GroupKind::Own {
                    // Devices coming and going show in the conversations
                    // themselves; the own group is never shown.
                    notes.clear();
                }
                let mut events = role_lines;
                for text in notes {
                    let m = self.insert_system(conversation, &d.group_id, d.seq, &text)?;
                    events.push(Event::Message(Box::new(m)));
                }
                Ok(events)
            }
            // Standalone proposals are not used by sotto clients; a commit
            // that references one will carry it.
            ProcessedMessageContent::ProposalMessage(_) | ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }

    /// Stores what someone (or this account's other device) sent: a
    /// message, or an annotation applied to the message it names.
    fn store_content(
        &self,
        d: &Delivery,
        conversation: &str,
        sender: &SottoCredential,
        content: Content,
    ) -> CoreResult<Vec<Event>> {
        // Sent from another device of this account: it is this person's
        // own message, shown as sent from here too.
        let own = sender.handle == self.identity.handle;
        let state = if own { MessageState::Sent } else { MessageState::Received };
        let author = annotations::Author { handle: &sender.handle, device_id: sender.device_id };
        let mut events = Vec::new();
        if let Body::Receipt { delivered, read } = content.body {
            events.extend(self.apply_receipt(&d.group_id, &author, delivered, read)?);
            // Only the newest receipt of each sender waits for `receive`.
            self.conn.exec(
                "DELETE FROM messages WHERE annotation=1 AND target IS NULL AND group_id=? AND sender=? AND state != 'pending'",
                params![d.group_id, sender.handle],
            )?;
        } else if content.is_annotation() {
            let Some(changed) = self.apply_annotation(conversation, &author, &content)? else { return Ok(vec![]) };
            events.push(Event::Message(Box::new(changed)));
        }
        let received_at = self.now();
        // The sender's timer, counted from now (their clock may be off),
        // else this conversation's.
        let expires_at = match content.expires {
            Some(at) => Some(received_at + (at - content.sent_at).clamp(0, MAX_TIMER_SECS as i64 * 1000)),
            None if content.is_annotation() => None,
            None => self.expiry_for(&d.group_id, received_at)?,
        };
        let reply_to = match content.body {
            Body::Reaction { .. } => None,
            _ => content.in_reply_to.as_ref().map(|b| b.to_vec()),
        };
        let annotation = content.is_annotation();
        self.conn.exec(
            "INSERT INTO messages(id, conversation, group_id, seq, sender, outgoing, sent_at, received_at, body, state, fetched,
                reply_to, annotation, target, expires_at)
             VALUES(?,?,?,?,?,?,?,?,?,?,0,?,?,?,?)",
            params![
                content.id,
                conversation,
                d.group_id,
                d.seq,
                sender.handle,
                own,
                content.sent_at,
                received_at,
                cbor(&content.body),
                state.as_str(),
                reply_to.clone(),
                annotation,
                content.target(),
                expires_at
            ],
        )?;
        if !annotation {
            // Made here rather than read back: a backlog of thousands is
            // stored one after another (reading each back cost ~18 %).
            let mentions = match &content.body {
                Body::Text { text } => mentions_in(text),
                _ => vec![],
            };
            let detail = MessageDetail { reply_to, expires_at, mentions, ..Default::default() };
            events.push(Event::Message(Box::new(StoredMessage {
                id: content.id,
                conversation: conversation.to_owned(),
                sender: sender.handle.clone(),
                outgoing: own,
                sent_at: content.sent_at,
                received_at,
                body: content.body,
                state,
                seq: Some(d.seq),
                detail,
            })));
        }
        Ok(events)
    }

    pub(crate) fn insert_system(
        &self,
        conversation: &str,
        group_id: &[u8],
        seq: u64,
        text: &str,
    ) -> CoreResult<StoredMessage> {
        let now = self.now();
        let m = StoredMessage {
            id: self.new_id().to_vec(),
            conversation: conversation.to_owned(),
            sender: String::new(),
            outgoing: false,
            sent_at: now,
            received_at: now,
            body: Body::Text { text: text.to_owned() },
            state: MessageState::System,
            seq: Some(seq),
            detail: MessageDetail::default(),
        };
        self.conn.exec(
            "INSERT INTO messages(id, conversation, group_id, seq, sender, outgoing, sent_at, received_at, body, state, fetched)
             VALUES(?,?,?,?,'',0,?,?,?,'system',0)",
            params![m.id, conversation, group_id, seq, now, now, cbor(&m.body)],
        )?;
        Ok(m)
    }
}
