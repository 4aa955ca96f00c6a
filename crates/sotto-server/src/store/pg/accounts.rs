//! The PostgreSQL store: accounts, devices, invites being used and profile
//! copies.

#[allow(unused_imports)]
use super::*;

impl Accounts for PgStore {
    fn create_invite(&self, code: &str, uses: u32, expires_at: Option<i64>, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO invites(code_hash, uses_left, expires_at, created_at) VALUES($1,$2,$3,$4)",
                &[&invite_hash(code), &i64::from(uses), &expires_at, &now],
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
            // The handle's row is the lock: two nodes registering the same
            // handle at once meet here, and the second finds it taken.
            let inserted = tx
                .execute(
                    "INSERT INTO accounts(handle, account_key, created_at) VALUES($1,$2,$3) ON CONFLICT DO NOTHING",
                    &[&handle, &account_key, &now],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::HandleTaken);
            }
            if require_invite {
                let code = invite.ok_or(StoreError::InviteRequired)?;
                let changed = tx
                    .execute(
                        "UPDATE invites SET uses_left = uses_left - 1
                         WHERE code_hash=$1 AND uses_left > 0 AND (expires_at IS NULL OR expires_at > $2)",
                        &[&invite_hash(code), &now],
                    )
                    .map_err(backend)?;
                if changed == 0 {
                    return Err(StoreError::InviteInvalid);
                }
                tx.execute(
                    "INSERT INTO account_invites(handle, code_hash) VALUES($1,$2)
                     ON CONFLICT(handle) DO UPDATE SET code_hash = excluded.code_hash",
                    &[&handle, &invite_hash(code)],
                )
                .map_err(backend)?;
            }
            tx.execute(
                "INSERT INTO devices(handle, device_id, device_key, certificate, created_at) VALUES($1,$2,$3,$4,$5)",
                &[&handle, &i64::from(device.device_id), &device.device_key, &device.certificate, &now],
            )
            .map_err(backend)?;
            for sql in [
                "DELETE FROM device_copies WHERE handle=$1",
                "DELETE FROM revoked_devices WHERE handle=$1",
                "DELETE FROM device_seen WHERE handle=$1",
            ] {
                tx.execute(sql, &[&handle]).map_err(backend)?;
            }
            Ok(())
        })
    }

    fn account(&self, handle: &str) -> StoreResult<Option<AccountRecord>> {
        self.with_tx(|tx| {
            let row = tx
                .query_opt("SELECT account_key, banned FROM accounts WHERE handle=$1", &[&handle])
                .map_err(backend)?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(AccountRecord {
                handle: handle.to_owned(),
                account_key: row.get(0),
                banned: row.get(1),
                devices: devices_of(tx, handle)?,
                revoked: revoked_of(tx, handle)?,
            }))
        })
    }

    fn claim_copy(&self, device: &DeviceRef, copy: &[u8], takeover: bool, now: i64) -> StoreResult<Result<(), i64>> {
        self.with_tx(|tx| {
            let known = tx
                .query_opt(
                    "SELECT copy_id, since FROM device_copies WHERE handle=$1 AND device_id=$2 FOR UPDATE",
                    &[&device.handle, &dev_id(device)],
                )
                .map_err(backend)?
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1)));
            match known {
                Some((k, _)) if k == copy => Ok(Ok(())),
                Some((_, since)) if !takeover => Ok(Err(since)),
                _ => {
                    tx.execute(
                        "INSERT INTO device_copies(handle, device_id, copy_id, since) VALUES($1,$2,$3,$4)
                         ON CONFLICT(handle, device_id) DO UPDATE SET copy_id = excluded.copy_id, since = excluded.since",
                        &[&device.handle, &dev_id(device), &copy, &now],
                    )
                    .map_err(backend)?;
                    Ok(Ok(()))
                }
            }
        })
    }

    fn set_banned(&self, handle: &str, banned: bool) -> StoreResult<()> {
        self.with_tx(|tx| {
            let n =
                tx.execute("UPDATE accounts SET banned=$1 WHERE handle=$2", &[&banned, &handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            Ok(())
        })
    }

    fn remove_account(&self, handle: &str, removal: Removal) -> StoreResult<()> {
        self.with_tx(|tx| {
            let n = tx.execute("DELETE FROM accounts WHERE handle=$1", &[&handle]).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownHandle);
            }
            let invite = tx
                .query_opt("DELETE FROM account_invites WHERE handle=$1 RETURNING code_hash", &[&handle])
                .map_err(backend)?
                .map(|r| r.get::<_, Vec<u8>>(0));
            if let (Removal::ByOwner, Some(code_hash)) = (removal, invite) {
                tx.execute("UPDATE invites SET uses_left = uses_left + 1 WHERE code_hash=$1", &[&code_hash])
                    .map_err(backend)?;
            }
            let groups: Vec<Vec<u8>> = tx
                .query("SELECT DISTINCT group_id FROM members WHERE handle=$1", &[&handle])
                .map_err(backend)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for sql in [
                "DELETE FROM devices WHERE handle=$1",
                "DELETE FROM key_packages WHERE handle=$1",
                "DELETE FROM device_copies WHERE handle=$1",
                "DELETE FROM revoked_devices WHERE handle=$1",
                "DELETE FROM device_seen WHERE handle=$1",
                "DELETE FROM members WHERE handle=$1",
                "DELETE FROM accepted_groups WHERE handle=$1",
                "DELETE FROM welcomes WHERE handle=$1",
                "DELETE FROM blob_readers WHERE handle=$1",
                "DELETE FROM blobs WHERE owner_handle=$1",
            ] {
                tx.execute(sql, &[&handle]).map_err(backend)?;
            }
            for g in groups {
                delete_fully_acked(tx, &g)?;
            }
            Ok(())
        })
    }

    fn add_device(&self, handle: &str, device: &DeviceInfo, max_devices: u32, now: i64) -> StoreResult<()> {
        self.with_tx(|tx| {
            // The account's row is locked: two devices added at once on two
            // nodes cannot both pass the cap.
            let known =
                tx.query_opt("SELECT 1 FROM accounts WHERE handle=$1 FOR UPDATE", &[&handle]).map_err(backend)?;
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
            tx.execute(
                "INSERT INTO devices(handle, device_id, device_key, certificate, created_at) VALUES($1,$2,$3,$4,$5)",
                &[&handle, &i64::from(device.device_id), &device.device_key, &device.certificate, &now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn remove_device(&self, device: &DeviceRef, now: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.with_tx(|tx| {
            let key: [&(dyn ::postgres::types::ToSql + Sync); 2] = [&device.handle, &dev_id(device)];
            let n = tx.execute("DELETE FROM devices WHERE handle=$1 AND device_id=$2", &key).map_err(backend)?;
            if n == 0 {
                return Err(StoreError::UnknownDevice(device.clone()));
            }
            let groups: Vec<Vec<u8>> = tx
                .query("SELECT DISTINCT group_id FROM members WHERE handle=$1 AND device_id=$2", &key)
                .map_err(backend)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for sql in [
                "DELETE FROM key_packages WHERE handle=$1 AND device_id=$2",
                "DELETE FROM device_copies WHERE handle=$1 AND device_id=$2",
                "DELETE FROM members WHERE handle=$1 AND device_id=$2",
                "DELETE FROM welcomes WHERE handle=$1 AND device_id=$2",
                "DELETE FROM blob_readers WHERE handle=$1 AND device_id=$2",
                "DELETE FROM device_seen WHERE handle=$1 AND device_id=$2",
            ] {
                tx.execute(sql, &key).map_err(backend)?;
            }
            tx.execute(
                "INSERT INTO revoked_devices(handle, device_id, revoked_at) VALUES($1,$2,$3)
                 ON CONFLICT(handle, device_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                &[&device.handle, &dev_id(device), &now],
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
            tx.execute(
                "INSERT INTO device_seen(handle, device_id, last_seen) VALUES($1,$2,$3)
                 ON CONFLICT(handle, device_id) DO UPDATE SET last_seen = excluded.last_seen",
                &[&device.handle, &dev_id(device), &now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn device_records(&self, handle: &str) -> StoreResult<Vec<sotto_proto::DeviceRecord>> {
        self.with_tx(|tx| {
            let rows = tx
                .query(
                    "SELECT d.device_id, d.created_at, coalesce(s.last_seen, 0) FROM devices d
                     LEFT JOIN device_seen s ON s.handle = d.handle AND s.device_id = d.device_id
                     WHERE d.handle=$1 ORDER BY d.device_id",
                    &[&handle],
                )
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| sotto_proto::DeviceRecord {
                    device_id: device_number(r.get(0)),
                    added_at: r.get(1),
                    last_seen: r.get(2),
                })
                .collect())
        })
    }
}

fn revoked_of(tx: &mut Tx<'_>, handle: &str) -> StoreResult<Vec<u32>> {
    let rows = tx
        .query("SELECT device_id FROM revoked_devices WHERE handle=$1 ORDER BY device_id", &[&handle])
        .map_err(backend)?;
    Ok(rows.iter().map(|r| device_number(r.get(0))).collect())
}
