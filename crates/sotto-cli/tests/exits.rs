//! Every command ends with a documented exit code and a sentence, never a
//! panic: 0 done, 1 error, 2 usage, 3 queued (will be sent by itself), 4
//! server unreachable (nothing kept). See README.md.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited, not killed by a signal")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_message_sent_while_the_server_is_down_is_queued_with_exit_code_3_and_delivered_once_later() {
    let root = tempfile::tempdir().unwrap();
    let (server, users) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&users[0], &users[1]);
    alice.ok(&["send", "@bob", "before"]);
    bob.ok(&["receive"]);
    let server = {
        let (data, port) = (server.data.clone(), server.port);
        server.kill();
        (data, port)
    };
    let out = alice.run(&["send", "@bob", "while the server was down"]);
    assert_eq!(code(&out), 3, "queued, not failed: {}", stderr(&out));
    let e = stderr(&out);
    assert!(e.starts_with("queued: ") && e.contains("do not send it again"), "{e}");
    assert!(!e.contains("failed"), "a queued message is never called failed: {e}");
    let history = alice.ok(&["history", "@bob"]);
    assert!(history.contains("while the server was down (not yet sent)"), "shown as pending: {history}");
    // A new person cannot be reached offline: that is an error (exit 4),
    // nothing is kept.
    let out = alice.run(&["send", "@carol", "hi"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));

    let _server = Server::start_on(&server.0, server.1, &[]);
    // Any later command of Alice's sends the outbox first.
    alice.ok(&["receive"]);
    let got: Vec<_> = texts(&bob.receive_json()).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(got, vec!["while the server was down".to_owned()], "delivered exactly once");
    assert!(!alice.ok(&["history", "@bob"]).contains("not yet sent"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_exit_code_0() {
    let root = tempfile::tempdir().unwrap();
    let (_server, users) = server_with(root.path(), &["alice", "bob"]);
    users[0].ok(&["send", "@bob", "hi"]);
    // `sotto verify @bob | head -1`, with head already gone.
    let mut child =
        users[0].cmd().args(["verify", "@bob"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn chat_without_a_terminal_says_what_to_use_instead() {
    let root = tempfile::tempdir().unwrap();
    let (_server, users) = server_with(root.path(), &["alice"]);
    let out = users[0].run(&["chat"]);
    assert_eq!(code(&out), 1);
    let e = stderr(&out);
    assert!(e.contains("needs a terminal") && e.contains("sotto receive"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn a_group_name_the_shell_took_for_a_comment_gets_a_hint_and_exit_code_2() {
    let root = tempfile::tempdir().unwrap();
    let alice = User::new(root.path(), "alice");
    // `sotto send #crew hello` reaches sotto as `sotto send`.
    let out = alice.run(&["send"]);
    assert_eq!(code(&out), 2);
    let e = stderr(&out);
    assert!(e.contains("quotes ('#crew')"), "{e}");
}

#[test]
fn an_address_without_its_pin_says_how_to_quote_it() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(&root.path().join("server"));
    let unpinned = server.address.split('#').next().unwrap().to_owned();
    let mallory = User::new(root.path(), "mallory");
    let out = mallory.run(&["init", "--server", &unpinned, "--name", "mallory", "--invite", "x"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("no #sha256= pin") && e.contains("single quotes"), "{e}");
    assert!(!e.contains("UnknownIssuer"), "no library error names: {e}");
}

/// A small tmpfs mounted for one test (a real file system that fills up),
/// unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test fills a real (small tmpfs) disk under the server and needs to mount one: run the tests as root, as CI does ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self(at.to_owned())
    }

    /// Writes a filler file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_message_sent_while_the_servers_disk_is_full_is_queued_with_exit_code_3_and_delivered_once_later() {
    let root = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&root.path().join("small"), "16m");
    let data = root.path().join("small").join("server");
    let server = Server::start(&data);
    let (alice, bob) = (User::new(root.path(), "alice"), User::new(root.path(), "bob"));
    alice.init(&server, server.first_invite.as_deref().unwrap());
    bob.init(&server, &server.invite());
    alice.ok(&["send", "@bob", "before"]);
    bob.ok(&["receive"]);

    let filler = disk.fill();
    let out = alice.run(&["send", "@bob", "while the disk was full"]);
    let e = stderr(&out);
    assert_eq!(code(&out), 3, "queued, not failed: {e}");
    assert!(e.starts_with("queued: ") && e.contains("do not send it again"), "{e}");
    assert!(!e.contains("failed") && !e.contains("try again"), "a queued message is never called failed: {e}");
    assert!(alice.ok(&["history", "@bob"]).contains("while the disk was full (not yet sent)"));
    // The server keeps serving: what is stored already still reads.
    let read = bob.run(&["receive"]);
    assert!(read.status.success(), "{}", stderr(&read));

    std::fs::remove_file(filler).unwrap();
    alice.ok(&["receive"]);
    let got: Vec<_> = texts(&bob.receive_json()).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(got, vec!["while the disk was full".to_owned()], "delivered exactly once");
    drop(server);
}
