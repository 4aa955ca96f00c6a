//! Contacts, trust on first use of account keys, blocking.

#[allow(unused_imports)]
use super::*;

impl Messenger {
    /// Records a contact's account key on first sight; on a different key
    /// later, marks the contact changed and refuses.
    /// Records a contact's account key on first sight (trust on first use).
    /// A different key later is held as pending, the contact is marked
    /// changed and unverified, and `true` is returned; nothing fails, so a
    /// key change never loses a message.
    pub(crate) fn note_contact(&self, handle: &str, account_key: &[u8]) -> CoreResult<bool> {
        if handle == self.identity.handle {
            // Another device of this account must be certified by this
            // account's key: there is no "trust on first use" for oneself.
            if account_key != self.identity.account_key() {
                return Err(CoreError::BadCredential(format!(
                    "a device calls itself @{handle} (this account) but is not certified by this account's key"
                )));
            }
            return Ok(false);
        }
        let known: Option<Vec<u8>> =
            self.conn.row("SELECT account_key FROM contacts WHERE handle=?", [handle], |r| r.get(0)).optional()?;
        match known {
            None => {
                self.conn.exec(
                    "INSERT INTO contacts(handle, account_key, added_at) VALUES(?,?,?)",
                    params![handle, account_key, self.now()],
                )?;
                Ok(false)
            }
            Some(k) if k == account_key => Ok(false),
            Some(_) => {
                self.conn.exec(
                    "UPDATE contacts SET key_changed=1, verified=0, pending_key=? WHERE handle=?",
                    params![account_key, handle],
                )?;
                Ok(true)
            }
        }
    }

    /// Blocks `handle`: their welcomes are dropped and their messages are
    /// not stored or shown, in any conversation. True if newly blocked.
    /// The account's other devices block them too.
    pub fn block(&self, handle: &str) -> CoreResult<bool> {
        self.tx(|me| {
            let new = me.set_blocked(handle, true)?;
            if new {
                me.tell_own_devices(Body::Block { handle: handle.to_owned(), blocked: true })?;
            }
            Ok(new)
        })
    }

    /// Lifts a block (on the account's other devices too). True if
    /// `handle` was blocked.
    pub fn unblock(&self, handle: &str) -> CoreResult<bool> {
        self.tx(|me| {
            let was = me.set_blocked(handle, false)?;
            if was {
                me.tell_own_devices(Body::Block { handle: handle.to_owned(), blocked: false })?;
            }
            Ok(was)
        })
    }

    /// Blocks or unblocks on this device only. True if that changed
    /// anything.
    pub(crate) fn set_blocked(&self, handle: &str, blocked: bool) -> CoreResult<bool> {
        let changed = if blocked {
            self.conn.exec("INSERT OR IGNORE INTO blocked(handle, since) VALUES(?,?)", params![handle, self.now()])?
        } else {
            self.conn.exec("DELETE FROM blocked WHERE handle=?", [handle])?
        };
        Ok(changed > 0)
    }

    /// Whether this person blocked `handle`.
    pub fn is_blocked(&self, handle: &str) -> CoreResult<bool> {
        Ok(self
            .conn
            .row("SELECT 1 FROM blocked WHERE handle=?", [handle], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some())
    }

    /// Everyone blocked, by handle.
    pub fn blocked(&self) -> CoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT handle FROM blocked ORDER BY handle")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the account key the server reports for `handle` now (see
    /// `note_contact`); true when it differs from the known one, which
    /// holds sending to them until the person trusts the new key.
    pub fn observe_account_key(&self, handle: &str, account_key: &[u8]) -> CoreResult<bool> {
        self.note_contact(handle, account_key)
    }

    /// Refuses to build anything for a contact whose key changed and is not
    /// yet trusted, or whose key differs from the one given.
    pub(crate) fn require_trusted(&self, handle: &str, account_key: &[u8]) -> CoreResult<()> {
        let row: Option<(Vec<u8>, bool)> = self
            .conn
            .row("SELECT account_key, key_changed FROM contacts WHERE handle=?", [handle], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match row {
            Some((k, false)) if k == account_key => Ok(()),
            None => Ok(()),
            _ => Err(CoreError::KeyChanged(handle.to_owned())),
        }
    }

    /// Every contact.
    pub fn contacts(&self) -> CoreResult<Vec<Contact>> {
        let mut stmt =
            self.conn.prepare("SELECT handle, account_key, verified, key_changed FROM contacts ORDER BY handle")?;
        let rows = stmt.query_map([], |r| {
            Ok(Contact { handle: r.get(0)?, account_key: r.get(1)?, verified: r.get(2)?, key_changed: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
