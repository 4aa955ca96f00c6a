//! Size buckets, so the server learns little from the length of what it
//! carries.
//!
//! - An application message (text, reaction, receipt, any control message)
//!   is padded before MLS encrypts it: to 256 bytes at least, then to the
//!   next power of two up to 64 KiB, then to the next multiple of 64 KiB.
//!   MLS adds the same overhead to every message of a group, so the server
//!   sees one size per bucket. Receipts and short texts share the smallest
//!   bucket, so they look alike.
//! - A typing signal is padded to one size.
//! - A file sent to post-quantum conversations only (where every app reads
//!   padded files) is padded with zeros before it is sealed, to the next
//!   multiple of 1/16 of its power of two (4 KiB at least): at most about
//!   6 % more, and the server sees the bucket, not the size. Its message
//!   says the real size; the receiver keeps only that much.
//!
//! The padding is zero bytes after the CBOR value: a CBOR reader stops at
//! the end of the value, so apps from before padding read padded messages
//! as they are.

/// The smallest message bucket.
pub const MIN_MESSAGE_BUCKET: usize = 256;
/// Above this, buckets grow in steps of this size.
pub const MESSAGE_STEP: usize = 64 * 1024;
/// Every typing signal's plaintext is this long.
pub const SIGNAL_BYTES: usize = 128;

/// The bucket a message of `len` bytes is padded to.
pub fn message_bucket(len: usize) -> usize {
    if len <= MIN_MESSAGE_BUCKET {
        MIN_MESSAGE_BUCKET
    } else if len <= MESSAGE_STEP {
        len.next_power_of_two()
    } else {
        len.div_ceil(MESSAGE_STEP) * MESSAGE_STEP
    }
}

/// `bytes` padded with zeros to its bucket.
pub fn pad_message(mut bytes: Vec<u8>) -> Vec<u8> {
    let to = message_bucket(bytes.len());
    bytes.resize(to, 0);
    bytes
}

/// `bytes` padded with zeros to `len` (unchanged when already as long).
pub fn pad_to(mut bytes: Vec<u8>, len: usize) -> Vec<u8> {
    if bytes.len() < len {
        bytes.resize(len, 0);
    }
    bytes
}

/// The padded size of a file of `size` bytes: the next multiple of 1/16 of
/// the power of two at or above it (4 KiB at least).
pub fn file_bucket(size: u64) -> u64 {
    const MIN: u64 = 4096;
    if size <= MIN {
        return MIN;
    }
    let step = size.next_power_of_two() / 16;
    size.div_ceil(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_buckets_are_powers_of_two_then_64_kib_steps() {
        assert_eq!(message_bucket(0), 256);
        assert_eq!(message_bucket(256), 256);
        assert_eq!(message_bucket(257), 512);
        assert_eq!(message_bucket(1000), 1024);
        assert_eq!(message_bucket(65_536), 65_536);
        assert_eq!(message_bucket(65_537), 131_072);
        assert_eq!(message_bucket(200_000), 262_144);
        assert_eq!(message_bucket(262_145), 327_680);
        for len in [0, 1, 255, 256, 300, 4000, 70_000, 900_000] {
            let b = message_bucket(len);
            assert!(b >= len && (b == 256 || b.is_power_of_two() || b.is_multiple_of(MESSAGE_STEP)));
        }
    }

    #[test]
    fn file_buckets_add_at_most_a_sixteenth_of_the_power_of_two() {
        assert_eq!(file_bucket(0), 4096);
        assert_eq!(file_bucket(4096), 4096);
        assert_eq!(file_bucket(4097), 4608);
        assert_eq!(file_bucket(1_000_000), 1_048_576);
        assert_eq!(file_bucket(1_048_577), 1_179_648);
        for size in [5000u64, 65_536, 1_000_001, 123_456_789, 2 << 30] {
            let b = file_bucket(size);
            assert!(b >= size && b - size <= size.next_power_of_two() / 16, "{size} -> {b}");
        }
    }

    #[test]
    fn padded_cbor_still_reads_as_the_value() {
        let mut bytes = Vec::new();
        ciborium::into_writer(&("hello", 7u32), &mut bytes).unwrap();
        let padded = pad_message(bytes);
        assert_eq!(padded.len(), 256);
        let back: (String, u32) = ciborium::from_reader(padded.as_slice()).unwrap();
        assert_eq!(back, ("hello".to_owned(), 7));
    }
}
