//! Searching all history with the real server and CLI: texts, file names
//! and captions, accents, word starts, one conversation or all; edits and
//! deletes change what is found; the index never lies on disk in plaintext.

mod common;

use common::*;
use serde_json::Value;

fn search(who: &User, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    all.push("--json");
    who.ok(&all).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn found(hits: &[Value]) -> Vec<String> {
    hits.iter().map(|h| h["text"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn search_finds_words_in_every_conversation_newest_first_and_follows_edits_and_deletes() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "Pizza at the Café Roma on Friday?"]);
    alice.ok(&["send", "@bob", "or sushi, if you prefer"]);
    carol.ok(&["send", "@bob", "the pizzeria closed, sadly"]);
    let menu = root.path().join("menu-pizza.pdf");
    std::fs::write(&menu, b"%PDF pretend").unwrap();
    alice.ok(&["send", "@bob", "--file", menu.to_str().unwrap(), "tonight's menu"]);
    bob.receive_json();

    // Both conversations, newest first, each hit saying where it is; the
    // last word matches the start of a word, accents do not matter.
    let hits = search(bob, &["pizz"]);
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0]["kind"], "file", "the newest first: {hits:?}");
    assert_eq!(hits[1]["text"], "the pizzeria closed, sadly");
    assert_eq!(hits[1]["conversation"], "@carol");
    assert_eq!(hits[2]["text"], "Pizza at the Café Roma on Friday?");
    assert_eq!(found(&search(bob, &["cafe friday"])), vec!["Pizza at the Café Roma on Friday?"]);
    assert_eq!(found(&search(bob, &["menu"])).len(), 1, "captions are searched");
    assert_eq!(search(bob, &["pizz", "--in", "@carol"]).len(), 1);
    assert!(search(bob, &["friday sushi"]).is_empty(), "every word must be in one message");

    // What FTS5 would read as syntax is searched for as text, not obeyed.
    for odd in ["\"", "pizza OR", "*", "NEAR(", "a:b", "-x"] {
        let out = bob.run(&["search", odd, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{odd}: {out:?}");
    }
    let out = bob.run(&["search", "   "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("type something to search for"), "{out:?}");

    // Human output names the conversation; nothing found says so.
    let text = bob.ok(&["search", "sushi"]);
    assert!(text.contains("@alice") && text.contains("or sushi, if you prefer"), "{text}");
    let out = bob.run(&["search", "lasagne"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing found"), "{out:?}");

    // An edit is found by its new words only; a delete for everyone is not
    // found at all.
    let sushi = search(alice, &["sushi"]);
    let id = sushi[0]["id"].as_str().unwrap().to_owned();
    alice.ok(&["edit", &id, "or ramen, if you prefer"]);
    let pizza = search(alice, &["roma"])[0]["id"].as_str().unwrap().to_owned();
    alice.ok(&["delete", &pizza]);
    bob.receive_json();
    assert!(search(bob, &["sushi"]).is_empty());
    assert_eq!(found(&search(bob, &["ramen"])), vec!["or ramen, if you prefer"]);
    assert!(search(bob, &["roma"]).is_empty(), "deleted for everyone");
    assert!(search(alice, &["roma"]).is_empty(), "on the sender's device too");

    // The index is inside the encrypted profile: no word of it on disk.
    drop(open_profile(bob));
    assert!(files_containing(&bob.profile, b"ramen").is_empty());
    assert!(files_containing(&bob.profile, b"pizzeria").is_empty());
}
