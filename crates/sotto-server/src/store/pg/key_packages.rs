//! The PostgreSQL store: KeyPackages, each one-time package claimed once
//! (a claimed row is locked and deleted in the same statement, so two
//! nodes claiming at once get different packages).

#[allow(unused_imports)]
use super::*;

impl KeyPackages for PgStore {
    fn add_key_packages(
        &self,
        device: &DeviceRef,
        packages: &[Vec<u8>],
        last_resort: Option<&[u8]>,
    ) -> StoreResult<u32> {
        self.with_tx(|tx| {
            let have = one_time_count(tx, device)? as usize;
            if have + packages.len() > sotto_proto::limits::MAX_KEY_PACKAGES_STOCK {
                return Err(StoreError::LimitExceeded(format!(
                    "a device may keep at most {} key packages",
                    sotto_proto::limits::MAX_KEY_PACKAGES_STOCK
                )));
            }
            let insert = "INSERT INTO key_packages(handle, device_id, last_resort, package) VALUES($1,$2,$3,$4)";
            for p in packages {
                tx.execute(insert, &[&device.handle, &dev_id(device), &false, p]).map_err(backend)?;
            }
            if let Some(lr) = last_resort {
                tx.execute(
                    "DELETE FROM key_packages WHERE handle=$1 AND device_id=$2 AND last_resort",
                    &[&device.handle, &dev_id(device)],
                )
                .map_err(backend)?;
                tx.execute(insert, &[&device.handle, &dev_id(device), &true, &lr]).map_err(backend)?;
            }
            one_time_count(tx, device)
        })
    }

    fn key_package_count(&self, device: &DeviceRef) -> StoreResult<u32> {
        self.with_tx(|tx| one_time_count(tx, device))
    }

    fn claim_key_packages(&self, handle: &str, only: Option<&[u32]>) -> StoreResult<Vec<(DeviceInfo, Vec<u8>, u32)>> {
        self.with_tx(|tx| {
            let mut devices = devices_of(tx, handle)?;
            if devices.is_empty() {
                return Err(StoreError::UnknownHandle);
            }
            if let Some(only) = only {
                devices.retain(|d| only.contains(&d.device_id));
                if devices.is_empty() {
                    return Err(StoreError::UnknownDevice(DeviceRef {
                        handle: handle.to_owned(),
                        device_id: only.first().copied().unwrap_or(0),
                    }));
                }
            }
            let mut out = Vec::new();
            for device in devices {
                let id = i64::from(device.device_id);
                // A one-time package, locked (others skip it) and deleted;
                // failing that, the last-resort one, which stays.
                let one_time = tx
                    .query_opt(
                        "DELETE FROM key_packages WHERE id = (
                             SELECT id FROM key_packages WHERE handle=$1 AND device_id=$2 AND NOT last_resort
                             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                         RETURNING package",
                        &[&handle, &id],
                    )
                    .map_err(backend)?;
                let package = match one_time {
                    Some(r) => r.get::<_, Vec<u8>>(0),
                    None => {
                        let last = tx
                            .query_opt(
                                "SELECT package FROM key_packages WHERE handle=$1 AND device_id=$2 AND last_resort
                                 ORDER BY id LIMIT 1",
                                &[&handle, &id],
                            )
                            .map_err(backend)?;
                        let Some(r) = last else { continue };
                        r.get(0)
                    }
                };
                let dref = DeviceRef { handle: handle.to_owned(), device_id: device.device_id };
                let left = one_time_count(tx, &dref)?;
                out.push((device, package, left));
            }
            if out.is_empty() {
                return Err(StoreError::NoKeyPackages);
            }
            Ok(out)
        })
    }
}
