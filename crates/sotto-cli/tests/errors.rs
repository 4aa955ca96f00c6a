//! The errors a person can meet say what happened and what to do.

mod common;

use common::*;

fn stderr_of(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure, got success: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn person_facing_errors_are_clear() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    let server = Server::start(&data);
    let alice = User::new(root.path(), "alice");

    // Not registered: no profile at all.
    let e = stderr_of(&alice.run(&["send", "@bob", "hi"]));
    assert!(e.contains("no profile") && e.contains("sotto init"), "{e}");

    // A bad invite leaves nothing behind, so init can simply be re-run.
    let e = stderr_of(&alice.run(&["init", "--server", &server.address, "--name", "alice", "--invite", "nope"]));
    assert!(e.contains("invite"), "{e}");
    assert!(!sotto_core::db::exists(&alice.profile));
    alice.init(&server, server.first_invite.as_deref().unwrap());

    // Unknown handle.
    let e = stderr_of(&alice.run(&["send", "@nobody", "hi"]));
    assert!(e.contains("no @nobody on this server"), "{e}");
    // Not a handle at all.
    let e = stderr_of(&alice.run(&["send", "bob", "hi"]));
    assert!(e.contains("@handle"), "{e}");

    // Wrong passphrase.
    let out = alice.cmd().env("SOTTO_PASSPHRASE", "not it").args(["contacts"]).output().unwrap();
    let e = stderr_of(&out);
    assert!(e.contains("wrong passphrase"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "one line, no SQLCipher log lines: {e}");
    // No passphrase and no terminal to ask on.
    let out = alice.cmd().env_remove("SOTTO_PASSPHRASE").args(["contacts"]).output().unwrap();
    let e = stderr_of(&out);
    assert!(e.contains("SOTTO_PASSPHRASE"), "{e}");

    // Pin mismatch: a profile pointed at the right port with a wrong pin.
    let bad_pin = server.address.replace(&server.address[server.address.len() - 8..], "AAAAAAAA");
    let mallory = User::new(root.path(), "mallory");
    let e = stderr_of(&mallory.run(&["init", "--server", &bad_pin, "--name", "mallory", "--invite", "x"]));
    assert!(e.contains("does not match the pinned key"), "{e}");

    // Server unreachable.
    server.kill();
    let e = stderr_of(&alice.run(&["send", "@bob", "hi"]));
    assert!(e.contains("cannot reach the server"), "{e}");
}

#[test]
fn no_passphrase_profiles_work_and_say_they_are_weaker() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(&root.path().join("server"));
    let dave = User::new(root.path(), "dave");
    let out = dave
        .cmd()
        .env_remove("SOTTO_PASSPHRASE")
        .args([
            "init",
            "--server",
            &server.address,
            "--name",
            "dave",
            "--invite",
            server.first_invite.as_deref().unwrap(),
            "--no-passphrase",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weaker"));
    let out = dave.cmd().env_remove("SOTTO_PASSPHRASE").args(["contacts"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_failed_backup_restore_leaves_no_profile_folder_behind() {
    let root = tempfile::tempdir().unwrap();
    let bogus = root.path().join("not-a-backup.sotto");
    std::fs::write(&bogus, b"this is not a backup at all").unwrap();
    let bob = User::new(root.path(), "bob");
    let out = bob
        .cmd()
        .env("SOTTO_BACKUP_PASSPHRASE", "x")
        .env("SOTTO_NEW_PASSPHRASE", "y")
        .args(["backup", "restore", bogus.to_str().unwrap()])
        .output()
        .unwrap();
    let e = stderr_of(&out);
    assert!(!e.contains("panicked"), "{e}");
    assert!(!bob.profile.exists(), "no empty or half-made folder is left: {e}");
}
