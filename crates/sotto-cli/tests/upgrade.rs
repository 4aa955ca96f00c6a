//! A server and two profiles made by the previous release (a fixture kept
//! in the repo, made by scripts/make-upgrade-fixture.sh with that release's
//! binaries) are opened by this one: the history is all there, both people
//! keep chatting in the one-to-one conversation and the group, their
//! devices publish post-quantum KeyPackages, the one-to-one conversation
//! and the group move to the post-quantum suite with their history as it
//! was, and a new conversation is post-quantum.

mod common;

use std::path::Path;

use common::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_server_and_profiles_from_the_previous_release_keep_every_conversation() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let port: u16 = std::fs::read_to_string(dir.path().join("port")).unwrap().trim().parse().unwrap();
    let server = Server::start_on(&dir.path().join("server"), port, &[]);
    let alice = User::new(dir.path(), "alice");
    let bob = User::new(dir.path(), "bob");

    // The history is all there.
    let h = alice.ok(&["history", "@bob"]);
    assert!(h.contains("written before the upgrade") && h.contains("answered before the upgrade"), "{h}");
    let g = bob.ok(&["history", "#old"]);
    assert!(g.contains("a group from before") && g.contains("bob in the old group"), "{g}");

    // Bob's app comes online first: it publishes post-quantum packages
    // (his stock on the server was all classical). Then alice's: hers
    // sorts first, so it moves the one-to-one conversation to the
    // post-quantum suite, and her message goes there.
    assert!(texts(&without_receipts(bob.receive_json())).is_empty());
    alice.ok(&["send", "@bob", "written after the upgrade"]);
    let info: serde_json::Value = serde_json::from_str(alice.ok(&["info", "@bob", "--json"]).trim()).unwrap();
    assert_eq!(info["post_quantum"], true, "moved: {info}");
    let got = texts(&without_receipts(bob.receive_json()));
    assert!(got.iter().any(|(_, from, text)| from == "alice" && text == "written after the upgrade"), "{got:?}");
    let info: serde_json::Value = serde_json::from_str(bob.ok(&["info", "@alice", "--json"]).trim()).unwrap();
    assert_eq!(info["post_quantum"], true, "bob is in the new group too: {info}");
    // One conversation: the history from before, the note, the new text.
    let h = bob.ok(&["history", "@alice"]);
    for line in [
        "written before the upgrade",
        "answered before the upgrade",
        "post-quantum encryption",
        "written after the upgrade",
    ] {
        assert!(h.contains(line), "{line:?} in {h}");
    }
    bob.ok(&["send", "@alice", "answered on the new suite"]);
    let got = texts(&without_receipts(alice.receive_json()));
    assert!(got.iter().any(|(_, from, text)| from == "bob" && text == "answered on the new suite"), "{got:?}");

    // The group moved too (alice is its admin, so her app moved it): one
    // conversation with its history, post-quantum on both sides, alice
    // still its admin, and both keep chatting in it.
    let info: serde_json::Value = serde_json::from_str(alice.ok(&["info", "#old", "--json"]).trim()).unwrap();
    assert_eq!(info["post_quantum"], true, "{info}");
    let info: serde_json::Value = serde_json::from_str(bob.ok(&["info", "#old", "--json"]).trim()).unwrap();
    assert_eq!(info["post_quantum"], true, "bob is in the new group: {info}");
    let groups: Vec<serde_json::Value> =
        bob.ok(&["groups", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = groups.iter().map(|g| g["conversation"].as_str().unwrap()).collect();
    assert_eq!(names, ["#old"], "one conversation, under its name: {groups:?}");
    assert_eq!(groups[0]["admins"], serde_json::json!(["alice"]), "{groups:?}");
    assert_eq!(groups[0]["members"], serde_json::json!(["alice", "bob"]), "{groups:?}");
    bob.ok(&["send", "#old", "the group on the new suite"]);
    let got = texts(&without_receipts(alice.receive_json()));
    assert!(got.iter().any(|(_, from, text)| from == "bob" && text == "the group on the new suite"), "{got:?}");
    let g = alice.ok(&["history", "#old"]);
    for line in ["a group from before", "bob in the old group", "post-quantum encryption", "the group on the new suite"]
    {
        assert!(g.contains(line), "{line:?} in {g}");
    }

    // The upgraded devices published post-quantum packages when they came
    // online, so a new conversation with them is post-quantum.
    let carol = User::new(dir.path(), "carol");
    carol.init(&server, &server.invite());
    carol.ok(&["send", "@alice", "hello from a new app"]);
    let got = texts(&without_receipts(alice.receive_json()));
    assert!(got.iter().any(|(_, _, text)| text == "hello from a new app"), "{got:?}");
    let info: serde_json::Value = serde_json::from_str(carol.ok(&["info", "@alice", "--json"]).trim()).unwrap();
    assert_eq!(info["post_quantum"], true, "{info}");
    let info: serde_json::Value = serde_json::from_str(alice.ok(&["info", "@carol", "--json"]).trim()).unwrap();
    assert_eq!(info["post_quantum"], true, "{info}");
    drop(server);
}
