//! Several devices per account, end to end with the real server and CLI:
//! linking, both devices in every conversation, one's own messages on the
//! other device, removal.

mod common;

use common::*;
use sotto_proto::{Request, Response};

fn has_text(batch: &[serde_json::Value], conversation: &str, from: &str, text: &str) -> bool {
    texts(batch).iter().any(|(c, f, t)| c == conversation && f == from && t == text)
}

#[test]
fn a_linked_device_takes_part_in_every_conversation_and_a_removed_one_reads_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    bob.ok(&["send", "@alice", "hi alice"]);
    assert_eq!(texts(&alice.receive_json()).len(), 1);
    alice.ok(&["group", "create", "crew", "@bob", "@carol"]);
    bob.receive_json();
    carol.receive_json();
    alice.ok(&[
        "verify",
        "@bob",
        "--confirm",
        &sotto_core::trust::grouped(&open_profile(alice).safety_number("bob").unwrap()),
    ]);

    let laptop = User::new(root.path(), "alice-laptop");
    let linked = link(&laptop, alice, &server, "laptop");
    assert!(linked.contains("linked: @alice (device 2"), "{linked}");

    // The handover: contacts with their trust decisions.
    let contacts = laptop.ok(&["contacts", "--json"]);
    assert!(contacts.contains("\"bob\"") && contacts.contains("\"verified\":true"), "{contacts}");
    // Bob and carol see a device notice, not a key-change hold.
    let notice = bob.receive_json();
    assert!(
        notice
            .iter()
            .any(|m| m["kind"] == "system" && m["text"].as_str().unwrap().contains("@alice added a device: laptop")),
        "{notice:?}"
    );
    carol.receive_json();
    let lap = laptop.receive_json();
    assert!(!lap.iter().any(|m| m["conversation"].as_str().unwrap().starts_with("#new-")), "{lap:?}");
    assert_eq!(
        laptop.ok(&["groups"]).trim(),
        "#crew: @alice @bob @carol\n  admins: @alice; all members may add people"
    );

    // Messages to alice reach both devices, in the 1:1 and the group.
    bob.ok(&["send", "@alice", "to both of you"]);
    carol.ok(&["send", "#crew", "crew news"]);
    let phone = alice.receive_json();
    let lap = laptop.receive_json();
    for batch in [&phone, &lap] {
        assert!(has_text(batch, "@bob", "bob", "to both of you"), "{batch:?}");
        assert!(has_text(batch, "#crew", "carol", "crew news"), "{batch:?}");
    }
    // What alice sends from the laptop reaches bob and shows on the phone
    // as her own.
    laptop.ok(&["send", "@bob", "from my laptop"]);
    assert!(has_text(&bob.receive_json(), "@alice", "alice", "from my laptop"));
    let mine = alice.receive_json();
    let own = mine.iter().find(|m| m["text"] == "from my laptop").unwrap_or_else(|| panic!("{mine:?}"));
    assert_eq!(own["outgoing"], true, "{own}");
    assert!(alice.ok(&["history", "@bob"]).contains("from my laptop"));

    let devices: Vec<serde_json::Value> =
        alice.ok(&["devices", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_eq!((devices[0]["id"].as_u64(), devices[0]["this"].as_bool()), (Some(1), Some(true)));
    assert_eq!((devices[1]["id"].as_u64(), devices[1]["name"].as_str()), (Some(2), Some("laptop")));
    assert_ne!(devices[1]["last_seen"], "never");
    // Only the device holding the account key links devices.
    let out = laptop.run(&["device", "add", "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA", "--yes"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("first device"), "{out:?}");

    // Removal: the laptop is out of every conversation and cannot log in.
    let removed = alice.ok(&["device", "remove", "2", "--yes"]);
    assert!(removed.contains("taken out of 2 conversation(s)"), "{removed}");
    let out = laptop.run(&["receive"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("removed from @alice's account"), "{err}");
    bob.ok(&["send", "@alice", "after the removal"]);
    assert!(has_text(&alice.receive_json(), "@bob", "bob", "after the removal"));
    assert!(!alice.ok(&["devices"]).contains("laptop"));

    // Ask the server for the log (as bob) and hand the new message to the
    // removed device's own state: it cannot decrypt it.
    let bob_m = open_profile(bob);
    let group_id = bob_m.conversation_group("@alice").unwrap().unwrap();
    let log = runtime().block_on(async {
        let mut s = sotto_client::Session::open(&bob_m).await.unwrap();
        let r = s.connection().request(Request::Fetch { group_id: group_id.clone(), after_seq: 0, limit: 500 }).await;
        s.close().await;
        match r.unwrap() {
            Response::Messages { messages } => messages,
            other => panic!("{other:?}"),
        }
    });
    let laptop_m = open_profile(&laptop);
    let mut read = Vec::new();
    for d in &log {
        read.extend(laptop_m.handle_delivery(d).unwrap());
    }
    assert!(
        !read.iter().any(|e| matches!(e, sotto_core::Event::Message(m) if matches!(&m.body, sotto_core::Body::Text { text } if text == "after the removal"))),
        "the removed device read a message sent after its removal: {read:?}"
    );
}

#[test]
fn a_link_code_that_matches_nothing_is_refused_and_a_wrong_one_is_explained() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice"]);
    let out = u[0].run(&["device", "add", "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no device is waiting"), "{out:?}");
    let out = u[0].run(&["device", "add", "not-a-code", "--yes"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a link code"), "{out:?}");
}

#[test]
fn a_linked_device_gets_the_last_days_of_history_with_files_and_later_trust_decisions() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    bob.ok(&["send", "@alice", "before the laptop"]);
    alice.receive_json();
    alice.ok(&["send", "@bob", "answered from the phone"]);
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let photo_path = root.path().join("holiday.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    bob.ok(&["send", "@alice", "--file", photo_path.to_str().unwrap(), "the photo"]);
    let got = alice.receive_json();
    let id = got.iter().find(|m| m["kind"] == "file").unwrap()["id"].as_str().unwrap().to_owned();
    alice.ok(&["download", &id]);
    carol.ok(&["send", "@alice", "hello from carol"]);
    alice.receive_json();

    let laptop = User::new(root.path(), "alice-laptop");
    let (child, code, out) = start_link(&laptop, &server, "laptop");
    let added = alice.ok(&["device", "add", &code, "--yes"]);
    assert!(added.contains("history handed over: "), "{added}");
    let linked = finish_link(child, out);
    assert!(linked.contains("history: "), "{linked}");

    // The laptop shows what was said before it existed, in order, then
    // what comes after; the file is there, byte for byte, without the
    // server (it deleted its copy once alice's phone had it).
    bob.ok(&["send", "@alice", "after the laptop"]);
    laptop.receive_json();
    let history = laptop.ok(&["history", "@bob"]);
    let at = |t: &str| history.find(t).unwrap_or_else(|| panic!("{t:?} missing from {history}"));
    assert!(at("before the laptop") < at("answered from the phone"));
    assert!(at("answered from the phone") < at("the photo"));
    assert!(at("the photo") < at("after the laptop"));
    assert!(laptop.ok(&["history", "@carol"]).contains("hello from carol"));
    let copy = laptop.profile.join("downloads").join("holiday.jpg");
    assert_eq!(std::fs::read(&copy).unwrap(), photo);
    // Nothing of the archive stays on the server (the laptop fetched it)
    // or on either device.
    let blobs: Vec<_> = std::fs::read_dir(server.data.join("blobs")).unwrap().flatten().collect();
    assert!(blobs.is_empty(), "the server keeps no copy: {blobs:?}");
    for dir in [alice.profile.join("outgoing"), laptop.profile.join("incoming")] {
        let left: Vec<_> = std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.iter().all(|p| p.is_dir() && std::fs::read_dir(p).unwrap().next().is_none()), "{left:?}");
    }

    // Trust decisions made on one device after linking follow on the
    // other, through the account's own group (never shown as a
    // conversation).
    let digits = sotto_core::trust::grouped(&open_profile(alice).safety_number("carol").unwrap());
    alice.ok(&["verify", "@carol", "--confirm", &digits]);
    alice.ok(&["receive"]);
    laptop.ok(&["receive"]);
    let contacts = laptop.ok(&["contacts", "--json"]);
    let carol_entry = contacts.lines().find(|l| l.contains("\"carol\"")).unwrap_or_else(|| panic!("{contacts}"));
    assert!(carol_entry.contains("\"verified\":true"), "{carol_entry}");
    laptop.ok(&["block", "@carol"]);
    laptop.ok(&["receive"]);
    alice.ok(&["receive"]);
    assert!(open_profile(alice).is_blocked("carol").unwrap(), "a block on the laptop holds on the phone");
    assert!(!open_profile(&laptop).conversations().unwrap().iter().any(|c| c == "~self"));
    assert!(!laptop.ok(&["groups"]).contains("~self"));
}

#[test]
fn a_backup_restored_as_a_new_device_joins_beside_the_original_with_its_history() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    bob.ok(&["send", "@alice", "before the backup"]);
    alice.receive_json();
    let file = root.path().join("alice.sotto-backup");
    let backup =
        |u: &User, args: &[&str]| u.cmd().env("SOTTO_BACKUP_PASSPHRASE", "backup secret").args(args).output().unwrap();
    assert!(backup(alice, &["backup", "create", file.to_str().unwrap()]).status.success());
    // The original goes on after the backup.
    alice.ok(&["send", "@bob", "after the backup"]);
    bob.receive_json();

    let second = User { name: "alice".into(), profile: root.path().join("alice-second-machine") };
    let out = backup(&second, &["backup", "restore", file.to_str().unwrap(), "--new-device", "--name", "desk"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("as a new device: device 2 (\"desk\")"), "{said}");
    assert!(second.ok(&["history", "@bob"]).contains("before the backup"), "the backup's history is kept");

    // Both machines are alice now: bob's next message reaches both (his
    // client adds the certified new device first), and each can write.
    bob.ok(&["send", "@alice", "to both machines"]);
    assert!(has_text(&second.receive_json(), "@bob", "bob", "to both machines"));
    assert!(has_text(&alice.receive_json(), "@bob", "bob", "to both machines"), "the original is not cut off");
    second.ok(&["send", "@bob", "from the second machine"]);
    alice.ok(&["send", "@bob", "from the original"]);
    let got = bob.receive_json();
    assert!(has_text(&got, "@alice", "alice", "from the second machine"), "{got:?}");
    assert!(has_text(&got, "@alice", "alice", "from the original"), "{got:?}");
    let devices = alice.ok(&["devices"]);
    assert!(devices.contains("desk"), "{devices}");

    // A backup of a linked device cannot make devices: it says what to do,
    // and leaves nothing behind.
    let laptop = User::new(root.path(), "alice-laptop");
    link(&laptop, alice, &server, "laptop");
    let linked_file = root.path().join("laptop.sotto-backup");
    assert!(backup(&laptop, &["backup", "create", linked_file.to_str().unwrap()]).status.success());
    let third = User { name: "alice".into(), profile: root.path().join("alice-third") };
    let out = backup(&third, &["backup", "restore", linked_file.to_str().unwrap(), "--new-device"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sotto link"), "{out:?}");
    assert!(!sotto_core::db::exists(&third.profile));
}
