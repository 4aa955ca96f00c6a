//! Registration and login: checking who a connection is.

#[allow(unused_imports)]
use super::*;

impl Relay {
    /// Handles `Register` or `Login` on an unauthenticated connection.
    /// Returns the device now logged in.
    pub async fn authenticate(&self, challenge: &[u8], request: Request) -> Result<(DeviceRef, Response), ErrorBody> {
        let payload = signing::login_payload(&self.server_id, challenge);
        match request {
            Request::Register { handle, account_key, device, invite, signature } => {
                sotto_proto::validate_handle(&handle)
                    .map_err(|m| ErrorBody::with_message(ErrorCode::InvalidHandle, m))?;
                if account_key.len() != 32 || device.device_key.len() != 32 {
                    return Err(bad("keys are 32-byte Ed25519 public keys"));
                }
                let cert_payload = signing::device_certificate_payload(&handle, device.device_id, &device.device_key);
                if !verify(&account_key, &cert_payload, &device.certificate) {
                    return Err(ErrorBody::new(ErrorCode::BadCertificate));
                }
                if !verify(&device.device_key, &payload, &signature) {
                    return Err(ErrorBody::new(ErrorCode::AuthFailed));
                }
                let store = self.store.clone();
                let require = !self.config.open_registration;
                let (h, d) = (handle.clone(), device.clone());
                blocking_timed(&self.metrics, move || {
                    store.register(&h, &account_key, &d, invite.as_deref(), require, now_ms())
                })
                .await?;
                tracing::info!(handle = %handle, "account registered");
                let dref = DeviceRef { handle, device_id: device.device_id };
                Ok((dref.clone(), Response::LoggedIn { device: dref, key_packages: 0 }))
            }
            Request::EnrollDevice { handle, device, signature } => {
                let store = self.store.clone();
                let h = handle.clone();
                let account = blocking_timed(&self.metrics, move || store.account(&h)).await?;
                let Some(account) = account else { return Err(ErrorBody::new(ErrorCode::AuthFailed)) };
                if device.device_key.len() != 32 || device.device_id == 0 {
                    return Err(bad("a device has a 32-byte Ed25519 key and a number from 1"));
                }
                // Only the account key makes a device: whoever enrolls one
                // could as well have added it from a logged-in device.
                let cert_payload = signing::device_certificate_payload(&handle, device.device_id, &device.device_key);
                if !verify(&account.account_key, &cert_payload, &device.certificate) {
                    return Err(ErrorBody::new(ErrorCode::BadCertificate));
                }
                if !verify(&device.device_key, &payload, &signature) {
                    return Err(ErrorBody::new(ErrorCode::AuthFailed));
                }
                if account.banned {
                    return Err(ErrorBody::new(ErrorCode::Banned));
                }
                let (store, h, max) = (self.store.clone(), handle.clone(), self.config.max_devices);
                let id = device.device_id;
                blocking_timed(&self.metrics, move || store.add_device(&h, &device, max, now_ms())).await?;
                tracing::info!(handle = %handle, device = id, "device enrolled by its account key");
                let dref = DeviceRef { handle, device_id: id };
                Ok((dref.clone(), Response::LoggedIn { device: dref, key_packages: 0 }))
            }
            Request::Login { handle, device_id, signature, copy, takeover } => {
                let store = self.store.clone();
                let h = handle.clone();
                let account = blocking_timed(&self.metrics, move || store.account(&h)).await?;
                // Unknown handle and bad signature answer alike, so login
                // does not tell a stranger which handles exist.
                let Some(account) = account else { return Err(ErrorBody::new(ErrorCode::AuthFailed)) };
                let Some(device) = account.devices.iter().find(|d| d.device_id == device_id) else {
                    // A removed device is told so, to stop retrying (its key
                    // is gone with it, so this tells a stranger no more
                    // than that the account once had that device).
                    return Err(ErrorBody::new(if account.revoked.contains(&device_id) {
                        ErrorCode::DeviceRevoked
                    } else {
                        ErrorCode::AuthFailed
                    }));
                };
                if !verify(&device.device_key, &payload, &signature) {
                    return Err(ErrorBody::new(ErrorCode::AuthFailed));
                }
                if account.banned {
                    return Err(ErrorBody::new(ErrorCode::Banned));
                }
                let dref = DeviceRef { handle, device_id };
                if let Some(copy) = copy.filter(|c| !c.is_empty() && c.len() <= 32) {
                    let (store, d) = (self.store.clone(), dref.clone());
                    let claimed =
                        blocking_timed(&self.metrics, move || store.claim_copy(&d, &copy, takeover, now_ms())).await?;
                    if let Err(since) = claimed {
                        let when = humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + Duration::from_millis(since.max(0) as u64),
                        );
                        return Err(ErrorBody::with_message(
                            ErrorCode::StaleCopy,
                            format!(
                                "this copy of the profile is out of date: a backup of it was restored on another device at {when}, and that copy is the one in use now. Keep using that one and remove this copy (its history is in the backup up to then)"
                            ),
                        ));
                    }
                    if takeover {
                        // The copy it replaces is cut off at once.
                        self.hub.kick_account_device(
                            &dref,
                            ErrorBody::with_message(
                                ErrorCode::StaleCopy,
                                "this copy of the profile was replaced by one restored from a backup",
                            ),
                        );
                    }
                }
                let store = self.store.clone();
                let d = dref.clone();
                let key_packages = blocking_timed(&self.metrics, move || {
                    // Bookkeeping only: a server whose disk is full still
                    // lets people in to read what it holds.
                    if let Err(e) = store.device_seen(&d, now_ms()) {
                        tracing::warn!(error = %e, "could not record a device's last login; letting it in all the same");
                    }
                    store.key_package_count(&d)
                })
                .await?;
                Ok((dref.clone(), Response::LoggedIn { device: dref, key_packages }))
            }
            _ => Err(ErrorBody::new(ErrorCode::NotAuthenticated)),
        }
    }
}
