//! History for a newly linked device. The linking device writes an archive
//! of the last days (the backup's container under a random secret),
//! uploads it as an encrypted blob shared with the account's own group,
//! and tells the new device there (the secret and the blob's key travel
//! inside MLS). The new device fetches it, imports it and deletes it. The
//! server stores one more blob, which it cannot read.

use std::sync::Arc;

use sotto_core::archive::ArchiveSummary;
use sotto_core::Body;
use sotto_proto::Request;

use crate::{Session, SessionError, SessionResult};

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Session<'_> {
    /// Hands the device `device_id` of this account the history of the
    /// last `days` days. `None` when the device is not in the account's
    /// own group yet: the history is owed, and handed over at a later
    /// connection of this device ([`Session::open`]).
    pub async fn hand_over_history(&mut self, device_id: u32, days: u32) -> SessionResult<Option<ArchiveSummary>> {
        let m = self.messenger;
        let Some(dir) = m.outgoing_dir() else { return Ok(None) };
        let in_own_group = match m.own_group()? {
            Some(g) => m.groups_with_own_device(device_id)?.contains(&g),
            None => false,
        };
        if !in_own_group {
            m.set_history_owed(device_id, Some(days))?;
            return Ok(None);
        }
        std::fs::create_dir_all(&dir).map_err(|e| SessionError::Other(format!("{}: {e}", dir.display())))?;
        // Left by an interrupted hand-over: its secret is gone with it.
        let path = dir.join(format!("history-for-device-{device_id}.sotto"));
        let _ = std::fs::remove_file(&path);
        let since = m.now() - i64::from(days) * DAY_MS;
        let (summary, secret) = m.write_history_archive(&path, since)?;
        let sent = async {
            let meta = std::fs::metadata(&path).map_err(|e| SessionError::Other(format!("{}: {e}", path.display())))?;
            let (file, key) = self.upload_path(&path, &meta, false, Arc::new(|_, _| {})).await?;
            let group_id =
                m.own_group()?.ok_or_else(|| SessionError::Other("the account's own group is gone".into()))?;
            self.connection().request(Request::ShareBlob { blob_id: file.blob_id.clone(), group_id }).await?;
            m.upload_done(&key)?;
            if let Some(item) = m.tell_own_devices(Body::History { device_id, file, secret: secret.clone(), days })? {
                self.post_item(item).await?;
            }
            SessionResult::Ok(())
        }
        .await;
        let _ = std::fs::remove_file(&path);
        match sent {
            Ok(()) => {
                m.set_history_owed(device_id, None)?;
                Ok(Some(summary))
            }
            Err(e) => {
                m.set_history_owed(device_id, Some(days))?;
                Err(e)
            }
        }
    }

    /// Hands over the history still owed to devices linked while they were
    /// offline (not fatal: tried again at the next connection).
    pub(crate) async fn hand_over_owed_history(&mut self) {
        let owed = self.messenger.history_owed().unwrap_or_default();
        for (device_id, days) in owed {
            if let Err(e) = self.hand_over_history(device_id, days).await {
                tracing::warn!(device_id, error = %e, "could not hand the history to a linked device yet");
            }
        }
    }

    /// Fetches and imports the history archive another device of this
    /// account offered this one, if one waits. An interrupted fetch
    /// resumes at the next call; the archive is deleted once imported.
    pub async fn import_offered_history(&mut self) -> SessionResult<Option<ArchiveSummary>> {
        let m = self.messenger;
        let Some(offer) = m.history_offer()? else { return Ok(None) };
        let dir = m.dir().join("incoming");
        std::fs::create_dir_all(&dir).map_err(|e| SessionError::Other(format!("{}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join(format!("history-{}.sotto", hex::encode(&offer.file.blob_id)));
        if !path.exists() {
            self.download_info(&offer.file, Some(&path), Arc::new(|_, _| {})).await?;
        }
        let imported = m.import_history_archive(&path, &offer.secret, &dir.join("archive"));
        let _ = std::fs::remove_file(&path);
        // An archive that does not open never will: it is not asked for
        // again (the conversations work without it).
        m.clear_history_offer()?;
        Ok(Some(imported?))
    }

    /// The history imported during this session, once.
    pub fn take_imported_history(&mut self) -> Option<ArchiveSummary> {
        self.imported.take()
    }

    /// After deliveries were processed: an offered history is imported at
    /// once (not fatal: tried again at the next connection).
    pub(crate) async fn take_offered_history(&mut self) {
        let release = self.messenger.blobs_to_release().unwrap_or_default();
        if !release.is_empty() {
            for blob_id in release {
                // Gone already, or never shared with this device: nothing
                // to release.
                let _ = self.connection().request(Request::BlobFetched { blob_id }).await;
            }
            let _ = self.messenger.blobs_released();
        }
        if !matches!(self.messenger.history_offer(), Ok(Some(_))) {
            return;
        }
        match self.import_offered_history().await {
            Ok(Some(s)) => {
                tracing::info!(messages = s.messages, files = s.files, "history from another device imported");
                self.imported = Some(s);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not import the history from another device yet"),
        }
    }
}
