//! Running a server for real: operator commands against the running binary,
//! configuration, metrics, limits, graceful shutdown and idle behaviour.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use sotto_proto::{ErrorCode, Request, Response, ServerAddress};
use sotto_server::relay::RelayConfig;
use sotto_server::server::ListenConfig;

const BIN: &str = env!("CARGO_BIN_EXE_sotto-server");

struct Running {
    child: Child,
    address: ServerAddress,
    invite: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(["--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut invite = None;
    let address = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(c) = line.strip_prefix("invite: ") {
            invite = Some(c.to_owned());
        }
        if let Some(a) = line.strip_prefix("address: ") {
            break ServerAddress::parse(a).unwrap();
        }
    };
    Running { child, address, invite }
}

fn op(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).args(["--data", data.to_str().unwrap()]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn connect(address: &ServerAddress) -> sotto_client::Connection {
    sotto_client::Connection::connect(address).await.unwrap()
}

#[tokio::test]
async fn operator_commands_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let alice = Account::new("alice");
    let mut a = connect(&server.address).await;
    alice.register(&mut a, server.invite.clone()).await.unwrap();

    // Invites: mint with uses and expiry, list (ids, never codes), revoke.
    let (ok, out, _) = op(&data, &["invite", "--uses", "3", "--expires", "7d"]);
    assert!(ok);
    let code = out.trim().strip_prefix("invite: ").unwrap().to_owned();
    let (_, list, _) = op(&data, &["invite", "--list"]);
    assert!(list.contains("uses left 3") && !list.contains(&code), "{list}");
    let (ok, _, _) = op(&data, &["invite", "--revoke", &code]);
    assert!(ok);
    let mut b = connect(&server.address).await;
    assert_eq!(code_of(&Account::new("bob").register(&mut b, Some(code)).await.unwrap_err()), ErrorCode::InviteInvalid);

    // Users and sessions.
    let (_, users, _) = op(&data, &["users"]);
    assert!(users.contains("@alice\tdevices 1"), "{users}");
    let (_, show, _) = op(&data, &["users", "show", "alice"]);
    assert!(show.contains("device 1: key"), "{show}");
    let (ok, sessions, err) = op(&data, &["sessions"]);
    assert!(ok, "{err}");
    assert!(sessions.contains("@alice/1\t127.0.0.1:"), "{sessions}");
    let (_, stats, _) = op(&data, &["stats"]);
    assert!(stats.contains("accounts: 1") && stats.contains("connected devices: 1"), "{stats}");

    // Ban: the live connection closes at once, login is refused; unban.
    let (ok, out, _) = op(&data, &["ban", "alice"]);
    assert!(ok && out.contains("1 live connection(s) closed"), "{out}");
    let err = tokio::time::timeout(Duration::from_secs(5), a.read_any()).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Banned), "{err}");
    let mut again = connect(&server.address).await;
    assert_eq!(code_of(&alice.login(&mut again).await.unwrap_err()), ErrorCode::Banned);
    op(&data, &["unban", "alice"]);
    let mut again = connect(&server.address).await;
    alice.login(&mut again).await.unwrap();

    // Remove: the handle is free again.
    let (ok, _, _) = op(&data, &["users", "remove", "alice"]);
    assert!(ok);
    let (_, users, _) = op(&data, &["users"]);
    assert!(!users.contains("@alice"));
}

fn code_of(e: &sotto_client::ClientError) -> ErrorCode {
    e.code().unwrap_or_else(|| panic!("{e}"))
}

#[tokio::test]
async fn config_files_are_checked_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"here\"\nretension = \"7d\"\n").unwrap();
    let out = Command::new(BIN).args(["config", "check", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retension"), "{err}");
    let bad2 = dir.path().join("bad2.toml");
    std::fs::write(&bad2, "listen = \"here\"\nretention = \"later\"\n").unwrap();
    let err = String::from_utf8_lossy(
        &Command::new(BIN).args(["config", "check", bad2.to_str().unwrap()]).output().unwrap().stderr,
    )
    .into_owned();
    assert!(
        err.contains("listen = \"here\"") && err.contains("retention = \"later\"") && err.contains("2 mistake"),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &good,
        format!("data = {:?}\nopen_registration = true\npresence = false\nmetrics_listen = \"127.0.0.1:0\"\n", data),
    )
    .unwrap();
    assert!(Command::new(BIN).args(["config", "check", good.to_str().unwrap()]).output().unwrap().status.success());
    // The file's settings apply; a flag overrides the file.
    let mut child = Command::new(BIN)
        .args(["--config", good.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    assert!(first.starts_with("address: "), "open registration: no invite line: {first}");
    assert!(data.join("relay.db").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn metrics_are_served_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server =
        start(&dir.path().join("data"), &["--open-registration", "--metrics-listen", &format!("127.0.0.1:{port}")]);
    let alice = Account::new("alice");
    let mut a = connect(&server.address).await;
    alice.register(&mut a, None).await.unwrap();
    let _ = a.request(Request::ClaimKeyPackages { handle: "nobody".into(), devices: None, suites: vec![] }).await;
    // One append, to be timed through every stage of the store.
    let mut group = vec![0u8; 16];
    group[0] = 2;
    a.request(Request::CreateGroup { group_id: group.clone(), roles: false }).await.unwrap();
    let sent = Request::Send { group_id: group, epoch: 0, client_id: vec![7], payload: vec![1; 32] };
    a.request(sent).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("sotto_devices_authenticated 1"), "{text}");
    assert!(text.contains("sotto_accounts 1"));
    assert!(text.contains("sotto_rejected_total{code=\"unknown_handle\"} 1"), "{text}");
    assert!(text.contains("# TYPE sotto_messages_in_total counter"));
    // The store's stages: one append queued, committed, synced, answered.
    assert!(text.contains("# TYPE sotto_store_stage_seconds histogram"), "{text}");
    for stage in ["queue", "commit", "sync_wait", "sync", "durable"] {
        let count = format!("sotto_store_stage_seconds_count{{stage=\"{stage}\"}} ");
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&count))
            .unwrap_or_else(|| panic!("no {stage} count in {text}"))
            .parse()
            .unwrap();
        assert!(n >= 1, "{stage} timed: {text}");
        let inf = format!("sotto_store_stage_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {n}");
        assert!(text.contains(&inf), "every observation is under +Inf: {text}");
    }
    assert!(text.contains("sotto_store_stage_seconds_count{stage=\"durable\"} 1\n"), "one append: {text}");
}

#[tokio::test]
async fn connection_rate_and_group_limits() {
    let dir = tempfile::tempdir().unwrap();
    // Per-address connection cap.
    let listen = ListenConfig { max_connections_per_ip: 5, ..Default::default() };
    let config = RelayConfig { request_rate: 5, request_burst: 10, max_groups_per_device: 2, ..open() };
    let server = TestServer::start_with(dir.path(), config, listen).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tokio::net::TcpStream::connect(server.address.authority()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = sotto_client::Connection::connect(&server.address).await;
    assert!(refused.is_err(), "a sixth connection from one address is closed");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Group creation cap.
    let alice = Account::new("alice");
    let mut a = alice.online(&server).await;
    for n in 0..2u8 {
        a.request(Request::CreateGroup { group_id: vec![n + 1; 16], roles: false }).await.unwrap();
    }
    let err = a.request(Request::CreateGroup { group_id: vec![9; 16], roles: false }).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded));

    // Request rate: a burst of 10 passes, then rate_limited; others unaffected.
    let mut limited = 0;
    for _ in 0..30 {
        if let Err(e) = a.request(Request::LookupUser { handle: "alice".into() }).await {
            assert_eq!(e.code(), Some(ErrorCode::RateLimited));
            limited += 1;
        }
    }
    assert!(limited >= 10, "{limited}");
    let mut b = Account::new("bob").online(&server).await;
    assert!(matches!(b.request(Request::LookupUser { handle: "alice".into() }).await.unwrap(), Response::User(_)));
}

#[tokio::test]
async fn a_connection_sending_large_messages_is_held_to_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    // 256 KiB at once, then 256 KiB/s: 32 KiB messages pass eight at a time.
    let config = RelayConfig { byte_rate: 256 * 1024, byte_burst: 256 * 1024, ..open() };
    let server = TestServer::start_with(dir.path(), config, ListenConfig::default()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    let mut b = bob.online(&server).await;
    let group = vec![2u8; 16];
    group_with(&mut a, &group, &[&bob]).await;
    let send = |i: u32| Request::Send {
        group_id: group.clone(),
        epoch: 1,
        client_id: i.to_le_bytes().to_vec(),
        payload: vec![7; 32 * 1024],
    };
    let (mut stored, mut limited) = (0, 0);
    for i in 0..20 {
        match a.request(send(i)).await {
            Ok(Response::Appended { .. }) => stored += 1,
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((6..=9).contains(&stored), "the burst lets about eight through, {stored} were stored");
    assert_eq!(stored + limited, 20);
    // Small requests still fit; the budget refills with time.
    assert!(matches!(a.request(Request::LookupUser { handle: "bob".into() }).await.unwrap(), Response::User(_)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(a.request(send(100)).await.unwrap(), Response::Appended { .. }));
    // Another connection has its own budget.
    let big = Request::LookupUser { handle: "a".repeat(200_000) };
    let r = b.request(big).await;
    assert!(!matches!(&r, Err(e) if e.code() == Some(ErrorCode::RateLimited)), "bob's budget is his own: {r:?}");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // utime, stime are the 12th and 13th numeric fields after the state.
    f[10] + f[11]
}

#[tokio::test]
async fn idle_with_stdin_closed_uses_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &["--open-registration"]);
    let mut a = connect(&server.address).await;
    Account::new("alice").register(&mut a, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(server.child.id());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(server.child.id()) - before;
    assert!(used <= 3, "{used} ticks (1/100 s) of CPU in 3 s of idling");
}

#[tokio::test]
async fn graceful_shutdown_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, &["--open-registration"]);
    let alice = Account::new("alice");
    let bob = Account::new("bob");
    let mut a = connect(&server.address).await;
    alice.register(&mut a, None).await.unwrap();
    let mut b = connect(&server.address).await;
    bob.register(&mut b, None).await.unwrap();
    let g = vec![2u8; 16];
    group_with(&mut a, &g, &[&bob]).await;

    // Alice sends as fast as she can; SIGTERM lands in the middle.
    let pid = server.child.id();
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0u32.. {
            let req = Request::Send {
                group_id: vec![2u8; 16],
                epoch: 1,
                client_id: i.to_le_bytes().to_vec(),
                payload: vec![7; 512],
            };
            match a.request(req).await {
                Ok(Response::Appended { seq, .. }) => acked.push(seq),
                _ => break,
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "shutdown is bounded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
    let acked = sender.await.unwrap();
    assert!(acked.len() > 10, "load was running: {}", acked.len());
    drop(server);

    // Every acknowledged message is there after a restart.
    let server = start(&data, &["--open-registration"]);
    let mut b = connect(&server.address).await;
    bob.login(&mut b).await.unwrap();
    let mut got = Vec::new();
    let mut after = 0;
    loop {
        let Response::Messages { messages } =
            b.request(Request::Fetch { group_id: g.clone(), after_seq: after, limit: 500 }).await.unwrap()
        else {
            panic!()
        };
        let Some(last) = messages.last().map(|m| m.seq) else { break };
        got.extend(messages.iter().map(|m| m.seq));
        after = last;
    }
    for seq in &acked {
        assert!(got.contains(seq), "acknowledged message {seq} lost");
    }
}

#[tokio::test]
async fn the_total_connection_cap_makes_newcomers_wait_not_crash() {
    let dir = tempfile::tempdir().unwrap();
    let listen = ListenConfig { max_connections: 3, ..Default::default() };
    let server = TestServer::start_with(dir.path(), open(), listen).await;
    let mut held = Vec::new();
    for i in 0..3 {
        let mut c = sotto_client::Connection::connect(&server.address).await.unwrap();
        Account::new(&format!("u{i}")).register(&mut c, None).await.unwrap();
        held.push(c);
    }
    // A fourth is not served while three are open...
    let waiting =
        tokio::time::timeout(Duration::from_millis(800), sotto_client::Connection::connect(&server.address)).await;
    assert!(waiting.is_err() || waiting.unwrap().is_err(), "the fourth connection waits");
    // ...and is as soon as one leaves.
    held.pop().unwrap().close().await;
    let fourth = tokio::time::timeout(Duration::from_secs(8), async {
        let mut c = sotto_client::Connection::connect(&server.address).await.unwrap();
        Account::new("late").register(&mut c, None).await.unwrap();
    })
    .await;
    assert!(fourth.is_ok(), "served once a slot is free");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_folder_refuses_and_leaves_the_first_ones_socket() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start(&data, &[]);
    let out = Command::new(BIN)
        .args(["--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second server must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another sotto-server is running on"), "{err}");
    assert!(err.contains(&first.child.id().to_string()), "names the process: {err}");
    // The first one's operator socket still answers.
    let (ok, out, err) = op(&data, &["sessions"]);
    assert!(ok, "operator commands still reach the first server: {out}{err}");
    let (ok, stats, _) = op(&data, &["stats"]);
    assert!(ok && stats.contains("connected devices"), "{stats}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_and_database_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let alice = Account::new("alice");
    let mut a = connect(&server.address).await;
    alice.register(&mut a, server.invite.clone()).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_eq!(mode(&data.join("blobs")), 0o700, "the file store");
    for name in ["relay.db", "relay.db-wal", "relay.db-shm"] {
        let p = data.join(name);
        if p.exists() {
            assert_eq!(mode(&p) & 0o077, 0, "{name} is not readable by others");
        }
    }
}
