//! KeyPackage requests: uploading a stock, claiming one per device of
//! someone.

#[allow(unused_imports)]
use super::*;
use sotto_proto::suites::{claim_preference, key_package_suite};

impl Relay {
    /// `UploadKeyPackages`.
    pub(super) async fn upload_key_packages(
        &self,
        me: &DeviceRef,
        packages: Vec<serde_bytes::ByteBuf>,
        last_resorts: Vec<serde_bytes::ByteBuf>,
    ) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        if packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
            return Err(bad(format!("at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload")));
        }
        if packages.iter().chain(last_resorts.iter()).any(|p| p.is_empty() || p.len() > 16 * 1024) {
            return Err(bad("a key package is 1 byte to 16 KiB"));
        }
        let with_suite = |p: serde_bytes::ByteBuf| -> Result<(u16, Vec<u8>), ErrorBody> {
            let suite = key_package_suite(&p).ok_or_else(|| bad("that is not an MLS 1.0 key package"))?;
            Ok((suite, p.into_vec()))
        };
        let packages = packages.into_iter().map(with_suite).collect::<Result<Vec<_>, _>>()?;
        let last_resorts = last_resorts.into_iter().map(with_suite).collect::<Result<Vec<_>, _>>()?;
        if (1..last_resorts.len()).any(|i| last_resorts[..i].iter().any(|(s, _)| *s == last_resorts[i].0)) {
            return Err(bad("one last-resort key package per suite"));
        }
        let me = me.clone();
        let n = blocking_timed(&self.metrics, move || store.add_key_packages(&me, &packages, &last_resorts)).await?;
        Ok(Response::KeyPackagesStored { key_packages: n })
    }

    /// `ClaimKeyPackages`.
    pub(super) async fn claim_key_packages(
        &self,
        me: &DeviceRef,
        handle: String,
        devices: Option<Vec<u32>>,
        suites: Vec<u16>,
    ) -> Result<Response, ErrorBody> {
        if suites.len() > 8 {
            return Err(bad("name at most 8 suites"));
        }
        let store = self.store.clone();
        if devices.as_ref().is_some_and(|d| d.is_empty() || d.len() > self.config.max_devices as usize) {
            return Err(bad("name between one device and the device cap"));
        }
        // A device adding its own account's other devices to its groups
        // (after a link) needs one package per group; the budget guards
        // other people's stock, not one's own.
        let own = me.handle == handle;
        if !own && !self.claims.allow(&me.handle, &handle, std::time::Instant::now()) {
            return Err(ErrorBody::with_message(
                ErrorCode::RateLimited,
                format!("too many key package claims for @{handle} this hour; try again later"),
            ));
        }
        let h = handle.clone();
        let s2 = store.clone();
        let claimed = blocking_timed(&self.metrics, move || {
            s2.claim_key_packages(&h, devices.as_deref(), claim_preference(&suites))
        })
        .await?;
        let h = handle.clone();
        let account = blocking_timed(&self.metrics, move || store.account(&h))
            .await?
            .ok_or_else(|| ErrorBody::new(ErrorCode::UnknownHandle))?;
        let mut packages = Vec::with_capacity(claimed.len());
        for (device, package, left) in claimed {
            if (left as usize) < KEY_PACKAGES_LOW_WATER {
                self.hub.key_packages_low(&DeviceRef { handle: handle.clone(), device_id: device.device_id }, left);
            }
            packages.push(ClaimedKeyPackage { device, package });
        }
        Ok(Response::KeyPackages { handle, account_key: account.account_key, packages })
    }
}
