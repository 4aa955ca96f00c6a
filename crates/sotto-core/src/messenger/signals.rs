//! Typing indicators: transient, never stored by the server nor here,
//! never delivered to a device that is offline. They are not MLS
//! application messages (one dropped for an offline device would leave a
//! gap in the sender's generation chain): each is sealed with
//! XChaCha20-Poly1305 under a key exported from the group's current epoch
//! (MLS's exporter, RFC 9420 section 8.5), so only members of that epoch
//! can read it, and the server passes it on only to connected devices.

#[allow(unused_imports)]
use super::*;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The exporter label: a key for nothing but transient signals.
const LABEL: &str = "sotto transient signal v1";

/// What a signal says, sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Signal {
    /// The sender's handle and device: must match who the server says
    /// sent it.
    handle: String,
    device_id: u32,
    /// Typing now (true), or stopped (false).
    typing: bool,
}

impl Messenger {
    /// The `Signal` request that tells the conversation's other connected
    /// devices this person is typing (or stopped). `None` when there is no
    /// such conversation here or it cannot take one (a message request).
    pub fn typing_request(&self, conversation: &str, typing: bool) -> CoreResult<Option<Request>> {
        let Some(group_id) = self.conversation_group(conversation)? else { return Ok(None) };
        if self.request_from(conversation)?.is_some() {
            return Ok(None);
        }
        let group = self.load_group(&group_id)?;
        if !group.is_active() {
            return Ok(None);
        }
        let epoch = group.epoch().as_u64();
        let key = self.signal_key(&group, &group_id)?;
        let plain = crate::padding::pad_to(
            cbor(&Signal { handle: self.identity.handle.clone(), device_id: self.identity.device_id, typing }),
            crate::padding::SIGNAL_BYTES,
        );
        let nonce: [u8; 24] = rand::random();
        let sealed = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| CoreError::Invalid("signal key".into()))?
            .encrypt(XNonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| CoreError::Invalid("could not seal a signal".into()))?;
        let mut payload = Vec::with_capacity(8 + 24 + sealed.len());
        payload.extend_from_slice(&epoch.to_be_bytes());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        Ok(Some(Request::Signal { group_id, payload }))
    }

    /// Opens a signal the server passed on. Anything that does not open
    /// (another epoch, a forged or damaged one, a sender who is not who
    /// the server says, a blocked person) is dropped without a word: a
    /// typing line is not worth an error.
    pub fn open_signal(&self, group_id: &[u8], sender: &DeviceRef, payload: &[u8]) -> Vec<Event> {
        self.try_open_signal(group_id, sender, payload).ok().flatten().into_iter().collect()
    }

    fn try_open_signal(&self, group_id: &[u8], sender: &DeviceRef, payload: &[u8]) -> CoreResult<Option<Event>> {
        if payload.len() < 8 + 24 + 16 || self.group_kind(group_id) == GroupKind::Own {
            return Ok(None);
        }
        let row: Option<(String, Option<String>)> = self
            .conn
            .row("SELECT conversation, request_from FROM groups WHERE group_id=? AND active=1", [group_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((conversation, None)) = row else { return Ok(None) };
        let group = self.load_group(group_id)?;
        let epoch = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        if epoch != group.epoch().as_u64() {
            return Ok(None);
        }
        let key = self.signal_key(&group, group_id)?;
        let Ok(plain) = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| ())
            .and_then(|c| c.decrypt(XNonce::from_slice(&payload[8..32]), &payload[32..]).map_err(|_| ()))
        else {
            return Ok(None);
        };
        let Ok(signal) = ciborium::from_reader::<Signal, _>(plain.as_slice()) else { return Ok(None) };
        if signal.handle != sender.handle || signal.device_id != sender.device_id || sender == &self.me() {
            return Ok(None);
        }
        if self.is_blocked(&signal.handle)? {
            return Ok(None);
        }
        Ok(Some(Event::Typing { conversation, handle: signal.handle, typing: signal.typing }))
    }

    fn signal_key(&self, group: &MlsGroup, group_id: &[u8]) -> CoreResult<Vec<u8>> {
        group.export_secret(self.provider().crypto(), LABEL, group_id, 32).map_err(CoreError::mls)
    }
}
