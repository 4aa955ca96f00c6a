//! Linking a new device: the rendezvous slot a waiting device is found by.
//!
//! The slot is named by a prefix of the SHA-256 of the device's link
//! KeyPackage, so the code a person reads off the new device both finds the
//! slot and pins the package: a server that swapped in a package of its own
//! would need a second preimage of 64 bits of SHA-256 within the few minutes
//! the slot lives.

use sha2::{Digest, Sha256};

/// Length of a link slot id in bytes (64 bits).
pub const LINK_SLOT_LEN: usize = 8;

/// Seconds a link slot stays open after the waiting device's last offer.
pub const LINK_SLOT_TTL_SECS: u64 = 300;

/// The slot of a link KeyPackage.
pub fn link_slot(key_package: &[u8]) -> [u8; LINK_SLOT_LEN] {
    let digest = Sha256::digest(key_package);
    let mut slot = [0u8; LINK_SLOT_LEN];
    slot.copy_from_slice(&digest[..LINK_SLOT_LEN]);
    slot
}
