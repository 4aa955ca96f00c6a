//! The account's own group: an MLS group of this account's devices and
//! nobody else's. What one device decides for the whole account (trusting
//! or verifying a contact's key, blocking someone) and the history handed
//! to a newly linked device travel through it as control messages,
//! encrypted end to end like everything else. It is never shown as a
//! conversation.

#[allow(unused_imports)]
use super::*;
use crate::files::FileInfo;

/// A history archive waiting to be fetched and imported by this device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryOffer {
    /// The archive's blob.
    pub file: FileInfo,
    /// Opens the archive.
    pub secret: String,
    /// How many days back it reaches.
    pub days: u32,
}

impl Messenger {
    /// The account's own group, if this device is in one.
    pub fn own_group(&self) -> CoreResult<Option<Vec<u8>>> {
        self.conversation_group(OWN_CONVERSATION)
    }

    /// Starts the account's own group with the claimed devices of this
    /// account (returns the commit to post, after creating the group).
    pub fn start_own_group(&self, invitee: Invitee) -> CoreResult<PendingCommit> {
        if invitee.handle != self.identity.handle {
            return Err(CoreError::Invalid("only this account's devices belong in its own group".into()));
        }
        self.start_group(GroupKind::Own, OWN_CONVERSATION, vec![invitee])
    }

    /// Queues a control message to this account's other devices. `None`
    /// when there is no own group (a single device: nobody to tell).
    pub fn tell_own_devices(&self, body: Body) -> CoreResult<Option<OutboxItem>> {
        if self.own_group()?.is_none() {
            return Ok(None);
        }
        let content = Content::new(self.new_id(), self.now(), body);
        self.prepare_content(OWN_CONVERSATION, &content).map(Some)
    }

    /// Applies a control message from the own group (inside the delivery's
    /// transaction). Only this account's devices are members (a welcome
    /// into an "own" group with anyone else in it is refused), and the
    /// sender is checked again all the same.
    pub(crate) fn apply_own(&self, sender: &str, body: Body) -> CoreResult<Vec<Event>> {
        if sender != self.identity.handle {
            return Ok(vec![]);
        }
        match body {
            Body::Trust { handle, account_key, verified } => self.take_trust(&handle, &account_key, verified),
            Body::Block { handle, blocked } => {
                self.set_blocked(&handle, blocked)?;
                Ok(vec![])
            }
            Body::Mute { group_id, muted } => {
                let conversation: Option<String> = self
                    .conn
                    .row("SELECT conversation FROM groups WHERE group_id=?", [group_id.as_slice()], |r| r.get(0))
                    .optional()?;
                let Some(conversation) = conversation.filter(|c| c != OWN_CONVERSATION) else { return Ok(vec![]) };
                self.conn.exec("UPDATE groups SET muted=? WHERE conversation=?", params![muted, conversation])?;
                Ok(vec![Event::Muted { conversation, muted }])
            }
            Body::History { device_id, file, secret, days } if device_id == self.identity.device_id => {
                self.set_setting("history_offer", &cbor(&HistoryOffer { file, secret, days }))?;
                Ok(vec![])
            }
            // For another device of the account: this one will never fetch
            // it, so it tells the server at once that it need not keep the
            // blob for it ([`Messenger::blobs_to_release`]).
            Body::History { file, .. } => {
                let mut release: Vec<serde_bytes::ByteBuf> =
                    self.blobs_to_release()?.into_iter().map(serde_bytes::ByteBuf::from).collect();
                release.push(serde_bytes::ByteBuf::from(file.blob_id));
                self.set_setting("blobs_to_release", &cbor(&release))?;
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }

    /// A trust decision another device of this account made.
    fn take_trust(&self, handle: &str, key: &[u8], verified: bool) -> CoreResult<Vec<Event>> {
        if sotto_proto::validate_handle(handle).is_err() || handle == self.identity.handle {
            return Ok(vec![]);
        }
        let known: Option<(Vec<u8>, Option<Vec<u8>>)> = self
            .conn
            .row("SELECT account_key, pending_key FROM contacts WHERE handle=?", [handle], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match known {
            None => {
                self.conn.exec(
                    "INSERT INTO contacts(handle, account_key, verified, added_at, accepted) VALUES(?,?,?,?,1)",
                    params![handle, key, verified, self.now()],
                )?;
            }
            Some((current, _)) if current == key => {
                self.conn.exec("UPDATE contacts SET verified=? WHERE handle=?", params![verified, handle])?;
            }
            // The changed key this device holds back: the person trusted it
            // on another device.
            Some((_, Some(pending))) if pending == key => {
                self.trust_here(handle, key)?;
                self.conn.exec("UPDATE contacts SET verified=? WHERE handle=?", params![verified, handle])?;
            }
            // A key this device has not seen yet: it is held as a change
            // when it shows up here, as any change is.
            Some(_) => {}
        }
        Ok(vec![])
    }

    /// Blobs shared with this device that it will never fetch (another
    /// device's history archive): the server is told, so it keeps them
    /// only for the device they are for.
    pub fn blobs_to_release(&self) -> CoreResult<Vec<Vec<u8>>> {
        Ok(self
            .setting("blobs_to_release")?
            .and_then(|b| ciborium::from_reader::<Vec<serde_bytes::ByteBuf>, _>(b.as_slice()).ok())
            .map(|v| v.into_iter().map(|b| b.into_vec()).collect())
            .unwrap_or_default())
    }

    /// Forgets the blobs released on the server.
    pub fn blobs_released(&self) -> CoreResult<()> {
        self.conn.exec("DELETE FROM settings WHERE k='blobs_to_release'", [])?;
        Ok(())
    }

    /// The history archive offered to this device, if one waits.
    pub fn history_offer(&self) -> CoreResult<Option<HistoryOffer>> {
        match self.setting("history_offer")? {
            Some(bytes) => Ok(ciborium::from_reader(bytes.as_slice()).ok()),
            None => Ok(None),
        }
    }

    /// Forgets the offer (imported, or unusable).
    pub fn clear_history_offer(&self) -> CoreResult<()> {
        self.conn.exec("DELETE FROM settings WHERE k='history_offer'", [])?;
        Ok(())
    }

    /// Devices of this account still owed a history archive, with the
    /// days it should reach back (set when linking completed before the
    /// device came online).
    pub fn history_owed(&self) -> CoreResult<Vec<(u32, u32)>> {
        match self.setting("history_owed")? {
            Some(bytes) => Ok(ciborium::from_reader(bytes.as_slice()).unwrap_or_default()),
            None => Ok(vec![]),
        }
    }

    /// Records (`Some(days)`) or clears (`None`) the history owed to a
    /// device.
    pub fn set_history_owed(&self, device_id: u32, days: Option<u32>) -> CoreResult<()> {
        let mut owed: Vec<(u32, u32)> = self.history_owed()?.into_iter().filter(|(d, _)| *d != device_id).collect();
        if let Some(days) = days {
            owed.push((device_id, days));
        }
        self.set_setting("history_owed", &cbor(&owed))
    }
}
