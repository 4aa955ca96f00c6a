//! What people do with messages already sent, end to end with the real
//! server and CLI: replies, reactions, edits, deletes for everyone and for
//! me, delivery and read receipts, disappearing messages.

mod common;

use common::*;
use serde_json::Value;

/// The id (hex) of the first message with this text in `who`'s history of
/// `conversation`.
fn id_of(who: &User, conversation: &str, text: &str) -> String {
    history(who, conversation)
        .into_iter()
        .find(|m| m["text"] == text)
        .unwrap_or_else(|| panic!("{text:?} not in {}'s history of {conversation}", who.name))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn history(who: &User, conversation: &str) -> Vec<Value> {
    who.ok(&["history", conversation, "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn find(list: &[Value], id: &str) -> Value {
    list.iter().find(|m| m["id"] == id).cloned().unwrap_or_else(|| panic!("no {id} in {list:?}"))
}

#[test]
fn replies_reactions_edits_and_deletes_reach_everyone_and_only_the_sender_may_change_a_message() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["group", "create", "crew", "@bob", "@carol"]);
    bob.receive_json();
    carol.receive_json();
    alice.ok(&["send", "#crew", "lunch at noon?"]);
    alice.ok(&["send", "#crew", "meet at the statoin"]);
    bob.receive_json();
    let lunch = id_of(bob, "#crew", "lunch at noon?");
    let typo = id_of(alice, "#crew", "meet at the statoin");

    // A reply quotes what it answers, for everyone.
    bob.ok(&["send", "#crew", "yes!", "--reply-to", &lunch]);
    let got = carol.receive_json();
    let reply = got.iter().find(|m| m["text"] == "yes!").expect("carol has the reply");
    assert_eq!(reply["reply_to"], lunch.as_str());
    let line = carol.ok(&["history", "#crew"]);
    assert!(line.contains("↪ in reply to <alice> lunch at noon?"), "{line}");

    // Reactions: any emoji, counted per emoji with who gave them; taken back.
    bob.ok(&["react", &lunch, "👍"]);
    carol.ok(&["react", &lunch, "👍"]);
    carol.ok(&["react", &lunch, "🎉"]);
    alice.receive_json();
    let m = find(&history(alice, "#crew"), &lunch);
    assert_eq!(m["reactions"][0]["emoji"], "👍");
    assert_eq!(m["reactions"][0]["count"], 2);
    assert_eq!(m["reactions"][1]["by"], serde_json::json!(["carol"]));
    carol.ok(&["react", &lunch, "🎉", "--remove"]);
    let got = alice.receive_json();
    assert!(
        got.iter().any(|l| l["kind"] == "reaction" && l["remove"] == true && l["target"] == lunch.as_str()),
        "{got:?}"
    );
    let m = find(&history(alice, "#crew"), &lunch);
    assert_eq!(m["reactions"].as_array().unwrap().len(), 1, "{m}");
    // Reacting twice, or taking back what was never given, is explained.
    let out = bob.run(&["react", &lunch, "👍"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already"), "{out:?}");

    // Edits: only the sender's, newest version shown and marked; Carol is
    // offline meanwhile and sees the edit when she comes back.
    alice.ok(&["edit", &typo, "meet at the station"]);
    let out = bob.run(&["edit", &typo, "hijacked"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only its sender"), "{out:?}");
    let got = carol.receive_json();
    assert!(got.iter().any(|l| l["kind"] == "edit" && l["text"] == "meet at the station"), "{got:?}");
    let m = find(&history(carol, "#crew"), &typo);
    assert_eq!((m["text"].as_str(), m["edited"].as_bool()), (Some("meet at the station"), Some(true)));
    assert!(carol.ok(&["history", "#crew"]).contains("meet at the station (edited)"));

    // Delete for everyone: gone from every history and export; the line
    // stays; a reply to it still shows it was deleted.
    alice.ok(&["delete", &lunch]);
    for who in [alice, bob, carol] {
        who.receive_json();
        let m = find(&history(who, "#crew"), &lunch);
        assert_eq!((m["deleted"].as_bool(), m["text"].as_str()), (Some(true), Some("")), "{}: {m}", who.name);
        assert!(m["reactions"].as_array().unwrap().is_empty());
        let out = root.path().join(format!("{}-crew.txt", who.name));
        who.ok(&["export", "#crew", "--format", "txt", "-o", out.to_str().unwrap()]);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(!text.contains("lunch at noon"), "{}'s export: {text}", who.name);
        assert!(text.contains("(in reply to alice: [message deleted]) yes!"), "{text}");
        let json = who.ok(&["export", "#crew", "--format", "json"]);
        assert!(!json.contains("lunch at noon"), "{json}");
    }
    // Not in the profile's database either (the earlier versions of an
    // edit stay on the sender's device only; a deleted message's go).
    drop(open_profile(carol));
    assert!(files_containing(&carol.profile, b"lunch at noon").is_empty());
    let out = carol.run(&["delete", &typo]);
    assert_eq!(out.status.code(), Some(1), "only the sender deletes for everyone");

    // Delete for me: only here.
    carol.ok(&["delete", &typo, "--for-me"]);
    assert!(history(carol, "#crew").iter().all(|m| m["id"] != typo.as_str()));
    assert!(history(bob, "#crew").iter().any(|m| m["id"] == typo.as_str()));
}

#[test]
fn receipts_move_from_sent_to_delivered_to_read_and_read_receipts_can_be_turned_off() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "first"]);
    let id = id_of(alice, "@bob", "first");
    assert_eq!(find(&history(alice, "@bob"), &id)["state"], "sent");
    bob.receive_json();
    let got = alice.receive_json();
    assert!(got.iter().any(|l| l["kind"] == "receipt" && l["from"] == "bob"), "{got:?}");
    assert_eq!(find(&history(alice, "@bob"), &id)["state"], "delivered");
    assert!(alice.ok(&["history", "@bob"]).contains("first ✓✓"));
    bob.ok(&["read", "@alice"]);
    alice.receive_json();
    let m = find(&history(alice, "@bob"), &id);
    assert_eq!(m["state"], "read", "{m}");
    assert_eq!(m["receipt"]["read_by"], serde_json::json!(["bob"]));

    // In a group: read by whom.
    alice.ok(&["group", "create", "crew", "@bob", "@carol"]);
    alice.ok(&["send", "#crew", "hello crew"]);
    let gid = id_of(alice, "#crew", "hello crew");
    bob.receive_json();
    alice.receive_json();
    assert_eq!(find(&history(alice, "#crew"), &gid)["state"], "sent", "carol's device does not have it yet");
    carol.receive_json();
    carol.ok(&["read", "#crew"]);
    alice.receive_json();
    let m = find(&history(alice, "#crew"), &gid);
    assert_eq!(m["receipt"]["delivered"], true, "{m}");
    assert_eq!(m["receipt"]["read_by"], serde_json::json!(["carol"]));
    assert!(alice.ok(&["history", "#crew"]).contains("read by carol"));

    // Bob turns read receipts off: reading tells nobody.
    bob.ok(&["read", "--receipts", "off"]);
    bob.ok(&["read", "#crew"]);
    alice.receive_json();
    let m = find(&history(alice, "#crew"), &gid);
    assert_eq!(m["receipt"]["read_by"], serde_json::json!(["carol"]), "{m}");
}

#[test]
fn a_disappearing_message_is_gone_from_every_device_after_its_timer() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "this stays"]);
    bob.receive_json();
    let out = alice.ok(&["timer", "@bob", "2s"]);
    assert!(out.contains("disappearing messages 2 seconds"), "{out}");
    let got = bob.receive_json();
    assert!(
        got.iter().any(|l| l["kind"] == "system" && l["text"] == "@alice set disappearing messages to 2 seconds"),
        "{got:?}"
    );
    assert!(bob.ok(&["timer", "@alice"]).contains("2 seconds"));
    alice.ok(&["send", "@bob", "burn after reading"]);
    let got = bob.receive_json();
    let m = got.iter().find(|m| m["text"] == "burn after reading").expect("arrives");
    assert!(m["expires_at"].is_string(), "{m}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    for who in [alice, bob] {
        let h = history(who, if who.name == "alice" { "@bob" } else { "@alice" });
        assert!(h.iter().all(|m| m["text"] != "burn after reading"), "{}: {h:?}", who.name);
        assert!(h.iter().any(|m| m["text"] == "this stays"));
        drop(open_profile(who));
        assert!(files_containing(&who.profile, b"burn after reading").is_empty(), "{}", who.name);
    }
    // The server keeps nothing beyond the timer: a message Bob's device
    // has not fetched when its time is up is gone from the server too
    // (the server purges such groups every few seconds).
    // So does a file sent in the conversation: its encrypted bytes go from
    // the server's blob folder with the timer, fetched or not.
    let blobs = server.data.join("blobs");
    let stored = |dir: &std::path::Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let before = stored(&blobs);
    let photo = root.path().join("photo.bin");
    std::fs::write(&photo, vec![7u8; 50_000]).unwrap();
    alice.ok(&["send", "@bob", "nobody read this in time"]);
    alice.ok(&["send", "@bob", "--file", photo.to_str().unwrap()]);
    assert_eq!(stored(&blobs), before + 1, "the file is on the server");
    std::thread::sleep(std::time::Duration::from_secs(9));
    assert_eq!(stored(&blobs), before, "the file is gone from the server with its timer");
    let got = bob.receive_json();
    assert!(got.iter().all(|m| m["text"] != "nobody read this in time"), "{got:?}");
    assert!(got.iter().all(|m| m["kind"] != "file"), "{got:?}");
    // Turned off, messages stay again.
    bob.ok(&["timer", "@alice", "off"]);
    alice.receive_json();
    alice.ok(&["send", "@bob", "forever"]);
    let got = bob.receive_json();
    assert!(got.iter().any(|m| m["text"] == "forever" && m["expires_at"].is_null()), "{got:?}");
    let out = alice.run(&["timer", "@bob", "soon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a timer"), "{out:?}");
}

#[test]
fn typing_reaches_only_connected_members_and_is_never_stored() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    bob.ok(&["group", "create", "crew", "@alice", "@carol"]);
    alice.receive_json();
    carol.receive_json();

    // Alice is connected and listening; Carol is offline.
    let listener =
        alice.cmd().args(["receive", "--json", "--wait", "8"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut sealed = Vec::new();
    runtime().block_on(async {
        let m = open_profile(bob);
        let mut s = sotto_client::Session::open(&m).await.unwrap();
        // Three in a row: the server passes on one per second.
        for _ in 0..3 {
            let request = m.typing_request("#crew", true).unwrap().expect("a signal for #crew");
            if let sotto_proto::Request::Signal { payload, .. } = &request {
                sealed.push(payload.clone());
            }
            s.connection().request(request).await.unwrap();
        }
        s.close().await;
    });
    let out = listener.wait_with_output().unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let typing: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "typing").collect();
    assert_eq!(typing.len(), 1, "one typing line for Alice, who was online: {lines:?}");
    assert_eq!((typing[0]["from"].as_str(), typing[0]["conversation"].as_str()), (Some("bob"), Some("#crew")));

    // Carol, offline then, never gets it.
    let got = carol.receive_json();
    assert!(got.iter().all(|l| l["kind"] != "typing"), "{got:?}");
    // The server stored none of it (its database, WAL and every file).
    for payload in &sealed {
        assert!(files_containing(&server.data, &payload[32..64]).is_empty(), "a signal was written to disk");
    }
    // A signal for a group the sender is not in goes nowhere.
    let stranger = open_profile(carol);
    assert!(stranger.typing_request("#nowhere", true).unwrap().is_none());
}

#[test]
fn mentions_descriptions_and_pins_reach_every_member_in_the_same_order() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["group", "create", "crew", "@bob", "@carol"]);
    alice.ok(&["group", "describe", "crew", "Saturday's climbing trip"]);
    alice.ok(&["send", "#crew", "@carol can you bring the rope? (mail me at alice@example.org)"]);
    for who in [bob, carol] {
        let got = who.receive_json();
        assert!(
            got.iter().any(|l| l["kind"] == "system"
                && l["text"] == "@alice set the group's description: Saturday's climbing trip"),
            "{}: {got:?}",
            who.name
        );
        let m = got.iter().find(|l| l["text"].as_str().is_some_and(|t| t.contains("rope"))).unwrap();
        assert_eq!(m["mentions"], serde_json::json!(["carol"]), "an address is no mention: {m}");
        let groups: Value = serde_json::from_str(who.ok(&["groups", "--json"]).lines().next().unwrap()).unwrap();
        assert_eq!(groups["description"], "Saturday's climbing trip");
    }
    // Pinned for everyone; unpinned again.
    let rope = id_of(bob, "#crew", "@carol can you bring the rope? (mail me at alice@example.org)");
    bob.ok(&["pin", &rope]);
    for who in [alice, carol] {
        who.receive_json();
        assert_eq!(find(&history(who, "#crew"), &rope)["pinned"], true, "{}", who.name);
    }
    assert!(alice.ok(&["history", "#crew"]).contains("@bob pinned a message: @carol can you bring the rope?"));
    let out = carol.run(&["pin", &rope]);
    assert_eq!(out.status.code(), Some(1), "pinned already");
    carol.ok(&["pin", &rope, "--remove"]);
    alice.receive_json();
    assert_eq!(find(&history(alice, "#crew"), &rope)["pinned"], false);
    // A description is for groups only.
    let out = alice.run(&["group", "describe", "nosuch", "x"]);
    assert_ne!(out.status.code(), Some(0));
}

/// The smallest PNG there is (a 1x1 transparent pixel).
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[test]
fn a_profile_name_and_picture_reach_contacts_end_to_end_and_new_conversations_later() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "hi"]);
    bob.receive_json();
    let picture = root.path().join("me.png");
    std::fs::write(&picture, PIXEL_PNG).unwrap();
    let out = alice.ok(&["profile", "set", "--name", "Alice Quillfeather", "--avatar", picture.to_str().unwrap()]);
    assert!(out.contains("Alice Quillfeather, with a picture"), "{out}");
    bob.receive_json();
    let contacts: Vec<Value> =
        bob.ok(&["contacts", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let a = contacts.iter().find(|c| c["handle"] == "alice").unwrap();
    assert_eq!(a["display_name"], "Alice Quillfeather");
    assert_eq!(a["avatar"]["media_type"], "image/png");
    let saved = root.path().join("alice-as-bob-sees-her.png");
    bob.ok(&["profile", "show", "@alice", "--avatar-out", saved.to_str().unwrap()]);
    assert_eq!(std::fs::read(&saved).unwrap(), PIXEL_PNG);
    // Someone Alice starts talking to later gets it too.
    alice.ok(&["send", "@carol", "hello carol"]);
    carol.receive_json();
    assert!(carol.ok(&["profile", "show", "@alice"]).contains("Alice Quillfeather"));
    // The server never sees the name.
    assert!(files_containing(&server.data, b"Quillfeather").is_empty());
    // A group's picture, for everyone in it.
    alice.ok(&["group", "create", "crew", "@bob"]);
    alice.ok(&["group", "picture", "crew", picture.to_str().unwrap()]);
    bob.receive_json();
    let groups: Value = serde_json::from_str(bob.ok(&["groups", "--json"]).lines().next().unwrap()).unwrap();
    assert_eq!(groups["picture"], serde_json::json!({"media_type": "image/png", "size": PIXEL_PNG.len()}), "{groups}");
    assert!(bob.ok(&["history", "#crew"]).contains("@alice changed the group's picture"));
    // A file that is no picture is refused, with what to do.
    let out = alice.run(&["profile", "set", "--avatar", "/etc/hostname"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PNG, JPEG, GIF or WebP"), "{out:?}");
}

#[test]
fn with_two_devices_each_edits_reactions_reads_and_timers_reach_the_other_device_too() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "hello bob"]);
    bob.receive_json();
    let laptop = User::new(root.path(), "alice-laptop");
    let (child, code, out) = start_link(&laptop, &server, "laptop");
    alice.ok(&["device", "add", &code, "--yes", "--history", "0"]);
    finish_link(child, out);
    let bob_laptop = User::new(root.path(), "bob-laptop");
    let (child, code, out) = start_link(&bob_laptop, &server, "laptop");
    bob.ok(&["device", "add", &code, "--yes", "--history", "0"]);
    finish_link(child, out);
    for d in [alice, &laptop, bob, &bob_laptop] {
        d.receive_json();
    }
    // Alice writes from her laptop; Bob reacts from his; everyone's devices agree.
    laptop.ok(&["send", "@bob", "lunch tomorrow?"]);
    bob_laptop.receive_json();
    let id = id_of(&bob_laptop, "@alice", "lunch tomorrow?");
    bob_laptop.ok(&["react", &id, "👍"]);
    // She edits it from her phone (the same account sent it).
    alice.receive_json();
    alice.ok(&["edit", &id, "lunch tomorrow at one?"]);
    for (d, conversation) in [(alice, "@bob"), (&laptop, "@bob"), (bob, "@alice"), (&bob_laptop, "@alice")] {
        d.receive_json();
        let m = find(&history(d, conversation), &id);
        assert_eq!(m["text"], "lunch tomorrow at one?", "{}: {m}", d.name);
        assert_eq!(m["edited"], true);
        assert_eq!(m["reactions"][0]["by"], serde_json::json!(["bob"]), "{}: {m}", d.name);
    }
    // Bob reads on his laptop: Alice's devices see "read".
    bob_laptop.ok(&["read", "@alice"]);
    for d in [alice, &laptop] {
        d.receive_json();
        assert_eq!(find(&history(d, "@bob"), &id)["state"], "read", "{}", d.name);
    }
    // A name set on one device is the person's name on the other too.
    laptop.ok(&["profile", "set", "--name", "Alice on the go"]);
    alice.receive_json();
    assert!(alice.ok(&["profile", "show"]).contains("Alice on the go"), "{}", alice.ok(&["profile", "show"]));
    // A timer set on one device holds on the other.
    laptop.ok(&["timer", "@bob", "1h"]);
    alice.receive_json();
    assert!(alice.ok(&["timer", "@bob"]).contains("1 hour"));
    bob.receive_json();
    assert!(bob.ok(&["timer", "@alice"]).contains("1 hour"));
}
