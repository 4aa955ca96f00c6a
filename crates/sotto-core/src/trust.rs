//! Knowing who is on the other end: safety numbers, verification, and
//! acknowledging a changed key.

use crate::sql::Cached;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha512};

use crate::content::Body;
use crate::error::{CoreError, CoreResult};
use crate::messenger::Messenger;

/// Rounds of SHA-512 per half of a safety number. Makes finding a key whose
/// number collides with a given one (a second preimage on 100 bits) costly.
const ITERATIONS: usize = 5200;

/// 30 digits for one party: iterated SHA-512 over a version, the account key
/// and the handle, read as six 5-digit groups (each 5 bytes taken mod 100000).
fn half(account_key: &[u8], handle: &str) -> String {
    let mut digest = {
        let mut h = Sha512::new();
        h.update([0u8, 1]);
        h.update(account_key);
        h.update(handle.as_bytes());
        h.finalize()
    };
    for _ in 1..ITERATIONS {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(account_key);
        digest = h.finalize();
    }
    digest[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// The safety number of two parties: 60 digits, the same whoever computes
/// it (the two halves are ordered, not "mine then theirs").
pub fn safety_number(a_key: &[u8], a_handle: &str, b_key: &[u8], b_handle: &str) -> String {
    let (x, y) = (half(a_key, a_handle), half(b_key, b_handle));
    if x <= y {
        x + &y
    } else {
        y + &x
    }
}

/// Formats 60 digits as 12 groups of 5.
pub fn grouped(digits: &str) -> String {
    digits.as_bytes().chunks(5).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join(" ")
}

impl Messenger {
    fn contact_key(&self, handle: &str) -> CoreResult<(Vec<u8>, bool, Option<Vec<u8>>)> {
        self.conn
            .row("SELECT account_key, key_changed, pending_key FROM contacts WHERE handle=?", [handle], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
            .ok_or_else(|| CoreError::NotFound(format!("@{handle} is not a contact yet; exchange a message first")))
    }

    /// The safety number with a contact (60 digits), computed from the key
    /// this device trusts for them, or the new one while a change is
    /// pending (that is the one to compare before trusting it).
    pub fn safety_number(&self, handle: &str) -> CoreResult<String> {
        let (key, _, pending) = self.contact_key(handle)?;
        let key = pending.unwrap_or(key);
        let me = &self.identity;
        Ok(safety_number(&me.account_key(), &me.handle, &key, handle))
    }

    /// Marks a contact verified if `digits` (spaces ignored) equal the
    /// safety number.
    pub fn confirm_verified(&self, handle: &str, digits: &str) -> CoreResult<()> {
        let given: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
        let (_, changed, _) = self.contact_key(handle)?;
        if changed {
            return Err(CoreError::KeyChanged(handle.to_owned()));
        }
        if given != self.safety_number(handle)? {
            return Err(CoreError::Invalid(format!(
                "that is not the safety number you share with @{handle}; do not trust this contact until you know why"
            )));
        }
        let (key, _, _) = self.contact_key(handle)?;
        self.tx(|me| {
            me.conn.exec("UPDATE contacts SET verified=1 WHERE handle=?", [handle])?;
            me.tell_own_devices(Body::Trust { handle: handle.to_owned(), account_key: key, verified: true })?;
            Ok(())
        })?;
        Ok(())
    }

    /// Accepts a contact's changed account key: sending resumes; the
    /// contact stays unverified until safety numbers are compared again.
    pub fn trust(&self, handle: &str) -> CoreResult<bool> {
        let (_, changed, pending) = self.contact_key(handle)?;
        if !changed {
            return Ok(false);
        }
        let Some(new) = pending else { return Ok(false) };
        self.tx(|me| {
            me.trust_here(handle, &new)?;
            me.tell_own_devices(Body::Trust { handle: handle.to_owned(), account_key: new.clone(), verified: false })?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Takes `new` as `handle`'s account key on this device (the person
    /// trusted it here or on another of their devices).
    pub(crate) fn trust_here(&self, handle: &str, new: &[u8]) -> CoreResult<()> {
        self.tx(|me| {
            me.conn.exec(
                "UPDATE contacts SET account_key=?, pending_key=NULL, key_changed=0, verified=0 WHERE handle=?",
                params![new, handle],
            )?;
            // One-to-one groups with the old key's devices lead nowhere now:
            // close them so the conversation continues in the new one.
            let conversation = format!("@{handle}");
            let mut stmt = me.conn.prepare("SELECT group_id FROM groups WHERE conversation=? AND active=1")?;
            let groups: Vec<Vec<u8>> = stmt.query_map([&conversation], |r| r.get(0))?.collect::<Result<_, _>>()?;
            for g in groups {
                let stale = me.member_credentials(&g)?.iter().any(|c| c.handle == handle && c.account_key != new);
                if stale {
                    me.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [&g])?;
                    me.insert_system(&conversation, &g, 0, "the conversation with the old key was closed")?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_stable_and_distinct() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let ab = safety_number(&a, "alice", &b, "bob");
        assert_eq!(ab, safety_number(&b, "bob", &a, "alice"));
        assert_eq!(ab.len(), 60);
        assert!(ab.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(ab, safety_number(&a, "alice", &c, "carol"));
        assert_ne!(ab, safety_number(&a, "alice", &c, "bob"), "a new key for bob gives a new number");
        assert_eq!(grouped(&ab).split(' ').count(), 12);
        // Fixed vector (computed independently with Python's hashlib): the
        // number must never change between versions.
        assert_eq!(ab, "190792886681909414257149810750579710751039276752270474487359");
    }
}
