//! Roles in named groups: the creator is the first admin; admins add,
//! remove and promote; members leave and (if the group allows) add. The
//! server enforces it (it refuses a commit without the right, so it never
//! reaches anyone); every client checks it again on every commit it
//! processes and refuses one that breaks it, and shows who did what.

#[allow(unused_imports)]
use super::*;

/// A group's roles as this device knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRoles {
    /// Admins' handles, sorted.
    pub admins: Vec<String>,
    /// Members who are not admins may add people.
    pub members_can_add: bool,
}

impl Messenger {
    /// The roles of a named group, if this device knows them (groups made
    /// before roles, and one-to-one conversations, have none).
    pub fn roles(&self, group_id: &[u8]) -> CoreResult<Option<GroupRoles>> {
        let row: Option<(bool, bool)> = self
            .conn
            .row("SELECT roles_known, members_can_add FROM groups WHERE group_id=?", [group_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((true, members_can_add)) = row else { return Ok(None) };
        let mut stmt = self.conn.prepare_cached("SELECT handle FROM group_admins WHERE group_id=? ORDER BY handle")?;
        let admins = stmt.query_map([group_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(Some(GroupRoles { admins, members_can_add }))
    }

    /// Whether `handle` may add or remove `what` in this group by the
    /// roles this device knows (always, where it knows none).
    pub fn may(&self, group_id: &[u8], handle: &str, what: RoleRight) -> CoreResult<bool> {
        let Some(roles) = self.roles(group_id)? else { return Ok(true) };
        if roles.admins.iter().any(|a| a == handle) {
            return Ok(true);
        }
        Ok(match what {
            RoleRight::Add => roles.members_can_add,
            RoleRight::Remove | RoleRight::Promote => false,
        })
    }

    /// The message telling members the roles as they are here (after a
    /// change the server accepted, or after adding people). `None` where
    /// this device knows no roles.
    pub fn prepare_roles(&self, conversation: &str, change: Option<RoleChange>) -> CoreResult<Option<OutboxItem>> {
        let group_id = self.group_of(conversation)?;
        if self.load_group(&group_id)?.extensions().unknown(super::roles_state::ROLES_EXTENSION).is_some() {
            // Newcomers find the roles in the group's state.
            return Ok(None);
        }
        let Some(mut roles) = self.roles(&group_id)? else { return Ok(None) };
        if let Some(change) = &change {
            roles = super::roles_state::changed(roles, change);
        }
        let body = Body::Roles { admins: roles.admins, members_can_add: roles.members_can_add };
        let content = Content::new(self.new_id(), self.now(), body);
        self.prepare_content(conversation, &content).map(Some)
    }

    /// A roles message at `seq` from `sender`: taken from an admin (or, by
    /// a device that knows no roles yet, from any member: how a newcomer
    /// learns them), and only if newer; lines in history say what changed.
    pub(crate) fn apply_roles(
        &self,
        group_id: &[u8],
        conversation: &str,
        sender: &str,
        seq: u64,
        admins: &[String],
        members_can_add: bool,
    ) -> CoreResult<Vec<Event>> {
        if self.group_kind(group_id) != GroupKind::Group || admins.is_empty() {
            return Ok(vec![]);
        }
        let before = self.roles(group_id)?;
        let roles_seq: u64 =
            self.conn.row("SELECT roles_seq FROM groups WHERE group_id=?", [group_id], |r| r.get(0))?;
        if seq <= roles_seq {
            return Ok(vec![]);
        }
        if let Some(b) = &before {
            if !b.admins.iter().any(|a| a == sender) {
                tracing::warn!(%sender, "a roles message from someone who is not an admin; ignored");
                return Ok(vec![]);
            }
        }
        if self
            .load_group(group_id)
            .is_ok_and(|g| g.extensions().unknown(super::roles_state::ROLES_EXTENSION).is_some())
        {
            // The group's MLS state holds its roles; a message cannot
            // override them.
            return Ok(vec![]);
        }
        let roles = GroupRoles { admins: admins.to_vec(), members_can_add };
        self.record_roles(group_id, conversation, sender, seq, &roles)
    }

    /// Makes `roles` this device's view of the group's roles, with a
    /// history line for each change `sender` made (none when this device
    /// knew no roles before).
    pub(crate) fn record_roles(
        &self,
        group_id: &[u8],
        conversation: &str,
        sender: &str,
        seq: u64,
        roles: &GroupRoles,
    ) -> CoreResult<Vec<Event>> {
        let before = self.roles(group_id)?;
        let (admins, members_can_add) = (&roles.admins, roles.members_can_add);
        self.conn.exec("DELETE FROM group_admins WHERE group_id=?", [group_id])?;
        for a in admins {
            self.conn.exec("INSERT OR IGNORE INTO group_admins(group_id, handle) VALUES(?,?)", params![group_id, a])?;
        }
        self.conn.exec(
            "UPDATE groups SET roles_known=1, roles_seq=?, members_can_add=? WHERE group_id=?",
            params![seq, members_can_add, group_id],
        )?;
        let Some(before) = before else { return Ok(vec![]) };
        let who = |h: &str| if h == self.identity.handle { "you".to_owned() } else { format!("@{h}") };
        let mut lines = Vec::new();
        for a in admins.iter().filter(|a| !before.admins.contains(a)) {
            lines.push(format!("{} made {} an admin", who(sender), who(a)));
        }
        for a in before.admins.iter().filter(|a| !admins.contains(a)) {
            lines.push(format!("{} made {} a member (no longer an admin)", who(sender), who(a)));
        }
        if before.members_can_add != members_can_add {
            lines.push(if members_can_add {
                format!("{} let every member add people", who(sender))
            } else {
                format!("{} let only admins add people", who(sender))
            });
        }
        let mut events = Vec::new();
        for text in lines {
            let m = self.insert_system(conversation, group_id, seq, &text)?;
            events.push(Event::Message(Box::new(m)));
        }
        Ok(events)
    }

    /// Why a commit from `committer` breaks this group's roles, if it does:
    /// it removes another person still here, or adds someone new where
    /// members may not add, without being an admin.
    pub(crate) fn role_breach(
        &self,
        group_id: &[u8],
        committer: &str,
        removed: &[SottoCredential],
        added: &[SottoCredential],
        members_before: &[String],
    ) -> CoreResult<Option<String>> {
        if self.group_kind(group_id) != GroupKind::Group {
            return Ok(None);
        }
        for r in removed {
            if r.handle != committer
                && !self.announced_leaving(group_id, &r.handle)?
                && !self.may(group_id, committer, RoleRight::Remove)?
            {
                return Ok(Some(format!("@{committer} tried to remove @{} without being an admin", r.handle)));
            }
        }
        for a in added {
            if a.handle != committer
                && !members_before.contains(&a.handle)
                && !self.may(group_id, committer, RoleRight::Add)?
            {
                return Ok(Some(format!("@{committer} tried to add @{} without the right to", a.handle)));
            }
        }
        Ok(None)
    }

    /// Whether `handle` said it leaves this group (its devices are then
    /// anyone's to remove).
    pub(crate) fn announced_leaving(&self, group_id: &[u8], handle: &str) -> CoreResult<bool> {
        let text = format!("@{handle} left the group");
        Ok(self
            .conn
            .row(
                "SELECT 1 FROM messages WHERE group_id=? AND state='system' AND body=? LIMIT 1",
                params![group_id, cbor(&Body::Text { text })],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some())
    }
}

/// What a role check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRight {
    /// Adding someone new.
    Add,
    /// Removing someone else.
    Remove,
    /// Changing roles.
    Promote,
}

/// A change of roles an admin makes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoleChange {
    /// Make `handle` an admin (true) or a member (false).
    Admin(String, bool),
    /// Let members add people, or only admins.
    MembersCanAdd(bool),
}
