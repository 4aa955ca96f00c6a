//! Who this device is: an Ed25519 account key (the person), an Ed25519
//! device key certified by it (also the device's MLS signature key), and the
//! MLS credential that carries both to peers.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use openmls::prelude::{BasicCredential, Credential, CredentialWithKey, SignaturePublicKey, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};
use sotto_proto::{signing, DeviceInfo};
use zeroize::Zeroize;

use crate::error::{CoreError, CoreResult};

/// This device's identity, with its secret keys.
pub struct Identity {
    /// The account's handle on its server.
    pub handle: String,
    /// The device's number within the account.
    pub device_id: u32,
    account: SigningKey,
    device: SigningKey,
}

/// What the MLS credential carries: enough for any peer to check that the
/// device key belongs to the account key of the handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SottoCredential {
    /// The handle.
    pub handle: String,
    /// Ed25519 account public key.
    #[serde(with = "serde_bytes")]
    pub account_key: Vec<u8>,
    /// The device number.
    pub device_id: u32,
    /// The account key's signature over the device key.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct StoredIdentity {
    handle: String,
    device_id: u32,
    #[serde(with = "serde_bytes")]
    account: Vec<u8>,
    #[serde(with = "serde_bytes")]
    device: Vec<u8>,
}

impl Drop for StoredIdentity {
    fn drop(&mut self) {
        self.account.zeroize();
        self.device.zeroize();
    }
}

fn verify(key: &[u8], payload: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(key) else { return false };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    let Ok(sig) = Signature::from_slice(sig) else { return false };
    key.verify(payload, &sig).is_ok()
}

impl Identity {
    /// A fresh identity for `handle`, device 1.
    pub fn generate(handle: &str) -> CoreResult<Self> {
        sotto_proto::validate_handle(handle).map_err(CoreError::Invalid)?;
        let mut rng = rand::rngs::OsRng;
        Ok(Self {
            handle: handle.to_owned(),
            device_id: 1,
            account: SigningKey::generate(&mut rng),
            device: SigningKey::generate(&mut rng),
        })
    }

    /// The account public key.
    pub fn account_key(&self) -> Vec<u8> {
        self.account.verifying_key().to_bytes().to_vec()
    }

    /// The device public key.
    pub fn device_key(&self) -> Vec<u8> {
        self.device.verifying_key().to_bytes().to_vec()
    }

    /// The device's public keys and certificate, as the server stores them.
    pub fn device_info(&self) -> DeviceInfo {
        let key = self.device_key();
        let cert = self.account.sign(&signing::device_certificate_payload(&self.handle, self.device_id, &key));
        DeviceInfo { device_id: self.device_id, device_key: key, certificate: cert.to_bytes().to_vec() }
    }

    /// Signs a login payload with the device key.
    pub fn sign_login(&self, payload: &[u8]) -> Vec<u8> {
        self.device.sign(payload).to_bytes().to_vec()
    }

    /// The MLS signer (the device key).
    pub(crate) fn signer(&self) -> SignatureKeyPair {
        SignatureKeyPair::from_raw(SignatureScheme::ED25519, self.device.to_bytes().to_vec(), self.device_key())
    }

    /// The MLS credential with the device's signature key.
    pub(crate) fn credential(&self) -> CredentialWithKey {
        let info = self.device_info();
        let cred = SottoCredential {
            handle: self.handle.clone(),
            account_key: self.account_key(),
            device_id: self.device_id,
            certificate: info.certificate,
        };
        let mut identity = Vec::new();
        ciborium::into_writer(&cred, &mut identity).expect("credential encodes");
        CredentialWithKey {
            credential: BasicCredential::new(identity).into(),
            signature_key: SignaturePublicKey::from(self.device_key()),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let stored = StoredIdentity {
            handle: self.handle.clone(),
            device_id: self.device_id,
            account: self.account.to_bytes().to_vec(),
            device: self.device.to_bytes().to_vec(),
        };
        let mut out = Vec::new();
        ciborium::into_writer(&stored, &mut out).expect("identity encodes");
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> CoreResult<Self> {
        let s: StoredIdentity = ciborium::from_reader(bytes).map_err(|e| CoreError::decode("stored identity", e))?;
        let key = |b: &[u8]| -> CoreResult<SigningKey> {
            Ok(SigningKey::from_bytes(
                b.try_into().map_err(|_| CoreError::decode("stored identity", "bad key length"))?,
            ))
        };
        Ok(Self {
            handle: s.handle.clone(),
            device_id: s.device_id,
            account: key(&s.account)?,
            device: key(&s.device)?,
        })
    }
}

impl SottoCredential {
    /// Reads and checks an MLS credential against the signature key it came
    /// with: the credential must be ours, the handle valid, and the account
    /// key must have certified exactly this device key.
    pub fn validate(credential: &Credential, signature_key: &[u8]) -> CoreResult<Self> {
        let basic =
            BasicCredential::try_from(credential.clone()).map_err(|e| CoreError::BadCredential(e.to_string()))?;
        let cred: SottoCredential = ciborium::from_reader(basic.identity())
            .map_err(|e| CoreError::BadCredential(format!("not a sotto credential: {e}")))?;
        sotto_proto::validate_handle(&cred.handle).map_err(CoreError::BadCredential)?;
        let payload = signing::device_certificate_payload(&cred.handle, cred.device_id, signature_key);
        if !verify(&cred.account_key, &payload, &cred.certificate) {
            return Err(CoreError::BadCredential(format!(
                "the device key of @{} is not certified by its account key",
                cred.handle
            )));
        }
        Ok(cred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_validates_and_forgery_does_not() {
        let alice = Identity::generate("alice").unwrap();
        let cwk = alice.credential();
        let cred = SottoCredential::validate(&cwk.credential, cwk.signature_key.as_slice()).unwrap();
        assert_eq!(cred.handle, "alice");
        assert_eq!(cred.account_key, alice.account_key());
        // Mallory presents alice's credential with her own device key.
        let mallory = Identity::generate("mallory").unwrap();
        assert!(SottoCredential::validate(&cwk.credential, &mallory.device_key()).is_err());
        // Garbage identity bytes.
        let junk: Credential = BasicCredential::new(b"junk".to_vec()).into();
        assert!(SottoCredential::validate(&junk, &alice.device_key()).is_err());
        // Stored identity round-trips.
        let back = Identity::from_bytes(&alice.to_bytes()).unwrap();
        assert_eq!(back.account_key(), alice.account_key());
        assert_eq!(back.device_key(), alice.device_key());
    }
}
