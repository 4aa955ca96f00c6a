//! Blocking: a blocked person's messages and invitations are dropped in
//! every conversation, writing to them is refused, and unblocking lets a
//! new conversation start.

mod common;

use common::*;

#[test]
fn a_blocked_person_cannot_write_or_add_you_until_unblocked() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "mallory", "carol"]);
    let (alice, mallory, carol) = (&u[0], &u[1], &u[2]);
    mallory.ok(&["send", "@alice", "hello"]);
    assert_eq!(texts(&alice.receive_json()).len(), 1);

    let out = alice.ok(&["block", "@mallory"]);
    assert!(out.contains("blocked @mallory"), "{out}");
    assert_eq!(alice.ok(&["blocked"]).trim(), "@mallory");
    // Whatever Mallory does next reaches nothing on Alice's side.
    let _ = mallory.run(&["send", "@alice", "are you ignoring me?"]);
    let _ = mallory.run(&["group", "create", "trap", "@alice", "@carol"]);
    let _ = mallory.run(&["send", "#trap", "spam in a group"]);
    let got = alice.receive_json();
    assert!(texts(&got).is_empty(), "nothing from mallory: {got:?}");
    assert!(!alice.ok(&["groups"]).contains("#trap"), "not added to mallory's group");
    // Carol, in the same group, still sees it: the block is Alice's alone.
    assert!(texts(&carol.receive_json()).iter().any(|(_, _, t)| t == "spam in a group"));
    // And Alice cannot write to Mallory by mistake.
    let out = alice.run(&["send", "@mallory", "oops"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("you blocked @mallory"));

    // Unblocked: a new conversation works both ways.
    alice.ok(&["unblock", "@mallory"]);
    mallory.ok(&["send", "@alice", "truce?"]);
    let got = texts(&alice.receive_json());
    assert!(got.iter().any(|(_, _, t)| t == "truce?"), "{got:?}");
    alice.ok(&["send", "@mallory", "truce"]);
    assert!(texts(&mallory.receive_json()).iter().any(|(_, _, t)| t == "truce"));
}
