//! The PostgreSQL store: KeyPackages, each one-time package claimed once
//! (a claimed row is locked and deleted in the same statement, so two
//! nodes claiming at once get different packages).

#[allow(unused_imports)]
use super::*;
use crate::store::key_package_rules::{check_stock, choose_suites};

impl KeyPackages for PgStore {
    fn add_key_packages(
        &self,
        device: &DeviceRef,
        packages: &[(u16, Vec<u8>)],
        last_resorts: &[(u16, Vec<u8>)],
    ) -> StoreResult<u32> {
        self.with_tx(|tx| {
            check_stock(&suite_counts(tx, device)?, packages)?;
            let insert =
                "INSERT INTO key_packages(handle, device_id, last_resort, package, suite) VALUES($1,$2,$3,$4,$5)";
            for (suite, p) in packages {
                tx.execute(insert, &[&device.handle, &dev_id(device), &false, p, &i32::from(*suite)])
                    .map_err(backend)?;
            }
            for (suite, lr) in last_resorts {
                tx.execute(
                    "DELETE FROM key_packages WHERE handle=$1 AND device_id=$2 AND last_resort AND suite=$3",
                    &[&device.handle, &dev_id(device), &i32::from(*suite)],
                )
                .map_err(backend)?;
                tx.execute(insert, &[&device.handle, &dev_id(device), &true, lr, &i32::from(*suite)])
                    .map_err(backend)?;
            }
            one_time_count(tx, device)
        })
    }

    fn key_package_count(&self, device: &DeviceRef) -> StoreResult<u32> {
        self.with_tx(|tx| one_time_count(tx, device))
    }

    fn claim_key_packages(
        &self,
        handle: &str,
        only: Option<&[u32]>,
        suites: &[u16],
    ) -> StoreResult<Vec<(DeviceInfo, Vec<u8>, u32)>> {
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
            let mut held = Vec::with_capacity(devices.len());
            for device in &devices {
                let dref = DeviceRef { handle: handle.to_owned(), device_id: device.device_id };
                held.push(suite_counts(tx, &dref)?.into_iter().map(|(s, _)| s).collect::<Vec<_>>());
            }
            let chosen = choose_suites(suites, &held);
            let mut out = Vec::new();
            for (device, suite) in devices.into_iter().zip(chosen) {
                let Some(suite) = suite else { continue };
                let id = i64::from(device.device_id);
                let suite = i32::from(suite);
                // A one-time package, locked (others skip it) and deleted;
                // failing that, the suite's last-resort one, which stays.
                let one_time = tx
                    .query_opt(
                        "DELETE FROM key_packages WHERE id = (
                             SELECT id FROM key_packages
                             WHERE handle=$1 AND device_id=$2 AND suite=$3 AND NOT last_resort
                             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                         RETURNING package",
                        &[&handle, &id, &suite],
                    )
                    .map_err(backend)?;
                let package = match one_time {
                    Some(r) => r.get::<_, Vec<u8>>(0),
                    None => {
                        let last = tx
                            .query_opt(
                                "SELECT package FROM key_packages
                                 WHERE handle=$1 AND device_id=$2 AND suite=$3 AND last_resort
                                 ORDER BY id LIMIT 1",
                                &[&handle, &id, &suite],
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
