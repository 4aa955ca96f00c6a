//! Safety numbers, key changes, export, backup, ephemeral mode, profiles.

mod common;

use common::*;

fn safety_line(u: &User, peer: &str) -> String {
    u.ok(&["verify", peer]).lines().next().unwrap().to_owned()
}

fn stderr_fail(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn safety_numbers_match_and_verification_sticks() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "hi"]);
    bob.receive_json();
    alice.ok(&["send", "@carol", "hi"]);
    carol.receive_json();

    let ab = safety_line(alice, "@bob");
    assert_eq!(ab, safety_line(bob, "@alice"), "the same on both sides");
    let digits = ab.strip_prefix("safety number: ").unwrap();
    assert_eq!(digits.split(' ').count(), 12);
    assert!(digits.split(' ').all(|g| g.len() == 5 && g.chars().all(|c| c.is_ascii_digit())));
    assert_ne!(ab, safety_line(alice, "@carol"), "different for a third party");
    assert!(alice.ok(&["verify", "@bob"]).contains('█'), "a QR code follows");

    let wrong = stderr_fail(alice.run(&["verify", "@bob", "--confirm", "12345 67890"]));
    assert!(wrong.contains("not the safety number"), "{wrong}");
    alice.ok(&["verify", "@bob", "--confirm", digits]);
    let contacts = alice.ok(&["contacts", "--json"]);
    let bob_row: serde_json::Value = contacts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["handle"] == "bob")
        .unwrap();
    assert_eq!(bob_row["verified"], true);
}

#[test]
fn a_key_change_holds_sending_until_trusted() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "hi"]);
    bob.receive_json();
    let old_number = safety_line(alice, "@bob");
    let digits = old_number.strip_prefix("safety number: ").unwrap().to_owned();
    alice.ok(&["verify", "@bob", "--confirm", &digits]);

    // Bob's account is reset on the server (new phone, lost keys): the
    // operator removes it and he registers again under the same handle.
    {
        let db = rusqlite::Connection::open(server.data.join("relay.db")).unwrap();
        db.execute_batch("DELETE FROM key_packages WHERE handle='bob'; DELETE FROM devices WHERE handle='bob'; DELETE FROM accounts WHERE handle='bob';").unwrap();
    }
    let new_bob = User { name: "bob".into(), profile: root.path().join("bob-new-phone") };
    new_bob.init(&server, &server.invite());
    new_bob.ok(&["send", "@alice", "new phone, same bob"]);

    let out = alice.run(&["receive", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("account key of @bob changed"), "a warning is shown");
    let contacts = alice.ok(&["contacts"]);
    assert!(
        contacts.contains("@bob (") && contacts.contains("KEY CHANGED") && !contacts.contains("verified"),
        "{contacts}"
    );

    let held = stderr_fail(alice.run(&["send", "@bob", "are you really bob?"]));
    assert!(held.contains("changed") && held.contains("sotto trust @bob"), "{held}");
    assert_ne!(safety_line(alice, "@bob"), old_number, "the number shown is the new key's");

    assert!(alice.ok(&["trust", "@bob"]).contains("now trusting"));
    alice.ok(&["send", "@bob", "welcome back"]);
    let got = texts(&new_bob.receive_json());
    assert_eq!(got, vec![("@alice".into(), "alice".into(), "welcome back".into())]);
}

#[test]
fn export_round_trips_and_never_overwrites() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    let lines = ["one", "two <b>bold</b> & \"quoted\"", "three\nlines"];
    for l in lines {
        alice.ok(&["send", "@bob", l]);
    }
    bob.receive_json();
    bob.ok(&["send", "@alice", "four"]);
    alice.receive_json();

    let json_path = root.path().join("export.json");
    alice.ok(&["export", "@bob", "--format", "json", "-o", json_path.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(doc["conversation"], "@bob");
    let texts: Vec<&str> = doc["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["one", "two <b>bold</b> & \"quoted\"", "three\nlines", "four"]);
    assert!(doc["messages"].as_array().unwrap().iter().all(|m| m["sent_at"].is_string() && m["from"].is_string()));

    let again = stderr_fail(alice.run(&["export", "@bob", "--format", "json", "-o", json_path.to_str().unwrap()]));
    assert!(again.contains("exist"), "{again}");

    let html = alice.ok(&["export", "@bob", "--format", "html"]);
    assert!(
        html.starts_with("<!doctype html>") && html.contains("two &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;")
    );
    assert!(!html.contains("<link") && !html.contains("<script"), "self-contained, no scripts");
    let txt = alice.ok(&["export", "@bob"]);
    assert!(txt.contains("alice: one") && txt.contains("bob: four"), "{txt}");

    let all = root.path().join("all");
    alice.ok(&["export", "--all", all.to_str().unwrap(), "--format", "txt"]);
    assert!(all.join("dm-bob.txt").exists());
}

#[test]
fn backup_restores_onto_a_fresh_profile_that_keeps_chatting() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "before the move"]);
    bob.receive_json();
    bob.ok(&["send", "@alice", "reply before the move"]);
    alice.receive_json();

    let file = root.path().join("alice.backup");
    let out = alice
        .cmd()
        .env("SOTTO_BACKUP_PASSPHRASE", "backup secret")
        .args(["backup", "create", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let raw = std::fs::read(&file).unwrap();
    assert!(!raw.windows(15).any(|w| w == b"before the move"), "the backup is encrypted");

    // On the new computer. A wrong backup passphrase is refused cleanly.
    let moved = User { name: "alice".into(), profile: root.path().join("alice-new-computer") };
    let bad = moved
        .cmd()
        .env("SOTTO_BACKUP_PASSPHRASE", "nope")
        .args(["backup", "restore", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&stderr_fail(bad).into_bytes()).contains("wrong passphrase for this backup"));
    assert!(!sotto_core::db::exists(&moved.profile));
    let out = moved
        .cmd()
        .env("SOTTO_BACKUP_PASSPHRASE", "backup secret")
        .args(["backup", "restore", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&alice.profile).unwrap();

    let hist = moved.ok(&["history", "@bob"]);
    assert!(hist.contains("before the move") && hist.contains("reply before the move"), "{hist}");
    moved.ok(&["send", "@bob", "after the move"]);
    assert_eq!(texts(&bob.receive_json())[0].2, "after the move");
    bob.ok(&["send", "@alice", "got it"]);
    assert_eq!(texts(&moved.receive_json())[0].2, "got it");
}

#[test]
fn ephemeral_mode_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["bob"]);
    let bob = &u[0];
    let home = root.path().join("ephemeral-home");
    std::fs::create_dir(&home).unwrap();
    let invite = server.invite();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sotto"))
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("SOTTO_PASSPHRASE")
        .current_dir(&home)
        .args(["--ephemeral", "--server", &server.address, "--as", "ghost", "--invite", &invite, "send", "@bob", "boo"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "nothing written anywhere under HOME");
    assert_eq!(texts(&bob.receive_json()), vec![("@ghost".into(), "ghost".into(), "boo".into())]);
    // Nothing left on the server either: the account is gone, the handle free.
    let users = std::process::Command::new(server_bin())
        .args(["users", "--data", server.data.to_str().unwrap()])
        .output()
        .unwrap();
    let users = String::from_utf8_lossy(&users.stdout);
    assert!(!users.contains("@ghost"), "{users}");
    // And the one-use invite it came with admits someone again.
    let ghost = User::new(root.path(), "ghost");
    ghost.init(&server, &invite);
}

#[test]
fn deleting_your_account_leaves_every_conversation_frees_the_handle_and_removes_the_profile() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "hi"]);
    bob.ok(&["group", "create", "crew", "@alice", "@carol"]);
    alice.receive_json();
    carol.receive_json();
    // Not without confirmation.
    let refused = stderr_fail(bob.run(&["account", "delete"]));
    assert!(refused.contains("--yes"), "{refused}");
    let out = bob.ok(&["account", "delete", "--yes"]);
    assert!(out.contains("deleted @bob"), "{out}");
    assert!(!sotto_core::db::exists(&bob.profile), "the local profile is gone");
    // The others are told, in the one-to-one and in the group.
    let seen: Vec<String> =
        alice.receive_json().iter().map(|m| format!("{} {}", m["conversation"], m["text"])).collect();
    assert!(seen.iter().any(|t| t.contains("#crew") && t.contains("@bob left")), "{seen:?}");
    assert!(seen.iter().any(|t| t.contains("@bob") && t.contains("left this conversation")), "{seen:?}");
    let seen = carol.ok(&["receive"]);
    assert!(seen.contains("@bob left"), "{seen}");
    // Writing to @bob now says there is nobody, instead of "sent".
    let gone = stderr_fail(alice.run(&["send", "@bob", "hello?"]));
    assert!(gone.contains("no @bob on this server"), "{gone}");
    // The handle is free again.
    let new_bob = User { name: "bob".into(), profile: root.path().join("another-bob") };
    new_bob.init(&server, &server.invite());
}
#[test]
fn passphrases_profiles_and_wrong_passphrase_do_no_harm() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let alice = &u[0];
    alice.ok(&["send", "@bob", "kept safe"]);
    for _ in 0..3 {
        let e = stderr_fail(alice.cmd().env("SOTTO_PASSPHRASE", "wrong").args(["history", "@bob"]).output().unwrap());
        assert!(e.contains("wrong passphrase"), "{e}");
    }
    assert!(alice.ok(&["history", "@bob"]).contains("kept safe"), "the database is unharmed");

    let out = alice.cmd().env("SOTTO_NEW_PASSPHRASE", "brand new").arg("passphrase").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stderr_fail(alice.run(&["history", "@bob"])).contains("wrong passphrase"));
    let out = alice.cmd().env("SOTTO_PASSPHRASE", "brand new").args(["history", "@bob"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept safe"));

    // Named profiles live in the data directory; `profiles` lists them.
    let data = root.path().join("xdg");
    let named = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sotto"))
            .env("XDG_DATA_HOME", &data)
            .env("SOTTO_PASSPHRASE", PASSPHRASE)
            .args(args)
            .output()
            .unwrap()
    };
    let out = named(&[
        "--profile",
        "work",
        "init",
        "--server",
        &server.address,
        "--name",
        "worker",
        "--invite",
        &server.invite(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("sotto/work/profile.db").exists());
    let listing = String::from_utf8(named(&["profiles"]).stdout).unwrap();
    assert!(listing.contains("work\t@worker\tsotto://127.0.0.1:"), "{listing}");
}

#[test]
fn sending_to_a_removed_and_re_registered_handle_is_held_at_send_time() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "hi"]);
    bob.receive_json();
    // The operator removes Bob's account.
    let out = std::process::Command::new(server_bin())
        .args(["users", "remove", "bob", "--data", server.data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gone = stderr_fail(alice.run(&["send", "@bob", "is anyone there?"]));
    assert!(gone.contains("no account on this server any more") && gone.contains("nothing was sent"), "{gone}");
    // Someone else registers "bob" and stays quiet: Alice is told at send
    // time, before anything goes out, not when the stranger writes first.
    let stranger = User { name: "bob".into(), profile: root.path().join("not-bob") };
    stranger.init(&server, &server.invite());
    let held = stderr_fail(alice.run(&["send", "@bob", "still you?"]));
    assert!(held.contains("changed") && held.contains("sotto trust @bob"), "{held}");
    let history = alice.ok(&["history", "@bob", "--json"]);
    assert!(!history.contains("still you?") && !history.contains("is anyone there?"), "nothing marked sent: {history}");
    assert!(stranger.receive_json().is_empty(), "the stranger got nothing");
}

#[test]
fn a_backup_restored_while_the_original_is_in_use_takes_over_and_the_old_copy_is_told() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "before the backup"]);
    bob.receive_json();
    let file = root.path().join("alice.backup");
    let backup = |u: &User, args: &[&str]| {
        let out = u.cmd().env("SOTTO_BACKUP_PASSPHRASE", "backup secret").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    backup(alice, &["backup", "create", file.to_str().unwrap()]);
    // The original goes on after the backup: its keys move on.
    alice.ok(&["send", "@bob", "after the backup, from the original"]);
    bob.ok(&["send", "@alice", "bob to the original"]);
    alice.receive_json();

    // The backup is restored on a second computer while the first still runs.
    let copy = User { name: "alice".into(), profile: root.path().join("alice-restored") };
    backup(&copy, &["backup", "restore", file.to_str().unwrap()]);
    copy.ok(&["send", "@bob", "from the restored copy"]);
    let got = bob.receive_json();
    assert!(texts(&got).iter().any(|(_, _, t)| t == "from the restored copy"), "{got:?}");
    assert!(
        !got.iter().any(|m| m["text"].as_str().unwrap_or("").contains("missing")),
        "Bob's conversation is not broken: {got:?}"
    );
    bob.ok(&["send", "@alice", "hello restored alice"]);
    assert!(texts(&copy.receive_json()).iter().any(|(_, _, t)| t == "hello restored alice"));

    // The old copy is refused with a sentence saying which copy to keep.
    let old = stderr_fail(alice.run(&["receive"]));
    assert!(old.contains("out of date") && old.contains("restored"), "{old}");
    assert!(!old.contains("Error"), "{old}");
}
