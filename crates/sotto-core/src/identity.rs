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
///
/// The first device of an account holds the account key and certifies
/// every further device with it. A linked device gets only its own
/// certificate: a stolen laptop can then not add devices to the account.
pub struct Identity {
    /// The account's handle on its server.
    pub handle: String,
    /// The device's number within the account.
    pub device_id: u32,
    /// What the person calls this device ("laptop").
    pub name: String,
    account: Option<SigningKey>,
    account_public: Vec<u8>,
    certificate: Vec<u8>,
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
    /// The device's name, as its owner chose it (not certified: shown
    /// next to the certified number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredIdentity {
    handle: String,
    device_id: u32,
    /// The account's secret key; empty on a linked device.
    #[serde(with = "serde_bytes")]
    account: Vec<u8>,
    #[serde(with = "serde_bytes")]
    device: Vec<u8>,
    #[serde(default, with = "serde_bytes")]
    account_public: Vec<u8>,
    #[serde(default, with = "serde_bytes")]
    certificate: Vec<u8>,
    #[serde(default)]
    name: String,
}

impl Drop for StoredIdentity {
    fn drop(&mut self) {
        self.account.zeroize();
        self.device.zeroize();
    }
}

pub(crate) fn verify(key: &[u8], payload: &[u8], sig: &[u8]) -> bool {
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
        Ok(Self::primary(handle.to_owned(), 1, SigningKey::generate(&mut rng), SigningKey::generate(&mut rng), None))
    }

    fn primary(handle: String, device_id: u32, account: SigningKey, device: SigningKey, name: Option<String>) -> Self {
        let account_public = account.verifying_key().to_bytes().to_vec();
        let payload = signing::device_certificate_payload(&handle, device_id, device.verifying_key().as_bytes());
        let certificate = account.sign(&payload).to_bytes().to_vec();
        Self {
            handle,
            device_id,
            name: name.unwrap_or_else(|| format!("device {device_id}")),
            account: Some(account),
            account_public,
            certificate,
            device,
        }
    }

    /// The identity of a newly linked device: its own key, and the
    /// certificate the account's first device made for it (checked here).
    pub fn linked(
        handle: String,
        device_id: u32,
        account_public: Vec<u8>,
        certificate: Vec<u8>,
        device: SigningKey,
        name: String,
    ) -> CoreResult<Self> {
        sotto_proto::validate_handle(&handle).map_err(CoreError::BadCredential)?;
        let payload = signing::device_certificate_payload(&handle, device_id, device.verifying_key().as_bytes());
        if !verify(&account_public, &payload, &certificate) {
            return Err(CoreError::BadCredential(format!(
                "the certificate for this device does not verify under @{handle}'s account key"
            )));
        }
        Ok(Self { handle, device_id, name, account: None, account_public, certificate, device })
    }

    /// Whether this device holds the account key (and so may add devices).
    pub fn can_certify(&self) -> bool {
        self.account.is_some()
    }

    /// Certifies another device of this account.
    pub fn certify(&self, device_id: u32, device_key: &[u8]) -> CoreResult<Vec<u8>> {
        let account = self.account.as_ref().ok_or_else(|| {
            CoreError::Invalid(
                "only the device that holds the account key (the account's first device) can add devices".into(),
            )
        })?;
        let payload = signing::device_certificate_payload(&self.handle, device_id, device_key);
        Ok(account.sign(&payload).to_bytes().to_vec())
    }

    /// Another device of this account, made and certified here: a new
    /// device key as number `device_id` (a restored backup becoming a
    /// device of its own). `None` for a new key kept (renumbering).
    pub(crate) fn as_device(&self, device_id: u32, fresh_key: bool, name: &str) -> CoreResult<Self> {
        let account = self.account.clone().ok_or_else(|| {
            CoreError::Invalid(
                "this profile does not hold the account key (it was a linked device): it cannot become a device of its own; link the new machine with `sotto link` instead".into(),
            )
        })?;
        let device = if fresh_key { SigningKey::generate(&mut rand::rngs::OsRng) } else { self.device.clone() };
        Ok(Self::primary(self.handle.clone(), device_id, account, device, Some(name.to_owned())))
    }

    /// The account public key.
    pub fn account_key(&self) -> Vec<u8> {
        self.account_public.clone()
    }

    /// The device public key.
    pub fn device_key(&self) -> Vec<u8> {
        self.device.verifying_key().to_bytes().to_vec()
    }

    /// The device's public keys and certificate, as the server stores them.
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo { device_id: self.device_id, device_key: self.device_key(), certificate: self.certificate.clone() }
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
            device_name: Some(self.name.clone()),
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
            account: self.account.as_ref().map(|a| a.to_bytes().to_vec()).unwrap_or_default(),
            device: self.device.to_bytes().to_vec(),
            account_public: self.account_public.clone(),
            certificate: self.certificate.clone(),
            name: self.name.clone(),
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
        let name = (!s.name.is_empty()).then(|| s.name.clone());
        if !s.account.is_empty() {
            // The account's first device: everything follows from its keys.
            return Ok(Self::primary(s.handle.clone(), s.device_id, key(&s.account)?, key(&s.device)?, name));
        }
        Self::linked(
            s.handle.clone(),
            s.device_id,
            s.account_public.clone(),
            s.certificate.clone(),
            key(&s.device)?,
            name.unwrap_or_else(|| format!("device {}", s.device_id)),
        )
    }

    /// Renames this device (the name peers see with new keys).
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_owned();
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
