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
