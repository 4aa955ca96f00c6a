//! Transient signals (typing indicators): passed on to the group's other
//! member devices that are connected now, never stored, never delivered
//! later. The server cannot read them (they are sealed with a key the
//! members export from the group's epoch); it only checks membership and
//! holds each device to one signal per group per
//! [`SIGNAL_INTERVAL_MS`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sotto_proto::limits::{MAX_SIGNAL_BYTES, SIGNAL_INTERVAL_MS};
use sotto_proto::{codec, DeviceRef, ErrorBody, Push, Response, ServerMessage};

use super::{bad, blocking_timed, check_group_id, Relay};
use crate::store::StoreError;

/// When each device last had a signal passed on, per group. Bounded: when
/// it grows past [`MAX_TRACKED`] entries, the stale ones go.
#[derive(Default)]
pub struct SignalGate {
    last: Mutex<HashMap<(DeviceRef, Vec<u8>), Instant>>,
}

const MAX_TRACKED: usize = 100_000;

impl SignalGate {
    /// Whether a signal from `device` to `group_id` may pass now.
    pub fn admit(&self, device: &DeviceRef, group_id: &[u8]) -> bool {
        let interval = Duration::from_millis(SIGNAL_INTERVAL_MS);
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= MAX_TRACKED {
            last.retain(|_, at| now.duration_since(*at) < interval);
        }
        match last.get(&(device.clone(), group_id.to_vec())) {
            Some(at) if now.duration_since(*at) < interval => false,
            _ => {
                last.insert((device.clone(), group_id.to_vec()), now);
                true
            }
        }
    }
}

impl Relay {
    /// `Signal`: to the group's other connected devices, or nowhere.
    pub(super) async fn signal(
        &self,
        me: &DeviceRef,
        group_id: Vec<u8>,
        payload: Vec<u8>,
    ) -> Result<Response, ErrorBody> {
        check_group_id(&group_id)?;
        if payload.is_empty() || payload.len() > MAX_SIGNAL_BYTES {
            return Err(bad(format!("a signal is 1 to {MAX_SIGNAL_BYTES} bytes")));
        }
        if !self.signals.admit(me, &group_id) {
            // Too soon after the last one: dropped. A typing indicator
            // that comes a second late loses nothing.
            return Ok(Response::Done);
        }
        let store = self.store.clone();
        let (me2, gid) = (me.clone(), group_id.clone());
        let members = blocking_timed(&self.metrics, move || {
            let g = store.group(&gid)?.ok_or(StoreError::UnknownGroup)?;
            if !g.members.contains(&me2) {
                return Err(StoreError::NotMember);
            }
            Ok(g.members)
        })
        .await?;
        let others: Vec<DeviceRef> = members.into_iter().filter(|d| d != me).collect();
        let push = ServerMessage::Push(Push::Signal { group_id, sender: me.clone(), payload });
        if let Ok(frame) = codec::encode(&push) {
            self.hub.signal(&others, bytes::Bytes::from(frame));
        }
        Ok(Response::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_signal_per_device_and_group_per_interval() {
        let gate = SignalGate::default();
        let alice = DeviceRef { handle: "alice".into(), device_id: 1 };
        let bob = DeviceRef { handle: "bob".into(), device_id: 1 };
        assert!(gate.admit(&alice, &[1; 16]));
        assert!(!gate.admit(&alice, &[1; 16]), "too soon");
        assert!(gate.admit(&alice, &[2; 16]), "another group");
        assert!(gate.admit(&bob, &[1; 16]), "another device");
    }
}
