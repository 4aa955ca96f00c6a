//! What peers and the network hand the client core can be anything: the
//! content parser, the file chunk decrypter, credentials and MLS messages
//! must answer with an error, never a panic. (Stable-toolchain stand-in for
//! fuzzing; see fuzz/README.md.)

use openmls::prelude::{BasicCredential, Credential};
use proptest::prelude::*;
use sotto_core::files::{safe_file_name, ChunkCipher, CHUNK, NONCE_PREFIX};
use sotto_core::{Content, Messenger, SottoCredential};

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]

    #[test]
    fn content_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Content::decode(&data);
    }

    #[test]
    fn chunk_decrypter_rejects_what_it_did_not_seal(data in prop::collection::vec(any::<u8>(), 0..(CHUNK + 64)), index in 0u64..4) {
        let c = ChunkCipher::new(&[1; 32], &[2; NONCE_PREFIX], b"blob", 3 * CHUNK as u64).unwrap();
        prop_assert!(c.open(index, &data).is_err());
    }

    #[test]
    fn sealed_chunks_round_trip(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let c = ChunkCipher::new(&[1; 32], &[2; NONCE_PREFIX], b"blob", data.len() as u64).unwrap();
        prop_assert_eq!(c.open(0, &c.seal(0, &data).unwrap()).unwrap(), data);
    }

    #[test]
    fn credentials_from_strangers_never_panic(identity in prop::collection::vec(any::<u8>(), 0..512), key in prop::collection::vec(any::<u8>(), 0..64)) {
        let cred: Credential = BasicCredential::new(identity).into();
        prop_assert!(SottoCredential::validate(&cred, &key).is_err());
    }

    #[test]
    fn file_names_never_escape(name in "\\PC{0,80}|[./\\\\a-z \\x00-\\x1f]{0,40}") {
        let safe = safe_file_name(&name);
        prop_assert!(!safe.is_empty() && !safe.contains('/') && !safe.contains('\\'));
        prop_assert!(safe != "." && safe != ".." && !safe.starts_with('.'));
        prop_assert!(!safe.chars().any(char::is_control));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn welcomes_and_deliveries_of_garbage_never_panic(data in prop::collection::vec(any::<u8>(), 0..1024), seq in 1u64..10) {
        let m = Messenger::create_ephemeral("probe", "sotto://x:1").unwrap();
        let _ = m.handle_welcome(&[2; 16], &data);
        let d = sotto_proto::Delivery {
            group_id: vec![1; 16],
            seq,
            epoch: 0,
            sender: sotto_proto::DeviceRef { handle: "x".into(), device_id: 1 },
            kind: sotto_proto::MessageKind::Application,
            payload: data,
            stored_at: 0,
        };
        let _ = m.handle_delivery(&d);
    }
}
