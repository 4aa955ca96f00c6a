//! Linking a new device to an account, from the new device's side.
//!
//! The new device makes a device key and a link KeyPackage with it, offers
//! the package in a rendezvous slot on the server, and shows a code: the
//! slot (a prefix of the package's SHA-256, so the code pins the package)
//! and a secret that never goes to the server. The account's first device
//! fetches the package by the code, certifies the device key, and answers
//! with an MLS welcome into a two-member group and one MLS message in it:
//! the handover (certificate, contacts, trust decisions, device names) with
//! the secret. Only the new device can read it (MLS, not home-made
//! crypto), and only someone who saw the code can write an answer the new
//! device accepts: a server answering on its own does not know the secret.

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::SigningKey;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};
use sotto_proto::{link_slot, LINK_SLOT_LEN};

use crate::error::{CoreError, CoreResult};
use crate::identity::{Identity, SottoCredential};
use crate::messenger::join_config;
use crate::provider::{new_ephemeral, EphemeralProvider};

/// Bytes of the code's secret (56 bits: an answer is accepted once, so a
/// forger has one guess in 2^56).
pub const LINK_SECRET_LEN: usize = 7;

/// What a link KeyPackage's credential says: only the name the person gave
/// the new device (it has no account yet).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LinkCredential {
    pub(crate) link_device: String,
}

/// The answer the linking device leaves in the slot.
#[derive(Serialize, Deserialize)]
pub(crate) struct LinkAnswer {
    #[serde(with = "serde_bytes")]
    pub(crate) welcome: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub(crate) message: Vec<u8>,
}

/// A contact as it is handed to a new device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverContact {
    /// Handle.
    pub handle: String,
    /// The trusted account key.
    #[serde(with = "serde_bytes")]
    pub account_key: Vec<u8>,
    /// Compared safety numbers.
    pub verified: bool,
    /// Someone the person chose to talk to: their conversations show at
    /// once on the new device too, not as message requests.
    #[serde(default)]
    pub accepted: bool,
}

/// Everything the new device gets from the linking one.
#[derive(Serialize, Deserialize)]
pub struct Handover {
    #[serde(with = "serde_bytes")]
    pub(crate) secret: Vec<u8>,
    /// The account's handle.
    pub handle: String,
    /// The account public key.
    #[serde(with = "serde_bytes")]
    pub account_key: Vec<u8>,
    /// The number the new device got.
    pub device_id: u32,
    /// The account key's certificate over the new device's key.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// The server address of the account.
    pub server: String,
    /// Contacts with their trusted keys.
    pub contacts: Vec<HandoverContact>,
    /// Blocked handles.
    pub blocked: Vec<String>,
    /// Names of the account's devices, by number.
    pub devices: Vec<(u32, String)>,
    /// Whether conversations from anyone show at once (the account's
    /// choice, so every device makes the same).
    #[serde(default)]
    pub auto_accept: bool,
    /// Days of history the linking device hands over next, through the
    /// account's own group (0: none).
    #[serde(default)]
    pub history_days: u32,
}

/// The code a person reads off the new device: slot and secret, in base32
/// groups of four ("ABCD-EFGH-...").
pub fn format_code(slot: &[u8; LINK_SLOT_LEN], secret: &[u8]) -> String {
    let mut bytes = slot.to_vec();
    bytes.extend_from_slice(secret);
    let text = BASE32_NOPAD.encode(&bytes);
    text.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// Reads a code typed by a person (any case, with or without dashes and
/// spaces) into its slot and secret.
pub fn parse_code(code: &str) -> CoreResult<([u8; LINK_SLOT_LEN], Vec<u8>)> {
    let clean: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
    let bad = || {
        CoreError::Invalid(
            "that is not a link code: it is the 24 letters and digits `sotto link` shows on the new device".into(),
        )
    };
    let bytes = BASE32_NOPAD.decode(clean.as_bytes()).map_err(|_| bad())?;
    if bytes.len() != LINK_SLOT_LEN + LINK_SECRET_LEN {
        return Err(bad());
    }
    let mut slot = [0u8; LINK_SLOT_LEN];
    slot.copy_from_slice(&bytes[..LINK_SLOT_LEN]);
    Ok((slot, bytes[LINK_SLOT_LEN..].to_vec()))
}

/// The new device's side of a link, until the answer arrives. It lives in
/// memory: if the process ends, the link starts again with a new code.
pub struct LinkRequest {
    device: SigningKey,
    name: String,
    provider: EphemeralProvider,
    key_package: Vec<u8>,
    secret: Vec<u8>,
}

impl LinkRequest {
    /// A fresh device key and link KeyPackage for a device called `name`.
    pub fn new(name: &str) -> CoreResult<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(CoreError::Invalid("a device name is 1 to 64 characters, no control characters".into()));
        }
        let device = SigningKey::generate(&mut rand::rngs::OsRng);
        let provider = new_ephemeral()?;
        let public = device.verifying_key().to_bytes().to_vec();
        let signer = SignatureKeyPair::from_raw(SignatureScheme::ED25519, device.to_bytes().to_vec(), public.clone());
        let mut identity = Vec::new();
        ciborium::into_writer(&LinkCredential { link_device: name.to_owned() }, &mut identity)
            .map_err(|e| CoreError::Invalid(e.to_string()))?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity).into(),
            signature_key: SignaturePublicKey::from(public),
        };
        let bundle = KeyPackage::builder()
            .build(crate::suite::POST_QUANTUM, &provider, &signer, credential)
            .map_err(CoreError::mls)?;
        let key_package = bundle.key_package().tls_serialize_detached().map_err(CoreError::mls)?;
        let secret = rand::random::<[u8; LINK_SECRET_LEN]>().to_vec();
        Ok(Self { device, name: name.to_owned(), provider, key_package, secret })
    }

    /// The package to offer in the slot.
    pub fn key_package(&self) -> &[u8] {
        &self.key_package
    }

    /// The code to show.
    pub fn code(&self) -> String {
        format_code(&link_slot(&self.key_package), &self.secret)
    }

    /// Reads the answer: the welcome, then the handover in it, checked
    /// against the code's secret, the sender (a device of the account the
    /// handover names) and the certificate. Returns the new identity and
    /// the handover.
    pub fn accept(self, answer: &[u8]) -> CoreResult<(Identity, Handover)> {
        let answer: LinkAnswer = ciborium::from_reader(answer).map_err(|e| CoreError::decode("link answer", e))?;
        let msg = MlsMessageIn::tls_deserialize_exact(answer.welcome.as_slice())
            .map_err(|e| CoreError::decode("welcome", e))?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(CoreError::decode("link answer", "not a welcome"));
        };
        let mut group = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .and_then(|s| s.into_group(&self.provider))
            .map_err(|_| forged())?;
        let msg = MlsMessageIn::tls_deserialize_exact(answer.message.as_slice())
            .map_err(|e| CoreError::decode("link answer", e))?;
        let protocol = msg.try_into_protocol_message().map_err(|e| CoreError::decode("link answer", e))?;
        let processed = group.process_message(&self.provider, protocol).map_err(|_| forged())?;
        let Sender::Member(index) = processed.sender().clone() else { return Err(forged()) };
        let member = group.members().find(|m| m.index == index).ok_or_else(forged)?;
        let sender = SottoCredential::validate(&member.credential, &member.signature_key)?;
        let ProcessedMessageContent::ApplicationMessage(app) = processed.into_content() else {
            return Err(forged());
        };
        let handover: Handover =
            ciborium::from_reader(app.into_bytes().as_slice()).map_err(|e| CoreError::decode("link handover", e))?;
        if handover.secret != self.secret {
            return Err(forged());
        }
        if sender.handle != handover.handle || sender.account_key != handover.account_key {
            return Err(CoreError::BadCredential(
                "the answer did not come from a device of the account it names".into(),
            ));
        }
        let identity = Identity::linked(
            handover.handle.clone(),
            handover.device_id,
            handover.account_key.clone(),
            handover.certificate.clone(),
            self.device,
            self.name,
        )?;
        Ok((identity, handover))
    }
}

fn forged() -> CoreError {
    CoreError::BadCredential(
        "the answer to this link request was not made by a device that saw its code; nothing was linked. Start `sotto link` again"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_whatever_the_case_and_dashes() {
        let slot = [1, 2, 3, 4, 5, 6, 7, 8];
        let secret = vec![9, 10, 11, 12, 13, 14, 15];
        let code = format_code(&slot, &secret);
        assert_eq!(code.len(), 24 + 5, "{code}");
        assert_eq!(parse_code(&code).unwrap(), (slot, secret.clone()));
        assert_eq!(parse_code(&code.to_lowercase().replace('-', " ")).unwrap(), (slot, secret));
        assert!(parse_code("ABCD").is_err());
        assert!(parse_code("!!!!-????").is_err());
    }

    fn first_device() -> crate::Messenger {
        crate::Messenger::create_ephemeral("alice", "sotto://x:1").unwrap()
    }

    #[test]
    fn a_true_answer_links_and_hands_over_the_account() {
        let alice = first_device();
        let request = LinkRequest::new("laptop").unwrap();
        let candidate = alice.inspect_link(&request.code(), request.key_package()).unwrap();
        assert_eq!(candidate.name, "laptop");
        let (info, answer) = alice.approve_link(&candidate, 2, 0).unwrap();
        let (identity, handover) = request.accept(&answer).unwrap();
        assert_eq!(identity.handle, "alice");
        assert_eq!(identity.device_id, 2);
        assert_eq!(info.device_id, 2);
        assert!(!identity.can_certify(), "the account key stays on the first device");
        assert_eq!(handover.account_key, alice.identity().account_key());
    }

    #[test]
    fn an_answer_from_someone_without_the_code_secret_is_refused() {
        // The server knows the slot and the package, not the secret: the
        // best it can do is answer with a code carrying a guessed secret.
        let mallory = crate::Messenger::create_ephemeral("mallory", "sotto://x:1").unwrap();
        let request = LinkRequest::new("laptop").unwrap();
        let (slot, _) = parse_code(&request.code()).unwrap();
        let guessed = format_code(&slot, &[0; LINK_SECRET_LEN]);
        let candidate = mallory.inspect_link(&guessed, request.key_package()).unwrap();
        let (_, answer) = mallory.approve_link(&candidate, 2, 0).unwrap();
        let err = request.accept(&answer).err().expect("a forged answer must be refused");
        assert!(matches!(err, CoreError::BadCredential(_)), "{err:?}");
        assert!(err.to_string().contains("nothing was linked"), "{err}");
    }

    #[test]
    fn a_code_that_does_not_match_the_package_is_refused() {
        // A server that swaps in a package of its own is caught by the hash.
        let alice = first_device();
        let real = LinkRequest::new("laptop").unwrap();
        let swapped = LinkRequest::new("evil").unwrap();
        let err = alice.inspect_link(&real.code(), swapped.key_package()).err().unwrap();
        assert!(err.to_string().contains("does not match the code"), "{err}");
    }

    #[test]
    fn garbage_answers_are_errors_not_panics() {
        let samples: [&[u8]; 4] = [b"", b"\xff\x00", &[0xa2, 0x67, b'w', b'e'], &[0u8; 300]];
        for bytes in samples {
            let request = LinkRequest::new("laptop").unwrap();
            assert!(request.accept(bytes).is_err());
        }
        // A well-formed answer whose welcome is for another package.
        let alice = first_device();
        let one = LinkRequest::new("one").unwrap();
        let other = LinkRequest::new("other").unwrap();
        let candidate = alice.inspect_link(&one.code(), one.key_package()).unwrap();
        let (_, answer) = alice.approve_link(&candidate, 2, 0).unwrap();
        assert!(other.accept(&answer).is_err());
    }
}
