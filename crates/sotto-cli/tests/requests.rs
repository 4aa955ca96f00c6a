//! Message requests: a conversation started by someone new is held apart
//! (nothing shows, nothing can be sent into it, the stranger does not see
//! whether the person is online) until the person accepts it; declining
//! deletes it; blocking hides presence without telling the blocked person.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn requests(u: &User) -> Vec<serde_json::Value> {
    u.ok(&["requests", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What `contacts --json` says of `handle`'s presence.
fn online(viewer: &User, handle: &str) -> Option<bool> {
    let out = viewer.ok(&["contacts", "--json"]);
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|c| c["handle"] == handle)
        .and_then(|c| c["online"].as_bool())
}

/// Keeps `u` connected (a long `receive --wait`) until dropped.
struct Online(Child);

impl Online {
    fn start(u: &User) -> Self {
        Self(u.cmd().args(["receive", "--wait", "60"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_strangers_conversation_is_a_request_until_accepted_and_shows_them_nothing_meanwhile() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with_requests(root.path(), &["alice", "bob", "mallory"]);
    let (alice, bob, mallory) = (&u[0], &u[1], &u[2]);

    // Alice and Bob are friends: Bob writes first, so Alice's answer and
    // later conversations show at once for him.
    bob.ok(&["send", "@alice", "hi alice"]);
    let out = alice.run(&["receive", "--json"]);
    assert!(out.status.success());
    assert!(texts(&parse(&out.stdout)).is_empty(), "bob is new to alice: a request");
    assert!(String::from_utf8_lossy(&out.stderr).contains("message request from @bob"));
    alice.ok(&["accept", "@bob"]);
    assert_eq!(texts(&alice.receive_json()), vec![("@bob".into(), "bob".into(), "hi alice".into())]);
    alice.ok(&["send", "@bob", "hi bob"]);
    assert_eq!(texts(&bob.receive_json()), vec![("@alice".into(), "alice".into(), "hi bob".into())]);

    // Mallory, whom Bob never wrote to, starts a conversation and a group.
    mallory.ok(&["send", "@bob", "buy now"]);
    mallory.ok(&["group", "create", "deals", "@bob"]);
    mallory.ok(&["send", "#deals", "great deals"]);
    let out = bob.run(&["receive", "--json"]);
    assert!(out.status.success());
    assert!(texts(&parse(&out.stdout)).is_empty(), "nothing of mallory's shows: {:?}", parse(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message request from @mallory (@mallory)"), "{err}");
    assert!(err.contains("sotto accept @mallory"), "{err}");
    let waiting = requests(bob);
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert_eq!(waiting[0]["conversation"], "@mallory");
    assert_eq!(waiting[0]["from"], "mallory");
    assert_eq!(waiting[0]["messages"], 1);
    assert_eq!(waiting[1]["from"], "mallory");
    assert!(!bob.ok(&["groups"]).contains("#deals"), "a request is not a conversation yet");
    let listed = bob.ok(&["contacts"]);
    assert!(
        listed.lines().any(|l| l.starts_with("@mallory") && l.contains("message request waiting: `sotto requests`")),
        "{listed}"
    );
    assert!(!listed.lines().any(|l| l.starts_with("@alice") && l.contains("request")), "{listed}");
    // The person can look before deciding.
    assert!(bob.ok(&["history", "@mallory"]).contains("buy now"));
    // Nothing goes into a request by mistake.
    let refused = bob.run(&["send", "@mallory", "who are you?"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("message request from @mallory") && why.contains("sotto accept @mallory"), "{why}");

    // While Bob is online, Alice (accepted) sees it and Mallory does not.
    {
        let _bob_online = Online::start(bob);
        wait_until("alice sees bob online", || online(alice, "bob") == Some(true));
        assert_eq!(online(mallory, "bob"), Some(false), "a stranger does not see bob's presence");
    }

    // Accepted: its messages show, Bob can answer, and Mallory sees him online.
    let out = bob.ok(&["accept", "@mallory"]);
    assert!(out.contains("accepted @mallory"), "{out}");
    assert_eq!(texts(&bob.receive_json()), vec![("@mallory".into(), "mallory".into(), "buy now".into())]);
    bob.ok(&["send", "@mallory", "no thanks"]);
    assert!(texts(&mallory.receive_json()).iter().any(|(_, _, t)| t == "no thanks"));
    {
        let _bob_online = Online::start(bob);
        wait_until("mallory sees bob online", || online(mallory, "bob") == Some(true));
    }

    // The group request is declined: gone, and nothing more of it arrives.
    let group = requests(bob)[0]["conversation"].as_str().unwrap().to_owned();
    let out = bob.ok(&["decline", &group]);
    assert!(out.contains("declined"), "{out}");
    assert!(requests(bob).is_empty());
    mallory.ok(&["send", "#deals", "last chance"]);
    let got = bob.receive_json();
    assert!(!texts(&got).iter().any(|(_, _, t)| t == "last chance" || t == "great deals"), "{got:?}");
    // Accepting or declining what is not a request says so.
    let e = String::from_utf8_lossy(&bob.run(&["accept", "@alice"]).stderr).to_string();
    assert!(e.contains("not a message request"), "{e}");
    let e = String::from_utf8_lossy(&bob.run(&["decline", "@nobody"]).stderr).to_string();
    assert!(e.contains("no message request @nobody"), "{e}");
}

#[test]
fn blocking_hides_your_presence_without_telling_the_blocked_person() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with_requests(root.path(), &["alice", "mallory"]);
    let (alice, mallory) = (&u[0], &u[1]);
    alice.ok(&["send", "@mallory", "hello"]);
    mallory.ok(&["accept", "@alice"]);
    mallory.receive_json();
    {
        let _alice_online = Online::start(alice);
        wait_until("mallory sees alice online", || online(mallory, "alice") == Some(true));
    }
    alice.ok(&["block", "@mallory"]);
    {
        let _alice_online = Online::start(alice);
        // Alice is connected (her own receive runs) but Mallory sees her
        // offline, and is told nothing: no "left", and her messages go out.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(online(mallory, "alice"), Some(false));
    }
    let out = mallory.run(&["send", "@alice", "are you there?"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = mallory.ok(&["receive", "--json"]);
    assert!(!got.contains("left"), "{got}");
    assert!(!mallory.ok(&["history", "@alice"]).contains("left"), "no departure shown");
    assert!(texts(&alice.receive_json()).is_empty(), "hidden from alice");
}

#[test]
fn auto_accept_shows_conversations_from_anyone_at_once() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with_requests(root.path(), &["bot", "carol"]);
    let (bot, carol) = (&u[0], &u[1]);
    assert!(bot.ok(&["requests", "--auto-accept", "on"]).contains("auto-accept is on"));
    carol.ok(&["send", "@bot", "help"]);
    assert_eq!(texts(&bot.receive_json()), vec![("@carol".into(), "carol".into(), "help".into())]);
    assert!(requests(bot).is_empty());
}

#[test]
fn a_request_accepted_on_one_device_is_accepted_on_the_others() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with_requests(root.path(), &["bob", "mallory", "eve"]);
    let (bob, mallory, eve) = (&u[0], &u[1], &u[2]);
    let laptop = User::new(root.path(), "bob-laptop");
    let (child, code, out) = start_link(&laptop, &server, "laptop");
    bob.ok(&["device", "add", &code, "--yes"]);
    finish_link(child, out);
    mallory.ok(&["send", "@bob", "hello both of you"]);
    assert!(texts(&bob.receive_json()).is_empty());
    assert!(texts(&laptop.receive_json()).is_empty(), "a request on the laptop too");
    assert_eq!(requests(&laptop).len(), 1);
    bob.ok(&["accept", "@mallory"]);
    // The laptop learns it from the phone (an MLS message from this
    // account), and shows what waited.
    assert_eq!(texts(&laptop.receive_json()), vec![("@mallory".into(), "mallory".into(), "hello both of you".into())]);
    assert!(requests(&laptop).is_empty());
    // Mallory is told nothing she could see: no new message for her.
    assert!(texts(&mallory.receive_json()).is_empty());

    // A request still waiting (from Eve, new to Bob) is not brought onto a
    // device linked later; once accepted, it is.
    eve.ok(&["group", "create", "offers", "@bob"]);
    eve.ok(&["send", "#offers", "special offer"]);
    bob.receive_json();
    let tablet = User::new(root.path(), "bob-tablet");
    let (child, code, out) = start_link(&tablet, &server, "tablet");
    bob.ok(&["device", "add", &code, "--yes"]);
    finish_link(child, out);
    assert!(texts(&tablet.receive_json()).is_empty());
    assert!(requests(&tablet).is_empty(), "the waiting request was not brought onto the new device");
    assert!(!tablet.ok(&["groups"]).contains("offers"));
    let group = requests(bob)[0]["conversation"].as_str().unwrap().to_owned();
    bob.ok(&["accept", &group]);
    eve.ok(&["send", "#offers", "now you see it"]);
    let got = texts(&tablet.receive_json());
    assert!(got.iter().any(|(_, _, t)| t == "now you see it"), "{got:?}");
}

fn parse(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
