//! The SQLite store: accounts, devices, invites being used and profile copies.

#[allow(unused_imports)]
use super::*;

impl Accounts for SqliteStore {
    fn create_invite(&self, code: &str, uses: u32, expires_at: Option<i64>, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec(
                "INSERT INTO invites(code_hash, uses_left, expires_at, created_at) VALUES(?,?,?,?)",
                params![invite_hash(code), uses, expires_at, now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn register(
        &self,
        handle: &str,
        account_key: &[u8],
        device: &DeviceInfo,
        invite: Option<&str>,
        require_invite: bool,
        now: i64,
    ) -> StoreResult<()> {
        self.with_tx(|tx| {
            let exists: bool = tx
                .row("SELECT count(*) FROM accounts WHERE handle=?", [handle], |r| r.get::<_, i64>(0))
                .map_err(backend)?
                > 0;
            if exists {
                return Err(StoreError::HandleTaken);
            }
            if require_invite {
                let code = invite.ok_or(StoreError::InviteRequired)?;
                let changed = tx
                    .exec(
                        "UPDATE invites SET uses_left = uses_left - 1
                         WHERE code_hash=? AND uses_left > 0 AND (expires_at IS NULL OR expires_at > ?)",
                        params![invite_hash(code), now],
                    )
                    .map_err(backend)?;
                if changed == 0 {
                    return Err(StoreError::InviteInvalid);
                }
            }
            tx.exec(
                "INSERT INTO accounts(handle, account_key, created_at) VALUES(?,?,?)",
                params![handle, account_key, now],
            )
            .map_err(backend)?;
            tx.exec(
                "INSERT INTO devices(handle, device_id, device_key, certificate, created_at) VALUES(?,?,?,?,?)",
                params![handle, device.device_id, device.device_key, device.certificate, now],
            )
            .map_err(backend)?;
            // A new account under an old handle starts with no copy of its
            // own recorded (the old account's record, if any, is not its).
            tx.exec("DELETE FROM device_copies WHERE handle=?", [handle]).map_err(backend)?;
            Ok(())
        })
    }

    fn account(&self, handle: &str) -> StoreResult<Option<AccountRecord>> {
        self.with_tx(|tx| {
            let row = tx
                .row("SELECT account_key, banned FROM accounts WHERE handle=?", [handle], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, bool>(1)?))
                })
                .optional()
                .map_err(backend)?;
            let Some((account_key, banned)) = row else { return Ok(None) };
            Ok(Some(AccountRecord { handle: handle.to_owned(), account_key, banned, devices: devices_of(tx, handle)? }))
        })
    }

    fn claim_copy(&self, device: &DeviceRef, copy: &[u8], takeover: bool, now: i64) -> StoreResult<Result<(), i64>> {
        self.with_tx(|tx| {
            let known: Option<(Vec<u8>, i64)> = tx
                .row(
                    "SELECT copy_id, since FROM device_copies WHERE handle=? AND device_id=?",
                    params![device.handle, device.device_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match known {
                Some((k, _)) if k == copy => Ok(Ok(())),
                Some((_, since)) if !takeover => Ok(Err(since)),
                _ => {
                    tx.exec(
                        "INSERT OR REPLACE INTO device_copies(handle, device_id, copy_id, since) VALUES(?,?,?,?)",
                        params![device.handle, device.device_id, copy, now],
                    )
                    .map_err(backend)?;
                    Ok(Ok(()))
                }
            }
        })
    }

    fn set_banned(&self, handle: &str, banned: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            let n = tx.exec("UPDATE accounts SET banned=? WHERE handle=?", params![banned, handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            Ok(())
        })
    }

    fn remove_account(&self, handle: &str) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            let n = tx.exec("DELETE FROM accounts WHERE handle=?", [handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            let groups: Vec<Vec<u8>> = {
                let mut stmt =
                    tx.prepare_cached("SELECT DISTINCT group_id FROM members WHERE handle=?").map_err(backend)?;
                let rows = stmt.query_map([handle], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            for sql in [
                "DELETE FROM devices WHERE handle=?",
                "DELETE FROM key_packages WHERE handle=?",
                "DELETE FROM device_copies WHERE handle=?",
                "DELETE FROM members WHERE handle=?",
                "DELETE FROM welcomes WHERE handle=?",
                "DELETE FROM blob_readers WHERE handle=?",
                "DELETE FROM blobs WHERE owner_handle=?",
            ] {
                tx.exec(sql, [handle]).map_err(backend)?;
            }
            for g in groups {
                delete_fully_acked(tx, &g)?;
            }
            Ok(())
        })
    }
}
