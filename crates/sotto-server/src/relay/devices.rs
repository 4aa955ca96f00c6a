//! An account's devices: adding one (certified by the account key),
//! removing one for good, listing them.

#[allow(unused_imports)]
use super::*;

impl Relay {
    /// `AddDevice`: only a device of the account may add one, and only with
    /// a certificate by the account key. The server cannot mint such a
    /// certificate, so a device it slipped in on its own would still be
    /// refused by every client (they check the certificate too).
    pub(super) async fn add_device(&self, me: &DeviceRef, device: DeviceInfo) -> Result<Response, ErrorBody> {
        if device.device_key.len() != 32 || device.device_id == 0 {
            return Err(bad("a device has a 32-byte Ed25519 key and a number from 1"));
        }
        let store = self.store.clone();
        let h = me.handle.clone();
        let account = blocking_timed(&self.metrics, move || store.account(&h))
            .await?
            .ok_or_else(|| ErrorBody::new(ErrorCode::UnknownHandle))?;
        if !certificate_valid(&me.handle, &account.account_key, &device) {
            return Err(ErrorBody::new(ErrorCode::BadCertificate));
        }
        let (store, h, max) = (self.store.clone(), me.handle.clone(), self.config.max_devices);
        let id = device.device_id;
        blocking_timed(&self.metrics, move || store.add_device(&h, &device, max, now_ms())).await?;
        tracing::info!(handle = %me.handle, device = id, by = me.device_id, "device added");
        Ok(Response::Done)
    }

    /// `RemoveDevice`: any device of the account may remove any (a lost
    /// phone is removed from the laptop), itself included.
    pub(super) async fn remove_device(&self, me: &DeviceRef, device_id: u32) -> Result<Response, ErrorBody> {
        let target = DeviceRef { handle: me.handle.clone(), device_id };
        let (store, t) = (self.store.clone(), target.clone());
        blocking_timed(&self.metrics, move || store.remove_device(&t, now_ms())).await?;
        self.hub.kick_account_device(&target, ErrorBody::new(ErrorCode::DeviceRevoked));
        // Its connection may be on another node.
        let (store, t) = (self.store.clone(), target.clone());
        let _ = tokio::task::spawn_blocking(move || store.ring(&crate::store::Change::KickDevice(t))).await;
        tracing::info!(device = %target, by = me.device_id, "device removed");
        Ok(Response::Done)
    }

    /// `ListDevices`.
    pub(super) async fn list_devices(&self, me: &DeviceRef) -> Result<Response, ErrorBody> {
        let (store, h) = (self.store.clone(), me.handle.clone());
        let devices = blocking_timed(&self.metrics, move || store.device_records(&h)).await?;
        Ok(Response::Devices { devices })
    }
}
