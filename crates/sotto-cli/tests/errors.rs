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

/// Runs `sotto` on `u`'s profile as a user who may not write it: the owner
/// after taking write permission away, or (tests run as root in CI, and
/// root writes anything) the `nobody` user through `setpriv`.
fn run_without_write_permission(u: &User, root: &std::path::Path, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let set =
        |p: &std::path::Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    let is_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0\n");
    let home = root.join("home-readonly");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = if is_root {
        let nobody = |p: &std::path::Path| {
            assert!(std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(p).status().unwrap().success())
        };
        nobody(&u.profile);
        nobody(&home);
        set(root, 0o755);
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_sotto"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_sotto"))
    };
    for f in files_under(&u.profile) {
        set(&f, 0o400);
    }
    set(&u.profile, 0o500);
    cmd.arg("--profile")
        .arg(&u.profile)
        .args(args)
        .env("SOTTO_PASSPHRASE", PASSPHRASE)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", &home)
        .env("XDG_RUNTIME_DIR", &home)
        .stdin(std::process::Stdio::null());
    let out = cmd.output().unwrap();
    // Give it back as it was, so the profile can be checked afterwards.
    set(&u.profile, 0o700);
    for f in files_under(&u.profile) {
        set(&f, 0o600);
    }
    if is_root {
        assert!(std::process::Command::new("chown").args(["-R", "0:0"]).arg(&u.profile).status().unwrap().success());
    }
    out
}

#[test]
fn a_read_only_profile_folder_says_where_and_what_to_check_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    bob.ok(&["send", "@alice", "kept safe"]);
    alice.receive_json();
    bob.ok(&["send", "@alice", "still on the server"]);
    for args in [&["receive"][..], &["send", "@bob", "hi"][..], &["history", "@bob"][..]] {
        let out = run_without_write_permission(alice, root.path(), args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.contains(&format!("cannot open or write the profile in {}", alice.profile.display()))
                && e.contains("permissions"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("unable to open database file") && !e.contains("readonly database"), "{e}");
    }
    // Nothing was lost: with the permissions back, both messages are there.
    let got = texts(&alice.receive_json());
    assert_eq!(got, vec![("@bob".into(), "bob".into(), "still on the server".into())]);
    assert!(alice.ok(&["history", "@bob"]).contains("kept safe"));
}
