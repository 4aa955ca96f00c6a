//! A restored backup becoming a device of its own: the backup of the
//! account's first device holds the account key, so the restored profile
//! certifies a fresh device key for itself and joins the account beside the
//! original (`enroll_device` on the server) instead of replacing it. It
//! keeps the backup's history; its conversations wait for a welcome (the
//! MLS state in the backup is the original device's), which the account's
//! other devices and its contacts send as they do for any new device.

#[allow(unused_imports)]
use super::*;

impl Messenger {
    /// Restores `file` into a new profile in `dir` as a new device of the
    /// account named `name`. Refused for a backup of a linked device (it
    /// has no account key: link the machine instead). The device joins
    /// the account on the server with [`Messenger::enroll_request`].
    pub fn restore_as_new_device(
        file: &Path,
        passphrase: &str,
        dir: &Path,
        key: &ProfileKey,
        name: &str,
    ) -> CoreResult<Self> {
        let m = Self::restore_files(file, passphrase, dir, key)?;
        let made = m.become_new_device(name);
        drop(m);
        if let Err(e) = made {
            db::remove(dir);
            return Err(e);
        }
        Messenger::open(dir, key)
    }

    fn become_new_device(&self, name: &str) -> CoreResult<()> {
        let known = self.own_devices()?.iter().map(|d| d.device_id).max().unwrap_or(0);
        let identity = self.identity.as_device(known.max(self.identity.device_id) + 1, true, name)?;
        self.tx(|me| {
            me.put_identity(&identity)?;
            me.set_setting("copy_id", &rand::random::<[u8; 16]>())?;
            me.conn.exec(
                "DELETE FROM settings WHERE k IN ('copy_takeover', 'history_offer', 'history_owed', 'blobs_to_release')",
                [],
            )?;
            // The backup's MLS state is the original device's: each
            // conversation waits for this device's own welcome (its history
            // stays), and nothing of the original's outbox is sent as this
            // one.
            me.conn.exec("UPDATE groups SET active=0, broken=0 WHERE active=1", [])?;
            me.conn.exec("UPDATE messages SET state='not_sent' WHERE state='pending'", [])?;
            me.conn.execute_batch("DELETE FROM outbox; DELETE FROM uploads;")?;
            Ok(())
        })
    }

    fn put_identity(&self, identity: &Identity) -> CoreResult<()> {
        self.set_setting("identity", &identity.to_bytes())?;
        self.conn.exec(
            "INSERT OR REPLACE INTO own_devices(device_id, name, added_at) VALUES(?,?,?)",
            params![identity.device_id, identity.name, self.now()],
        )?;
        Ok(())
    }

    /// The `EnrollDevice` request, signed for this connection.
    pub fn enroll_request(&self, login_payload: &[u8]) -> Request {
        Request::EnrollDevice {
            handle: self.identity.handle.clone(),
            device: self.identity.device_info(),
            signature: self.identity.sign_login(login_payload),
        }
    }

    /// The server has this device's number already (taken, or removed
    /// before): the next one, same key.
    pub fn renumber_device(&mut self) -> CoreResult<u32> {
        let next = self.identity.as_device(self.identity.device_id + 1, false, &self.identity.name.clone())?;
        self.tx(|me| {
            me.conn.exec("DELETE FROM own_devices WHERE device_id=?", [me.identity.device_id])?;
            me.put_identity(&next)
        })?;
        self.identity = next;
        Ok(self.identity.device_id)
    }
}
