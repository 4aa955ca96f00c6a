//! Key refresh and visible recovery when a device lost state.

mod common;

use std::time::Duration;

use common::*;
use sotto_client::Session;

fn epoch(server: &Server) -> i64 {
    let conn = rusqlite::Connection::open(server.data.join("relay.db")).unwrap();
    conn.query_row("SELECT max(epoch) FROM groups", [], |r| r.get(0)).unwrap()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn self_updates_move_the_epoch_and_talk_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "before"]);
    assert_eq!(epoch(&server), 1);
    runtime().block_on(async {
        let m = open_profile(alice);
        let mut s = Session::open(&m).await.unwrap();
        // Everything is "due" with a zero interval: one update per group.
        s.update_keys_older_than(Duration::ZERO).await.unwrap();
        s.close().await;
    });
    assert_eq!(epoch(&server), 2);
    alice.ok(&["send", "@bob", "after"]);
    let got: Vec<String> = texts(&bob.receive_json()).into_iter().map(|t| t.2).collect();
    assert_eq!(got, vec!["before", "after"]);
    bob.ok(&["send", "@alice", "still here"]);
    assert_eq!(texts(&alice.receive_json())[0].2, "still here");
}

#[test]
fn a_device_that_lost_state_shows_that_messages_may_be_missing() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "one"]);
    bob.receive_json();
    // Bob's device state from this moment...
    let stale = root.path().join("bob-stale");
    copy_dir(&bob.profile, &stale);

    runtime().block_on(async {
        let m = open_profile(alice);
        let mut s = Session::open(&m).await.unwrap();
        s.update_keys_older_than(Duration::ZERO).await.unwrap();
        s.close().await;
    });
    alice.ok(&["send", "@bob", "two"]);
    bob.receive_json();
    alice.ok(&["send", "@bob", "three"]);

    // ...comes back after it missed an epoch change.
    std::fs::remove_dir_all(&bob.profile).unwrap();
    copy_dir(&stale, &bob.profile);
    let got = bob.receive_json();
    let marker = got.iter().find(|m| m["kind"] == "system").unwrap_or_else(|| panic!("no marker in {got:?}"));
    assert!(marker["text"].as_str().unwrap().contains("messages may be missing"), "{marker}");
    // Said in words, never as a library's error name.
    let said = marker["text"].as_str().unwrap();
    assert!(!said.contains("Error") && !said.contains("MLS:"), "{marker}");
    assert_eq!(marker["conversation"], "@alice");
    let hist = bob.ok(&["history", "@alice"]);
    assert!(hist.contains("messages may be missing"), "{hist}");
    // The device rejoined by external commit: talk goes on both ways.
    assert!(hist.contains("rejoined the conversation"), "{hist}");
    bob.ok(&["send", "@alice", "back in step"]);
    let got = texts(&alice.receive_json());
    assert_eq!(got, vec![("@bob".into(), "bob".into(), "back in step".into())]);
    alice.ok(&["send", "@bob", "welcome back"]);
    assert_eq!(texts(&bob.receive_json()), vec![("@alice".into(), "alice".into(), "welcome back".into())]);
}
