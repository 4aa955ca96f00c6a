//! Requests about accounts: deleting one's own, looking someone up, presence.

#[allow(unused_imports)]
use super::*;

impl Relay {
    /// `DeleteAccount`.
    pub(super) async fn delete_account(&self, me: &DeviceRef) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let handle = me.handle.clone();
        blocking_timed(&self.metrics, move || store.remove_account(&handle, crate::store::Removal::ByOwner)).await?;
        // Its other devices' connections end too (this one gets
        // its answer first: the kick is seen on the next turn).
        self.hub
            .kick_account(&me.handle, ErrorBody::with_message(ErrorCode::NotAuthenticated, "this account was deleted"));
        tracing::info!(handle = %me.handle, "account deleted by its owner");
        Ok(Response::Done)
    }

    /// `LookupUser`.
    pub(super) async fn lookup_user(&self, handle: String) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let account = blocking_timed(&self.metrics, move || store.account(&handle))
            .await?
            .ok_or_else(|| ErrorBody::new(ErrorCode::UnknownHandle))?;
        Ok(Response::User(UserInfo {
            handle: account.handle,
            account_key: account.account_key,
            devices: account.devices,
        }))
    }

    /// `Presence`.
    pub(super) async fn presence(&self, me: &DeviceRef, handles: Vec<String>) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        if !self.config.presence {
            return Ok(Response::Presence { enabled: false, online: vec![] });
        }
        if handles.len() > 1000 {
            return Err(bad("ask about at most 1000 accounts at once"));
        }
        let me = me.clone();
        // On a deployment of several nodes, also who is connected to another.
        let (shared, elsewhere) = blocking_timed(&self.metrics, move || {
            let shared = store.co_members(&me, &handles)?;
            let elsewhere = if store.shared() { store.online_elsewhere(&shared)? } else { Vec::new() };
            Ok((shared, elsewhere))
        })
        .await?;
        let online = shared.into_iter().map(|h| {
            let on = self.hub.account_online(&h) || elsewhere.contains(&h);
            (h, on)
        });
        Ok(Response::Presence { enabled: true, online: online.collect() })
    }
}
