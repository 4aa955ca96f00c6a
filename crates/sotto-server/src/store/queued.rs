//! An append on its way to a store's writer thread.

use sotto_proto::{DeviceRef, MessageKind};

use super::NewMessage;

/// A [`NewMessage`] that owns its bytes, to cross to the writer thread.
pub(crate) struct OwnedMessage {
    pub(crate) group_id: Vec<u8>,
    pub(crate) sender: DeviceRef,
    pub(crate) epoch: u64,
    pub(crate) kind: MessageKind,
    pub(crate) client_id: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) added: Vec<DeviceRef>,
    pub(crate) removed: Vec<DeviceRef>,
    pub(crate) welcome: Option<Vec<u8>>,
}

impl OwnedMessage {
    pub(crate) fn new(m: &NewMessage<'_>) -> Self {
        Self {
            group_id: m.group_id.to_vec(),
            sender: m.sender.clone(),
            epoch: m.epoch,
            kind: m.kind,
            client_id: m.client_id.to_vec(),
            payload: m.payload.to_vec(),
            added: m.added.to_vec(),
            removed: m.removed.to_vec(),
            welcome: m.welcome.map(<[u8]>::to_vec),
        }
    }

    pub(crate) fn view(&self) -> NewMessage<'_> {
        NewMessage {
            group_id: &self.group_id,
            sender: &self.sender,
            epoch: self.epoch,
            kind: self.kind,
            client_id: &self.client_id,
            payload: &self.payload,
            added: &self.added,
            removed: &self.removed,
            welcome: self.welcome.as_deref(),
        }
    }
}
