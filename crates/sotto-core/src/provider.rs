//! The openmls provider: libcrux for crypto and randomness (the one crypto
//! choice: it does the hybrid post-quantum suite and the classical one), and
//! the profile's own SQLCipher connection for storage, so MLS state and
//! history share one encrypted database and one transaction.

use crate::error::CoreError;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// How openmls' stored values are encoded: postcard, behind a 0xFF marker.
///
/// Profiles made earlier stored CBOR, which is still read. The group state
/// is decoded and encoded again for every message; openmls' byte strings
/// are plain serde sequences, which CBOR writes as one integer per byte, and
/// decoding them was the largest single cost of a message after the
/// signatures (perf: ciborium ~17% of the client's CPU). 0xFF is CBOR's
/// "break" code, which never starts a CBOR value, so the two formats cannot
/// be confused.
#[derive(Default)]
pub struct StateCodec;

/// Marks a MessagePack value.
const MSGPACK: u8 = 0xFF;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateCodecError(String);

impl Codec for StateCodec {
    type Error = StateCodecError;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        let mut out = vec![MSGPACK];
        rmp_serde::encode::write(&mut out, value).map_err(|e| StateCodecError(e.to_string()))?;
        Ok(out)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        match slice.split_first() {
            Some((&MSGPACK, rest)) => rmp_serde::from_slice(rest).map_err(|e| StateCodecError(e.to_string())),
            _ => ciborium::from_reader(slice).map_err(|e| StateCodecError(e.to_string())),
        }
    }
}

/// The crypto provider. Changing it here changes it everywhere.
pub type Crypto = openmls_libcrux_crypto::CryptoProvider;

/// A provider with storage in memory, for MLS state that never outlives the
/// process (a device link in progress, a one-shot handover group).
pub type EphemeralProvider = openmls_libcrux_crypto::Provider;

/// A fresh crypto provider (seeded from the operating system).
pub fn new_crypto() -> Result<Crypto, CoreError> {
    Crypto::new().map_err(|e| CoreError::Invalid(format!("the system gave no randomness to seed the keys: {e:?}")))
}

/// A fresh in-memory provider.
pub fn new_ephemeral() -> Result<EphemeralProvider, CoreError> {
    EphemeralProvider::new()
        .map_err(|e| CoreError::Invalid(format!("the system gave no randomness to seed the keys: {e:?}")))
}

pub struct Provider<'a> {
    crypto: &'a Crypto,
    storage: SqliteStorageProvider<StateCodec, &'a Connection>,
}

impl<'a> Provider<'a> {
    pub fn new(crypto: &'a Crypto, conn: &'a Connection) -> Self {
        Self { crypto, storage: SqliteStorageProvider::new(conn) }
    }
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = Crypto;
    type RandProvider = Crypto;
    type StorageProvider = SqliteStorageProvider<StateCodec, &'a Connection>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

/// Creates openmls' tables.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let mut storage = SqliteStorageProvider::<StateCodec, &mut Connection>::new(conn);
    storage.run_migrations().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Secret {
        Leaf { index: u32, key: Vec<u8> },
        Blank,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct State {
        epoch: u64,
        secrets: Vec<Secret>,
        label: Option<String>,
    }

    fn sample() -> State {
        State {
            epoch: 7,
            secrets: vec![Secret::Leaf { index: 3, key: vec![0xAB; 32] }, Secret::Blank],
            label: Some("g".into()),
        }
    }

    #[test]
    fn state_round_trips_in_the_new_format() {
        let bytes = StateCodec::to_vec(&sample()).unwrap();
        assert_eq!(bytes[0], MSGPACK);
        assert_eq!(StateCodec::from_slice::<State>(&bytes).unwrap(), sample());
    }

    #[test]
    fn state_written_as_cbor_by_earlier_versions_is_still_read() {
        let mut legacy = Vec::new();
        ciborium::into_writer(&sample(), &mut legacy).unwrap();
        assert_ne!(legacy[0], MSGPACK, "0xFF never starts a CBOR value");
        assert_eq!(StateCodec::from_slice::<State>(&legacy).unwrap(), sample());
    }

    #[test]
    fn damaged_state_is_an_error_not_a_panic() {
        let bytes = StateCodec::to_vec(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(StateCodec::from_slice::<State>(&bytes[..cut]).is_err());
        }
    }
}
