//! Several real `sotto-server` nodes on one PostgreSQL, with the real
//! `sotto` CLI: people on different nodes talk, files go up through one
//! node and down through another, every node restarts without losing a
//! message, a commit race between nodes is decided by the database, and a
//! ban on one node closes the connection on another.
//!
//! They need a PostgreSQL: `SOTTO_TEST_POSTGRES` (scripts/pg-cluster.sh
//! starts a throwaway one). Without it they skip and say so, unless
//! `SOTTO_REQUIRE_POSTGRES` is set (CI), where a skip would hide a gap.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A new, empty database in the test cluster, as a connection string.
fn database() -> Option<String> {
    let base = match std::env::var("SOTTO_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => url,
        _ if std::env::var_os("SOTTO_REQUIRE_POSTGRES").is_some() => {
            panic!("SOTTO_REQUIRE_POSTGRES is set but SOTTO_TEST_POSTGRES is not: start one with scripts/pg-cluster.sh")
        }
        _ => {
            eprintln!(
                "skipped: no PostgreSQL for the tests (set SOTTO_TEST_POSTGRES; scripts/pg-cluster.sh starts one)"
            );
            return None;
        }
    };
    let name = format!("sotto_nodes_{}", std::process::id() as u64 * 1000 + next());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("connect to the test PostgreSQL");
    admin.execute(&format!("DROP DATABASE IF EXISTS {name}"), &[]).unwrap();
    admin.execute(&format!("CREATE DATABASE {name}"), &[]).unwrap();
    Some(format!("{base} dbname={name}"))
}

fn next() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A deployment: nodes with their own data folders, one PostgreSQL and one
/// shared blob folder.
struct Deployment {
    store: String,
    blobs: PathBuf,
    root: PathBuf,
}

impl Deployment {
    fn new(root: &Path, store: String) -> Self {
        Self { store, blobs: root.join("shared-blobs"), root: root.to_owned() }
    }

    fn args(&self) -> Vec<String> {
        vec!["--store".into(), self.store.clone(), "--blobs".into(), self.blobs.to_str().unwrap().into()]
    }

    fn start(&self, n: usize, port: u16) -> Server {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_on(&self.root.join(format!("node{n}")), port, &args)
    }

    fn restart(&self, n: usize, node: Server) -> Server {
        let port = node.port;
        node.kill();
        self.start(n, port)
    }

    /// An operator command against the deployment's database.
    fn operator(&self, args: &[&str]) -> std::process::Output {
        Command::new(server_bin())
            .args(args)
            .args(["--store", &self.store, "--data", self.root.join("no-such-node").to_str().unwrap()])
            .output()
            .unwrap()
    }

    fn invite(&self) -> String {
        let out = self.operator(&["invite"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().strip_prefix("invite: ").unwrap().to_owned()
    }

    fn sql(&self, query: &str) -> i64 {
        let mut c = postgres::Client::connect(&self.store, postgres::NoTls).unwrap();
        c.query_one(query, &[]).unwrap().get(0)
    }
}

/// The pin part of a printed address (`sotto://HOST:PORT#sha256=PIN`).
fn pin(address: &str) -> &str {
    address.split_once('#').unwrap().1
}

#[test]
fn people_on_different_nodes_talk_in_pairs_and_groups_and_send_files_across() {
    let Some(store) = database() else { return };
    let root = tempfile::tempdir().unwrap();
    let d = Deployment::new(root.path(), store);
    let a = d.start(1, 0);
    let b = d.start(2, 0);
    let c = d.start(3, 0);
    // One deployment, one key: every node presents the same pin, made by
    // the first, with nothing copied by hand; only the first mints the
    // first invite.
    assert_eq!(pin(&a.address), pin(&b.address));
    assert_eq!(pin(&a.address), pin(&c.address));
    assert!(a.first_invite.is_some());
    assert!(b.first_invite.is_none() && c.first_invite.is_none());

    let (alice, bob, carol) =
        (User::new(root.path(), "alice"), User::new(root.path(), "bob"), User::new(root.path(), "carol"));
    alice.init(&a, &a.first_invite.clone().unwrap());
    bob.init(&b, &d.invite());
    carol.init(&c, &d.invite());

    alice.ok(&["send", "@bob", "hello from node one"]);
    assert_eq!(texts(&bob.receive_json()), vec![("@alice".into(), "alice".into(), "hello from node one".into())]);
    bob.ok(&["send", "@alice", "and back from node two"]);
    assert!(texts(&alice.receive_json()).contains(&("@bob".into(), "bob".into(), "and back from node two".into())));

    alice.ok(&["group", "create", "three", "@bob", "@carol"]);
    alice.ok(&["send", "#three", "one group, three nodes"]);
    for who in [&bob, &carol] {
        let got = texts(&who.receive_json());
        assert!(got.contains(&("#three".into(), "alice".into(), "one group, three nodes".into())), "{got:?}");
    }
    carol.ok(&["send", "#three", "carol on node three"]);
    assert!(texts(&alice.receive_json()).contains(&("#three".into(), "carol".into(), "carol on node three".into())));

    // A file up through node one, down through node three.
    let original = root.path().join("photo.bin");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&original, &bytes).unwrap();
    alice.ok(&["send", "#three", "--file", original.to_str().unwrap(), "the file"]);
    let batch = carol.receive_json();
    let file = batch.iter().find(|m| m["kind"] == "file").unwrap_or_else(|| panic!("no file in {batch:?}"));
    let id = file["file"]["id"].as_str().unwrap();
    let saved = carol.ok(&["download", id]);
    let saved = PathBuf::from(saved.trim().strip_prefix("saved: ").unwrap());
    assert_eq!(std::fs::read(saved).unwrap(), bytes);
}

#[test]
fn offline_delivery_survives_a_restart_of_every_node() {
    let Some(store) = database() else { return };
    let root = tempfile::tempdir().unwrap();
    let d = Deployment::new(root.path(), store);
    let (a, b) = (d.start(1, 0), d.start(2, 0));
    let (alice, bob) = (User::new(root.path(), "alice"), User::new(root.path(), "bob"));
    alice.init(&a, &a.first_invite.clone().unwrap());
    bob.init(&b, &d.invite());
    alice.ok(&["send", "@bob", "first"]);
    bob.receive_json();

    // Bob is offline; Alice writes through node one; then both nodes are
    // killed (SIGKILL: nothing flushed that was not already durable).
    for i in 0..20 {
        alice.ok(&["send", "@bob", &format!("while you were away {i}")]);
    }
    let (a, b) = (d.restart(1, a), d.restart(2, b));
    let got: Vec<String> = texts(&bob.receive_json()).into_iter().map(|t| t.2).collect();
    let want: Vec<String> = (0..20).map(|i| format!("while you were away {i}")).collect();
    assert_eq!(got, want, "every message, once, in order");
    bob.ok(&["send", "@alice", "back"]);
    assert!(texts(&alice.receive_json()).iter().any(|t| t.2 == "back"));
    drop((a, b));
}

#[test]
fn a_commit_race_between_nodes_is_decided_by_the_database() {
    let Some(store) = database() else { return };
    let root = tempfile::tempdir().unwrap();
    let d = Deployment::new(root.path(), store);
    let (a, b) = (d.start(1, 0), d.start(2, 0));
    let users: Vec<User> = ["alice", "bob", "carol", "dave"].iter().map(|n| User::new(root.path(), n)).collect();
    let (alice, bob, carol, dave) = (&users[0], &users[1], &users[2], &users[3]);
    alice.init(&a, &a.first_invite.clone().unwrap());
    bob.init(&b, &d.invite());
    carol.init(&a, &d.invite());
    dave.init(&b, &d.invite());
    alice.ok(&["group", "create", "team", "@bob"]);
    bob.receive_json();

    // Both are up to date and commit an add in the same epoch, Alice
    // through node one, Bob through node two. The database takes the first
    // and refuses the second as stale; Bob's client redoes it on the new
    // epoch by itself.
    add_at_the_same_moment(alice, "carol", bob, "dave", "#team");
    assert_eq!(d.sql("SELECT max(epoch) FROM groups"), 3, "create+add, carol, dave: three commits won, one was redone");
    for who in [alice, bob, carol, dave] {
        who.receive_json();
        let out = who.ok(&["groups", "--json"]);
        let g: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(g["members"], serde_json::json!(["alice", "bob", "carol", "dave"]), "{}", who.name);
    }
    carol.ok(&["send", "#team", "hi from carol on node one"]);
    assert!(texts(&dave.receive_json()).iter().any(|t| t.2 == "hi from carol on node one"));
}

#[test]
fn a_ban_on_one_node_closes_the_connection_on_another_and_sessions_see_every_node() {
    let Some(store) = database() else { return };
    let root = tempfile::tempdir().unwrap();
    let d = Deployment::new(root.path(), store);
    let (a, b) = (d.start(1, 0), d.start(2, 0));
    let (alice, mallory) = (User::new(root.path(), "alice"), User::new(root.path(), "mallory"));
    alice.init(&a, &a.first_invite.clone().unwrap());
    mallory.init(&b, &d.invite());
    alice.ok(&["send", "@mallory", "hello"]);
    mallory.receive_json();

    // Both stay connected, Alice to node one, Mallory to node two.
    let listen = |u: &User| {
        u.cmd()
            .args(["receive", "--json", "--wait", "120"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut alice_live = listen(&alice);
    let mut mallory_live = listen(&mallory);

    // Nodes publish their connections every few seconds; the operator sees
    // both, with the node each is on, from any machine with the database.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listing = loop {
        let out = d.operator(&["sessions"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        if text.contains("@alice/1") && text.contains("@mallory/1") {
            break text;
        }
        assert!(Instant::now() < deadline, "sessions never showed both: {text}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let node_of =
        |who: &str| listing.lines().find(|l| l.starts_with(who)).unwrap().rsplit_once("node ").unwrap().1.to_owned();
    assert_eq!(node_of("@alice/1"), format!("127.0.0.1:{}", a.port), "{listing}");
    assert_eq!(node_of("@mallory/1"), format!("127.0.0.1:{}", b.port), "{listing}");
    // Live across nodes: Mallory writes through node two; Alice's open
    // connection on node one gets it pushed (rung by node two after its
    // commit), not on her next sync.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let alice_out = alice_live.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(alice_out).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    mallory.ok(&["send", "@alice", "live across nodes"]);
    let sent = Instant::now();
    loop {
        let line = lines.recv_timeout(Duration::from_secs(10)).expect("the message reached Alice's live connection");
        if line.contains("live across nodes") {
            break;
        }
    }
    eprintln!("pushed across nodes {:?} after the sender's command returned", sent.elapsed());
    // Presence across nodes: Mallory, connected to node two, shows online
    // to Alice asking through node one.
    let contacts = alice.ok(&["contacts", "--json"]);
    let mallory_row: serde_json::Value = contacts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["handle"] == "mallory")
        .unwrap_or_else(|| panic!("{contacts}"));
    assert_eq!(mallory_row["online"], serde_json::json!(true), "{contacts}");
    let stats = String::from_utf8(d.operator(&["stats"]).stdout).unwrap();
    assert!(stats.contains("connected devices: 2") && stats.contains("nodes running: 2"), "{stats}");

    // Banned through the database (as from node one's machine): node two
    // closes Mallory's connection at once.
    let started = Instant::now();
    let out = d.operator(&["ban", "mallory"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = loop {
        if let Some(s) = mallory_live.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "node two did not close the banned connection");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    mallory_live.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.to_lowercase().contains("banned") || err.to_lowercase().contains("suspended"), "{err}");
    assert!(mallory.run(&["receive"]).status.code() != Some(0), "a banned account cannot log in on any node");
    // Alice, on the other node, is untouched.
    assert!(alice_live.try_wait().unwrap().is_none(), "the ban closed someone else's connection");
    let _ = alice_live.kill();
    let _ = alice_live.wait();
    drop((a, b));
}
