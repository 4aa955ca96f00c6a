//! The server's logs never carry a message's words or an invite code, even
//! at debug level.

mod common;

use common::*;

#[test]
fn logs_hold_no_plaintext_and_no_invite_codes() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    std::env::set_var("SOTTO_TEST_SERVER_LOG", "debug");
    let server = Server::start_on(&data, 0, &["--log-files", "--log-format", "json"]);
    let (alice, bob) = (User::new(root.path(), "alice"), User::new(root.path(), "bob"));
    let first = server.first_invite.clone().unwrap();
    alice.init(&server, &first);
    let second = server.invite();
    bob.init(&server, &second);
    let secret = "meet me by the old lighthouse";
    alice.ok(&["send", "@bob", secret]);
    assert_eq!(bob.receive_json()[0]["text"], secret);
    drop(server);

    let logs: Vec<_> = files_under(&data.join("logs"));
    assert!(!logs.is_empty(), "log files were written");
    let all: String = logs.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(all.contains("sotto-server ready"), "the logs are real: {all}");
    for needle in [secret, "lighthouse", &first, &second] {
        assert!(!all.contains(needle), "{needle:?} appears in the logs");
    }
}
