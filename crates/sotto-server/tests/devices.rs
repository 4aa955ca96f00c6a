//! Several devices per account against a real relay, driven by the real
//! client core: a device the server slips in on its own gets into nothing,
//! linking survives a rival commit, a device linked while offline catches
//! up, the device cap holds, and a device whose one-time KeyPackages ran out
//! is still added (by its last-resort package), never breaking a group.

mod common;

use std::time::Duration;

use common::*;
use sotto_client::devices::{wait_for_link, Linked};
use sotto_client::Session;
use sotto_core::link::LinkRequest;
use sotto_core::{Body, Event, Messenger, ProfileKey};
use sotto_proto::{DeviceInfo, DeviceRef, Request, Response};
use sotto_server::relay::{now_ms, RelayConfig};

async fn person(server: &TestServer, handle: &str) -> Messenger {
    let m = Messenger::create_ephemeral(handle, &server.address.to_string()).unwrap();
    // No message requests in the way of what these tests are about.
    m.set_auto_accept(true).unwrap();
    Session::register(&m, None).await.unwrap().close().await;
    m
}

/// Devices of `handle` the server routes a group to.
async fn routed(m: &Messenger, group_id: &[u8]) -> Vec<DeviceRef> {
    let mut s = Session::open(m).await.unwrap();
    let r = s.connection().request(Request::GroupState { group_id: group_id.to_vec() }).await.unwrap();
    s.close().await;
    match r {
        Response::Group { members, .. } => members,
        other => panic!("{other:?}"),
    }
}

/// Links a new device to `existing` (which must be online in `session`)
/// and returns its messenger, in `dir`.
async fn link(
    server: &TestServer,
    existing: &mut Session<'_>,
    name: &str,
    dir: &std::path::Path,
    wait: Duration,
) -> (Messenger, Linked) {
    let request = LinkRequest::new(name).unwrap();
    let code = request.code();
    let address = server.address.clone();
    let (answer, linked) = tokio::join!(wait_for_link(&address, request, Duration::from_secs(30)), async {
        // The new device offers first; the linking one then finds it.
        let candidate = loop {
            match existing.fetch_link(&code).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert_eq!(candidate.name, name);
        existing.complete_link(&candidate, wait, 0).await.unwrap()
    });
    let (identity, handover) = answer.unwrap().expect("answered");
    let m = Messenger::create_linked(dir, &ProfileKey::KeyFile, identity, &handover).unwrap();
    (m, linked)
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => match &m.body {
                Body::Text { text } if !m.outgoing && m.state != sotto_core::MessageState::System => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

async fn receive(m: &Messenger) -> Vec<String> {
    let mut s = Session::open(m).await.unwrap();
    let events = s.sync().await.unwrap();
    s.close().await;
    texts(&events)
}

#[tokio::test]
async fn a_device_the_server_adds_on_its_own_gets_into_no_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    // The server (its operator, or whoever took it over) adds a device of
    // its own to alice's account, with KeyPackages. It cannot sign with
    // alice's account key, so it certifies the device with a key of its own.
    let fake = Messenger::create_ephemeral("alice", "sotto://nowhere:1").unwrap();
    let forged = DeviceInfo { device_id: 2, device_key: fake.identity().device_key(), certificate: vec![0; 64] };
    server.relay.store.add_device("alice", &forged, 8, now_ms()).unwrap();
    let Request::UploadKeyPackages { packages, last_resort, other_last_resorts } = fake.key_package_upload(3).unwrap()
    else {
        panic!()
    };
    let with_suite = |p: serde_bytes::ByteBuf| (sotto_proto::suites::key_package_suite(&p).unwrap(), p.into_vec());
    let packages: Vec<_> = packages.into_iter().map(with_suite).collect();
    let last_resorts: Vec<_> = last_resort.into_iter().chain(other_last_resorts).map(with_suite).collect();
    let alice2 = DeviceRef { handle: "alice".into(), device_id: 2 };
    server.relay.store.add_key_packages(&alice2, &packages, &last_resorts).unwrap();

    // Bob starts a conversation with alice: only her real device is in it.
    let mut s = Session::open(&bob).await.unwrap();
    s.send_text("@alice", "only for the real alice").await.unwrap();
    assert_eq!(s.add_missing_devices("alice").await.unwrap(), 0, "the forged device is never added");
    s.close().await;
    let group = bob.conversation_group("@alice").unwrap().unwrap();
    let members = routed(&bob, &group).await;
    assert!(!members.contains(&alice2), "{members:?}");
    assert_eq!(receive(&alice).await, vec!["only for the real alice".to_owned()]);
    // Nor does alice's own device, which checks its account's list at
    // every connection, add it.
    Session::open(&alice).await.unwrap().close().await;
    assert!(!routed(&bob, &group).await.contains(&alice2));
    server.stop().await;
}

#[tokio::test]
async fn linking_while_another_member_commits_ends_with_every_device_in_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let carol = person(&server, "carol").await;
    let mut a = Session::open(&alice).await.unwrap();
    a.create_group("crew", &["bob".into(), "carol".into()]).await.unwrap();
    a.send_text("@bob", "hello").await.unwrap();
    // Linked while the new device is not yet online: its keys are not on
    // the server, so the conversations cannot take it yet.
    let laptop_dir = tempfile::tempdir().unwrap();
    let (laptop, linked) = link(&server, &mut a, "laptop", &laptop_dir.path().join("p"), Duration::ZERO).await;
    assert_eq!((linked.device_id, linked.complete), (2, false));
    a.close().await;
    // The laptop comes online (its keys go up); meanwhile bob commits in
    // both conversations, so alice's view of them is an epoch behind.
    Session::open(&laptop).await.unwrap().close().await;
    let mut b = Session::open(&bob).await.unwrap();
    b.sync().await.unwrap();
    b.update_keys_older_than(Duration::ZERO).await.unwrap();
    b.close().await;
    // Alice's next connection adds the laptop everywhere; her adds lose
    // the epoch race, are rebuilt on bob's epoch and land.
    let stale = server.relay.metrics.rejected_count(sotto_proto::ErrorCode::StaleEpoch);
    Session::open(&alice).await.unwrap().close().await;
    assert!(
        server.relay.metrics.rejected_count(sotto_proto::ErrorCode::StaleEpoch) > stale,
        "the race did not happen: alice's adds were never stale"
    );
    let laptop_ref = DeviceRef { handle: "alice".into(), device_id: 2 };
    for conversation in ["#crew", "@bob"] {
        let g = alice.conversation_group(conversation).unwrap().unwrap();
        assert!(routed(&alice, &g).await.contains(&laptop_ref), "{conversation}");
    }
    // And it reads what is said there from now on, as does the phone.
    let mut c = Session::open(&carol).await.unwrap();
    c.sync().await.unwrap();
    c.send_text("#crew", "to the whole crew").await.unwrap();
    c.close().await;
    let mut b = Session::open(&bob).await.unwrap();
    b.sync().await.unwrap();
    b.send_text("@alice", "to every alice").await.unwrap();
    b.close().await;
    let mut got = receive(&laptop).await;
    got.sort();
    assert_eq!(got, vec!["to every alice".to_owned(), "to the whole crew".to_owned()]);
    let mut got = receive(&alice).await;
    got.sort();
    assert_eq!(got, vec!["to every alice".to_owned(), "to the whole crew".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn the_device_cap_holds_and_an_exhausted_device_is_added_by_its_last_resort_package() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), RelayConfig { max_devices: 2, ..open() }).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let mut a = Session::open(&alice).await.unwrap();
    let laptop_dir = tempfile::tempdir().unwrap();
    let (laptop, linked) =
        link(&server, &mut a, "laptop", &laptop_dir.path().join("p"), Duration::from_millis(1)).await;
    assert_eq!(linked.device_id, 2);
    Session::open(&laptop).await.unwrap().close().await;

    // A third device is refused with the reason and what to do.
    let request = LinkRequest::new("tablet").unwrap();
    let code = request.code();
    let address = server.address.clone();
    let (_, refused) = tokio::join!(wait_for_link(&address, request, Duration::from_secs(3)), async {
        let candidate = loop {
            match a.fetch_link(&code).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        a.complete_link(&candidate, Duration::ZERO, 0).await
    });
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("as many as this server allows") && e.contains("sotto device remove"), "{e}");

    // Drain the laptop's one-time stock (alice's own claims are not rate
    // limited); bob still reaches both devices: the laptop's last-resort
    // package is used, and the conversation works.
    for _ in 0..60 {
        a.claim_devices("alice", Some(vec![2]), sotto_core::suite::wanted()).await.unwrap();
    }
    a.close().await;
    let mut b = Session::open(&bob).await.unwrap();
    b.send_text("@alice", "reaches the drained device too").await.unwrap();
    b.close().await;
    assert_eq!(receive(&laptop).await, vec!["reaches the drained device too".to_owned()]);
    assert_eq!(receive(&alice).await, vec!["reaches the drained device too".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn a_device_revoked_before_its_removal_commits_went_out_is_taken_out_at_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let mut a = Session::open(&alice).await.unwrap();
    a.send_text("@bob", "hello").await.unwrap();
    let laptop_dir = tempfile::tempdir().unwrap();
    let (laptop, _) = link(&server, &mut a, "laptop", &laptop_dir.path().join("p"), Duration::ZERO).await;
    a.close().await;
    Session::open(&laptop).await.unwrap().close().await;
    Session::open(&alice).await.unwrap().close().await;
    let group = alice.conversation_group("@bob").unwrap().unwrap();
    // In the one-to-one (and the account's own group, made once the laptop
    // was online).
    assert!(alice.groups_with_own_device(2).unwrap().contains(&group), "the laptop is in the one-to-one");
    // The laptop is revoked on the server, and then the connection is gone
    // before a single removal commit went out (a crash, a cut).
    let mut a = Session::open(&alice).await.unwrap();
    a.connection().request(Request::RemoveDevice { device_id: 2 }).await.unwrap();
    drop(a);
    assert!(alice.groups_with_own_device(2).unwrap().contains(&group), "still in the MLS group");
    // The next connection notices the account no longer has it.
    Session::open(&alice).await.unwrap().close().await;
    assert!(alice.groups_with_own_device(2).unwrap().is_empty(), "keyed out of the conversation");
    let mut b = Session::open(&bob).await.unwrap();
    let events = b.sync().await.unwrap();
    b.send_text("@alice", "after the laptop left").await.unwrap();
    b.close().await;
    let notices: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.state == sotto_core::MessageState::System => match &m.body {
                Body::Text { text } => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(notices.iter().any(|n| n.contains("device") && n.contains("removed")), "bob is told: {notices:?}");
    assert_eq!(receive(&alice).await, vec!["after the laptop left".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn a_members_new_device_missing_from_a_named_group_is_added_by_whoever_sends_there_next() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let carol = person(&server, "carol").await;
    let mut a = Session::open(&alice).await.unwrap();
    a.create_group("crew", &["bob".to_owned(), "carol".to_owned()]).await.unwrap();
    a.close().await;
    receive(&bob).await;
    receive(&carol).await;
    // Bob links a laptop, and his phone is gone before the laptop came
    // online: it added the laptop nowhere, and stays offline.
    let mut b = Session::open(&bob).await.unwrap();
    let laptop_dir = tempfile::tempdir().unwrap();
    let (laptop, linked) = link(&server, &mut b, "laptop", &laptop_dir.path().join("p"), Duration::ZERO).await;
    assert!(!linked.complete);
    drop(b);
    Session::open(&laptop).await.unwrap().close().await;
    let group = alice.conversation_group("#crew").unwrap().unwrap();
    let bob2 = DeviceRef { handle: "bob".into(), device_id: 2 };
    assert!(!routed(&alice, &group).await.contains(&bob2), "not in the group yet");

    // Carol writes to the group: her client sees a device on bob's signed
    // list missing from it, and adds it before the message goes.
    let mut c = Session::open(&carol).await.unwrap();
    c.send_text("#crew", "for every device of yours").await.unwrap();
    c.close().await;
    assert!(routed(&alice, &group).await.contains(&bob2));
    assert_eq!(receive(&laptop).await, vec!["for every device of yours".to_owned()]);
    assert_eq!(receive(&alice).await, vec!["for every device of yours".to_owned()]);
    server.stop().await;
}
