//! Post-quantum by default, against a real relay with the real client core:
//! a new conversation is on the X-Wing suite with a group id that says
//! nothing of its kind; a peer whose app offers only the classical suite
//! gets a working conversation and a visible note; the sizes the server
//! stores fall in the documented buckets.

mod common;

use common::*;
use sotto_client::Session;
use sotto_core::{Event, Messenger};
use sotto_proto::suites::{SUITE_CLASSICAL, SUITE_XWING};

async fn person(server: &TestServer, handle: &str) -> Messenger {
    let m = Messenger::create_ephemeral(handle, &server.address.to_string()).unwrap();
    m.set_auto_accept(true).unwrap();
    Session::register(&m, None).await.unwrap().close().await;
    m
}

async fn receive(m: &Messenger) -> Vec<String> {
    let mut s = Session::open(m).await.unwrap();
    let events = s.sync().await.unwrap();
    s.close().await;
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) if !m.outgoing && m.state != sotto_core::MessageState::System => match &m.body {
                sotto_core::Body::Text { text } => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The server's copy of a relay database, read as the operator would.
fn relay_db(server: &TestServer) -> rusqlite::Connection {
    rusqlite::Connection::open(server.data.join("relay.db")).unwrap()
}

/// Makes `handle`'s stock look like an app from before the post-quantum
/// suite uploaded it: classical packages only.
fn only_classical_packages(server: &TestServer, handle: &str) {
    let n = relay_db(server)
        .execute("DELETE FROM key_packages WHERE handle=?1 AND suite<>?2", rusqlite::params![handle, SUITE_CLASSICAL])
        .unwrap();
    assert!(n > 0, "the app had uploaded post-quantum packages");
}

#[tokio::test]
async fn a_new_conversation_is_post_quantum_and_its_id_does_not_say_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let stocked: Vec<(u16, i64)> = relay_db(&server)
        .prepare("SELECT suite, count(*) FROM key_packages WHERE handle='bob' GROUP BY suite ORDER BY suite")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stocked.len(), 2, "packages of both suites: {stocked:?}");
    assert!(stocked.iter().any(|(s, _)| *s == SUITE_XWING));

    let mut s = Session::open(&alice).await.unwrap();
    s.send_text("@bob", "hello from the future").await.unwrap();
    s.close().await;
    assert_eq!(receive(&bob).await, vec!["hello from the future".to_owned()]);

    for m in [&alice, &bob] {
        let other = if std::ptr::eq(m, &alice) { "@bob" } else { "@alice" };
        let info = m.conversation_info(other).unwrap();
        assert!(info.post_quantum, "{info:?}");
        assert_eq!(info.suite_id, SUITE_XWING);
        assert_eq!(info.kind, "direct");
        assert_eq!(info.devices.len(), 2);
        assert!(info.suite.contains("ML-KEM-768"));
    }
    let group_id = alice.conversation_group("@bob").unwrap().unwrap();
    assert_eq!(group_id[0], 0, "the id's first byte is no kind marker");

    // A named group: post-quantum too, and both sides know it is a group.
    let carol = person(&server, "carol").await;
    let mut s = Session::open(&alice).await.unwrap();
    s.create_group("crew", &["bob".into(), "carol".into()]).await.unwrap();
    s.send_text("#crew", "all aboard").await.unwrap();
    s.close().await;
    assert_eq!(receive(&carol).await, vec!["all aboard".to_owned()]);
    let info = carol.conversation_info("#crew").unwrap();
    assert!(info.post_quantum);
    assert_eq!(info.kind, "group");
    assert_eq!(info.devices.len(), 3);
    assert_eq!(alice.conversation_group("#crew").unwrap().unwrap()[0], 0);
    server.stop().await;
}

#[tokio::test]
async fn a_peer_without_the_new_suite_gets_a_classical_conversation_and_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let carol = person(&server, "carol").await;
    only_classical_packages(&server, "bob");

    let mut s = Session::open(&alice).await.unwrap();
    s.send_text("@bob", "old app, still private").await.unwrap();
    s.close().await;
    assert_eq!(receive(&bob).await, vec!["old app, still private".to_owned()]);
    let info = alice.conversation_info("@bob").unwrap();
    assert!(!info.post_quantum);
    assert_eq!(info.suite_id, SUITE_CLASSICAL);
    let notes: Vec<String> = alice
        .history("@bob")
        .unwrap()
        .into_iter()
        .filter(|m| m.state == sotto_core::MessageState::System)
        .filter_map(|m| match m.body {
            sotto_core::Body::Text { text } => Some(text),
            _ => None,
        })
        .collect();
    assert!(notes.iter().any(|n| n.contains("Not post-quantum") && n.contains("@bob")), "{notes:?}");
    // The fallback group keeps the kind in its id for the older app.
    assert_eq!(alice.conversation_group("@bob").unwrap().unwrap()[0], 1);
    // Both keep chatting.
    let mut s = Session::open(&bob).await.unwrap();
    s.send_text("@alice", "and back").await.unwrap();
    s.close().await;
    assert_eq!(receive(&alice).await, vec!["and back".to_owned()]);

    // A group with bob and carol: one suite for everyone, the classical
    // one; the note names bob only.
    let mut s = Session::open(&alice).await.unwrap();
    s.create_group("mixed", &["bob".into(), "carol".into()]).await.unwrap();
    s.send_text("#mixed", "everyone reads this").await.unwrap();
    s.close().await;
    assert_eq!(receive(&carol).await, vec!["everyone reads this".to_owned()]);
    assert_eq!(receive(&bob).await, vec!["everyone reads this".to_owned()]);
    assert!(!alice.conversation_info("#mixed").unwrap().post_quantum);
    let note = alice
        .history("#mixed")
        .unwrap()
        .into_iter()
        .find_map(|m| match m.body {
            sotto_core::Body::Text { text } if text.contains("Not post-quantum") => Some(text),
            _ => None,
        })
        .unwrap();
    assert!(note.contains("@bob") && !note.contains("@carol"), "{note}");
    // Alice's app tries to move the conversation with bob to the new suite
    // each time it connects (hers sorts first), but bob's app has no
    // post-quantum keys: it stays as it is, and nothing breaks.
    Session::open(&alice).await.unwrap().close().await;
    assert!(!alice.conversation_info("@bob").unwrap().post_quantum);
    // Carol's own conversation with alice is still post-quantum.
    let mut s = Session::open(&carol).await.unwrap();
    s.send_text("@alice", "just us").await.unwrap();
    s.close().await;
    assert!(carol.conversation_info("@alice").unwrap().post_quantum);
    server.stop().await;
}

#[tokio::test]
async fn the_server_stores_messages_in_size_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let _bob = person(&server, "bob").await;
    let mut s = Session::open(&alice).await.unwrap();
    s.send_text("@bob", "x").await.unwrap();
    let group_id = alice.conversation_group("@bob").unwrap().unwrap();
    // Texts of every length from 1 byte to 3 KiB (bob stays offline, so the
    // server keeps them all).
    let lengths: Vec<usize> = (1..=3000).step_by(37).collect();
    for &n in &lengths {
        s.send_text("@bob", &"y".repeat(n)).await.unwrap();
    }
    s.close().await;
    let sizes: Vec<usize> = relay_db(&server)
        .prepare("SELECT length(payload) FROM messages WHERE group_id=?1 AND kind=2 ORDER BY seq")
        .unwrap()
        .query_map([&group_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(sizes.len() > lengths.len(), "every text is stored: {}", sizes.len());
    let mut distinct = sizes.clone();
    distinct.sort();
    distinct.dedup();
    // 1..3000 bytes of text plus the message's own fields make the buckets
    // 256, 512, 1024, 2048 and 4096: five sizes, whatever the lengths.
    assert!(distinct.len() <= 5, "{distinct:?}");
    // Each stored size is a bucket plus the same MLS overhead.
    let overhead = distinct[0] - 256;
    for d in &distinct {
        let bucket = d - overhead;
        assert!(bucket == 256 || bucket.is_power_of_two(), "{d} is bucket {bucket} + {overhead}: {distinct:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_prefers_the_hybrid_group_and_still_serves_classical_clients() {
    use rustls::crypto::aws_lc_rs::kx_group;
    use rustls::NamedGroup;
    use sotto_client::tls::{provider, PinVerifier};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let sotto_proto::Transport::Pinned(pin) = server.address.transport.clone() else { panic!("a pinned address") };
    let classical_only = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
        ..(*provider()).clone()
    });
    for (client, expected) in [(provider(), NamedGroup::X25519MLKEM768), (classical_only, NamedGroup::X25519)] {
        let verifier = Arc::new(PinVerifier::new(pin, client.clone()));
        let config = rustls::ClientConfig::builder_with_provider(client)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.address.port)).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let group = tls.get_ref().1.negotiated_key_exchange_group().expect("a key exchange").name();
        assert_eq!(group, expected);
    }
    // And the real client, end to end, on the hybrid group.
    let alice = person(&server, "alice").await;
    let _bob = person(&server, "bob").await;
    let mut s = Session::open(&alice).await.unwrap();
    s.send_text("@bob", "over a post-quantum link").await.unwrap();
    s.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_file_is_padded_to_its_bucket_in_post_quantum_conversations_and_arrives_exact() {
    use sotto_core::files::cipher_size;
    use sotto_core::padding::file_bucket;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let carol = person(&server, "carol").await;
    only_classical_packages(&server, "carol");
    // 200,001 bytes: not a multiple of anything a bucket would be.
    let data: Vec<u8> = (0..200_001u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &data).unwrap();
    let blobs = dir.path().join("blobs");
    let blob_sizes = || -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".part"))
            .map(|e| e.metadata().unwrap().len())
            .collect();
        v.sort();
        v
    };

    let mut s = Session::open(&alice).await.unwrap();
    s.send_file(&["@bob".into()], &path, None, Arc::new(|_, _| {})).await.unwrap();
    assert_eq!(blob_sizes(), vec![cipher_size(file_bucket(200_001))], "padded: the server sees the bucket");
    // To an older app's (classical) conversation: not padded, so it reads it.
    s.send_file(&["@carol".into()], &path, None, Arc::new(|_, _| {})).await.unwrap();
    let sizes = blob_sizes();
    assert!(sizes.contains(&cipher_size(200_001)), "{sizes:?}");
    s.close().await;

    for (who, m) in [("bob", &bob), ("carol", &carol)] {
        let mut s = Session::open(m).await.unwrap();
        let events = s.sync().await.unwrap();
        let id = events
            .iter()
            .find_map(|e| match e {
                Event::Message(msg) if matches!(msg.body, sotto_core::Body::File { .. }) => Some(hex::encode(&msg.id)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{who} got the file message"));
        let out = dir.path().join(format!("{who}.bin"));
        s.download_file(&id, Some(&out), Arc::new(|_, _| {})).await.unwrap();
        s.close().await;
        assert_eq!(std::fs::read(&out).unwrap(), data, "{who} has the file byte for byte, no padding");
    }
    server.stop().await;
}

/// Takes `handle`'s post-quantum packages off the server for a while, as if
/// their app were from before the suite; [`give_back_post_quantum`] puts
/// them back (the app upgraded).
fn hold_back_post_quantum(server: &TestServer, handle: &str) {
    let db = relay_db(server);
    db.execute(
        &format!("CREATE TABLE held_{handle} AS SELECT * FROM key_packages WHERE handle=?1 AND suite<>?2"),
        rusqlite::params![handle, SUITE_CLASSICAL],
    )
    .unwrap();
    only_classical_packages(server, handle);
}

fn give_back_post_quantum(server: &TestServer, handle: &str) {
    let db = relay_db(server);
    db.execute_batch(&format!("INSERT INTO key_packages SELECT * FROM held_{handle}; DROP TABLE held_{handle};"))
        .unwrap();
}

#[tokio::test]
async fn a_named_group_from_before_moves_with_its_roles_and_state_and_the_old_group_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = person(&server, "alice").await;
    let bob = person(&server, "bob").await;
    let carol = person(&server, "carol").await;
    let dave = person(&server, "dave").await;
    let erin = person(&server, "erin").await;
    // Bob's app speaks only the classical suite: the group is classical.
    hold_back_post_quantum(&server, "bob");
    let mut s = Session::open(&alice).await.unwrap();
    s.create_group("team", &["bob".into(), "carol".into(), "dave".into()]).await.unwrap();
    s.set_role("#team", "carol", true).await.unwrap();
    let item = alice.prepare_description("#team", "the four of us").unwrap();
    s.post_item(item).await.unwrap();
    let item = alice.prepare_timer("#team", 86_400).unwrap();
    s.post_item(item).await.unwrap();
    s.send_text("#team", "before the move").await.unwrap();
    s.close().await;
    for m in [&bob, &carol, &dave] {
        assert_eq!(receive(m).await, vec!["before the move".to_owned()]);
    }
    assert!(!alice.conversation_info("#team").unwrap().post_quantum);

    // Bob's app upgrades; alice's connects next and, as the first admin,
    // moves the group.
    give_back_post_quantum(&server, "bob");
    Session::open(&alice).await.unwrap().close().await;
    assert!(alice.conversation_info("#team").unwrap().post_quantum, "moved");

    // Bob wrote before he heard of the move (his app has not synced): it
    // goes into the old group and still reaches everyone. He also added
    // erin there: she is brought along into the new group by the next
    // admin's app that sees her left behind.
    let mut s = Session::open(&bob).await.unwrap();
    s.send_text("#team", "written on the way").await.unwrap();
    s.add_to_group("#team", &["erin".into()]).await.unwrap();
    s.close().await;

    // Carol, an admin in the new group too (the server agrees), removes
    // dave there; dave, who has not synced, writes into the old group:
    // nobody takes it.
    let got = receive(&carol).await;
    assert!(got.contains(&"written on the way".to_owned()), "{got:?}");
    let mut s = Session::open(&carol).await.unwrap();
    s.remove_from_group("#team", &["dave".into()]).await.unwrap();
    s.close().await;
    let mut s = Session::open(&dave).await.unwrap();
    s.send_text("#team", "a back door").await.unwrap();
    s.close().await;

    let got = receive(&alice).await;
    assert!(got.contains(&"written on the way".to_owned()), "{got:?}");
    assert!(!got.contains(&"a back door".to_owned()), "{got:?}");
    assert!(!receive(&bob).await.contains(&"a back door".to_owned()));
    assert!(!receive(&carol).await.contains(&"a back door".to_owned()));

    assert!(!receive(&erin).await.contains(&"a back door".to_owned()));
    for (m, who) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol"), (&erin, "erin")] {
        let info = m.conversation_info("#team").unwrap();
        assert!(info.post_quantum, "{who}: {info:?}");
        assert_eq!(info.kind, "group", "{who}");
        let groups = m.groups().unwrap();
        assert_eq!(groups.len(), 1, "{who}: one conversation: {groups:?}");
        let g = &groups[0];
        assert_eq!(g.conversation, "#team", "{who}");
        assert_eq!(g.members, ["alice", "bob", "carol", "erin"], "{who}");
        assert_eq!(g.admins, ["alice", "carol"], "{who}");
        if who != "erin" {
            // The state carried over (erin came later: a newcomer learns
            // the name and roles, not the description, as in any group).
            assert_eq!(g.description, "the four of us", "{who}");
            assert_eq!(m.timer("#team").unwrap(), 86_400, "{who}");
        }
        let history: Vec<String> = m
            .history("#team")
            .unwrap()
            .into_iter()
            .filter_map(|m| match m.body {
                sotto_core::Body::Text { text } => Some(text),
                _ => None,
            })
            .collect();
        let lines: &[&str] = if who == "erin" {
            &["post-quantum encryption"]
        } else {
            &["before the move", "post-quantum encryption", "written on the way"]
        };
        for line in lines {
            assert!(history.iter().any(|h| h.contains(line)), "{who}: {line:?} in {history:?}");
        }
    }
    // Dave is out of both: his app says so and writes nowhere.
    receive(&dave).await;
    assert!(dave.conversation_group("#team").unwrap().is_none());

    // Everyone left keeps chatting in the new group.
    let mut s = Session::open(&bob).await.unwrap();
    s.send_text("#team", "on the new suite").await.unwrap();
    s.close().await;
    assert!(receive(&alice).await.contains(&"on the new suite".to_owned()));
    assert!(receive(&carol).await.contains(&"on the new suite".to_owned()));
    assert!(receive(&erin).await.contains(&"on the new suite".to_owned()));

    // Leaving the conversation leaves the old group on the server too
    // (its id still starts with the classical kind byte 2).
    let in_old_group = |handle: &str| -> i64 {
        relay_db(&server)
            .query_row(
                "SELECT count(*) FROM members WHERE handle=?1 AND substr(group_id, 1, 1) = x'02'",
                [handle],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(in_old_group("carol"), 1);
    let mut s = Session::open(&carol).await.unwrap();
    s.leave_group("#team").await.unwrap();
    s.close().await;
    assert_eq!(in_old_group("carol"), 0, "carol's device left the old group as well");
    server.stop().await;
}
