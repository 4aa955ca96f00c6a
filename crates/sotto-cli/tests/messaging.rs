//! Two people talking through the real server and the real CLI.

mod common;

use common::*;
use sotto_client::{Connection, Session};
use sotto_proto::{ErrorCode, Request, ServerAddress};

fn group_ids(data: &std::path::Path) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(data.join("relay.db")).unwrap();
    let mut stmt = conn.prepare("SELECT group_id FROM groups ORDER BY group_id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn offline_delivery_survives_a_server_crash_and_leaves_no_plaintext() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let data = server.data.clone();
    let (alice, bob) = (&u[0], &u[1]);

    // Bob is offline: nothing of his runs. Alice's send returns only once
    // the server has it durably.
    let secret = "the eagle flies at midnight";
    alice.ok(&["send", "@bob", secret]);
    let server = server.restart();

    let got = bob.receive_json();
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    let m = &got[0];
    assert_eq!(m["conversation"], "@alice");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["kind"], "text");
    assert_eq!(m["text"], secret);
    assert!(m["id"].as_str().unwrap().len() >= 16);
    assert!(chrono_like(m["sent_at"].as_str().unwrap()), "{}", m["sent_at"]);
    assert!(bob.receive_json().is_empty(), "nothing is shown twice");

    let reply = "understood, the owl at dawn";
    bob.ok(&["send", "@alice", reply]);
    // (Bob's device also said it has Alice's messages: a receipt line.)
    let got = without_receipts(alice.receive_json());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0]["from"].as_str(), got[0]["text"].as_str()), (Some("bob"), Some(reply)));

    // History in order on both sides.
    let hist: Vec<String> = alice
        .ok(&["history", "@bob", "--json"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(hist, vec![secret.to_owned(), reply.to_owned()]);
    let contacts = bob.ok(&["contacts", "--json"]);
    assert!(contacts.contains("\"handle\":\"alice\""), "{contacts}");

    // Neither the server's files (database and WAL) nor the profiles hold a
    // readable word of it.
    drop(server);
    for dir in [&data, &alice.profile, &bob.profile] {
        for needle in [secret, reply, "eagle", "midnight"] {
            let hits = files_containing(dir, needle.as_bytes());
            assert!(hits.is_empty(), "{needle:?} found in {hits:?}");
        }
    }
    assert!(files_under(&data).iter().any(|p| p.ends_with("relay.db")));
}

fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T') && s.ends_with('Z')
}

#[test]
fn a_third_user_cannot_read_the_conversation_even_by_asking_the_server() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let data = server.data.clone();
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "for bob only"]);

    let groups = group_ids(&data);
    assert_eq!(groups.len(), 1);
    let g = groups[0].clone();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let m = open_profile(carol);
        let address = ServerAddress::parse(&m.server().unwrap()).unwrap();
        let mut conn = Connection::connect(&address).await.unwrap();
        let login = m.login_request(&conn.login_payload());
        conn.request(login).await.unwrap();
        for req in [
            Request::Fetch { group_id: g.clone(), after_seq: 0, limit: 100 },
            Request::GroupState { group_id: g.clone() },
            Request::Ack { group_id: g.clone(), seq: 1 },
            Request::Send { group_id: g.clone(), epoch: 1, client_id: vec![1; 16], payload: b"intrusion".to_vec() },
        ] {
            let err = conn.request(req).await.unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::NotMember), "{err}");
        }
        // Her sync delivers nothing of theirs.
        conn.request(Request::Sync).await.unwrap();
        let push = conn.next_push().await.unwrap();
        assert_eq!(push, sotto_proto::Push::SyncDone);
    });
    assert!(carol.ok(&["history", "@bob"]).is_empty());
    assert!(carol.receive_json().is_empty());
    // Bob still gets it.
    assert_eq!(bob.receive_json()[0]["text"], "for bob only");
}

#[test]
fn simultaneous_first_messages_end_in_one_conversation() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let data = server.data.clone();
    let (alice, bob) = (&u[0], &u[1]);

    // Both open sessions before either has heard of the other, and both
    // start a conversation: two groups for one pair.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (ma, mb) = (open_profile(alice), open_profile(bob));
        let mut sa = Session::open(&ma).await.unwrap();
        let mut sb = Session::open(&mb).await.unwrap();
        sa.send_text("@bob", "hi bob, it's alice").await.unwrap();
        sb.send_text("@alice", "hi alice, it's bob").await.unwrap();
        sa.close().await;
        sb.close().await;
    });
    assert_eq!(group_ids(&data).len(), 2, "the race really happened");

    let a = without_receipts(alice.receive_json());
    let b = without_receipts(bob.receive_json());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!((a[0]["conversation"].as_str(), a[0]["text"].as_str()), (Some("@bob"), Some("hi alice, it's bob")));
    assert_eq!((b[0]["conversation"].as_str(), b[0]["text"].as_str()), (Some("@alice"), Some("hi bob, it's alice")));

    // Both now pick the same group; the talk goes on in one conversation.
    alice.ok(&["send", "@bob", "second from alice"]);
    bob.ok(&["send", "@alice", "second from bob"]);
    assert_eq!(without_receipts(bob.receive_json())[0]["text"], "second from alice");
    assert_eq!(without_receipts(alice.receive_json())[0]["text"], "second from bob");
    let (ma, mb) = (open_profile(alice), open_profile(bob));
    assert_eq!(ma.conversations().unwrap(), vec!["@bob".to_owned()]);
    assert_eq!(mb.conversations().unwrap(), vec!["@alice".to_owned()]);
    assert_eq!(ma.conversation_group("@bob").unwrap(), mb.conversation_group("@alice").unwrap());
    assert_eq!(ma.history("@bob").unwrap().len(), 4);
    assert_eq!(mb.history("@alice").unwrap().len(), 4);
}

#[test]
fn unacknowledged_sends_are_resent_once_and_shown_once() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let _data = server.data.clone();
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "first"]);

    // Alice's client encrypts and queues a message, then "crashes" before
    // the server heard of it.
    {
        let m = open_profile(alice);
        m.prepare_text("@bob", "queued before the crash").unwrap();
        assert_eq!(m.outbox().unwrap().len(), 1);
    }
    let hist = alice.ok(&["history", "@bob"]);
    assert!(hist.contains("queued before the crash (not yet sent)"), "{hist}");

    // And one that reached the server, but whose answer was lost: the
    // outbox still holds it, so it goes out a second time.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let m = open_profile(alice);
        let item = m.prepare_text("@bob", "answer lost").unwrap();
        let address = ServerAddress::parse(&m.server().unwrap()).unwrap();
        let mut conn = Connection::connect(&address).await.unwrap();
        let login = m.login_request(&conn.login_payload());
        conn.request(login).await.unwrap();
        conn.request(item.to_request()).await.unwrap();
        // No `accepted` call: the client never learnt of the success.
    });

    // The next session re-sends both; the server de-duplicates the second.
    alice.ok(&["receive"]);
    assert!(open_profile(alice).outbox().unwrap().is_empty());
    let texts: Vec<String> = bob.receive_json().iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect();
    // Server order: the lost-answer message reached the server first.
    assert_eq!(texts, vec!["first", "answer lost", "queued before the crash"]);
    let hist = alice.ok(&["history", "@bob"]);
    assert!(!hist.contains("not yet sent"), "{hist}");
}

#[test]
fn an_outbox_larger_than_the_servers_byte_budget_still_goes_out_whole() {
    let root = tempfile::tempdir().unwrap();
    // The server takes 4 MiB (its largest frame) at once from one
    // connection, then 1 MiB/s.
    let config = root.path().join("server.toml");
    std::fs::write(&config, "byte_rate = 1048576\nbyte_burst = 4194304\n").unwrap();
    let server = Server::start_on(&root.path().join("server"), 0, &["--config", config.to_str().unwrap()]);
    let (alice, bob) = (User::new(root.path(), "alice"), User::new(root.path(), "bob"));
    alice.init(&server, server.first_invite.as_deref().unwrap());
    bob.init(&server, &server.invite());
    alice.ok(&["send", "@bob", "first"]);
    // A hundred 40 KiB messages written while offline (64 KiB each once
    // padded): 6.4 MB in one flush.
    let lines: Vec<String> = (0..100).map(|i| format!("{i:02} {}", "x".repeat(40 * 1024))).collect();
    runtime().block_on(async {
        let m = open_profile(&alice);
        for line in &lines {
            m.prepare_text("@bob", line).unwrap();
        }
        let mut s = sotto_client::Session::open(&m).await.unwrap();
        s.flush_outbox().await.expect("the client slows down when told to, and finishes");
        assert!(m.outbox().unwrap().is_empty());
        s.close().await;
    });
    let got: Vec<String> = texts(&bob.receive_json()).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(got.len(), 101);
    assert_eq!(&got[1..], &lines[..], "every message once, in order");
}
