//! Rendezvous slots for linking a device: the new device (not logged in)
//! offers its link KeyPackage, the linking device fetches it by the code it
//! reads off the new device and leaves one answer (an MLS welcome and a
//! message the server cannot read). Slots live in memory: they are worth
//! minutes, and a restart only means starting the link again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use sotto_proto::{link_slot, ErrorBody, ErrorCode, Response, LINK_SLOT_LEN, LINK_SLOT_TTL_SECS};

/// Most slots open at once: a flood of offers cannot grow memory past
/// about this many KeyPackages and answers.
const MAX_SLOTS: usize = 1024;
/// Largest link KeyPackage.
const MAX_PACKAGE: usize = 16 * 1024;
/// Largest answer (welcome + handover message).
const MAX_ANSWER: usize = 512 * 1024;

struct Slot {
    key_package: Vec<u8>,
    answer: Option<Vec<u8>>,
    expires: Instant,
}

/// The open slots.
#[derive(Default)]
pub struct LinkSlots {
    slots: Mutex<HashMap<[u8; LINK_SLOT_LEN], Slot>>,
}

fn ttl() -> Duration {
    Duration::from_secs(LINK_SLOT_TTL_SECS)
}

fn unknown() -> ErrorBody {
    ErrorBody::new(ErrorCode::UnknownLink)
}

impl LinkSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; LINK_SLOT_LEN], Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        slots.retain(|_, s| s.expires > now);
        slots
    }

    /// `LinkOffer`: opens the slot or keeps it open; hands out the answer
    /// once there is one (the slot closes with it).
    pub fn offer(&self, key_package: Vec<u8>) -> Result<Response, ErrorBody> {
        if key_package.is_empty() || key_package.len() > MAX_PACKAGE {
            return Err(ErrorBody::with_message(ErrorCode::BadRequest, "a link key package is 1 byte to 16 KiB"));
        }
        let id = link_slot(&key_package);
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(&id) {
            if let Some(answer) = slot.answer.take() {
                slots.remove(&id);
                return Ok(Response::LinkSlot { answer: Some(ByteBuf::from(answer)), expires_in: 0 });
            }
            slot.expires = Instant::now() + ttl();
            return Ok(Response::LinkSlot { answer: None, expires_in: LINK_SLOT_TTL_SECS });
        }
        if slots.len() >= MAX_SLOTS {
            return Err(ErrorBody::with_message(
                ErrorCode::RateLimited,
                "too many devices are waiting to be linked on this server; try again in a few minutes",
            ));
        }
        slots.insert(id, Slot { key_package, answer: None, expires: Instant::now() + ttl() });
        Ok(Response::LinkSlot { answer: None, expires_in: LINK_SLOT_TTL_SECS })
    }

    /// `LinkFetch`.
    pub fn fetch(&self, slot: &[u8]) -> Result<Response, ErrorBody> {
        let id: [u8; LINK_SLOT_LEN] = slot.try_into().map_err(|_| unknown())?;
        let slots = self.lock();
        let slot = slots.get(&id).filter(|s| s.answer.is_none()).ok_or_else(unknown)?;
        Ok(Response::LinkPackage { key_package: slot.key_package.clone() })
    }

    /// `LinkAnswer`: once per slot.
    pub fn answer(&self, slot: &[u8], answer: Vec<u8>) -> Result<Response, ErrorBody> {
        if answer.is_empty() || answer.len() > MAX_ANSWER {
            return Err(ErrorBody::with_message(ErrorCode::BadRequest, "a link answer is 1 byte to 512 KiB"));
        }
        let id: [u8; LINK_SLOT_LEN] = slot.try_into().map_err(|_| unknown())?;
        let mut slots = self.lock();
        let slot = slots.get_mut(&id).filter(|s| s.answer.is_none()).ok_or_else(unknown)?;
        slot.answer = Some(answer);
        slot.expires = Instant::now() + ttl();
        Ok(Response::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_hands_its_answer_out_once_and_refuses_a_second_answer() {
        let slots = LinkSlots::default();
        let kp = b"a link key package".to_vec();
        let id = link_slot(&kp);
        assert!(matches!(slots.offer(kp.clone()), Ok(Response::LinkSlot { answer: None, .. })));
        assert_eq!(slots.fetch(&id).unwrap(), Response::LinkPackage { key_package: kp.clone() });
        assert_eq!(slots.fetch(&[0; LINK_SLOT_LEN]).unwrap_err().code, ErrorCode::UnknownLink);
        slots.answer(&id, b"answer".to_vec()).unwrap();
        assert_eq!(slots.answer(&id, b"another".to_vec()).unwrap_err().code, ErrorCode::UnknownLink);
        assert_eq!(slots.fetch(&id).unwrap_err().code, ErrorCode::UnknownLink, "answered: nothing to fetch");
        match slots.offer(kp.clone()).unwrap() {
            Response::LinkSlot { answer: Some(a), .. } => assert_eq!(a.into_vec(), b"answer"),
            other => panic!("no answer: {other:?}"),
        }
        // Handed out: the next offer opens a fresh slot.
        assert!(matches!(slots.offer(kp), Ok(Response::LinkSlot { answer: None, .. })));
        assert!(slots.offer(vec![]).is_err());
    }
}
