//! Roles in named groups as every client enforces them: a commit from a
//! member without the right is refused by every other member, whatever the
//! server let through (a modified client can lie to it about what its
//! commit does).

use sotto_proto::{ClaimedKeyPackage, Delivery, Request};

use crate::messenger::{Event, Intent, Invitee, Messenger, OutboxItem};
use crate::{Body, MessageState};

fn invitee(m: &Messenger) -> Invitee {
    let Request::UploadKeyPackages { packages, .. } = m.key_package_upload(1).unwrap() else { panic!() };
    Invitee {
        handle: m.identity().handle.clone(),
        account_key: m.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: m.identity().device_info(), package: packages[0].to_vec() }],
    }
}

fn delivery(from: &Messenger, item: &OutboxItem, seq: u64) -> Delivery {
    item.delivered_as(from.me(), seq)
}

/// `m` talks to `other` already: their groups are no message requests.
fn knows(m: &Messenger, other: &Messenger) {
    m.note_contact(&other.identity().handle, &other.identity().account_key()).unwrap();
    m.accept_person(&other.identity().handle).unwrap();
}

/// Whether the events say `text` (as a warning or a line in history).
fn said(events: &[Event], text: &str) -> bool {
    events.iter().any(|e| match e {
        Event::Warning { text: t, .. } => t.contains(text),
        Event::Message(m) => matches!(&m.body, Body::Text { text: t } if t.contains(text)),
        _ => false,
    })
}

#[test]
fn a_removal_by_a_member_who_is_not_an_admin_is_refused_by_every_other_member() {
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    let carol = Messenger::create_ephemeral("carol", "sotto://x:1").unwrap();
    knows(&bob, &alice);
    knows(&carol, &alice);
    let create = alice.create_group("crew", vec![invitee(&bob), invitee(&carol)]).unwrap();
    alice.accepted(&create.client_id, 1).unwrap();
    let g = create.group_id.clone();
    for m in [&bob, &carol] {
        m.handle_welcome(&g, create.welcome.as_deref().unwrap()).unwrap();
    }
    // Alice tells the roles (the name announcement carries them).
    alice.announce("#crew").unwrap();
    let items = alice.outbox().unwrap();
    for (i, item) in items.iter().enumerate() {
        alice.accepted(&item.client_id, 2 + i as u64).unwrap();
        for m in [&bob, &carol] {
            m.handle_delivery(&delivery(&alice, item, 2 + i as u64)).unwrap();
        }
    }
    let seq = 2 + items.len() as u64;
    for m in [&bob, &carol] {
        let roles = m.roles(&g).unwrap().expect("roles learnt from the creator");
        assert_eq!(roles.admins, vec!["alice".to_owned()]);
    }
    // Bob's own app refuses to make the removal...
    let err = bob.remove_from_group("#crew", vec!["carol".into()]).unwrap_err();
    assert!(err.to_string().contains("only an admin of #crew"), "{err}");
    // ...but a modified app makes it anyway, and the server is told nothing
    // of it (its routing list says no one is removed).
    let forged = bob.build_commit(&g, Intent::Remove(vec!["carol".into()])).unwrap().expect("a commit");
    let (alice_epoch, _) = alice.epoch_state(&g).unwrap();
    for m in [&alice, &carol] {
        let events = m.handle_delivery(&delivery(&bob, &forged, seq)).unwrap();
        assert!(
            said(&events, "@bob tried to remove @carol without being an admin"),
            "{}: {events:?}",
            m.identity().handle
        );
    }
    assert_eq!(alice.epoch_state(&g).unwrap().0, alice_epoch, "not merged: Alice's group did not move on");
    assert!(carol.in_group(&g).unwrap(), "Carol took no part in her own removal");
}

#[test]
fn roles_live_in_the_groups_mls_state_and_only_an_admin_changes_them() {
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    knows(&bob, &alice);
    let create = alice.create_group("crew", vec![invitee(&bob)]).unwrap();
    alice.accepted(&create.client_id, 1).unwrap();
    let g = create.group_id.clone();
    bob.handle_welcome(&g, create.welcome.as_deref().unwrap()).unwrap();
    // The Welcome carried them: no message needed.
    assert_eq!(bob.roles(&g).unwrap().unwrap().admins, vec!["alice".to_owned()]);
    let mut seq = 1;
    let mut send = |from: &Messenger, to: &Messenger, item: &OutboxItem| {
        seq += 1;
        let events = to.handle_delivery(&delivery(from, item, seq)).unwrap();
        from.accepted(&item.client_id, seq).unwrap();
        events
    };
    // A roles message (the older way) no longer counts, even from the admin.
    let claim = alice.prepare_roles("#crew", Some(crate::RoleChange::Admin("bob".into(), true))).unwrap();
    assert!(claim.is_none(), "groups with roles in their state send no roles message");
    // Bob's own app refuses to make himself admin...
    let err = bob.change_roles(&bob.conversation_of(&g).unwrap(), crate::RoleChange::Admin("bob".into(), true));
    assert!(err.unwrap_err().to_string().contains("only an admin"));
    // ...a modified one makes the commit anyway, and Alice refuses it.
    let forged = bob.build_commit(&g, Intent::Roles(crate::RoleChange::Admin("bob".into(), true))).unwrap().unwrap();
    let (epoch, _) = alice.epoch_state(&g).unwrap();
    let events = alice.handle_delivery(&delivery(&bob, &forged, 2)).unwrap();
    assert!(said(&events, "@bob tried to change the group's roles without being an admin"), "{events:?}");
    assert_eq!(alice.epoch_state(&g).unwrap().0, epoch, "not merged");
    assert_eq!(alice.roles(&g).unwrap().unwrap().admins, vec!["alice".to_owned()]);
    // Alice makes a real change: a commit, and both see who did it.
    let carol = Messenger::create_ephemeral("carol", "sotto://x:1").unwrap();
    knows(&carol, &alice);
    let add = alice.add_to_group("#crew", vec![invitee(&carol)]).unwrap().unwrap();
    send(&alice, &carol, &add);
    carol.handle_welcome(&g, add.welcome.as_deref().unwrap()).unwrap();
    alice.change_roles("#crew", crate::RoleChange::Admin("carol".into(), true)).unwrap();
    let commit = alice.outbox().unwrap().into_iter().find(|i| i.intent.is_some()).expect("a roles commit");
    let events = send(&alice, &carol, &commit);
    assert!(said(&events, "@alice made you an admin"), "{events:?}");
    let mine: Vec<String> = alice
        .history("#crew")
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Text { text } if m.state == MessageState::System => Some(text),
            _ => None,
        })
        .collect();
    assert!(mine.contains(&"you made @carol an admin".to_owned()), "{mine:?}");
    assert_eq!(carol.roles(&g).unwrap().unwrap().admins, vec!["alice".to_owned(), "carol".to_owned()]);
    assert_eq!(alice.roles(&g).unwrap().unwrap().admins, vec!["alice".to_owned(), "carol".to_owned()]);
    // An admin may step down while another stays; the last one may not.
    let conv = carol.conversation_of(&g).unwrap();
    carol.change_roles(&conv, crate::RoleChange::Admin("carol".into(), false)).unwrap();
    let err = alice.build_commit(&g, Intent::Roles(crate::RoleChange::Admin("alice".into(), false)));
    assert!(err.is_ok(), "carol's step-down is not merged yet, so alice is not the last: {err:?}");
}

#[test]
fn a_device_on_an_older_sotto_cannot_be_added_to_a_group_with_roles_and_is_told_why() {
    use openmls::prelude::{tls_codec::Serialize as _, *};
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    // A KeyPackage as sotto made them before roles lived in the MLS state.
    let old_capabilities = Capabilities::builder().extensions(vec![ExtensionType::LastResort]).build();
    let bundle = KeyPackage::builder()
        .leaf_node_capabilities(old_capabilities)
        .build(crate::suite::POST_QUANTUM, &bob.provider(), &bob.identity().signer(), bob.identity().credential())
        .unwrap();
    let package = bundle.key_package().tls_serialize_detached().unwrap();
    let old = Invitee {
        handle: "bob".into(),
        account_key: bob.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: bob.identity().device_info(), package }],
    };
    let err = alice.create_group("crew", vec![old]).unwrap_err().to_string();
    assert!(err.contains("@bob uses an older sotto") && err.contains("update"), "{err}");
}

#[test]
fn a_muted_conversation_stays_muted_in_the_profile() {
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    knows(&bob, &alice);
    let create = alice.create_group("crew", vec![invitee(&bob)]).unwrap();
    alice.accepted(&create.client_id, 1).unwrap();
    assert!(!alice.is_muted("#crew").unwrap());
    alice.set_muted("#crew", true).unwrap();
    assert!(alice.is_muted("#crew").unwrap());
    alice.set_muted("#crew", false).unwrap();
    assert!(!alice.is_muted("#crew").unwrap());
    assert!(alice.set_muted("#nowhere", true).unwrap_err().to_string().contains("no conversation #nowhere"));
}
