//! What a malicious or broken server (or group creator) can hand a client:
//! values the client takes as they come must never panic it or wedge its
//! sync. Unit tests because they build MLS groups by hand with the crate's
//! own identity types.

use openmls::prelude::{tls_codec::*, *};
use serde_bytes::ByteBuf;
use sotto_proto::{ClaimedKeyPackage, Request};

use crate::messenger::{Event, Invitee, Messenger};

/// Bob's uploaded packages: the one-time ones and the last-resort one.
fn packages(bob: &Messenger) -> (Vec<ByteBuf>, ByteBuf) {
    match bob.key_package_upload(1).unwrap() {
        Request::UploadKeyPackages { packages, last_resort, .. } => (packages, last_resort.unwrap()),
        other => panic!("unexpected {other:?}"),
    }
}

/// A welcome for Bob into a group with the id `group_id`, made by Mallory
/// directly with openmls (a sotto client would never pick such an id).
fn welcome_with_group_id(mallory: &Messenger, bob_package: &[u8], group_id: &[u8]) -> Vec<u8> {
    let provider = mallory.provider();
    let mut group = MlsGroup::new_with_group_id(
        &provider,
        &mallory.identity.signer(),
        &crate::messenger::create_config(None, crate::suite::POST_QUANTUM).unwrap(),
        GroupId::from_slice(group_id),
        mallory.identity.credential(),
    )
    .unwrap();
    let kp = KeyPackageIn::tls_deserialize_exact(bob_package)
        .unwrap()
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let (_, welcome, _) = group.add_members(&provider, &mallory.identity.signer(), &[kp]).unwrap();
    welcome.tls_serialize_detached().unwrap()
}

#[test]
fn a_welcome_with_a_one_byte_group_id_joins_instead_of_crashing_the_client() {
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    let mallory = Messenger::create_ephemeral("mallory", "sotto://x:1").unwrap();
    let (one_time, _) = packages(&bob);
    for id in [vec![2u8], vec![]] {
        if id.is_empty() {
            // openmls itself refuses an empty id; a server can still claim one.
            assert!(bob.handle_welcome(&id, b"\x00").is_err());
            continue;
        }
        let welcome = welcome_with_group_id(&mallory, &one_time[0], &id);
        let events = bob.handle_welcome(&id, &welcome).expect("a short group id is only unusual");
        assert!(
            matches!(&events[0], Event::Request { conversation, from } if conversation.starts_with("#new-") && from == "mallory"),
            "{events:?}"
        );
    }
}

#[test]
fn who_added_you_is_read_from_the_welcomes_signature_not_from_the_server() {
    // Bob talks to Alice; Mallory's welcome arrives with the server claiming
    // Alice sent it. It is still Mallory's message request.
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let mallory = Messenger::create_ephemeral("mallory", "sotto://x:1").unwrap();
    bob.note_contact("alice", &alice.identity().account_key()).unwrap();
    bob.accept_person("alice").unwrap();
    let (one_time, _) = packages(&bob);
    let id = vec![2u8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];
    let welcome = welcome_with_group_id(&mallory, &one_time[0], &id);
    let events = bob.handle_welcome_from(Some("alice"), &id, &welcome).unwrap();
    assert!(matches!(&events[0], Event::Request { from, .. } if from == "mallory"), "{events:?}");
    assert_eq!(bob.requests().unwrap().len(), 1);
    assert!(bob.conversations().unwrap().is_empty(), "a request is not listed as a conversation");
}

#[test]
fn the_last_resort_key_package_is_accepted_by_the_person_starting_a_conversation() {
    // When someone drained Bob's one-time packages, the server hands out his
    // last-resort package; Alice's client must still be able to use it.
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    let (_, last_resort) = packages(&bob);
    let invitee = Invitee {
        handle: "bob".into(),
        account_key: bob.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: bob.identity().device_info(), package: last_resort.to_vec() }],
    };
    let commit = alice.start_direct(invitee).expect("the last-resort package is valid");
    let welcome = commit.welcome.expect("a welcome for Bob");
    let events = bob.handle_welcome(&commit.group_id, &welcome).expect("Bob joins from his last-resort package");
    assert!(
        matches!(&events[0], Event::Request { conversation, from } if conversation == "@alice" && from == "alice"),
        "{events:?}"
    );
    // The package stays usable for the next person, too.
    let carol = Messenger::create_ephemeral("carol", "sotto://x:1").unwrap();
    let again = Invitee {
        handle: "bob".into(),
        account_key: bob.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: bob.identity().device_info(), package: last_resort.to_vec() }],
    };
    let commit = carol.start_direct(again).unwrap();
    bob.handle_welcome(&commit.group_id, &commit.welcome.unwrap()).expect("and again");
}
