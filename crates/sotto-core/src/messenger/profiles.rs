//! People's profiles: the name they go by and their picture, shared end to
//! end. A person's profile travels as a control message inside each of
//! their conversations (as MLS ciphertext, so the server never sees it),
//! again whenever they change it and into every conversation they start or
//! join later; receivers keep only the sender's own profile from it.

#[allow(unused_imports)]
use super::*;

use crate::content::{image_type, MAX_AVATAR_BYTES};

const OWN_PROFILE: &str = "own_profile";
const PROFILE_VERSION: &str = "own_profile_version";

/// A person's profile as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonProfile {
    /// Whose (without `@`).
    pub handle: String,
    /// The name they go by ("" when they gave none).
    pub name: String,
    /// Their picture and its media type.
    pub avatar: Option<(String, Vec<u8>)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    name: String,
    #[serde(default, with = "serde_bytes")]
    avatar: Option<Vec<u8>>,
    /// When it was set (ms), on whichever of the account's devices.
    #[serde(default)]
    at: i64,
}

impl Messenger {
    /// Sets this person's profile (a name, a picture, or both; `None`
    /// keeps what was there, an empty name or `Some(vec![])` as picture
    /// removes it). It goes to every conversation the next time this
    /// device is online.
    pub fn set_own_profile(&self, name: Option<&str>, avatar: Option<Vec<u8>>) -> CoreResult<PersonProfile> {
        let mut now = self.own_profile()?.unwrap_or_default();
        if let Some(name) = name {
            let name = name.trim();
            if name.chars().count() > 64 || name.chars().any(char::is_control) {
                return Err(CoreError::Invalid("a display name is at most 64 characters, on one line".into()));
            }
            now.name = name.to_owned();
        }
        if let Some(bytes) = avatar {
            if bytes.is_empty() {
                now.avatar = None;
            } else {
                if bytes.len() > MAX_AVATAR_BYTES {
                    return Err(CoreError::Invalid(format!(
                        "a profile picture is at most {} KiB; make a smaller copy of it",
                        MAX_AVATAR_BYTES / 1024
                    )));
                }
                let Some(kind) = image_type(&bytes) else {
                    return Err(CoreError::Invalid("a profile picture must be a PNG, JPEG, GIF or WebP image".into()));
                };
                now.avatar = Some((kind.to_owned(), bytes));
            }
        }
        let stored =
            Stored { name: now.name.clone(), avatar: now.avatar.as_ref().map(|(_, b)| b.clone()), at: self.now() };
        self.tx(|me| {
            me.set_setting(OWN_PROFILE, &cbor(&stored))?;
            let version = me.profile_version()? + 1;
            me.set_setting(PROFILE_VERSION, &version.to_be_bytes())?;
            Ok(())
        })?;
        now.handle = self.identity.handle.clone();
        Ok(now)
    }

    /// This person's own profile, if they set one.
    pub fn own_profile(&self) -> CoreResult<Option<PersonProfile>> {
        let Some(bytes) = self.setting(OWN_PROFILE)? else { return Ok(None) };
        let stored: Stored =
            ciborium::from_reader(bytes.as_slice()).map_err(|e| CoreError::decode("own profile", e))?;
        Ok(Some(PersonProfile {
            handle: self.identity.handle.clone(),
            name: stored.name,
            avatar: stored.avatar.map(|b| (image_type(&b).unwrap_or("application/octet-stream").to_owned(), b)),
        }))
    }

    fn profile_version(&self) -> CoreResult<u64> {
        Ok(self
            .setting(PROFILE_VERSION)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Someone's profile (this person's own included).
    pub fn profile_of(&self, handle: &str) -> CoreResult<Option<PersonProfile>> {
        if handle == self.identity.handle {
            return self.own_profile();
        }
        let row: Option<(String, Option<Vec<u8>>)> = self
            .conn
            .row("SELECT name, avatar FROM profiles WHERE handle=?", [handle], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(name, avatar)| PersonProfile {
            handle: handle.to_owned(),
            name,
            avatar: avatar.map(|b| (image_type(&b).unwrap_or("application/octet-stream").to_owned(), b)),
        }))
    }

    /// Puts this person's profile into every conversation that has not had
    /// its newest version (message requests excepted: they learn it once
    /// accepted). Returns how many were queued; the outbox sends them.
    pub fn queue_owed_profiles(&self) -> CoreResult<usize> {
        let Some(profile) = self.own_profile()? else { return Ok(0) };
        let version = self.profile_version()?;
        let owed: Vec<(Vec<u8>, String)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT group_id, conversation FROM groups
                 WHERE active=1 AND broken=0 AND request_from IS NULL AND profile_sent < ?",
            )?;
            let rows = stmt.query_map([version], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut queued = 0;
        for (group_id, conversation) in owed {
            let body = Body::Profile {
                name: profile.name.clone(),
                avatar: profile.avatar.as_ref().map(|(_, b)| ByteBuf::from(b.clone())),
            };
            let content = Content::new(self.new_id(), self.now(), body);
            match self.queue_in_group(&group_id, &conversation, &content) {
                Ok(_) => queued += 1,
                // Not writable now (nobody else in it yet, or left): it is
                // tried again next time.
                Err(CoreError::NotAMember) | Err(CoreError::NobodyElse) => {}
                Err(e) => return Err(e),
            }
            self.conn.exec("UPDATE groups SET profile_sent=? WHERE group_id=?", params![version, group_id])?;
        }
        Ok(queued)
    }

    /// A profile from `sender` (only theirs is taken, and only if newer).
    pub(crate) fn apply_profile(&self, sender: &str, content: &Content) -> CoreResult<Vec<Event>> {
        let Body::Profile { name, avatar } = &content.body else { return Ok(vec![]) };
        if sender == self.identity.handle {
            // Set on another of this account's devices: it is this
            // person's profile here too (that device tells the others).
            let mine_at = match self.setting(OWN_PROFILE)? {
                Some(b) => ciborium::from_reader::<Stored, _>(b.as_slice()).map(|s| s.at).unwrap_or(0),
                None => 0,
            };
            if content.sent_at > mine_at {
                let stored =
                    Stored { name: name.clone(), avatar: avatar.as_ref().map(|a| a.to_vec()), at: content.sent_at };
                self.set_setting(OWN_PROFILE, &cbor(&stored))?;
            }
            return Ok(vec![]);
        }
        if self.is_blocked(sender)? {
            return Ok(vec![]);
        }
        let changed = self.conn.exec(
            "INSERT INTO profiles(handle, name, avatar, updated_at) VALUES(?,?,?,?)
             ON CONFLICT(handle) DO UPDATE SET name=excluded.name, avatar=excluded.avatar, updated_at=excluded.updated_at
             WHERE excluded.updated_at > profiles.updated_at",
            params![sender, name, avatar.as_ref().map(|a| a.to_vec()), content.sent_at],
        )?;
        Ok(if changed > 0 { vec![Event::Profile { handle: sender.to_owned() }] } else { vec![] })
    }
}
