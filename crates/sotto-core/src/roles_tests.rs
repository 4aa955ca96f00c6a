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
fn only_an_admins_roles_message_counts_and_changes_show_who_did_what() {
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    knows(&bob, &alice);
    let create = alice.create_group("crew", vec![invitee(&bob)]).unwrap();
    alice.accepted(&create.client_id, 1).unwrap();
    let g = create.group_id.clone();
    bob.handle_welcome(&g, create.welcome.as_deref().unwrap()).unwrap();
    let mut seq = 1;
    let mut send = |from: &Messenger, to: &Messenger, item: &OutboxItem| {
        seq += 1;
        from.accepted(&item.client_id, seq).unwrap();
        to.handle_delivery(&delivery(from, item, seq)).unwrap()
    };
    // The name and the roles, as after any add.
    alice.announce("#crew").unwrap();
    for item in alice.outbox().unwrap() {
        send(&alice, &bob, &item);
    }
    // Bob claims to be admin: Alice ignores it.
    let claim = bob.prepare_roles("#crew", Some(crate::RoleChange::Admin("bob".into(), true))).unwrap().unwrap();
    send(&bob, &alice, &claim);
    assert_eq!(alice.roles(&g).unwrap().unwrap().admins, vec!["alice".to_owned()]);
    // Alice makes him admin: both see who did it.
    let promote = alice.prepare_roles("#crew", Some(crate::RoleChange::Admin("bob".into(), true))).unwrap().unwrap();
    let events = send(&alice, &bob, &promote);
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
    assert!(mine.contains(&"you made @bob an admin".to_owned()), "{mine:?}");
    assert_eq!(bob.roles(&g).unwrap().unwrap().admins, vec!["alice".to_owned(), "bob".to_owned()]);
}
