//! Joining and starting conversations: one-to-one groups, welcomes, rejoining
//! by external commit, who is in a group.

#[allow(unused_imports)]
use super::*;

impl Messenger {
    /// Notes the invitees' keys (outside any transaction, so a change is
    /// remembered even though the operation is refused).
    pub(crate) fn precheck(&self, invitees: &[Invitee]) -> CoreResult<()> {
        for inv in invitees {
            self.note_contact(&inv.handle, &inv.account_key)?;
            self.require_trusted(&inv.handle, &inv.account_key)?;
        }
        Ok(())
    }

    /// What kind of conversation a group is: as recorded when it was made
    /// or joined, or (groups from before that was recorded) as its id says.
    pub fn group_kind(&self, group_id: &[u8]) -> GroupKind {
        let stored: Option<Option<u8>> = self
            .conn
            .row("SELECT kind FROM groups WHERE group_id=?", [group_id], |r| r.get(0))
            .optional()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read a group's kind");
                None
            });
        stored
            .flatten()
            .and_then(GroupKind::from_stored)
            .or_else(|| GroupKind::of_legacy_id(group_id))
            .unwrap_or(GroupKind::Direct)
    }

    /// The MLS suite a group uses.
    pub fn group_suite(&self, group_id: &[u8]) -> CoreResult<Ciphersuite> {
        Ok(self.load_group(group_id)?.ciphersuite())
    }

    /// Says in a conversation that it had to fall back to the classical
    /// suite because of these people's apps.
    pub fn note_classical(&self, conversation: &str, handles: &[String]) -> CoreResult<()> {
        let Some(group_id) = self.conversation_group(conversation)? else { return Ok(()) };
        self.insert_system(conversation, &group_id, 0, &crate::suite::fallback_note(handles))?;
        Ok(())
    }

    /// The canonical group of a conversation: when both people started a
    /// chat at once there are two groups; both sides pick the smaller id, so
    /// they converge on one without talking about it.
    pub fn conversation_group(&self, conversation: &str) -> CoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .row(
                // A named group that moved to a successor this device has
                // is no longer written to (`group_successor.rs`).
                "SELECT group_id FROM groups WHERE conversation=? AND active=1
                   AND NOT EXISTS (SELECT 1 FROM groups s WHERE s.group_id = groups.successor)
                 ORDER BY group_id LIMIT 1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Starts a one-to-one conversation from the peer's claimed KeyPackages:
    /// a new two-party group and the commit that adds every device of the
    /// peer. Returns the commit to post (the group is created on the server
    /// first).
    pub fn start_direct(&self, invitee: Invitee) -> CoreResult<PendingCommit> {
        let handle = invitee.handle.clone();
        if handle == self.identity.handle {
            return Err(CoreError::Invalid("you cannot start a conversation with yourself".into()));
        }
        self.start_group(GroupKind::Direct, &format!("@{handle}"), vec![invitee])
    }

    /// Creates a group conversation and the commit that adds everyone.
    pub(crate) fn start_group(
        &self,
        kind: GroupKind,
        conversation: &str,
        invitees: Vec<Invitee>,
    ) -> CoreResult<PendingCommit> {
        // A named group's creator is its first admin, in the group's MLS
        // state (the server, which enforces roles, says the same).
        let roles = (kind == GroupKind::Group)
            .then(|| GroupRoles { admins: vec![self.identity.handle.clone()], members_can_add: true });
        self.start_group_with_roles(kind, conversation, invitees, roles)
    }

    /// [`Messenger::start_group`] with the roles the group starts with (a
    /// successor carries its predecessor's; the caller then tells the
    /// server about admins other than this person).
    pub(crate) fn start_group_with_roles(
        &self,
        kind: GroupKind,
        conversation: &str,
        invitees: Vec<Invitee>,
        roles: Option<GroupRoles>,
    ) -> CoreResult<PendingCommit> {
        let suite = invitees_suite(&invitees)?;
        self.tx(|me| {
            let provider = me.provider();
            let group_id = new_group_id(self.new_id(), kind, suite);
            MlsGroup::new_with_group_id(
                &provider,
                &me.identity.signer(),
                &create_config(roles.as_ref(), suite)?,
                GroupId::from_slice(&group_id),
                me.identity.credential(),
            )
            .map_err(CoreError::mls)?;
            let now = self.now();
            me.conn.exec(
                "INSERT INTO groups(group_id, conversation, last_update, created_at, kind) VALUES(?,?,?,?,?)",
                params![group_id.to_vec(), conversation, now, now, kind as u8],
            )?;
            if let Some(roles) = &roles {
                me.record_roles(&group_id, conversation, "", 0, roles)?;
            }
            let mut item = me
                .build_commit(&group_id, Intent::Add(invitees))?
                .ok_or_else(|| CoreError::NotFound("nobody to add".into()))?;
            item.create_group = true;
            me.put_outbox(&item)?;
            Ok(item)
        })
    }

    /// Validates claimed KeyPackages against the handle and account key the
    /// server reported, and the credential chain inside each. A package
    /// whose device is not certified by the account key (a device the
    /// server slipped in on its own) is left out, never added.
    pub(crate) fn validate_invitee(&self, invitee: &Invitee) -> CoreResult<Vec<(KeyPackage, DeviceRef)>> {
        let handle = &invitee.handle;
        self.note_contact(handle, &invitee.account_key)?;
        self.require_trusted(handle, &invitee.account_key)?;
        // Whoever this person adds is someone they chose to talk to.
        self.accept_person(handle)?;
        let provider = self.provider();
        let mut out = Vec::new();
        let mut refused = 0;
        for c in &invitee.packages {
            let checked = (|| -> CoreResult<(KeyPackage, DeviceRef)> {
                let kp = KeyPackageIn::tls_deserialize_exact(c.package.as_slice())
                    .map_err(|e| CoreError::decode("key package", e))?
                    .validate(provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(|e| CoreError::BadCredential(format!("key package of @{handle}: {e}")))?;
                let leaf = kp.leaf_node();
                let cred = SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice())?;
                if &cred.handle != handle
                    || cred.account_key != invitee.account_key
                    || cred.device_id != c.device.device_id
                    || leaf.signature_key().as_slice() != c.device.device_key.as_slice()
                {
                    return Err(CoreError::BadCredential(format!(
                        "the server gave a key package that is not @{handle}'s"
                    )));
                }
                Ok((kp, DeviceRef { handle: handle.clone(), device_id: cred.device_id }))
            })();
            match checked {
                Ok(ok) => out.push(ok),
                Err(e) => {
                    refused += 1;
                    tracing::warn!(handle = %handle, device = c.device.device_id, error = %e, "a device was refused");
                }
            }
        }
        if out.is_empty() {
            return Err(if refused > 0 {
                CoreError::BadCredential(format!(
                    "the server offered only devices of @{handle} that @{handle}'s account key never certified; nothing was added"
                ))
            } else {
                CoreError::NotFound(format!("@{handle} has no device to talk to"))
            });
        }
        Ok(out)
    }

    /// The credentials of a group's current members.
    pub(crate) fn member_credentials(&self, group_id: &[u8]) -> CoreResult<Vec<SottoCredential>> {
        let group = self.load_group(group_id)?;
        Ok(Self::member_handles(&group).into_iter().map(|(_, c)| c).collect())
    }

    /// The handles of a group's current members.
    pub(crate) fn member_handles_of(group: &MlsGroup) -> Vec<String> {
        Self::member_handles(group).into_iter().map(|(_, c)| c.handle).collect()
    }

    /// The handles of a group's current members (by their credentials).
    pub(crate) fn member_handles(group: &MlsGroup) -> Vec<(LeafNodeIndex, SottoCredential)> {
        group.members().filter_map(|m| member_credential(&m.credential).ok().map(|c| (m.index, c))).collect()
    }

    /// Processes a welcome into a group. A welcome for a group this device
    /// already has (re-delivered because its acknowledgement was lost) is
    /// accepted silently.
    pub fn handle_welcome(&self, group_id: &[u8], welcome: &[u8]) -> CoreResult<Vec<Event>> {
        self.handle_welcome_from(None, group_id, welcome)
    }

    /// [`Messenger::handle_welcome`] for a welcome the server says `adder`
    /// sent: refused with [`CoreError::Blocked`] when this person blocked
    /// them (the caller acknowledges it and leaves the group on the server,
    /// so it is gone for good).
    pub fn handle_welcome_from(&self, adder: Option<&str>, group_id: &[u8], welcome: &[u8]) -> CoreResult<Vec<Event>> {
        if let Some(a) = adder.filter(|a| self.is_blocked(a).unwrap_or(false)) {
            return Err(CoreError::Blocked(a.to_owned()));
        }
        let known: Option<bool> =
            self.conn.row("SELECT active FROM groups WHERE group_id=?", [group_id], |r| r.get(0)).optional()?;
        let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|e| CoreError::decode("welcome", e))?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(CoreError::decode("welcome", "not a welcome message"));
        };
        let joined = self.tx(|me| {
            let provider = me.provider();
            // Added again after being removed (or leaving), perhaps before
            // this device read its removal (the server then routes it only
            // from the new add on): the old state of the group goes (the
            // transaction puts it back if the welcome is no good); history
            // stays where it was.
            let mut old_epoch = None;
            if known.is_some() {
                if let Some(mut old) =
                    MlsGroup::load(provider.storage(), &GroupId::from_slice(group_id)).map_err(CoreError::mls)?
                {
                    old_epoch = Some(old.epoch().as_u64());
                    old.delete(provider.storage()).map_err(CoreError::mls)?;
                }
            }
            let staged = match StagedWelcome::new_from_welcome(&provider, &join_config(), welcome, None) {
                Ok(staged) => staged,
                // In the group, and the package is used up: the same
                // welcome again.
                Err(_) if known == Some(true) => return Err(CoreError::AlreadyJoined),
                Err(e) => return Err(CoreError::mls(e)),
            };
            if staged.group_context().group_id().as_slice() != group_id {
                return Err(CoreError::decode("welcome", "group id differs from the server's"));
            }
            if known == Some(true) && old_epoch.is_some_and(|old| staged.group_context().epoch().as_u64() <= old) {
                return Err(CoreError::AlreadyJoined);
            }
            let mut others = Vec::new();
            for m in staged.members() {
                let cred = SottoCredential::validate(&m.credential, &m.signature_key)?;
                if cred.handle != me.identity.handle {
                    others.push(cred);
                } else {
                    // This account's other devices must chain to its key.
                    me.note_contact(&cred.handle, &cred.account_key)?;
                }
            }
            let mut events = Vec::new();
            for o in &others {
                if me.note_contact(&o.handle, &o.account_key)? {
                    events.push(Event::Warning { conversation: None, text: key_change_text(&o.handle) });
                }
            }
            let mut handles: Vec<&str> = others.iter().map(|o| o.handle.as_str()).collect();
            handles.sort();
            handles.dedup();
            let has_roles = staged.group_context().extensions().unknown(roles_state::ROLES_EXTENSION).is_some();
            let kind = GroupKind::of_joined(group_id, has_roles, handles.len());
            if kind == GroupKind::Direct && handles.iter().any(|h| me.is_blocked(h).unwrap_or(false)) {
                // A one-to-one from someone blocked (whatever the server
                // claimed about who sent it): not joined.
                return Err(CoreError::Blocked(handles.join(", @")));
            }
            if kind == GroupKind::Own && !handles.is_empty() {
                // An "own" group with other people in it is someone else's
                // trick to read what this account tells its devices: not
                // joined, and left on the server like a blocked sender's.
                return Err(CoreError::Blocked(handles.join(", @")));
            }
            let conversation = match (kind, handles.as_slice()) {
                (GroupKind::Direct, [one]) => format!("@{one}"),
                (GroupKind::Own, _) => OWN_CONVERSATION.to_owned(),
                // The successor of a group this device is in takes its
                // name; otherwise the name arrives in the group's first
                // message, and until then the conversation goes by a
                // placeholder.
                _ => match me.predecessor_of(group_id)? {
                    Some((_, name)) => name,
                    None => format!("#new-{}", short_id(group_id, 4)),
                },
            };
            let now = self.now();
            if known.is_some() {
                // Commits queued on the old state are rebuilt on the new one.
                let old_conversation: String =
                    me.conn.row("SELECT conversation FROM groups WHERE group_id=?", [group_id], |r| r.get(0))?;
                let group = staged.into_group(&provider).map_err(CoreError::mls)?;
                me.conn.exec(
                    "UPDATE groups SET active=1, broken=0, last_update=? WHERE group_id=?",
                    params![now, group_id],
                )?;
                me.mirror_roles(&group, &old_conversation, "", None)?;
                events.insert(0, Event::Joined { conversation: old_conversation });
                return Ok(events);
            }
            // Who added this device, by the signature on the welcome's
            // GroupInfo (not by what the server says): someone this person
            // has not chosen to talk to makes it a message request.
            let welcomer = staged
                .welcome_sender()
                .ok()
                .and_then(|leaf| SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice()).ok())
                .map(|c| c.handle);
            let request_from = match welcomer {
                Some(h) if me.is_accepted(&h)? => None,
                Some(h) => Some(h),
                None => None,
            };
            let group = staged.into_group(&provider).map_err(CoreError::mls)?;
            me.conn.exec(
                "INSERT INTO groups(group_id, conversation, last_update, created_at, request_from, kind)
                 VALUES(?,?,?,?,?,?)",
                params![group_id, conversation, now, now, request_from, kind as u8],
            )?;
            // The roles come in the group's state (none in older groups:
            // then in a message from whoever added this device).
            me.mirror_roles(&group, &conversation, "", None)?;
            if let Some((old, _)) = me.predecessor_of(group_id)? {
                me.fold_successor(&old, &conversation)?;
            }
            if kind == GroupKind::Direct && me.succeeds_classical(&conversation, group_id, &group)? {
                me.insert_system(&conversation, group_id, 0, super::successor::MOVED_NOTE)?;
            }
            match request_from {
                Some(from) => events.insert(0, Event::Request { conversation, from }),
                None => events.insert(0, Event::Joined { conversation }),
            }
            Ok(events)
        });
        match joined {
            Err(CoreError::AlreadyJoined) => Ok(vec![]),
            // The own group is no conversation to show.
            Ok(events) if self.group_kind(group_id) == GroupKind::Own => {
                Ok(events.into_iter().filter(|e| !matches!(e, Event::Joined { .. })).collect())
            }
            other => other,
        }
    }

    /// Groups this device is out of step with and must rejoin.
    pub fn broken_groups(&self) -> CoreResult<Vec<Vec<u8>>> {
        let mut stmt = self.conn.prepare("SELECT group_id FROM groups WHERE broken=1 AND active=1")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The group's GroupInfo (with ratchet tree) for its current epoch, to
    /// store on the server after a commit of ours.
    pub fn export_group_info(&self, group_id: &[u8]) -> CoreResult<(u64, Vec<u8>)> {
        let group = self.load_group(group_id)?;
        let gi =
            group.export_group_info(self.provider().crypto(), &self.identity.signer(), true).map_err(CoreError::mls)?;
        Ok((group.epoch().as_u64(), gi.tls_serialize_detached().map_err(CoreError::mls)?))
    }

    /// Replaces this device's state of a group by joining it afresh with an
    /// external commit built from the group's GroupInfo. Returns the commit
    /// to post; the old state is gone.
    pub fn rejoin(&self, group_id: &[u8], epoch: u64, group_info: &[u8]) -> CoreResult<OutboxItem> {
        let msg = MlsMessageIn::tls_deserialize_exact(group_info).map_err(|e| CoreError::decode("group info", e))?;
        let MlsMessageBodyIn::GroupInfo(verifiable) = msg.extract() else {
            return Err(CoreError::decode("group info", "not a GroupInfo"));
        };
        self.tx(|me| {
            let provider = me.provider();
            if let Some(mut old) =
                MlsGroup::load(provider.storage(), &GroupId::from_slice(group_id)).map_err(CoreError::mls)?
            {
                old.delete(provider.storage()).map_err(CoreError::mls)?;
            }
            me.conn.exec("DELETE FROM outbox WHERE group_id=? AND intent IS NOT NULL", [group_id])?;
            let (group, bundle) = MlsGroup::external_commit_builder()
                .with_config(join_config())
                .build_group(&provider, verifiable, me.identity.credential())
                .map_err(CoreError::mls)?
                .leaf_node_parameters(
                    LeafNodeParameters::builder().with_capabilities(roles_state::capabilities()).build(),
                )
                .load_psks(provider.storage())
                .map_err(CoreError::mls)?
                .build(provider.rand(), provider.crypto(), &me.identity.signer(), |_| true)
                .map_err(CoreError::mls)?
                .finalize(&provider)
                .map_err(CoreError::mls)?;
            if group.group_id().as_slice() != group_id {
                return Err(CoreError::decode("group info", "it describes another group"));
            }
            for m in group.members() {
                let cred = SottoCredential::validate(&m.credential, &m.signature_key)?;
                me.note_contact(&cred.handle, &cred.account_key)?;
            }
            if me.roles(group_id)?.is_none() {
                // Only roles this device did not know come from the
                // GroupInfo: whoever uploaded it (perhaps the author of the
                // commit this device refused) cannot rewrite them.
                let conversation = me.conversation_of(group_id)?;
                me.mirror_roles(&group, &conversation, "", None)?;
            }
            let item = OutboxItem {
                client_id: self.new_client_id(),
                group_id: group_id.to_vec(),
                epoch,
                kind: MessageKind::Commit,
                payload: bundle.commit().tls_serialize_detached().map_err(CoreError::mls)?,
                message_id: None,
                welcome: None,
                added: vec![],
                removed: vec![],
                create_group: false,
                intent: Some(Intent::Rejoin),
            };
            me.put_outbox(&item)?;
            Ok(item)
        })
    }

    /// Whether this device is (as far as it knows) a member of the group.
    pub fn in_group(&self, group_id: &[u8]) -> CoreResult<bool> {
        Ok(self
            .conn
            .row("SELECT active FROM groups WHERE group_id=?", [group_id], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
    }

    /// The conversation a group belongs to.
    pub fn conversation_of(&self, group_id: &[u8]) -> CoreResult<String> {
        self.conn
            .row("SELECT conversation FROM groups WHERE group_id=?", [group_id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| CoreError::NotFound("unknown conversation".into()))
    }

    /// This device's cursor in a group (highest processed sequence number).
    pub fn cursor(&self, group_id: &[u8]) -> CoreResult<Option<u64>> {
        Ok(self.conn.row("SELECT cursor FROM groups WHERE group_id=?", [group_id], |r| r.get(0)).optional()?)
    }

    /// Closes a one-to-one conversation the server says the peer is no
    /// longer in (they left it, or never joined because they blocked this
    /// person): the next message starts a new one instead of going where
    /// nobody reads it. Not while this device's own add is still waiting
    /// in the outbox.
    pub fn close_dead_direct(&self, group_id: &[u8], handle: &str) -> CoreResult<bool> {
        let waiting: Option<i64> = self
            .conn
            .row("SELECT 1 FROM outbox WHERE group_id=? AND kind='commit' LIMIT 1", [group_id], |r| r.get(0))
            .optional()?;
        if waiting.is_some() {
            return Ok(false);
        }
        let conversation = format!("@{handle}");
        self.tx(|me| {
            me.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [group_id])?;
            me.insert_system(
                &conversation,
                group_id,
                0,
                &format!("@{handle} is not in this conversation any more; the next message starts a new one"),
            )?;
            Ok(true)
        })
    }
}

/// The one suite every invitee's packages are for (see
/// [`crate::suite::common`]).
fn invitees_suite(invitees: &[Invitee]) -> CoreResult<Ciphersuite> {
    let suites = invitees
        .iter()
        .flat_map(|i| &i.packages)
        .filter_map(|c| sotto_proto::suites::key_package_suite(&c.package))
        .filter_map(|n| Ciphersuite::try_from(n).ok());
    crate::suite::common(suites).ok_or_else(|| {
        CoreError::Invalid(
            "these people's apps share no encryption suite (some have only the older one); add them one at a time"
                .into(),
        )
    })
}

/// A new group's id. In a post-quantum group it is random through and
/// through, so the server cannot tell a one-to-one conversation from a
/// group by it (the kind is recorded by each member: see
/// [`GroupKind::of_joined`]); a classical group keeps the kind in its first
/// byte, because the apps it falls back for read it there.
pub(crate) fn new_group_id(mut random: [u8; 16], kind: GroupKind, suite: Ciphersuite) -> [u8; 16] {
    if crate::suite::is_post_quantum(suite) {
        random[0] = 0;
    } else {
        random[0] = kind as u8;
    }
    random
}
