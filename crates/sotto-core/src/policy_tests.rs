//! The sending policy driven by hand, answer by answer, with no server and
//! no sockets: what the client asks for next is exactly what it decided.

use sotto_proto::{ClaimedKeyPackage, Delivery, ErrorBody, ErrorCode, MessageKind, Request, Response};

use crate::content::Body;
use crate::messenger::{Invitee, Messenger, OutboxItem};
use crate::policy::{Policy, Step, Task};

fn delivery(from: &Messenger, item: &OutboxItem, seq: u64) -> Delivery {
    item.delivered_as(from.me(), seq)
}

/// Alice and Bob in a one-to-one group whose first commit is at seq 1.
fn pair() -> (Messenger, Messenger, Vec<u8>) {
    let alice = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
    let bob = Messenger::create_ephemeral("bob", "sotto://x:1").unwrap();
    let Request::UploadKeyPackages { packages, .. } = bob.key_package_upload(1).unwrap() else { panic!() };
    let invitee = Invitee {
        handle: "bob".into(),
        account_key: bob.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: bob.identity().device_info(), package: packages[0].to_vec() }],
    };
    let commit = alice.start_direct(invitee).unwrap();
    alice.accepted(&commit.client_id, 1).unwrap();
    bob.handle_welcome(&commit.group_id, commit.welcome.as_deref().unwrap()).unwrap();
    (alice, bob, commit.group_id)
}

fn expect_request(step: Step) -> Request {
    match step {
        Step::Request(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn stale() -> ErrorBody {
    ErrorBody::new(ErrorCode::StaleEpoch)
}

fn text_of(m: &Messenger, payload_owner: &Messenger, req: &Request, seq: u64) -> String {
    let Request::Send { group_id, epoch, payload, .. } = req else { panic!("not a send: {req:?}") };
    let d = Delivery {
        group_id: group_id.clone(),
        seq,
        epoch: *epoch,
        sender: payload_owner.me(),
        kind: MessageKind::Application,
        payload: payload.clone(),
        stored_at: 0,
    };
    let before = m.history("@alice").unwrap().len();
    m.handle_delivery(&d).unwrap();
    let history = m.history("@alice").unwrap();
    assert_eq!(history.len(), before + 1, "Bob stored the message");
    match &history.last().unwrap().body {
        Body::Text { text } => text.clone(),
        other => panic!("not a text: {other:?}"),
    }
}

#[test]
fn messages_made_stale_by_a_rivals_commit_are_reencrypted_and_leave_in_the_order_they_were_written() {
    let (alice, bob, group) = pair();
    // Bob's key update wins the race for epoch 2 (the server stored it at
    // seq 2) while Alice writes two messages in epoch 1.
    let update = bob.update_keys(&group).unwrap().expect("an update commit");
    bob.accepted(&update.client_id, 2).unwrap();
    alice.prepare_text("@bob", "one").unwrap();
    alice.prepare_text("@bob", "two").unwrap();

    let mut policy = Policy::new([Task::Flush]);
    // "one" goes out in epoch 1 and is refused as stale.
    let first = expect_request(policy.step(&alice, None).unwrap());
    assert!(matches!(first, Request::Send { epoch: 1, .. }), "{first:?}");
    // The policy catches up from its cursor (nothing read yet: Alice's own
    // first commit needs no reading) before anything else.
    let fetch = expect_request(policy.step(&alice, Some(Err(stale()))).unwrap());
    assert_eq!(fetch, Request::Fetch { group_id: group.clone(), after_seq: 0, limit: sotto_proto::limits::MAX_FETCH });
    let messages = vec![delivery(&bob, &update, 2)];
    let ack = expect_request(policy.step(&alice, Some(Ok(Response::Messages { messages }))).unwrap());
    assert_eq!(ack, Request::Ack { group_id: group.clone(), seq: 2 }, "acknowledged only after processing");
    let fetch = expect_request(policy.step(&alice, Some(Ok(Response::Done))).unwrap());
    assert!(matches!(fetch, Request::Fetch { after_seq: 2, .. }), "reads on from the new cursor: {fetch:?}");
    // Caught up: "one" is re-encrypted to the back of the outbox; "two",
    // still of epoch 1, is tried next and is stale as well.
    let second = expect_request(policy.step(&alice, Some(Ok(Response::Messages { messages: vec![] }))).unwrap());
    assert!(matches!(second, Request::Send { epoch: 1, .. }), "{second:?}");
    let fetch = expect_request(policy.step(&alice, Some(Err(stale()))).unwrap());
    assert!(matches!(fetch, Request::Fetch { after_seq: 2, .. }), "{fetch:?}");
    // Both now go out in epoch 2, in the order Alice wrote them.
    let again_one = expect_request(policy.step(&alice, Some(Ok(Response::Messages { messages: vec![] }))).unwrap());
    assert!(matches!(again_one, Request::Send { epoch: 2, .. }), "{again_one:?}");
    let appended = |seq| Some(Ok(Response::Appended { seq, epoch: 2, duplicate: false }));
    let again_two = expect_request(policy.step(&alice, appended(3)).unwrap());
    assert!(matches!(again_two, Request::Send { epoch: 2, .. }), "{again_two:?}");
    match policy.step(&alice, appended(4)).unwrap() {
        Step::Done(_) => {}
        other => panic!("the outbox is empty, so the flush is done: {other:?}"),
    }
    assert!(alice.outbox().unwrap().is_empty());
    // Bob reads both, in order, in the new epoch.
    assert_eq!(text_of(&bob, &alice, &again_one, 3), "one");
    assert_eq!(text_of(&bob, &alice, &again_two, 4), "two");
    let mine: Vec<_> = alice.history("@bob").unwrap().into_iter().filter(|m| m.outgoing).map(|m| m.seq).collect();
    assert_eq!(mine, vec![Some(3), Some(4)], "Alice's copies carry the server's order");
}

#[test]
fn a_server_asking_to_slow_down_gets_a_pause_then_the_same_message_again() {
    let (alice, _bob, _) = pair();
    alice.prepare_text("@bob", "hello").unwrap();
    let mut policy = Policy::new([Task::Flush]);
    let first = expect_request(policy.step(&alice, None).unwrap());
    let pause = policy.step(&alice, Some(Err(ErrorBody::new(ErrorCode::RateLimited)))).unwrap();
    assert!(matches!(pause, Step::Pause(d) if d.as_millis() == 250), "{pause:?}");
    let again = expect_request(policy.step(&alice, None).unwrap());
    assert_eq!(first, again, "the same message, the same client id");
    let pause = policy.step(&alice, Some(Err(ErrorBody::new(ErrorCode::RateLimited)))).unwrap();
    assert!(matches!(pause, Step::Pause(d) if d.as_millis() == 500), "the pause doubles: {pause:?}");
}

#[test]
fn an_answer_that_does_not_fit_the_request_is_an_error_not_a_panic_and_the_message_stays_queued() {
    let (alice, _bob, _) = pair();
    alice.prepare_text("@bob", "hello").unwrap();
    let mut policy = Policy::new([Task::Flush]);
    expect_request(policy.step(&alice, None).unwrap());
    let err = policy.step(&alice, Some(Ok(Response::Messages { messages: vec![] }))).unwrap_err();
    assert!(err.to_string().contains("does not fit a send request"), "{err}");
    assert_eq!(alice.outbox().unwrap().len(), 1, "still in the outbox");
}

#[test]
fn a_stale_commit_is_rebuilt_on_the_winners_epoch_and_its_group_info_published() {
    let (alice, bob, group) = pair();
    let bobs = bob.update_keys(&group).unwrap().unwrap();
    bob.accepted(&bobs.client_id, 2).unwrap();
    let mine = alice.update_keys(&group).unwrap().unwrap();
    let mut policy = Policy::new([Task::Post(mine)]);
    let first = expect_request(policy.step(&alice, None).unwrap());
    assert!(matches!(first, Request::Commit { epoch: 1, .. }), "{first:?}");
    expect_request(policy.step(&alice, Some(Err(stale()))).unwrap()); // fetch
    let ack = expect_request(
        policy.step(&alice, Some(Ok(Response::Messages { messages: vec![delivery(&bob, &bobs, 2)] }))).unwrap(),
    );
    assert!(matches!(ack, Request::Ack { seq: 2, .. }));
    expect_request(policy.step(&alice, Some(Ok(Response::Done))).unwrap()); // fetch again
    let rebuilt = expect_request(policy.step(&alice, Some(Ok(Response::Messages { messages: vec![] }))).unwrap());
    assert!(matches!(rebuilt, Request::Commit { epoch: 2, .. }), "rebuilt on epoch 2: {rebuilt:?}");
    let info = expect_request(
        policy.step(&alice, Some(Ok(Response::Appended { seq: 3, epoch: 3, duplicate: false }))).unwrap(),
    );
    assert!(matches!(info, Request::PutGroupInfo { epoch: 3, .. }), "{info:?}");
    assert!(matches!(policy.step(&alice, Some(Err(stale()))).unwrap(), Step::Done(_)), "a newer GroupInfo is fine");
    assert_eq!(alice.epoch_state(&group).unwrap().0, 3);
}

#[test]
fn a_message_on_its_way_when_its_device_is_removed_is_marked_not_sent_and_never_retried() {
    // Alice's laptop (device 2) writes while her first device removes it.
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, group) = pair();
    let request = crate::link::LinkRequest::new("laptop").unwrap();
    let candidate = alice.inspect_link(&request.code(), request.key_package()).unwrap();
    let (_, answer) = alice.approve_link(&candidate, 2, 0).unwrap();
    let (identity, handover) = request.accept(&answer).unwrap();
    let laptop =
        Messenger::create_linked(&dir.path().join("laptop"), &crate::ProfileKey::KeyFile, identity, &handover).unwrap();
    let Request::UploadKeyPackages { packages, .. } = laptop.key_package_upload(1).unwrap() else { panic!() };
    let invitee = Invitee {
        handle: "alice".into(),
        account_key: alice.identity().account_key(),
        packages: vec![ClaimedKeyPackage { device: laptop.identity().device_info(), package: packages[0].to_vec() }],
    };
    let add = alice.queue_add_devices(&group, invitee).unwrap().expect("the laptop to add");
    alice.accepted(&add.client_id, 2).unwrap();
    bob.handle_delivery(&delivery(&alice, &add, 2)).unwrap();
    laptop.handle_welcome(&group, add.welcome.as_deref().unwrap()).unwrap();

    let written = laptop.prepare_text("@bob", "from the laptop").unwrap();
    let removal = alice.queue_remove_own_device(&group, 2).unwrap().expect("a removal commit");
    alice.accepted(&removal.client_id, 3).unwrap();

    let mut policy = Policy::new([Task::Flush]);
    let send = expect_request(policy.step(&laptop, None).unwrap());
    assert!(matches!(send, Request::Send { .. }), "{send:?}");
    let fetch = expect_request(policy.step(&laptop, Some(Err(ErrorBody::new(ErrorCode::NotMember)))).unwrap());
    assert!(matches!(fetch, Request::Fetch { .. }), "a refusal as non-member makes it read the log: {fetch:?}");
    let ack = expect_request(
        policy.step(&laptop, Some(Ok(Response::Messages { messages: vec![delivery(&alice, &removal, 3)] }))).unwrap(),
    );
    assert!(matches!(ack, Request::Ack { seq: 3, .. }), "{ack:?}");
    let mut step = policy.step(&laptop, Some(Ok(Response::Done))).unwrap();
    // It may read on (the server answers "not a member" past the removal).
    while let Step::Request(r) = &step {
        assert!(!matches!(r, Request::Send { .. }), "the message must not be sent again: {r:?}");
        step = policy.step(&laptop, Some(Err(ErrorBody::new(ErrorCode::NotMember)))).unwrap();
    }
    assert!(laptop.outbox().unwrap().is_empty(), "nothing left to send");
    let mine = laptop.message(written.message_id.as_deref().unwrap()).unwrap().unwrap();
    assert_eq!(mine.state, crate::MessageState::NotSent);
    assert!(!laptop.in_group(&group).unwrap());
    // Sending it again cannot work from a device that is out: it says so,
    // and the text stays.
    assert!(laptop.retry(&mine.id).is_err());
    assert_eq!(laptop.message(&mine.id).unwrap().unwrap().state, crate::MessageState::NotSent);
}

#[test]
fn a_text_that_was_not_sent_is_sent_again_on_request_and_replaces_the_failed_one() {
    let (alice, bob, _group) = pair();
    let first = alice.prepare_text("@bob", "are we still on for friday?").unwrap();
    let failed_id = first.message_id.clone().unwrap();
    // The server refused it for good: the text stays, marked not sent.
    alice.drop_refused(&first.client_id).unwrap();
    assert_eq!(alice.message(&failed_id).unwrap().unwrap().state, crate::MessageState::NotSent);
    assert!(alice.outbox().unwrap().is_empty());

    let again = alice.retry(&failed_id).unwrap();
    assert!(alice.message(&failed_id).unwrap().is_none(), "the failed one is replaced");
    let new = alice.message(again.message_id.as_deref().unwrap()).unwrap().unwrap();
    assert_eq!(
        (new.state, &new.body),
        (crate::MessageState::Pending, &Body::Text { text: "are we still on for friday?".into() })
    );
    assert_eq!(alice.outbox().unwrap().len(), 1, "in the outbox at once");
    assert!(matches!(alice.retry(&failed_id), Err(crate::CoreError::NotFound(_))));
    let pending = alice.retry(again.message_id.as_deref().unwrap()).unwrap_err().to_string();
    assert!(pending.contains("only a message of yours that was not sent"), "{pending}");

    bob.handle_delivery(&delivery(&alice, &again, 2)).unwrap();
    let got = bob.history("@alice").unwrap();
    assert_eq!(got.last().unwrap().body, Body::Text { text: "are we still on for friday?".into() });
}
