//! The SQLite store: keyPackage stock: upload, count, claim once.

#[allow(unused_imports)]
use super::*;
use crate::store::key_package_rules::{check_stock, choose_suites};

impl KeyPackages for SqliteStore {
    fn add_key_packages(
        &self,
        device: &DeviceRef,
        packages: &[(u16, Vec<u8>)],
        last_resorts: &[(u16, Vec<u8>)],
    ) -> StoreResult<u32> {
        self.with_tx(|tx| {
            check_stock(&suite_counts(tx, device)?, packages)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO key_packages(handle, device_id, last_resort, package, suite) VALUES(?,?,?,?,?)",
                )
                .map_err(backend)?;
            for (suite, p) in packages {
                stmt.execute(params![device.handle, device.device_id, 0, p, suite]).map_err(backend)?;
            }
            for (suite, lr) in last_resorts {
                tx.exec(
                    "DELETE FROM key_packages WHERE handle=? AND device_id=? AND last_resort=1 AND suite=?",
                    params![device.handle, device.device_id, suite],
                )
                .map_err(backend)?;
                stmt.execute(params![device.handle, device.device_id, 1, lr, suite]).map_err(backend)?;
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
                // One-time packages first (oldest), the last-resort one only
                // when none is left.
                let row: Option<(i64, Vec<u8>, bool)> = tx
                    .row(
                        "SELECT id, package, last_resort FROM key_packages WHERE handle=? AND device_id=? AND suite=?
                         ORDER BY last_resort ASC, id ASC LIMIT 1",
                        params![handle, device.device_id, suite],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some((id, package, last_resort)) = row else { continue };
                if !last_resort {
                    tx.exec("DELETE FROM key_packages WHERE id=?", [id]).map_err(backend)?;
                }
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
