//! End-to-end encrypted files: the chunked streaming AEAD, and making a
//! received file name safe to use.
//!
//! A file is cut into 64 KiB chunks; chunk `i` is sealed with
//! XChaCha20-Poly1305 under the STREAM construction (RustCrypto's
//! `aead::stream`, big-endian 32-bit counter): the nonce carries the chunk
//! index and a last-chunk flag, and the blob id is the associated data. A
//! reordered, spliced or tampered chunk, or a stream cut short, fails to
//! open. The key, nonce prefix, size, name, media type and SHA-256 of the
//! plaintext travel inside the MLS message only.

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::{CoreError, CoreResult};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// Authentication tag added to each chunk.
pub const TAG: usize = 16;
/// Ciphertext bytes per full chunk.
pub const CIPHER_CHUNK: usize = CHUNK + TAG;
/// Bytes of the STREAM nonce prefix (24-byte XChaCha nonce less 5).
pub const NONCE_PREFIX: usize = 19;

/// What a file message carries, besides an optional caption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The blob on the server.
    #[serde(with = "serde_bytes")]
    pub blob_id: Vec<u8>,
    /// The file's own key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// STREAM nonce prefix.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// Plaintext size in bytes.
    pub size: u64,
    /// The sender's file name (sanitise before use: [`safe_file_name`]).
    pub name: String,
    /// Media type, e.g. `image/png`.
    pub media_type: String,
    /// SHA-256 of the plaintext.
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    /// A small preview when the file is a picture (made by the sender;
    /// one from a peer that is not acceptable is dropped on arrival).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<crate::thumbnail::Thumbnail>,
    /// How many bytes were sealed when the file was padded (zeros after
    /// its `size` bytes; see `padding::file_bucket`). Absent: not padded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padded: Option<u64>,
}

impl FileInfo {
    /// The plaintext bytes sealed in the blob: the file and its padding.
    pub fn sealed_size(&self) -> u64 {
        self.padded.unwrap_or(self.size).max(self.size)
    }
}

/// Number of chunks a plaintext of `size` bytes makes (an empty file is one
/// empty, final chunk).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64).max(1)
}

/// Size of the encrypted blob for a plaintext of `size` bytes.
pub fn cipher_size(size: u64) -> u64 {
    size + chunk_count(size) * TAG as u64
}

/// Seals and opens the chunks of one file.
pub struct ChunkCipher {
    stream: StreamBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
    chunks: u64,
}

impl ChunkCipher {
    /// A fresh random key and nonce prefix for a new file.
    pub fn new_key() -> ([u8; 32], [u8; NONCE_PREFIX]) {
        (rand::random(), rand::random())
    }

    /// The cipher for a file of `size` bytes stored as blob `blob_id`.
    pub fn new(key: &[u8], nonce: &[u8], blob_id: &[u8], size: u64) -> CoreResult<Self> {
        let aead = XChaCha20Poly1305::new_from_slice(key).map_err(|_| CoreError::decode("file key", "bad length"))?;
        if nonce.len() != NONCE_PREFIX {
            return Err(CoreError::decode("file nonce", "bad length"));
        }
        let stream = StreamBE32::from_aead(aead, nonce.into());
        Ok(Self { stream, aad: blob_id.to_vec(), chunks: chunk_count(size) })
    }

    /// How many chunks the file has.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    fn position(&self, index: u64) -> CoreResult<(u32, bool)> {
        if index >= self.chunks {
            return Err(CoreError::Invalid("chunk index past the end of the file".into()));
        }
        let pos = u32::try_from(index).map_err(|_| CoreError::Invalid("file too large".into()))?;
        Ok((pos, index + 1 == self.chunks))
    }

    /// Seals chunk `index`.
    pub fn seal(&self, index: u64, plain: &[u8]) -> CoreResult<Vec<u8>> {
        let (pos, last) = self.position(index)?;
        let payload = chacha20poly1305::aead::Payload { msg: plain, aad: &self.aad };
        self.stream.encrypt(pos, last, payload).map_err(|_| CoreError::Invalid("encryption failed".into()))
    }

    /// Opens chunk `index`; any tampering, reordering or truncation fails.
    pub fn open(&self, index: u64, sealed: &[u8]) -> CoreResult<Vec<u8>> {
        let (pos, last) = self.position(index)?;
        let payload = chacha20poly1305::aead::Payload { msg: sealed, aad: &self.aad };
        self.stream.decrypt(pos, last, payload).map_err(|_| {
            CoreError::Invalid(format!(
                "the file failed its integrity check at chunk {index}: it was damaged or tampered with"
            ))
        })
    }
}

/// `dir/name`, or `dir/stem (N).ext` when that is taken: a new file never
/// replaces one there.
pub fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
        _ => (name.to_owned(), String::new()),
    };
    (1..).map(|n| dir.join(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).expect("some name is free")
}

/// A file name from a peer, made safe: only its last path component, no
/// control characters, no leading dots, at most 200 bytes; never empty,
/// `.` or `..`. Joining it to a folder can never leave that folder.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    // Dots and spaces together: ". ..name" must not come out as "..name"
    // (found by the `content` fuzz target).
    let cleaned = cleaned.trim_start_matches(|c: char| c == '.' || c.is_whitespace()).trim_end();
    let mut out = String::new();
    for c in cleaned.chars() {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(size: u64) -> ChunkCipher {
        ChunkCipher::new(&[7; 32], &[9; NONCE_PREFIX], b"blob", size).unwrap()
    }

    #[test]
    fn seal_open_and_every_kind_of_tampering() {
        let size = (2 * CHUNK + 10) as u64;
        let c = cipher(size);
        assert_eq!(c.chunks(), 3);
        let chunks: Vec<Vec<u8>> = (0..3u64).map(|i| vec![i as u8; if i == 2 { 10 } else { CHUNK }]).collect();
        let sealed: Vec<Vec<u8>> = chunks.iter().enumerate().map(|(i, p)| c.seal(i as u64, p).unwrap()).collect();
        assert_eq!(sealed.iter().map(Vec::len).sum::<usize>() as u64, cipher_size(size));
        for (i, s) in sealed.iter().enumerate() {
            assert_eq!(c.open(i as u64, s).unwrap(), chunks[i]);
        }
        // Tampered byte.
        let mut bad = sealed[1].clone();
        bad[100] ^= 1;
        assert!(c.open(1, &bad).is_err());
        // Reordered: chunk 0 presented as chunk 1.
        assert!(c.open(1, &sealed[0]).is_err());
        // Truncated: a middle chunk presented as the last one.
        let short = cipher(2 * CHUNK as u64);
        assert!(short.open(1, &sealed[1]).is_err(), "a non-final chunk cannot pass as the final one");
        // Spliced from another blob (different associated data).
        let other = ChunkCipher::new(&[7; 32], &[9; NONCE_PREFIX], b"other", size).unwrap();
        assert!(other.open(0, &sealed[0]).is_err());
        // Past the end.
        assert!(c.open(3, &sealed[2]).is_err());
    }

    #[test]
    fn empty_file_is_one_final_chunk() {
        let c = cipher(0);
        assert_eq!(c.chunks(), 1);
        let s = c.seal(0, b"").unwrap();
        assert_eq!(s.len(), TAG);
        assert_eq!(c.open(0, &s).unwrap(), b"");
    }

    #[test]
    fn names_cannot_escape() {
        for (given, want) in [
            ("../../etc/passwd", "passwd"),
            ("/etc/shadow", "shadow"),
            ("C:\\Windows\\evil.exe", "evil.exe"),
            ("..", "file"),
            (".", "file"),
            ("", "file"),
            (".hidden", "hidden"),
            ("a\0b\nc\u{7}.txt", "abc.txt"),
            ("photo.jpg", "photo.jpg"),
            ("dir/", "file"),
            // Found by fuzzing: dots behind spaces behind a dot.
            (". ..  x", "x"),
            (" . . ", "file"),
        ] {
            assert_eq!(safe_file_name(given), want, "{given:?}");
        }
        let long = "x".repeat(500);
        assert_eq!(safe_file_name(&long).len(), 200);
        let dir = std::path::Path::new("/downloads");
        for evil in ["../x", "/abs", "..\\..\\y", "\0", "a/../../b"] {
            let p = dir.join(safe_file_name(evil));
            assert_eq!(p.parent(), Some(dir), "{evil:?}");
        }
    }
}
