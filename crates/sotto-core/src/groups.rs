//! Named group conversations: create, add, remove, leave, rename, and the
//! control messages that carry names and departures inside the group.

use crate::sql::Cached;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::content::{Body, Content};
use crate::error::{CoreError, CoreResult};
use crate::messenger::{Event, GroupKind, Intent, Invitee, Messenger, OutboxItem, PendingCommit};

/// A group as `sotto groups` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    /// `#name`.
    pub conversation: String,
    /// Member handles (this device's account included).
    pub members: Vec<String>,
    /// False after leaving or being removed.
    pub active: bool,
    /// What the group is about ("" when nobody said).
    pub description: String,
    /// Its picture, if it has one.
    pub picture: Option<PictureInfo>,
    /// Its admins (empty: a group from before roles, everyone may).
    pub admins: Vec<String>,
    /// Members who are not admins may add people.
    pub members_can_add: bool,
}

/// A picture's kind and size (the bytes stay in the profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PictureInfo {
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub media_type: String,
    /// Bytes.
    pub size: usize,
}

/// Checks a group name: 1 to 32 of letters, digits, `_`, `-`, `.`.
pub fn validate_group_name(name: &str) -> CoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!("group names are 1 to 32 letters, digits, '_', '-' or '.' (got {name:?})")))
    }
}

impl Messenger {
    pub(crate) fn group_of(&self, conversation: &str) -> CoreResult<Vec<u8>> {
        self.conversation_group(conversation)?
            .ok_or_else(|| CoreError::NotFound(format!("no conversation {conversation}")))
    }

    /// Creates `#name` with the invitees. Returns the commit to post; after
    /// it is accepted, post [`Messenger::announce`] so members learn the name.
    pub fn create_group(&self, name: &str, invitees: Vec<Invitee>) -> CoreResult<PendingCommit> {
        validate_group_name(name)?;
        let conversation = format!("#{name}");
        if self.conversation_group(&conversation)?.is_some() {
            return Err(CoreError::Invalid(format!("you already have a group called {conversation}")));
        }
        if invitees.iter().any(|i| i.handle == self.identity.handle) {
            return Err(CoreError::Invalid("you are in the group already; name the others".into()));
        }
        self.start_group(GroupKind::Group, &conversation, invitees)
    }

    /// Why this person may not do `what` here: the words, naming the
    /// admins to ask.
    pub(crate) fn admins_only(&self, group_id: &[u8], conversation: &str, what: &str) -> CoreResult<String> {
        let admins = self.roles(group_id)?.map(|r| r.admins).unwrap_or_default();
        let list: Vec<String> = admins.iter().map(|a| format!("@{a}")).collect();
        Ok(format!("only an admin of {conversation} can {what} it; ask {}", list.join(" or ")))
    }

    /// The commit adding people to a group, or `None` if all are in it.
    pub fn add_to_group(&self, conversation: &str, invitees: Vec<Invitee>) -> CoreResult<Option<PendingCommit>> {
        let g = self.group_of(conversation)?;
        if !self.may(&g, &self.identity.handle, crate::RoleRight::Add)? {
            return Err(CoreError::Invalid(self.admins_only(&g, conversation, "add people to")?));
        }
        self.precheck(&invitees)?;
        self.queue_commit(&g, Intent::Add(invitees))
    }

    /// The commit removing people from a group, or `None` if none is in it.
    pub fn remove_from_group(&self, conversation: &str, handles: Vec<String>) -> CoreResult<Option<PendingCommit>> {
        let g = self.group_of(conversation)?;
        if !self.may(&g, &self.identity.handle, crate::RoleRight::Remove)? {
            return Err(CoreError::Invalid(self.admins_only(&g, conversation, "remove people from")?));
        }
        self.queue_commit(&g, Intent::Remove(handles))
    }

    /// An update commit refreshing this device's keys in a group.
    pub fn update_keys(&self, group_id: &[u8]) -> CoreResult<Option<PendingCommit>> {
        if self.commit_waiting(group_id)? {
            // One commit of ours at a time per group; the update comes
            // with a later turn.
            return Ok(None);
        }
        self.queue_commit(group_id, Intent::Update)
    }

    /// Groups whose last key update by this device is older than `max_age_ms`.
    pub fn updates_due(&self, max_age_ms: i64) -> CoreResult<Vec<Vec<u8>>> {
        // A group that moved to a successor needs no fresh keys: nobody
        // writes in it any more.
        let mut stmt = self
            .conn
            .prepare("SELECT group_id FROM groups WHERE active=1 AND successor IS NULL AND last_update <= ?")?;
        let rows = stmt.query_map([self.now() - max_age_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The message that tells members the group's name (after creating it,
    /// adding people, or to rename it).
    pub fn announce(&self, conversation: &str) -> CoreResult<OutboxItem> {
        let name = conversation.trim_start_matches('#').to_owned();
        let content = Content::new(self.new_id(), self.now(), Body::GroupMeta { name });
        let item = self.prepare_content(conversation, &content)?;
        // Newcomers learn the roles from whoever added them, too.
        self.prepare_roles(conversation, None)?;
        Ok(item)
    }

    /// Renames a group locally and returns the message telling the others.
    pub fn rename_group(&self, conversation: &str, new_name: &str) -> CoreResult<OutboxItem> {
        validate_group_name(new_name)?;
        let g = self.group_of(conversation)?;
        let new_conv = format!("#{new_name}");
        if self.conversation_group(&new_conv)?.is_some() {
            return Err(CoreError::Invalid(format!("you already have a group called {new_conv}")));
        }
        self.tx(|me| me.set_conversation(&g, conversation, &new_conv))?;
        self.announce(&new_conv)
    }

    /// The message announcing that this device leaves; after posting it, the
    /// caller sends `Leave` to the server and calls [`Messenger::mark_left`].
    pub fn leave_message(&self, conversation: &str) -> CoreResult<OutboxItem> {
        let content = Content::new(self.new_id(), self.now(), Body::Leave);
        self.prepare_content(conversation, &content)
    }

    /// Marks a group as left: nothing more is sent to it.
    pub fn mark_left(&self, conversation: &str) -> CoreResult<Vec<u8>> {
        let g = self.group_of(conversation)?;
        self.tx(|me| {
            me.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [&g])?;
            me.insert_system(conversation, &g, 0, "you left the group")?;
            Ok(g)
        })
    }

    fn set_conversation(&self, group_id: &[u8], old: &str, new: &str) -> CoreResult<()> {
        self.conn.exec("UPDATE groups SET conversation=? WHERE group_id=?", params![new, group_id])?;
        self.conn.exec(
            "UPDATE messages SET conversation=? WHERE conversation=? AND group_id=?",
            params![new, old, group_id],
        )?;
        Ok(())
    }

    /// Applies a control message from a member (inside the delivery's
    /// transaction).
    pub(crate) fn apply_control(
        &self,
        group_id: &[u8],
        conversation: &str,
        sender: &str,
        seq: u64,
        body: Body,
    ) -> CoreResult<Vec<Event>> {
        if self.group_kind(group_id) == GroupKind::Own {
            return self.apply_own(sender, body);
        }
        if let Body::Timer { secs } = body {
            return self.apply_timer(group_id, conversation, sender, seq, secs);
        }
        if matches!(body, Body::Description { .. } | Body::Pin { .. }) {
            return Ok(vec![]);
        }
        if body == Body::Accepted {
            // Only this account's own devices speak for it.
            if sender == self.identity.handle {
                if let Some(from) = self.group_request_from(group_id)? {
                    self.clear_request(group_id, &from)?;
                    return Ok(vec![Event::Joined { conversation: conversation.to_owned() }]);
                }
            }
            return Ok(vec![]);
        }
        if self.group_kind(group_id) != GroupKind::Group {
            // A one-to-one conversation has no name or members to manage;
            // only the peer leaving it (deleting their account) matters:
            // it is closed, so the next message starts afresh with whoever
            // holds the handle then (or is refused if nobody does).
            if body == Body::Leave {
                self.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [group_id])?;
                let text = format!("@{sender} left this conversation; messages sent here now would reach nobody");
                let m = self.insert_system(conversation, group_id, seq, &text)?;
                return Ok(vec![Event::Message(Box::new(m))]);
            }
            return Ok(vec![]);
        }
        match body {
            Body::Moved { group_id: successor, members } => {
                self.apply_moved(group_id, conversation, sender, seq, &successor, &members)
            }
            Body::GroupMeta { name } => {
                if validate_group_name(&name).is_err() {
                    return Ok(vec![]);
                }
                let wanted = format!("#{name}");
                if wanted == conversation {
                    return Ok(vec![]);
                }
                // Another local group may already use the name: keep both
                // apart with a suffix from the group id.
                let taken: Option<Vec<u8>> = self
                    .conn
                    .row("SELECT group_id FROM groups WHERE conversation=?", [&wanted], |r| r.get(0))
                    .optional()?;
                let new_conv = match taken {
                    // The group this one succeeds: one conversation.
                    Some(other) if self.successor_of(&other)?.as_deref() == Some(group_id) => {
                        if conversation != wanted {
                            self.set_conversation(group_id, conversation, &wanted)?;
                        }
                        return Ok(vec![Event::Renamed { from: conversation.to_owned(), to: wanted }]);
                    }
                    Some(other) if other != group_id => format!("{wanted}~{}", crate::messenger::short_id(group_id, 2)),
                    _ => wanted,
                };
                let first = conversation.starts_with("#new-");
                self.set_conversation(group_id, conversation, &new_conv)?;
                let text = if first && sender == self.identity.handle {
                    format!("this device joined {new_conv} (added from another of your devices)")
                } else if first {
                    format!("@{sender} added you to {new_conv}")
                } else {
                    format!("@{sender} renamed the group to {new_conv}")
                };
                let m = self.insert_system(&new_conv, group_id, seq, &text)?;
                Ok(vec![Event::Renamed { from: conversation.to_owned(), to: new_conv }, Event::Message(Box::new(m))])
            }
            Body::Leave => {
                let m = self.insert_system(conversation, group_id, seq, &format!("@{sender} left the group"))?;
                // Any member may make the removal commit; the first to reach
                // the server wins and the others find nothing left to do.
                if let Some(item) = self.build_commit(group_id, Intent::Remove(vec![sender.to_owned()]))? {
                    self.put_outbox(&item)?;
                }
                Ok(vec![Event::Message(Box::new(m))])
            }
            _ => Ok(vec![]),
        }
    }

    /// Every group conversation with its members.
    pub fn groups(&self) -> CoreResult<Vec<GroupSummary>> {
        let mut stmt = self.conn.prepare(
            // A group that moved is listed as its successor.
            "SELECT group_id, conversation, active, description FROM groups
             WHERE conversation LIKE '#%' AND request_from IS NULL
               AND NOT EXISTS (SELECT 1 FROM groups s WHERE s.group_id = groups.successor)
             ORDER BY conversation",
        )?;
        let rows: Vec<(Vec<u8>, String, bool, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (g, conversation, active, description) in rows {
            let members = if active { self.members_of(&g)? } else { vec![] };
            let roles = self.roles(&g)?.unwrap_or(crate::GroupRoles { admins: vec![], members_can_add: true });
            let picture = self
                .group_picture(&conversation)?
                .map(|(media_type, bytes)| PictureInfo { media_type, size: bytes.len() });
            out.push(GroupSummary {
                picture,
                conversation,
                members,
                active,
                description,
                admins: roles.admins,
                members_can_add: roles.members_can_add,
            });
        }
        Ok(out)
    }

    /// The group's MLS epoch and epoch authenticator. Members in step hold
    /// the same pair; the authenticator differs as soon as their key
    /// schedules do, whatever the epoch numbers say.
    pub fn epoch_state(&self, group_id: &[u8]) -> CoreResult<(u64, Vec<u8>)> {
        let group = self.load_group(group_id)?;
        Ok((group.epoch().as_u64(), group.epoch_authenticator().as_slice().to_vec()))
    }

    /// Member handles of a group, from its MLS state.
    pub fn members_of(&self, group_id: &[u8]) -> CoreResult<Vec<String>> {
        let group = self.load_group(group_id)?;
        let mut handles: Vec<String> = Self::member_handles_of(&group);
        handles.sort();
        handles.dedup();
        Ok(handles)
    }
}
