//! `sotto unlock`: the passphrase once, then commands do not ask until the
//! time is up or `sotto lock`; the key is held in memory behind a socket
//! only its owner can open, never written to disk.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn unlock_once_then_commands_open_without_asking_until_lock() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let alice = &u[0];
    alice.ok(&["send", "@bob", "before unlocking"]);
    let socket = root.path().join("agent").join("agent.sock");
    let without_passphrase = |args: &[&str]| {
        alice.cmd().env_remove("SOTTO_PASSPHRASE").env("SOTTO_AGENT_SOCKET", &socket).args(args).output().unwrap()
    };
    // Locked: a command without a passphrase (and no terminal) cannot open.
    let out = without_passphrase(&["history", "@bob"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a passphrase is needed"));

    // Unlock once (a script passes the passphrase in the environment).
    let out = alice.cmd().env("SOTTO_AGENT_SOCKET", &socket).args(["unlock", "--for", "10m"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unlocked"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600, "only its owner");
    assert_eq!(std::fs::metadata(socket.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);

    let out = without_passphrase(&["history", "@bob"]);
    assert!(out.status.success(), "opens from the agent: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("before unlocking"));
    let out = without_passphrase(&["send", "@bob", "while unlocked"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // No key on disk: nothing under the profile or the agent's folder holds it.
    let key = sotto_core::db::derive_key(
        &alice.profile,
        &sotto_core::ProfileKey::Passphrase(zeroize::Zeroizing::new(PASSPHRASE.to_owned())),
    )
    .unwrap();
    let hex_key = hex::encode(key.as_ref());
    for dir in [alice.profile.as_path(), root.path()] {
        assert!(files_containing(dir, hex_key.as_bytes()).is_empty(), "the key is in no file");
        assert!(files_containing(dir, key.as_ref()).is_empty(), "the key is in no file");
    }

    // Lock: commands ask again, and the agent is gone.
    let out = alice.cmd().env("SOTTO_AGENT_SOCKET", &socket).arg("lock").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("locked"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = without_passphrase(&["history", "@bob"]);
    assert!(!out.status.success(), "locked again");
    let deadline = Instant::now() + Duration::from_secs(5);
    while socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!socket.exists(), "the agent exited and removed its socket");
}

#[test]
fn an_unlocked_key_expires_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice"]);
    let alice = &u[0];
    let socket = root.path().join("agent.sock");
    let out = alice.cmd().env("SOTTO_AGENT_SOCKET", &socket).args(["unlock", "--for", "1s"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(2500));
    let out = alice
        .cmd()
        .env_remove("SOTTO_PASSPHRASE")
        .env("SOTTO_AGENT_SOCKET", &socket)
        .args(["contacts"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "expired");
    // The agent wakes at the expiry and leaves; on a loaded machine that
    // may take a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!socket.exists(), "and the agent left");
}
