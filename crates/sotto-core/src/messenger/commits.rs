//! Commits made from intents (add, remove, update, roles): built on the
//! group's current epoch and left pending in the MLS state until the
//! server accepts them; rebuilt from the same intent if another member's
//! commit wins the epoch.

#[allow(unused_imports)]
use super::*;

impl Messenger {
    /// Makes the commit for `intent` on the group's current epoch, leaving
    /// it pending in the MLS state. `None` when there is nothing left to do
    /// (for example, the person was added by someone else meanwhile).
    pub(crate) fn build_commit(&self, group_id: &[u8], intent: Intent) -> CoreResult<Option<OutboxItem>> {
        let mut group = self.load_group(group_id)?;
        if !group.is_active() {
            return Err(CoreError::NotAMember);
        }
        let provider = self.provider();
        let signer = self.identity.signer();
        let members = Self::member_handles(&group);
        let (commit, welcome, added, removed) = match &intent {
            Intent::Add(invitees) => {
                let mut packages = Vec::new();
                let mut added = Vec::new();
                for inv in invitees {
                    // Per device: someone already in the group may have a
                    // device that is not (linked since), and a device added
                    // meanwhile by another member is not added twice.
                    let roles_in_state = roles_state::roles_in(group.extensions())?.is_some();
                    let mut too_old = 0;
                    for (kp, d) in self.validate_invitee(inv)? {
                        if members.iter().any(|(_, c)| c.handle == d.handle && c.device_id == d.device_id) {
                            continue;
                        }
                        if roles_in_state && !roles_state::package_supports_roles(&kp) {
                            // MLS lets in only a device that understands
                            // every extension of the group's state.
                            too_old += 1;
                            continue;
                        }
                        packages.push(kp);
                        added.push(d);
                    }
                    if too_old > 0 && !added.iter().any(|d| d.handle == inv.handle) {
                        return Err(CoreError::Invalid(format!(
                            "@{} uses an older sotto that cannot join a group with admins; \
                             ask them to update sotto and open it once, then add them again",
                            inv.handle
                        )));
                    }
                }
                if packages.is_empty() {
                    return Ok(None);
                }
                // Without an update path (MLS allows it for an add-only
                // commit): the commit carries the new KeyPackages and no
                // encryption to every subtree. In a post-quantum group each
                // such encryption is a 1,120-byte X-Wing ciphertext, so a
                // path to a large group's blank subtrees made a 1,000-member
                // add a megabyte and a third of a second. Key freshness
                // comes from the periodic self-updates instead.
                let (commit, welcome, _) =
                    group.add_members_without_update(&provider, &signer, &packages).map_err(CoreError::mls)?;
                (commit, Some(welcome), added, vec![])
            }
            Intent::Remove(_) | Intent::RemoveDevices(_) => {
                // Every device of these people, or these devices; never this one.
                let me = self.me();
                let removes = |d: &DeviceRef| match &intent {
                    Intent::Remove(handles) => handles.contains(&d.handle) && d.handle != me.handle,
                    Intent::RemoveDevices(devices) => devices.contains(d) && *d != me,
                    _ => false,
                };
                let targets: Vec<(LeafNodeIndex, DeviceRef)> = members
                    .iter()
                    .map(|(i, c)| (*i, DeviceRef { handle: c.handle.clone(), device_id: c.device_id }))
                    .filter(|(_, d)| removes(d))
                    .collect();
                if targets.is_empty() {
                    return Ok(None);
                }
                let leaves: Vec<LeafNodeIndex> = targets.iter().map(|(i, _)| *i).collect();
                let (commit, welcome, _) = group.remove_members(&provider, &signer, &leaves).map_err(CoreError::mls)?;
                (commit, welcome, vec![], targets.into_iter().map(|(_, d)| d).collect())
            }
            Intent::Rejoin => return Err(CoreError::Invalid("a rejoin is made from the group's GroupInfo".into())),
            Intent::Roles(change) => {
                let extensions = self.roles_commit_extensions(&group, change)?;
                let (commit, welcome, _) =
                    group.update_group_context_extensions(&provider, extensions, &signer).map_err(CoreError::mls)?;
                (commit, welcome, vec![], vec![])
            }
            Intent::Update => {
                // The new leaf lists this version's capabilities, so a
                // group from before can take its roles into its state.
                let parameters = LeafNodeParameters::builder().with_capabilities(roles_state::capabilities()).build();
                let bundle = group.self_update(&provider, &signer, parameters).map_err(CoreError::mls)?;
                self.conn.exec("UPDATE groups SET last_update=? WHERE group_id=?", params![self.now(), group_id])?;
                (bundle.commit().clone(), None, vec![], vec![])
            }
        };
        Ok(Some(OutboxItem {
            client_id: self.new_client_id(),
            group_id: group_id.to_vec(),
            epoch: group.epoch().as_u64(),
            kind: MessageKind::Commit,
            payload: commit.tls_serialize_detached().map_err(CoreError::mls)?,
            message_id: None,
            welcome: match welcome {
                Some(w) => Some(w.tls_serialize_detached().map_err(CoreError::mls)?),
                None => None,
            },
            added,
            removed,
            create_group: false,
            intent: Some(intent),
        }))
    }
}
