//! File requests over the WebSocket: blob tokens, sharing with a group,
//! confirming a fetch.

#[allow(unused_imports)]
use super::*;

impl Relay {
    /// `BlobToken`.
    pub(super) async fn blob_token(&self, me: &DeviceRef) -> Result<Response, ErrorBody> {
        let token: [u8; 32] = rand::random();
        let expiry = std::time::Instant::now() + BLOB_TOKEN_TTL;
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token, (me.clone(), expiry));
        Ok(Response::BlobToken { token: token.to_vec(), expires_in: BLOB_TOKEN_TTL.as_secs() })
    }

    /// `ShareBlob`.
    pub(super) async fn share_blob(
        &self,
        me: &DeviceRef,
        blob_id: Vec<u8>,
        group_id: Vec<u8>,
    ) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        blocking_timed(&self.metrics, move || store.share_blob(&blob_id, &me, &group_id)).await?;
        Ok(Response::Done)
    }

    /// `BlobFetched`.
    pub(super) async fn blob_fetched(&self, me: &DeviceRef, blob_id: Vec<u8>) -> Result<Response, ErrorBody> {
        let store = self.store.clone();
        let me = me.clone();
        let id = blob_id.clone();
        if blocking_timed(&self.metrics, move || store.blob_fetched(&id, &me)).await? {
            crate::blob_files::remove_bytes(&self.blob_dir, &blob_id).await;
        }
        Ok(Response::Done)
    }
}
