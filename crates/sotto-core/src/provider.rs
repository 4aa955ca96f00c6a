//! The openmls provider: RustCrypto for crypto and randomness, and the
//! profile's own SQLCipher connection for storage, so MLS state and history
//! share one encrypted database and one transaction.

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// CBOR for openmls' stored values.
#[derive(Default)]
pub struct CborCodec;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CborError(String);

impl Codec for CborCodec {
    type Error = CborError;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).map_err(|e| CborError(e.to_string()))?;
        Ok(out)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        ciborium::from_reader(slice).map_err(|e| CborError(e.to_string()))
    }
}

pub struct Provider<'a> {
    crypto: &'a RustCrypto,
    storage: SqliteStorageProvider<CborCodec, &'a Connection>,
}

impl<'a> Provider<'a> {
    pub fn new(crypto: &'a RustCrypto, conn: &'a Connection) -> Self {
        Self { crypto, storage: SqliteStorageProvider::new(conn) }
    }
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = SqliteStorageProvider<CborCodec, &'a Connection>;

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
    let mut storage = SqliteStorageProvider::<CborCodec, &mut Connection>::new(conn);
    storage.run_migrations().map_err(|e| e.to_string())
}
