//! Groups, broadcast and presence through the real server and CLI.

mod common;

use common::*;
use sotto_client::{Connection, Session};
use sotto_proto::{ErrorCode, Request, ServerAddress};

fn groups_json(u: &User) -> Vec<serde_json::Value> {
    u.ok(&["groups", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn members(u: &User, conversation: &str) -> Vec<String> {
    let g = groups_json(u)
        .into_iter()
        .find(|g| g["conversation"] == conversation)
        .unwrap_or_else(|| panic!("{} has no {conversation}", u.name));
    g["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_group_of_five_with_one_member_offline_throughout() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol", "dave", "erin"]);
    let (alice, bob, carol, dave, erin) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    assert!(alice.ok(&["group", "create", "five", "@bob", "@carol", "@dave", "@erin"]).contains("#five"));
    alice.ok(&["send", "#five", "welcome, all"]);
    for (who, line) in [(bob, "bob here"), (carol, "carol here"), (dave, "dave here")] {
        let got = texts(&who.receive_json());
        assert!(got.contains(&("#five".into(), "alice".into(), "welcome, all".into())), "{}: {got:?}", who.name);
        who.ok(&["send", "#five", line]);
    }
    // Erin comes online only now and catches up from the log, in order.
    let got = texts(&erin.receive_json());
    let lines: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(lines, vec!["welcome, all", "bob here", "carol here", "dave here"]);
    assert!(got.iter().all(|(c, _, _)| c == "#five"));
    assert_eq!(members(erin, "#five"), vec!["alice", "bob", "carol", "dave", "erin"]);
    erin.ok(&["send", "#five", "erin, at last"]);
    assert_eq!(texts(&alice.receive_json()).last().unwrap().2, "erin, at last");
}

#[test]
fn two_members_adding_people_at_the_same_moment() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol", "dave"]);
    let (alice, bob, carol, dave) = (&u[0], &u[1], &u[2], &u[3]);
    alice.ok(&["group", "create", "team", "@bob"]);
    bob.receive_json();

    // Both sessions are open and up to date; both commit an add in the same
    // epoch. Alice's reaches the server first; Bob's is refused as stale,
    // and his client re-applies the add on the new epoch by itself.
    add_at_the_same_moment(alice, "carol", bob, "dave", "#team");
    let epochs = {
        let conn = rusqlite::Connection::open(server.data.join("relay.db")).unwrap();
        conn.query_row("SELECT epoch FROM groups", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert_eq!(epochs, 3, "create+add, carol, dave: three commits won, one lost and was redone");

    for who in [alice, bob, carol, dave] {
        who.receive_json();
        assert_eq!(members(who, "#team"), vec!["alice", "bob", "carol", "dave"], "{}", who.name);
    }
    carol.ok(&["send", "#team", "hi from carol"]);
    assert!(texts(&dave.receive_json()).contains(&("#team".into(), "carol".into(), "hi from carol".into())));
}

#[test]
fn removed_and_departed_members_get_nothing_after() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["group", "create", "club", "@bob", "@carol"]);
    bob.receive_json();
    carol.receive_json();
    let group_id = open_profile(alice).conversation_group("#club").unwrap().unwrap();

    alice.ok(&["group", "remove", "club", "@bob"]);
    alice.ok(&["send", "#club", "after bob left"]);
    let bob_sees = bob.receive_json();
    assert!(texts(&bob_sees).is_empty(), "{bob_sees:?}");
    assert!(
        bob_sees.iter().any(|m| m["kind"] == "system" && m["text"].as_str().unwrap().contains("removed")),
        "{bob_sees:?}"
    );
    assert!(bob.run(&["send", "#club", "let me in"]).status.code() != Some(0));

    // Bob keeps polling with his own credentials: the server refuses him.
    runtime().block_on(async {
        let m = open_profile(bob);
        let address = ServerAddress::parse(&m.server().unwrap()).unwrap();
        let mut conn = Connection::connect(&address).await.unwrap();
        let login = m.login_request(&conn.login_payload());
        conn.request(login).await.unwrap();
        let err =
            conn.request(Request::Fetch { group_id: group_id.clone(), after_seq: 0, limit: 100 }).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotMember));
    });
    let carol_sees = carol.receive_json();
    // Who did it shows (Alice, the admin, removed him).
    assert!(carol_sees.iter().any(|m| m["text"] == "@alice removed @bob"), "{carol_sees:?}");
    assert_eq!(members(carol, "#club"), vec!["alice", "carol"]);

    // Carol leaves: the server stops routing to her at once, and Alice's
    // client removes her from the MLS group.
    carol.ok(&["group", "leave", "club"]);
    alice.ok(&["send", "#club", "just me now"]);
    assert!(texts(&carol.receive_json()).is_empty());
    let g = groups_json(carol);
    assert_eq!(g[0]["active"], false);
    alice.receive_json();
    assert_eq!(members(alice, "#club"), vec!["alice"]);
}

#[test]
fn rename_reaches_everyone() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["group", "create", "team", "@bob"]);
    alice.ok(&["send", "#team", "before"]);
    bob.ok(&["group", "rename", "#team", "crew"]);
    bob.ok(&["send", "#crew", "after"]);
    let got = alice.receive_json();
    assert!(
        got.iter().any(|m| m["kind"] == "system" && m["text"].as_str().unwrap().contains("renamed the group to #crew")),
        "{got:?}"
    );
    assert_eq!(texts(&got), vec![("#crew".into(), "bob".into(), "after".into())]);
    assert_eq!(groups_json(alice)[0]["conversation"], "#crew");
    let hist = alice.ok(&["history", "#crew"]);
    assert!(hist.contains("before") && hist.contains("after"), "{hist}");
    let received = bob.receive_json();
    assert!(texts(&received).contains(&("#crew".into(), "alice".into(), "before".into())), "{received:?}");
}

#[test]
fn broadcast_to_three_contacts_and_presence() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol", "dave", "eve"]);
    let (alice, bob, carol, dave, eve) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    for peer in ["@bob", "@carol", "@dave"] {
        alice.ok(&["send", peer, "hello"]);
    }
    assert!(alice.ok(&["broadcast", "news for everyone"]).contains("sent to"));
    for who in [bob, carol, dave] {
        let got = texts(&who.receive_json());
        assert_eq!(got.last().unwrap(), &("@alice".into(), "alice".into(), "news for everyone".into()), "{}", who.name);
    }
    alice.ok(&["broadcast", "only two", "--to", "@bob,@carol"]);
    assert_eq!(texts(&bob.receive_json())[0].2, "only two");
    assert!(texts(&dave.receive_json()).is_empty());

    // Presence: Bob is connected (listening); Carol is not.
    let mut listening =
        bob.cmd().args(["receive", "--wait", "20"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let online = |who: &User| -> Vec<(String, Option<bool>)> {
        who.ok(&["contacts", "--json"])
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["handle"].as_str().unwrap().to_owned(), v["online"].as_bool())
            })
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = online(alice);
        if seen.contains(&("bob".into(), Some(true))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen.contains(&("bob".into(), Some(true))), "{seen:?}");
    assert!(seen.contains(&("carol".into(), Some(false))), "{seen:?}");
    // Eve shares no conversation with Bob: the server tells her nothing.
    runtime().block_on(async {
        let m = open_profile(eve);
        let mut s = Session::open(&m).await.unwrap();
        assert_eq!(s.presence(&["bob".into()]).await.unwrap(), Some(vec![]));
    });
    listening.kill().unwrap();
    listening.wait().unwrap();
}

#[test]
fn roles_the_creator_is_admin_members_cannot_remove_and_every_device_sees_who_did_what() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol", "dave"]);
    let (alice, bob, carol, dave) = (&u[0], &u[1], &u[2], &u[3]);
    alice.ok(&["group", "create", "crew", "@bob", "@carol"]);
    bob.receive_json();
    carol.receive_json();
    let groups: serde_json::Value =
        serde_json::from_str(bob.ok(&["groups", "--json"]).lines().next().unwrap()).unwrap();
    assert_eq!(groups["admins"], serde_json::json!(["alice"]), "{groups}");
    // A member may not remove anyone; nothing reaches the others.
    let out = bob.run(&["group", "remove", "crew", "@carol"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an admin of #crew"), "{out:?}");
    // Nor change roles: the server refuses it too.
    let out = bob.run(&["group", "role", "crew", "@bob", "admin"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin"), "{out:?}");
    // Members may add, until an admin says only admins may.
    bob.ok(&["group", "add", "crew", "@dave"]);
    dave.receive_json();
    alice.ok(&["group", "adding", "crew", "admins"]);
    bob.receive_json();
    // Alice makes Bob an admin; everyone, Alice included, sees who did it.
    alice.ok(&["group", "role", "crew", "@bob", "admin"]);
    let lines = |who: &User| -> Vec<String> {
        who.receive_json();
        who.ok(&["history", "#crew", "--json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|m| m["kind"] == "system")
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(lines(alice).contains(&"you made @bob an admin".to_owned()));
    assert!(lines(carol).contains(&"@alice made @bob an admin".to_owned()));
    assert!(lines(dave).contains(&"@alice let only admins add people".to_owned()), "{:?}", lines(dave));
    // Now Bob may remove Carol: the line names him everywhere.
    bob.ok(&["group", "remove", "crew", "@carol"]);
    assert!(lines(bob).contains(&"you removed @carol".to_owned()));
    assert!(lines(alice).contains(&"@bob removed @carol".to_owned()), "{:?}", lines(alice));
    assert!(lines(dave).contains(&"@bob removed @carol".to_owned()));
    // Dave, a member, may no longer add anyone.
    let out = dave.run(&["group", "add", "crew", "@carol"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an admin of #crew"), "{out:?}");
}
