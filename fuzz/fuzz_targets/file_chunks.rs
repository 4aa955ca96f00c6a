//! The file chunk decrypter: any bytes offered as a sealed chunk, at any
//! index, for any file size, give plaintext only if they are exactly what
//! the sealer produced; anything else is an error, never a panic. Sealed
//! chunks round-trip, and a single changed byte is always caught.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use sotto_core::files::ChunkCipher;

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let key: [u8; 32] = u.arbitrary()?;
    let nonce: [u8; 19] = u.arbitrary()?;
    let size: u64 = if u.arbitrary()? { u.int_in_range(0..=1 << 20)? } else { u.arbitrary()? };
    let blob: [u8; 16] = u.arbitrary()?;
    let Ok(cipher) = ChunkCipher::new(&key, &nonce, &blob, size) else { return Ok(()) };
    let index: u64 = if u.arbitrary()? { u.int_in_range(0..=20)? } else { u.arbitrary()? };
    let len = u.int_in_range(0..=2048)?;
    let attacker = u.bytes(len)?;
    // Forged input: an error unless it happens to be a real chunk.
    let _ = cipher.open(index, attacker);
    let len = u.int_in_range(0..=2048)?;
    let plain = u.bytes(len)?;
    if let Ok(sealed) = cipher.seal(index, plain) {
        assert_eq!(cipher.open(index, &sealed).expect("own chunk opens"), plain);
        if !sealed.is_empty() {
            let mut bad = sealed.clone();
            let at = u.choose_index(bad.len())?;
            bad[at] ^= 1 << u.int_in_range(0..=7)?;
            assert!(cipher.open(index, &bad).is_err(), "a flipped bit is caught");
        }
        if cipher.chunks() > 1 {
            let other = (index + 1) % cipher.chunks();
            assert!(cipher.open(other, &sealed).is_err(), "a chunk moved to another place is caught");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
