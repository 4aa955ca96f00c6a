//! Roles as part of the group's MLS state: a private GroupContext
//! extension holding the admins and whether members may add people.
//!
//! Why here and not in a message: the GroupContext is what every member
//! agrees on for an epoch (its hash goes into the key schedule), a change
//! is a commit, so it is ordered with the adds and removes it governs, and
//! a newcomer receives it in the Welcome instead of waiting for someone to
//! tell them. Every member checks a commit that changes it: only an admin
//! of the epoch before may. Groups made before this extension existed keep
//! roles as an ordered control message (`roles.rs`) until an admin's next
//! role change, which moves them here once every member's device lists
//! the extension among its capabilities.

use super::roles::{GroupRoles, RoleChange};
#[allow(unused_imports)]
use super::*;

/// The extension's type: from the private-use range (RFC 9420, 17.3).
pub(crate) const ROLES_EXTENSION: u16 = 0xF5A0;

/// Most admins a group may name (far above any real group; it keeps a
/// hostile member's extension from growing without bound).
const MAX_ADMINS: usize = 1000;

/// What this device's leaves say they understand: the last-resort
/// KeyPackage extension and the roles extension.
pub(crate) fn capabilities() -> Capabilities {
    Capabilities::builder().extensions(vec![ExtensionType::LastResort, ExtensionType::Unknown(ROLES_EXTENSION)]).build()
}

/// The roles extension's bytes on the wire.
#[derive(serde::Serialize, serde::Deserialize)]
struct RolesWire {
    admins: Vec<String>,
    members_can_add: bool,
}

/// The GroupContext extension carrying `roles`.
pub(crate) fn roles_extension(roles: &GroupRoles) -> Extension {
    let mut admins = roles.admins.clone();
    admins.sort();
    admins.dedup();
    let wire = RolesWire { admins, members_can_add: roles.members_can_add };
    Extension::Unknown(ROLES_EXTENSION, UnknownExtension(cbor(&wire)))
}

/// The GroupContext extensions of a group with `roles`: the roles and the
/// requirement that every member's device understands them (MLS accepts a
/// context extension only when it is listed as required).
pub(crate) fn with_roles(
    mut extensions: Extensions<GroupContext>,
    roles: &GroupRoles,
) -> CoreResult<Extensions<GroupContext>> {
    let required = ExtensionType::Unknown(ROLES_EXTENSION);
    let mut types: Vec<ExtensionType> =
        extensions.required_capabilities().map(|r| r.extension_types().to_vec()).unwrap_or_default();
    if !types.contains(&required) {
        types.push(required);
    }
    let proposals: Vec<ProposalType> =
        extensions.required_capabilities().map(|r| r.proposal_types().to_vec()).unwrap_or_default();
    let credentials: Vec<CredentialType> =
        extensions.required_capabilities().map(|r| r.credential_types().to_vec()).unwrap_or_default();
    let requirement = RequiredCapabilitiesExtension::new(&types, &proposals, &credentials);
    extensions.add_or_replace(Extension::RequiredCapabilities(requirement)).map_err(CoreError::mls)?;
    extensions.add_or_replace(roles_extension(roles)).map_err(CoreError::mls)?;
    Ok(extensions)
}

/// The roles in a group context's extensions: `Ok(None)` where there are
/// none (a one-to-one, or a group made before roles lived here), an error
/// where they are malformed (no admin, too many, not CBOR).
pub(crate) fn roles_in(extensions: &Extensions<GroupContext>) -> CoreResult<Option<GroupRoles>> {
    let Some(ext) = extensions.unknown(ROLES_EXTENSION) else { return Ok(None) };
    let wire: RolesWire =
        ciborium::from_reader(ext.0.as_slice()).map_err(|e| CoreError::decode("the group's roles", e))?;
    if wire.admins.is_empty() || wire.admins.len() > MAX_ADMINS || wire.admins.iter().any(|a| a.is_empty()) {
        return Err(CoreError::decode("the group's roles", "no admin, or an impossible list of them"));
    }
    Ok(Some(GroupRoles { admins: wire.admins, members_can_add: wire.members_can_add }))
}

/// Whether every member's device understands the roles extension (so a
/// commit may put it into the group context).
pub(crate) fn all_support_roles(group: &MlsGroup) -> bool {
    let wanted = ExtensionType::Unknown(ROLES_EXTENSION);
    group.members().all(|m| {
        group.public_group().leaf(m.index).is_some_and(|leaf| leaf.capabilities().extensions().contains(&wanted))
    })
}

/// Whether a KeyPackage's device could join a group with roles in its
/// state.
pub(crate) fn package_supports_roles(kp: &KeyPackage) -> bool {
    kp.leaf_node().capabilities().extensions().contains(&ExtensionType::Unknown(ROLES_EXTENSION))
}

/// `roles` with `change` applied.
pub(crate) fn changed(mut roles: GroupRoles, change: &RoleChange) -> GroupRoles {
    match change {
        RoleChange::Admin(handle, true) if !roles.admins.contains(handle) => roles.admins.push(handle.clone()),
        RoleChange::Admin(_, true) => {}
        RoleChange::Admin(handle, false) => roles.admins.retain(|a| a != handle),
        RoleChange::MembersCanAdd(yes) => roles.members_can_add = *yes,
    }
    roles.admins.sort();
    roles
}

impl Messenger {
    /// Changes a named group's roles: a commit that puts the new roles into
    /// the group's MLS state where every member's device can hold them;
    /// otherwise (a group from before, with a member on an older sotto) the
    /// ordered roles message as before. The caller flushes the outbox.
    pub fn change_roles(&self, conversation: &str, change: RoleChange) -> CoreResult<()> {
        let group_id = self.group_of(conversation)?;
        if !self.may(&group_id, &self.identity.handle, RoleRight::Promote)? {
            return Err(CoreError::Invalid(format!(
                "only an admin of {conversation} can change who is admin or who may add people"
            )));
        }
        let group = self.load_group(&group_id)?;
        if roles_in(group.extensions())?.is_some() || all_support_roles(&group) {
            self.queue_commit(&group_id, Intent::Roles(change))?;
        } else {
            self.prepare_roles(conversation, Some(change))?;
        }
        Ok(())
    }

    /// The extensions a roles commit proposes: the group's current ones
    /// with the roles (from the state, or from the message-kept roles of an
    /// older group) changed.
    pub(crate) fn roles_commit_extensions(
        &self,
        group: &MlsGroup,
        change: &RoleChange,
    ) -> CoreResult<Extensions<GroupContext>> {
        let group_id = group.group_id().as_slice();
        // The roles this device accepted (from commits it checked), before
        // what the state says (which a rejoin may have taken on trust).
        let current = match self.roles(group_id)? {
            Some(roles) => roles,
            None => roles_in(group.extensions())?
                .ok_or_else(|| CoreError::Invalid("this conversation has no roles to change".into()))?,
        };
        let new = changed(current, change);
        if new.admins.is_empty() {
            return Err(CoreError::Invalid("a group keeps at least one admin; make someone else admin first".into()));
        }
        with_roles(group.extensions().clone(), &new)
    }

    /// After a commit is merged (or a group joined): the roles the group's
    /// state holds become this device's, with a history line for each
    /// change (`committer` made it; none on joining, when `seq` is `None`).
    pub(crate) fn mirror_roles(
        &self,
        group: &MlsGroup,
        conversation: &str,
        committer: &str,
        seq: Option<u64>,
    ) -> CoreResult<Vec<Event>> {
        let group_id = group.group_id().as_slice();
        let Some(roles) = roles_in(group.extensions())? else { return Ok(vec![]) };
        if self.roles(group_id)?.as_ref() == Some(&roles) {
            return Ok(vec![]);
        }
        match seq {
            Some(seq) => self.record_roles(group_id, conversation, committer, seq, &roles),
            None => {
                self.record_roles(group_id, conversation, committer, 0, &roles)?;
                Ok(vec![])
            }
        }
    }

    /// Why a commit breaks the rule that only an admin changes the group's
    /// state, if it does: it changes the group context's extensions (the
    /// roles among them) and its committer is not an admin of the epoch
    /// before, or the roles it sets are malformed.
    pub(crate) fn context_breach(
        &self,
        group: &MlsGroup,
        staged: &StagedCommit,
        committer: &str,
    ) -> CoreResult<Option<String>> {
        let after = staged.group_context().extensions();
        if after == group.extensions() {
            return Ok(None);
        }
        if let Err(e) = roles_in(after) {
            return Ok(Some(format!("@{committer} set roles that cannot be read ({e})")));
        }
        let group_id = group.group_id().as_slice();
        if !self.may(group_id, committer, RoleRight::Promote)? {
            return Ok(Some(format!("@{committer} tried to change the group's roles without being an admin")));
        }
        Ok(None)
    }
}
