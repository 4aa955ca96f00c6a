//! The relay end to end over real TLS and WebSocket on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use serde_bytes::ByteBuf;
use sotto_proto::{ErrorCode, MessageKind, Push, Request, Response};
use sotto_server::relay::RelayConfig;

fn gid(n: u8) -> Vec<u8> {
    vec![n; 16]
}

async fn claim(conn: &mut sotto_client::Connection, handle: &str) -> Result<Response, sotto_client::ClientError> {
    conn.request(Request::ClaimKeyPackages { handle: handle.into(), devices: None, suites: vec![] }).await
}

async fn send(
    conn: &mut sotto_client::Connection,
    g: &[u8],
    epoch: u64,
    id: &[u8],
    body: &[u8],
) -> Result<Response, sotto_client::ClientError> {
    conn.request(Request::Send { group_id: g.to_vec(), epoch, client_id: id.to_vec(), payload: body.to_vec() }).await
}

/// Collects pushes until SyncDone.
async fn sync(conn: &mut sotto_client::Connection) -> Vec<Push> {
    conn.request(Request::Sync).await.unwrap();
    let mut out = Vec::new();
    loop {
        match conn.next_push_within(Duration::from_secs(10)).await.unwrap().expect("sync finishes") {
            Push::SyncDone => return out,
            p => out.push(p),
        }
    }
}

#[tokio::test]
async fn registration_is_invite_only_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), RelayConfig::default()).await;
    let alice = Account::new("alice");

    let mut conn = server.connect().await;
    assert!(conn.hello().invite_only);
    assert_eq!(code(&alice.register(&mut conn, None).await.unwrap_err()), ErrorCode::InviteRequired);
    assert_eq!(code(&alice.register(&mut conn, Some("wrong".into())).await.unwrap_err()), ErrorCode::InviteInvalid);
    let invite = server.invite(1);
    let r = alice.register(&mut conn, Some(invite.clone())).await.unwrap();
    assert!(matches!(r, Response::LoggedIn { .. }));

    // The invite is used up: bob cannot reuse it.
    let bob = Account::new("bob");
    let mut conn2 = server.connect().await;
    assert_eq!(code(&bob.register(&mut conn2, Some(invite)).await.unwrap_err()), ErrorCode::InviteInvalid);
    // Handles are unique and validated.
    let mut conn3 = server.connect().await;
    let two = server.invite(2);
    assert_eq!(
        code(&Account::new("alice").register(&mut conn3, Some(two.clone())).await.unwrap_err()),
        ErrorCode::HandleTaken
    );
    assert_eq!(
        code(&Account::new("Bad Name").register(&mut conn3, Some(two)).await.unwrap_err()),
        ErrorCode::InvalidHandle
    );

    // Log in again on a new connection.
    let mut conn4 = server.connect().await;
    assert!(matches!(alice.login(&mut conn4).await.unwrap(), Response::LoggedIn { .. }));
}

#[tokio::test]
async fn login_needs_a_signature_over_this_connections_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = Account::new("alice");
    alice.online(&server).await;

    // A signature over another connection's challenge is refused.
    let other = server.connect().await;
    let mut conn = server.connect().await;
    use ed25519_dalek::Signer;
    let stale = alice.device.sign(&other.login_payload()).to_bytes().to_vec();
    let err = conn
        .request(Request::Login { handle: "alice".into(), device_id: 1, signature: stale, copy: None, takeover: false })
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::AuthFailed);
    // So is a signature by the wrong key, and an unknown handle answers the same.
    let mallory = Account { handle: "alice".into(), ..Account::new("x") };
    assert_eq!(code(&mallory.login(&mut conn).await.unwrap_err()), ErrorCode::AuthFailed);
    assert_eq!(code(&Account::new("nobody").login(&mut conn).await.unwrap_err()), ErrorCode::AuthFailed);
    // A registration whose certificate is not by the account key is refused.
    let mut forged = Account::new("forger");
    let genuine = forged.device_info();
    forged.account = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let req = match forged.register_request(&conn, None) {
        Request::Register { handle, account_key, invite, signature, .. } => {
            Request::Register { handle, account_key, device: genuine, invite, signature }
        }
        _ => unreachable!(),
    };
    assert_eq!(code(&conn.request(req).await.unwrap_err()), ErrorCode::BadCertificate);
    // Before login nothing else works.
    assert_eq!(code(&claim(&mut conn, "alice").await.unwrap_err()), ErrorCode::NotAuthenticated);
    assert_eq!(code(&conn.request(Request::Sync).await.unwrap_err()), ErrorCode::NotAuthenticated);
    // And the connection still works for a proper login.
    assert!(alice.login(&mut conn).await.is_ok());
    // Logging in twice on one connection is refused.
    assert_eq!(code(&alice.login(&mut conn).await.unwrap_err()), ErrorCode::AlreadyAuthenticated);
}

#[tokio::test]
async fn key_packages_are_claimed_once_even_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let bob = Account::new("bob");
    let mut bob_conn = bob.online(&server).await;
    let packages: Vec<ByteBuf> = (0..20u8).map(|i| ByteBuf::from(fake_key_package(&[i; 28]))).collect();
    let r = bob_conn
        .request(Request::UploadKeyPackages {
            packages,
            last_resort: Some(ByteBuf::from(LAST.to_vec())),
            other_last_resorts: vec![],
        })
        .await
        .unwrap();
    assert_eq!(r, Response::KeyPackagesStored { key_packages: 20 });

    // Five claimers on five connections, five claims each, all at once.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let acct = Account::new(&format!("claimer{i}"));
        let mut conn = acct.online(&server).await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                match claim(&mut conn, "bob").await.unwrap() {
                    Response::KeyPackages { packages, .. } => got.push(packages[0].package.clone()),
                    other => panic!("{other:?}"),
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let one_time: Vec<_> = all.iter().filter(|p| p.as_slice() != LAST).collect();
    let distinct: std::collections::HashSet<_> = one_time.iter().collect();
    assert_eq!(one_time.len(), 20);
    assert_eq!(distinct.len(), 20, "no package handed out twice");
    assert_eq!(all.len() - one_time.len(), 5, "the last-resort package answers when the stock is empty");

    // Bob was told his stock is low.
    let mut low = false;
    while let Some(p) = bob_conn.next_push_within(Duration::from_millis(500)).await.unwrap() {
        low |= matches!(p, Push::KeyPackagesLow { .. });
    }
    assert!(low);

    // Unknown handles and empty stocks have their own codes.
    let mut c = Account::new("carol").online(&server).await;
    assert_eq!(code(&claim(&mut c, "nobody").await.unwrap_err()), ErrorCode::UnknownHandle);
    assert_eq!(code(&claim(&mut c, "claimer0").await.unwrap_err()), ErrorCode::NoKeyPackages);
}

#[tokio::test]
async fn first_commit_of_an_epoch_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob, eve) = (Account::new("alice"), Account::new("bob"), Account::new("eve"));
    let mut a = alice.online(&server).await;
    let mut b = bob.online(&server).await;
    let mut e = eve.online(&server).await;
    let g = gid(1);
    group_with(&mut a, &g, &[&bob]).await;

    let commit = |who: &[u8]| Request::Commit {
        group_id: g.clone(),
        epoch: 1,
        client_id: who.to_vec(),
        commit: b"update".to_vec(),
        welcome: None,
        added: vec![],
        removed: vec![],
    };
    let first = a.request(commit(b"a-update")).await.unwrap();
    assert!(matches!(first, Response::Appended { epoch: 2, duplicate: false, .. }));
    let err = b.request(commit(b"b-update")).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::StaleEpoch);
    assert!(matches!(err, sotto_client::ClientError::Server(ref body) if body.current_epoch == Some(2)));
    // Application messages of an old epoch are stale too.
    assert_eq!(code(&send(&mut b, &g, 1, b"m", b"x").await.unwrap_err()), ErrorCode::StaleEpoch);
    // A retry of the accepted commit is answered, not applied twice.
    assert!(matches!(
        a.request(commit(b"a-update")).await.unwrap(),
        Response::Appended { epoch: 2, duplicate: true, .. }
    ));

    // Outsiders can neither commit, post, read nor inspect.
    assert_eq!(code(&e.request(commit(b"e")).await.unwrap_err()), ErrorCode::NotMember);
    assert_eq!(code(&send(&mut e, &g, 2, b"e", b"x").await.unwrap_err()), ErrorCode::NotMember);
    let fetch = Request::Fetch { group_id: g.clone(), after_seq: 0, limit: 100 };
    assert_eq!(code(&e.request(fetch.clone()).await.unwrap_err()), ErrorCode::NotMember);
    assert_eq!(code(&e.request(Request::GroupState { group_id: g.clone() }).await.unwrap_err()), ErrorCode::NotMember);
    assert_eq!(
        code(&e.request(Request::Fetch { group_id: gid(9), after_seq: 0, limit: 1 }).await.unwrap_err()),
        ErrorCode::UnknownGroup
    );
    // Members can.
    let state = a.request(Request::GroupState { group_id: g.clone() }).await.unwrap();
    let Response::Group { epoch, members, last_seq, .. } = state else { panic!("{state:?}") };
    assert_eq!((epoch, members, last_seq), (2, vec![alice.me(), bob.me()], 2));
}

#[tokio::test]
async fn sync_resumes_from_the_cursor_and_acked_messages_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    bob.online(&server).await.close().await;
    let g = gid(2);
    let add_seq = group_with(&mut a, &g, &[&bob]).await;
    for i in 0..5u8 {
        send(&mut a, &g, 1, &[i], &[b'm', i]).await.unwrap();
    }

    // Bob comes online: his welcome, then the five messages after his join.
    let mut b = bob.online(&server).await;
    let pushes = sync(&mut b).await;
    assert!(matches!(&pushes[0], Push::Welcome { group_id, welcome, .. } if *group_id == g && welcome == b"welcome"));
    let seqs: Vec<u64> = pushes[1..]
        .iter()
        .map(|p| match p {
            Push::Deliver(d) => d.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![add_seq + 1, add_seq + 2, add_seq + 3, add_seq + 4, add_seq + 5]);
    // He processes three, acknowledges them, and drops off.
    b.request(Request::Ack { group_id: g.clone(), seq: add_seq + 3 }).await.unwrap();
    let welcome_id = match &pushes[0] {
        Push::Welcome { welcome_id, .. } => *welcome_id,
        _ => unreachable!(),
    };
    b.request(Request::AckWelcome { welcome_id }).await.unwrap();
    b.close().await;

    // On reconnect he gets exactly what he did not acknowledge.
    let mut b = bob.online(&server).await;
    let pushes = sync(&mut b).await;
    let seqs: Vec<u64> = pushes
        .iter()
        .map(|p| match p {
            Push::Deliver(d) => d.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![add_seq + 4, add_seq + 5]);

    // Live: a new message arrives as a push without asking.
    send(&mut a, &g, 1, b"live", b"hello live").await.unwrap();
    match b.next_push_within(Duration::from_secs(5)).await.unwrap() {
        Some(Push::Deliver(d)) => assert_eq!(d.payload, b"hello live"),
        other => panic!("{other:?}"),
    }

    // Once both acknowledged everything, the server holds nothing.
    assert!(server.relay.store.stats().unwrap().messages > 0);
    b.request(Request::Ack { group_id: g.clone(), seq: add_seq + 6 }).await.unwrap();
    a.request(Request::Ack { group_id: g.clone(), seq: add_seq + 6 }).await.unwrap();
    assert_eq!(server.relay.store.stats().unwrap().messages, 0);
    assert_eq!(server.relay.store.stats().unwrap().welcomes, 0);
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    bob.online(&server).await.close().await;
    let g = gid(3);
    group_with(&mut a, &g, &[&bob]).await;
    let mut acked = Vec::new();
    for i in 0..10u8 {
        // Each `Appended` is the server's promise that the message is durable.
        if let Response::Appended { seq, .. } = send(&mut a, &g, 1, &[i], &[i; 100]).await.unwrap() {
            acked.push(seq);
        }
    }
    a.close().await;
    server.stop().await;

    let server = TestServer::start(dir.path(), open()).await;
    let mut b = bob.online(&server).await;
    let pushes = sync(&mut b).await;
    let got: Vec<u64> = pushes
        .iter()
        .filter_map(|p| match p {
            Push::Deliver(d) => Some(d.seq),
            _ => None,
        })
        .collect();
    assert_eq!(got, acked);
    assert!(pushes.iter().any(|p| matches!(p, Push::Welcome { .. })));
}

#[tokio::test]
async fn removed_members_get_nothing_after_removal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    let mut b = bob.online(&server).await;
    let g = gid(4);
    group_with(&mut a, &g, &[&bob]).await;
    a.request(Request::Commit {
        group_id: g.clone(),
        epoch: 1,
        client_id: b"rm".to_vec(),
        commit: b"remove bob".to_vec(),
        welcome: None,
        added: vec![],
        removed: vec![bob.me()],
    })
    .await
    .unwrap();
    send(&mut a, &g, 2, b"after", b"not for bob").await.unwrap();
    // Bob gets the commit that removed him, and nothing after it.
    let pushes = sync(&mut b).await;
    let kinds: Vec<MessageKind> =
        pushes.iter().filter_map(|p| if let Push::Deliver(d) = p { Some(d.kind) } else { None }).collect();
    assert_eq!(kinds, vec![MessageKind::Commit]);
    let fetch = Request::Fetch { group_id: g.clone(), after_seq: 0, limit: 100 };
    let Response::Messages { messages } = b.request(fetch.clone()).await.unwrap() else { panic!() };
    assert!(messages.iter().all(|d| d.payload != b"not for bob"));
    // Once he acknowledged it, he is out for good.
    b.request(Request::Ack { group_id: g.clone(), seq: messages.last().unwrap().seq }).await.unwrap();
    assert_eq!(code(&b.request(fetch).await.unwrap_err()), ErrorCode::NotMember);
}

#[tokio::test]
async fn plain_http_mode_behind_a_proxy_and_healthz() {
    use sotto_proto::{ServerAddress, Transport};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let node = sotto_server::node::Node::open(dir.path(), open(), vec![9; 32]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let services = sotto_server::node::Services::default();
    tokio::spawn(node.serve(listener, None, Default::default(), services, std::future::pending()));

    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");

    let address = ServerAddress { host: "127.0.0.1".into(), port, transport: Transport::Insecure };
    let mut conn = sotto_client::Connection::connect(&address).await.unwrap();
    assert_eq!(conn.hello().server_id, vec![9; 32]);
    let alice = Account::new("alice");
    assert!(alice.register(&mut conn, None).await.is_ok());
}

#[tokio::test]
async fn pipelined_sends_are_appended_in_order_and_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    bob.online(&server).await.close().await;
    let g = gid(7);
    group_with(&mut a, &g, &[&bob]).await;
    // 300 sends written back to back, then a fetch: no waiting in between.
    for i in 0..300u32 {
        let req = Request::Send {
            group_id: g.clone(),
            epoch: 1,
            client_id: i.to_le_bytes().to_vec(),
            payload: i.to_le_bytes().to_vec(),
        };
        a.send_raw(
            sotto_proto::codec::encode(&sotto_proto::ClientMessage { id: 1000 + u64::from(i), request: req }).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() < 300 {
        if let sotto_proto::ServerMessage::Response { id, result: Ok(Response::Appended { seq, .. }) } =
            a.read_any().await.unwrap()
        {
            answers.push((id, seq));
        }
    }
    let ids: Vec<u64> = answers.iter().map(|x| x.0).collect();
    assert_eq!(ids, (1000..1300).collect::<Vec<u64>>(), "answers come in request order");
    let seqs: Vec<u64> = answers.iter().map(|x| x.1).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "appended in request order");
    let Response::Messages { messages } =
        a.request(Request::Fetch { group_id: g.clone(), after_seq: 1, limit: 500 }).await.unwrap()
    else {
        panic!()
    };
    let order: Vec<u32> = messages.iter().map(|m| u32::from_le_bytes(m.payload[..4].try_into().unwrap())).collect();
    assert_eq!(order, (0..300).collect::<Vec<u32>>());
}

/// Live pushes carry the new entries from the senders' tasks, which finish
/// in any order; the receiver must still see every entry once, in log
/// order, and exactly what the store holds.
#[tokio::test]
async fn concurrent_senders_reach_a_live_receiver_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let senders: Vec<Account> = (0..4).map(|i| Account::new(&format!("s{i}"))).collect();
    let bob = Account::new("bob");
    let mut b = bob.online(&server).await;
    let mut conns = Vec::new();
    for s in &senders {
        conns.push(s.online(&server).await);
    }
    let g = gid(8);
    let mut everyone: Vec<&Account> = senders.iter().skip(1).collect();
    everyone.push(&bob);
    let added_at = group_with(&mut conns[0], &g, &everyone).await;
    sync(&mut b).await;
    let per_sender = 100u32;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            let g = g.clone();
            tokio::spawn(async move {
                for i in 0..per_sender {
                    let id = [n as u8, (i >> 8) as u8, i as u8];
                    send(&mut c, &g, 1, &id, format!("{n}:{i}").as_bytes()).await.unwrap();
                }
                c
            })
        })
        .collect();
    let want = 4 * per_sender as usize;
    let mut got = Vec::new();
    while got.len() < want {
        if let Push::Deliver(d) = b.next_push_within(Duration::from_secs(10)).await.unwrap().expect("pushed") {
            got.push(d);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (added_at + 1..=added_at + want as u64).collect::<Vec<_>>(), "each once, in log order");
    let Response::Messages { messages } =
        b.request(Request::Fetch { group_id: g.clone(), after_seq: added_at, limit: 1000 }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(messages, got, "a live push is exactly the stored entry");
    assert!(b.next_push_within(Duration::from_millis(300)).await.unwrap().is_none(), "nothing extra");
}

/// A device removed and added again reads from after the commit that adds
/// it, also when it is online throughout and the entries come carried by
/// wake-ups.
#[tokio::test]
async fn a_re_added_member_online_throughout_gets_what_the_store_would_give() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    let mut b = bob.online(&server).await;
    let g = gid(9);
    group_with(&mut a, &g, &[&bob]).await;
    for p in sync(&mut b).await {
        if let Push::Welcome { welcome_id, .. } = p {
            b.request(Request::AckWelcome { welcome_id }).await.unwrap();
        }
    }
    let commit = |epoch: u64, id: &[u8], added: Vec<sotto_proto::DeviceRef>, removed: Vec<sotto_proto::DeviceRef>| {
        Request::Commit {
            group_id: g.clone(),
            epoch,
            client_id: id.to_vec(),
            commit: id.to_vec(),
            welcome: (!added.is_empty()).then(|| ByteBuf::from(b"welcome".to_vec())),
            added,
            removed,
        }
    };
    let Response::Appended { seq: removed_at, .. } = a.request(commit(1, b"rm", vec![], vec![bob.me()])).await.unwrap()
    else {
        panic!()
    };
    // Bob reads his removal and acknowledges it: he is out.
    let Push::Deliver(d) = b.next_push_within(Duration::from_secs(5)).await.unwrap().unwrap() else { panic!() };
    assert_eq!(d.seq, removed_at);
    b.request(Request::Ack { group_id: g.clone(), seq: removed_at }).await.unwrap();
    let Response::Appended { seq: readded_at, .. } =
        a.request(commit(2, b"add again", vec![bob.me()], vec![])).await.unwrap()
    else {
        panic!()
    };
    let Response::Appended { seq: hello_at, .. } = send(&mut a, &g, 3, b"hi", b"welcome back").await.unwrap() else {
        panic!()
    };
    // His welcome comes first; what follows it in the log waits until he
    // has taken it (its epochs are the welcome's).
    let mut delivered = Vec::new();
    let mut welcomed = false;
    while let Some(p) = b.next_push_within(Duration::from_millis(800)).await.unwrap() {
        match p {
            Push::Deliver(d) => {
                assert!(welcomed, "seq {} came before the welcome was taken", d.seq);
                delivered.push(d.seq);
            }
            Push::Welcome { welcome_id, .. } => {
                b.request(Request::AckWelcome { welcome_id }).await.unwrap();
                welcomed = true;
            }
            _ => {}
        }
    }
    assert!(!delivered.contains(&readded_at), "the commit adding him is not his to read");
    assert_eq!(delivered, vec![hello_at]);
}

#[tokio::test]
async fn a_fetch_answer_stays_under_the_frame_limit_and_pages_through_a_large_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    bob.online(&server).await.close().await;
    let g = gid(9);
    let add_seq = group_with(&mut a, &g, &[&bob]).await;
    // Four messages of 700 KiB: one answer with all of them would be
    // 2.8 MB, nearly three times what a client accepts in one frame.
    let big = vec![0x5a; 700 * 1024];
    for i in 0..4u8 {
        send(&mut a, &g, 1, &[i], &big).await.unwrap();
    }
    let mut b = bob.online(&server).await;
    let mut after = add_seq;
    let mut got = Vec::new();
    for _ in 0..10 {
        let Response::Messages { messages } = b
            .request(Request::Fetch { group_id: g.clone(), after_seq: after, limit: 500 })
            .await
            .expect("fits a frame")
        else {
            panic!("not messages")
        };
        let Some(last) = messages.last() else { break };
        after = last.seq;
        got.extend(messages.into_iter().map(|d| d.seq));
    }
    assert_eq!(got, (add_seq + 1..=add_seq + 4).collect::<Vec<_>>(), "every message, in order, none twice");
}

#[tokio::test]
async fn someone_elses_blob_id_looks_unknown_to_put_and_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let (alice, eve) = (Account::new("alice"), Account::new("eve"));
    let mut a = alice.online(&server).await;
    let mut e = eve.online(&server).await;
    let g = gid(4);
    group_with(&mut e, &g, &[]).await;
    server.relay.store.begin_blob(&[1; 16], &alice.me(), 100, 1000, 1000, 0).unwrap();
    let err = e.request(Request::ShareBlob { blob_id: vec![1; 16], group_id: g.clone() }).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::UnknownBlob, "{err}");
    let err = e.request(Request::ShareBlob { blob_id: vec![2; 16], group_id: g.clone() }).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::UnknownBlob, "an unknown id answers the same: {err}");
    drop(a.request(Request::LookupUser { handle: "alice".into() }).await.unwrap());
}

#[tokio::test]
async fn one_claimer_cannot_drain_a_persons_key_packages_and_others_still_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let bob = Account::new("bob");
    let mut bob_conn = bob.online(&server).await;
    let packages: Vec<ByteBuf> = (0..50u8).map(|i| ByteBuf::from(fake_key_package(&[i; 28]))).collect();
    bob_conn
        .request(Request::UploadKeyPackages {
            packages,
            last_resort: Some(ByteBuf::from(LAST.to_vec())),
            other_last_resorts: vec![],
        })
        .await
        .unwrap();
    let mut mallory = Account::new("mallory").online(&server).await;
    let limit = RelayConfig::default().key_package_claims_per_target;
    for _ in 0..limit {
        claim(&mut mallory, "bob").await.expect("a few claims are normal");
    }
    let err = claim(&mut mallory, "bob").await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::RateLimited, "{err}");
    assert!(err.to_string().contains("@bob"), "{err}");
    // Bob's stock is mostly still there, and Alice gets a one-time package.
    let mut alice = Account::new("alice").online(&server).await;
    match claim(&mut alice, "bob").await.unwrap() {
        Response::KeyPackages { packages, .. } => assert_ne!(packages[0].package, LAST, "a one-time package"),
        other => panic!("{other:?}"),
    }
    assert!(server.relay.store.key_package_count(&bob.me()).unwrap() >= 50 - limit - 1);
}

#[tokio::test]
async fn a_stranger_cannot_fill_someones_inbox_with_welcomes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let bob = Account::new("bob");
    bob.online(&server).await.close().await;
    let mallory = Account::new("mallory");
    let mut m = mallory.online(&server).await;
    let limit = RelayConfig::default().adds_per_target;
    let mut refused = None;
    for i in 0..limit + 5 {
        let g = [vec![0xee, (i >> 8) as u8, i as u8], vec![0; 13]].concat();
        m.request(Request::CreateGroup { group_id: g.clone(), roles: false }).await.unwrap();
        let r = m
            .request(Request::Commit {
                group_id: g,
                epoch: 0,
                client_id: vec![i as u8; 16],
                commit: b"commit".to_vec(),
                welcome: Some(ByteBuf::from(b"garbage welcome".to_vec())),
                added: vec![bob.me()],
                removed: vec![],
            })
            .await;
        if let Err(e) = r {
            refused = Some((i, e));
            break;
        }
    }
    let (at, err) = refused.expect("the adds stop");
    assert_eq!(at, limit, "after {limit} adds of bob in an hour");
    assert_eq!(code(&err), ErrorCode::RateLimited, "{err}");
    assert_eq!(server.relay.store.welcomes(&bob.me()).unwrap().len(), limit as usize, "bob's inbox holds no more");
    // Someone else can still add bob.
    let mut a = Account::new("alice").online(&server).await;
    group_with(&mut a, &gid(77), &[&bob]).await;
}

/// Bytes that pass for a KeyPackage of the classical suite (the server
/// reads only the version and suite at the front).
fn fake_key_package(rest: &[u8]) -> Vec<u8> {
    [&[0, 1, 0, 1][..], rest].concat()
}

/// The fake last-resort package.
const LAST: &[u8] = b"\x00\x01\x00\x01last";
