//! Moving a named group made before the post-quantum suite onto it. As for
//! one-to-one conversations (`successor.rs`), MLS cannot change a group's
//! suite, so the group gets a successor under the same conversation: a new
//! X-Wing group with the same people and devices, roles, description,
//! picture and timer. A group needs more than a one-to-one conversation:
//!
//! - **One mover.** The first admin (by handle) who is still in the group,
//!   from their device with the lowest number, so two admins never start
//!   two successors; in a group from before roles, the first member.
//! - **The old group is closed.** The mover posts [`Body::Moved`] in the old
//!   group, in the server's order. From then on every member takes a
//!   message in the old group only from someone still in the new one (or
//!   someone the move did not know of: added in the old group while it
//!   moved), so a person removed from the new group cannot keep talking
//!   through the old one, and what was already on its way still arrives.
//! - **One name.** Both groups are one conversation (`#name`): the new one
//!   takes the old one's name when either the `Moved` or its own name
//!   arrives second, whichever order the server delivers them in, and its
//!   id (first byte 0) sorts before the old one's (2), so it is the one
//!   written to (`conversation_group`).
//! - **Roles.** The new group starts with the old one's roles in its MLS
//!   state; the mover then tells the server about the other admins (the
//!   server enforces roles and knows only the creator at first). A group
//!   from before roles gets every member as admin, which is what everyone
//!   could do in it.

#[allow(unused_imports)]
use super::*;

/// A classical named group this device moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMove {
    /// `#name`.
    pub conversation: String,
    /// Its classical group.
    pub group_id: Vec<u8>,
    /// Every member's devices (this one left out): each must come along.
    pub devices: Vec<(String, Vec<u32>)>,
    /// The roles the successor starts with.
    pub roles: GroupRoles,
}

/// What the mover sends into the successor once it exists: the state the
/// old group had.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CarriedState {
    /// The description ("" when none).
    pub description: String,
    /// The picture, if any.
    pub picture: Option<Vec<u8>>,
    /// The disappearing timer (0: off).
    pub timer_secs: u64,
}

impl Messenger {
    /// The classical named groups this device should move now.
    pub fn groups_to_move(&self) -> CoreResult<Vec<GroupMove>> {
        let rows: Vec<(Vec<u8>, String)> = {
            let mut stmt = self.conn.prepare(
                // Post-quantum ids start with 0: skipped without loading
                // their state.
                "SELECT group_id, conversation FROM groups
                 WHERE active=1 AND request_from IS NULL AND broken=0 AND conversation LIKE '#%'
                   AND successor IS NULL AND substr(group_id, 1, 1) <> x'00'",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for (group_id, conversation) in rows {
            if self.group_kind(&group_id) != GroupKind::Group
                || self.conversation_group(&conversation)?.as_deref() != Some(group_id.as_slice())
            {
                continue;
            }
            let Some(group) = self.still_to_move(&group_id)? else { continue };
            let members = Self::member_handles(&group);
            let mut handles: Vec<String> = members.iter().map(|(_, c)| c.handle.clone()).collect();
            handles.sort();
            handles.dedup();
            // The admins still in the group carry over; with none (a group
            // from before roles, or every admin gone), everyone keeps the
            // right they had.
            let roles = match self.roles(&group_id)? {
                Some(r) if r.admins.iter().any(|a| handles.contains(a)) => GroupRoles {
                    admins: r.admins.into_iter().filter(|a| handles.contains(a)).collect(),
                    members_can_add: r.members_can_add,
                },
                _ => GroupRoles { admins: handles.clone(), members_can_add: true },
            };
            let mover = roles.admins.iter().min();
            let my_first =
                members.iter().filter(|(_, c)| c.handle == self.identity.handle).map(|(_, c)| c.device_id).min();
            if mover != Some(&self.identity.handle) || my_first != Some(self.identity.device_id) {
                continue;
            }
            let devices = handles
                .iter()
                .map(|h| {
                    let mut d: Vec<u32> = members
                        .iter()
                        .filter(|(_, c)| {
                            &c.handle == h
                                && !(c.handle == self.identity.handle && c.device_id == self.identity.device_id)
                        })
                        .map(|(_, c)| c.device_id)
                        .collect();
                    d.sort();
                    (h.clone(), d)
                })
                .filter(|(_, d)| !d.is_empty())
                .collect();
            out.push(GroupMove { conversation, group_id, devices, roles });
        }
        Ok(out)
    }

    /// Starts the successor of a classical named group with post-quantum
    /// packages claimed for every device in it, and queues the `Moved`
    /// message in the old group (both in one transaction: a crash leaves
    /// neither or both). Refuses when a device has no post-quantum package:
    /// it would be left behind. Returns the commit to post first, then the
    /// `Moved` message.
    pub fn start_group_successor(
        &self,
        mv: &GroupMove,
        invitees: Vec<Invitee>,
    ) -> CoreResult<(PendingCommit, OutboxItem)> {
        let xwing = sotto_proto::suites::SUITE_XWING;
        for (handle, wanted) in &mv.devices {
            let got: Vec<u32> = invitees
                .iter()
                .filter(|i| &i.handle == handle)
                .flat_map(|i| &i.packages)
                .filter(|p| sotto_proto::suites::key_package_suite(&p.package) == Some(xwing))
                .map(|p| p.device.device_id)
                .collect();
            if !wanted.iter().all(|d| got.contains(d)) {
                return Err(CoreError::Invalid(format!(
                    "not every device in {} offers post-quantum keys yet (@{handle}'s)",
                    mv.conversation
                )));
            }
        }
        self.tx(|me| {
            let commit =
                me.start_group_with_roles(GroupKind::Group, &mv.conversation, invitees, Some(mv.roles.clone()))?;
            let mut members: Vec<String> = mv.devices.iter().map(|(h, _)| h.clone()).collect();
            members.push(me.identity.handle.clone());
            members.sort();
            members.dedup();
            me.conn.exec(
                "UPDATE groups SET successor=?, successor_members=? WHERE group_id=?",
                params![commit.group_id, members.join("\n"), mv.group_id],
            )?;
            me.copy_state(&mv.group_id, &commit.group_id)?;
            me.insert_system(&mv.conversation, &commit.group_id, 0, &moved_text("you"))?;
            let content = Content::new(
                me.new_id(),
                me.now(),
                Body::Moved { group_id: ByteBuf::from(commit.group_id.clone()), members },
            );
            let moved = me.queue_in_group(&mv.group_id, &mv.conversation, &content)?;
            Ok((commit, moved))
        })
    }

    /// The old group's state, to send into the successor for the members.
    pub fn carried_state(&self, old_group: &[u8]) -> CoreResult<CarriedState> {
        Ok(self.conn.row("SELECT description, picture, timer_secs FROM groups WHERE group_id=?", [old_group], |r| {
            Ok(CarriedState { description: r.get(0)?, picture: r.get(1)?, timer_secs: r.get(2)? })
        })?)
    }

    /// The successor takes the old group's description, picture and timer
    /// here at once (set before any message in it, so its own messages
    /// override them).
    fn copy_state(&self, old: &[u8], new: &[u8]) -> CoreResult<()> {
        let CarriedState { description, picture, timer_secs } = self.carried_state(old)?;
        self.conn.exec(
            // A timer goes to the server too (`retention_requests`).
            "UPDATE groups SET description=?, picture=?, timer_secs=?, retention_told=(?=0)
             WHERE group_id=? AND description_seq=0 AND picture_seq=0 AND timer_seq=0",
            params![description, picture, timer_secs, timer_secs, new],
        )?;
        Ok(())
    }

    /// A `Moved` from `sender` in the classical group `group_id`: taken from
    /// an admin only, for a post-quantum group id; the smallest successor
    /// named wins (two admins moving at once end in the same one).
    pub(crate) fn apply_moved(
        &self,
        group_id: &[u8],
        conversation: &str,
        sender: &str,
        seq: u64,
        successor: &[u8],
        members: &[String],
    ) -> CoreResult<Vec<Event>> {
        if self.group_kind(group_id) != GroupKind::Group
            || successor.first() != Some(&0)
            || successor.len() != group_id.len()
            || !self.may(group_id, sender, RoleRight::Promote)?
        {
            tracing::warn!(%sender, "a move of a group that does not hold; ignored");
            return Ok(vec![]);
        }
        let current: Option<Vec<u8>> =
            self.conn.row("SELECT successor FROM groups WHERE group_id=?", [group_id], |r| r.get(0))?;
        if current.as_deref().is_some_and(|c| c <= successor) {
            return Ok(vec![]);
        }
        self.conn.exec(
            "UPDATE groups SET successor=?, successor_members=? WHERE group_id=?",
            params![successor, members.join("\n"), group_id],
        )?;
        let mut events = self.fold_successor(group_id, conversation)?;
        // Under the name the fold left (it may have renamed this group).
        let conversation: String =
            self.conn.row("SELECT conversation FROM groups WHERE group_id=?", [group_id], |r| r.get(0))?;
        let who = if sender == self.identity.handle { "you".to_owned() } else { format!("@{sender}") };
        let m = self.insert_system(&conversation, group_id, seq, &moved_text(&who))?;
        events.push(Event::Message(Box::new(m)));
        Ok(events)
    }

    /// The successor of `old`, when this device has it, and `old` become
    /// one conversation under the group's name (either may have come in
    /// first under a placeholder or a suffixed name, depending on the order
    /// things arrived in); the successor takes `old`'s state where it has
    /// none of its own yet.
    pub(crate) fn fold_successor(&self, old: &[u8], conversation: &str) -> CoreResult<Vec<Event>> {
        let Some(successor) = self.successor_of(old)? else { return Ok(vec![]) };
        let named: Option<String> =
            self.conn.row("SELECT conversation FROM groups WHERE group_id=?", [&successor], |r| r.get(0)).optional()?;
        let Some(named) = named else { return Ok(vec![]) };
        self.copy_state(old, &successor)?;
        if named == conversation {
            return Ok(vec![]);
        }
        let target = one_name(conversation, &named).to_owned();
        let mut events = Vec::new();
        for (group, was) in [(old, conversation), (successor.as_slice(), named.as_str())] {
            if was != target {
                self.conn.exec("UPDATE groups SET conversation=? WHERE group_id=?", params![target, group])?;
                self.conn.exec(
                    "UPDATE messages SET conversation=? WHERE conversation=? AND group_id=?",
                    params![target, was, group],
                )?;
                events.push(Event::Renamed { from: was.to_owned(), to: target.clone() });
            }
        }
        Ok(events)
    }

    /// People added to a group while it moved (in the old group, by someone
    /// who had not heard yet): in the old group but neither in the
    /// successor nor among those it started with. An admin of the
    /// successor adds them there (`conversation`, handles), so they do not
    /// stay behind in a group nobody writes to.
    pub fn left_behind(&self) -> CoreResult<Vec<(String, Vec<String>)>> {
        let rows: Vec<(Vec<u8>, Vec<u8>, String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT g.group_id, s.group_id, g.conversation, coalesce(g.successor_members, '')
                 FROM groups g JOIN groups s ON s.group_id = g.successor
                 WHERE g.active=1 AND s.active=1 AND s.broken=0",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for (old, new, conversation, started_with) in rows {
            if !self.may(&new, &self.identity.handle, RoleRight::Add)? {
                continue;
            }
            let now_in = self.members_of(&new)?;
            let behind: Vec<String> = self
                .members_of(&old)?
                .into_iter()
                .filter(|h| !now_in.contains(h) && !started_with.split('\n').any(|s| s == h))
                .collect();
            if !behind.is_empty() {
                out.push((conversation, behind));
            }
        }
        Ok(out)
    }

    /// The `Moved` again, in the old group of `conversation`, for those who
    /// joined it after the first one (see [`Messenger::left_behind`]);
    /// members who had it already find nothing new in it.
    pub fn remind_moved(&self, conversation: &str) -> CoreResult<OutboxItem> {
        let (old, successor, members): (Vec<u8>, Vec<u8>, String) = self
            .conn
            .row(
                "SELECT group_id, successor, coalesce(successor_members, '') FROM groups
                 WHERE conversation=? AND active=1 AND successor IS NOT NULL",
                [conversation],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| CoreError::NotFound(format!("{conversation} did not move")))?;
        let members = members.split('\n').filter(|h| !h.is_empty()).map(str::to_owned).collect();
        let content =
            Content::new(self.new_id(), self.now(), Body::Moved { group_id: ByteBuf::from(successor), members });
        self.queue_in_group(&old, conversation, &content)
    }

    /// After leaving a conversation (or being removed from it): the groups
    /// it moved from, closed here too; the caller leaves them on the
    /// server, so nothing more is routed to this device through them.
    pub fn close_predecessors(&self, conversation: &str) -> CoreResult<Vec<Vec<u8>>> {
        let ids: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare(
                "SELECT g.group_id FROM groups g JOIN groups s ON s.group_id = g.successor
                 WHERE g.conversation=? AND g.active=1 AND s.active=0",
            )?;
            let rows = stmt.query_map([conversation], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for g in &ids {
            self.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [g])?;
        }
        Ok(ids)
    }

    /// The group `group_id` moved to, if it did.
    pub(crate) fn successor_of(&self, group_id: &[u8]) -> CoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .row("SELECT successor FROM groups WHERE group_id=?", [group_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// The classical group `group_id` succeeds, if this device knows it
    /// moved (its `Moved` arrived before the successor's name).
    pub(crate) fn predecessor_of(&self, group_id: &[u8]) -> CoreResult<Option<(Vec<u8>, String)>> {
        Ok(self
            .conn
            .row("SELECT group_id, conversation FROM groups WHERE successor=?", [group_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Whether a message from `sender` in `group_id` counts: always, unless
    /// the group moved and the sender was in the successor at the start but
    /// is no longer (removed, or left, there).
    pub(crate) fn speaks_in_moved_group(&self, group_id: &[u8], sender: &str) -> CoreResult<bool> {
        let row: Option<(Option<Vec<u8>>, Option<String>)> = self
            .conn
            .row("SELECT successor, successor_members FROM groups WHERE group_id=?", [group_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((Some(successor), members)) = row else { return Ok(true) };
        let joined: Option<bool> =
            self.conn.row("SELECT active FROM groups WHERE group_id=?", [&successor], |r| r.get(0)).optional()?;
        if joined != Some(true) {
            // Not in the successor here (yet): nothing to compare with.
            return Ok(true);
        }
        let started_with = members.unwrap_or_default();
        if !started_with.split('\n').any(|h| h == sender) {
            return Ok(true);
        }
        Ok(self.members_of(&successor)?.iter().any(|h| h == sender))
    }
}

/// The one name for a group and its successor known here as `old` and
/// `new`: not a placeholder (`#new-…`), and not a suffixed copy (`#name~…`,
/// given when the other already had `#name`) of the other.
fn one_name<'a>(old: &'a str, new: &'a str) -> &'a str {
    let suffixed = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|rest| rest.starts_with('~'));
    if new.starts_with("#new-") || suffixed(new, old) {
        old
    } else if old.starts_with("#new-") || suffixed(old, new) {
        new
    } else {
        old
    }
}

/// What members see when a group moved.
fn moved_text(who: &str) -> String {
    format!(
        "{who} moved this group to post-quantum encryption (X-Wing: ML-KEM-768 with X25519); everything before stays here"
    )
}

#[cfg(test)]
mod tests {
    use super::one_name;

    #[test]
    fn a_group_and_its_successor_end_under_the_plain_name() {
        assert_eq!(one_name("#team", "#new-0a1b2c3d"), "#team");
        assert_eq!(one_name("#new-0a1b2c3d", "#team"), "#team");
        assert_eq!(one_name("#team", "#team~1a2b"), "#team");
        assert_eq!(one_name("#team~1a2b", "#team"), "#team");
        // Renamed meanwhile: the name the old group has here.
        assert_eq!(one_name("#crew", "#team"), "#crew");
    }
}
