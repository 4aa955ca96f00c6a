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
                tx.exec(
                    "INSERT OR REPLACE INTO account_invites(handle, code_hash) VALUES(?,?)",
                    params![handle, invite_hash(code)],
                )
                .map_err(backend)?;
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
            // own recorded and nothing revoked (the old account's records,
            // if any, are not its).
            for sql in [
                "DELETE FROM device_copies WHERE handle=?",
                "DELETE FROM revoked_devices WHERE handle=?",
                "DELETE FROM device_seen WHERE handle=?",
            ] {
                tx.exec(sql, [handle]).map_err(backend)?;
            }
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
            Ok(Some(AccountRecord {
                handle: handle.to_owned(),
                account_key,
                banned,
                devices: devices_of(tx, handle)?,
                revoked: revoked_of(tx, handle)?,
            }))
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

    fn remove_account(&self, handle: &str, removal: Removal) -> StoreResult<()> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            let n = tx.exec("DELETE FROM accounts WHERE handle=?", [handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            let invite: Option<Vec<u8>> = tx
                .row("SELECT code_hash FROM account_invites WHERE handle=?", [handle], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            tx.exec("DELETE FROM account_invites WHERE handle=?", [handle]).map_err(backend)?;
            if let (Removal::ByOwner, Some(code_hash)) = (removal, invite) {
                // The invite admitted one person, who has left: it admits
                // one again (if it still exists and has not expired).
                tx.exec("UPDATE invites SET uses_left = uses_left + 1 WHERE code_hash=?", [code_hash])
                    .map_err(backend)?;
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
                "DELETE FROM revoked_devices WHERE handle=?",
                "DELETE FROM device_seen WHERE handle=?",
                "DELETE FROM members WHERE handle=?",
                "DELETE FROM accepted_groups WHERE handle=?",
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

    fn add_device(&self, handle: &str, device: &DeviceInfo, max_devices: u32, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            let known: Option<i64> =
                tx.row("SELECT 1 FROM accounts WHERE handle=?", [handle], |r| r.get(0)).optional().map_err(backend)?;
            if known.is_none() {
                return Err(StoreError::UnknownHandle);
            }
            let devices = devices_of(tx, handle)?;
            if devices.iter().any(|d| d.device_id == device.device_id)
                || revoked_of(tx, handle)?.contains(&device.device_id)
            {
                return Err(StoreError::Invalid(format!(
                    "device number {} is taken or was removed before; use a new one",
                    device.device_id
                )));
            }
            if devices.len() as u32 >= max_devices {
                return Err(StoreError::DeviceLimit(devices.len() as u32));
            }
            tx.exec(
                "INSERT INTO devices(handle, device_id, device_key, certificate, created_at) VALUES(?,?,?,?,?)",
                params![handle, device.device_id, device.device_key, device.certificate, now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn remove_device(&self, device: &DeviceRef, now: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.with_tx(|tx| {
            // Membership changes outside the writer: its cache must go.
            self.membership_changes.fetch_add(1, Ordering::SeqCst);
            let n = tx
                .exec("DELETE FROM devices WHERE handle=? AND device_id=?", params![device.handle, device.device_id])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownDevice(device.clone()));
            }
            let groups: Vec<Vec<u8>> = {
                let mut stmt = tx
                    .prepare_cached("SELECT DISTINCT group_id FROM members WHERE handle=? AND device_id=?")
                    .map_err(backend)?;
                let rows = stmt.query_map(params![device.handle, device.device_id], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            for sql in [
                "DELETE FROM key_packages WHERE handle=? AND device_id=?",
                "DELETE FROM device_copies WHERE handle=? AND device_id=?",
                "DELETE FROM members WHERE handle=? AND device_id=?",
                "DELETE FROM welcomes WHERE handle=? AND device_id=?",
                "DELETE FROM blob_readers WHERE handle=? AND device_id=?",
                "DELETE FROM device_seen WHERE handle=? AND device_id=?",
            ] {
                tx.exec(sql, params![device.handle, device.device_id]).map_err(backend)?;
            }
            tx.exec(
                "INSERT OR REPLACE INTO revoked_devices(handle, device_id, revoked_at) VALUES(?,?,?)",
                params![device.handle, device.device_id, now],
            )
            .map_err(backend)?;
            for g in &groups {
                delete_fully_acked(tx, g)?;
            }
            Ok(groups)
        })
    }

    fn device_seen(&self, device: &DeviceRef, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.exec(
                "INSERT OR REPLACE INTO device_seen(handle, device_id, last_seen) VALUES(?,?,?)",
                params![device.handle, device.device_id, now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn device_records(&self, handle: &str) -> StoreResult<Vec<sotto_proto::DeviceRecord>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT d.device_id, d.created_at, coalesce(s.last_seen, 0) FROM devices d
                     LEFT JOIN device_seen s ON s.handle = d.handle AND s.device_id = d.device_id
                     WHERE d.handle=? ORDER BY d.device_id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([handle], |r| {
                    Ok(sotto_proto::DeviceRecord { device_id: r.get(0)?, added_at: r.get(1)?, last_seen: r.get(2)? })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }
}

fn revoked_of(tx: &Connection, handle: &str) -> StoreResult<Vec<u32>> {
    let mut stmt = tx
        .prepare_cached("SELECT device_id FROM revoked_devices WHERE handle=? ORDER BY device_id")
        .map_err(backend)?;
    let rows = stmt.query_map([handle], |r| r.get(0)).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}
