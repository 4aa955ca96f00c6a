//! The real `sotto chat` in tmux against a real server: one person in the
//! terminal UI, one on the command line, exchanging messages and files.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn start(cmd: &str, cols: u16, rows: u16) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let socket = format!("sotto-test-{}-{n}", std::process::id());
        let session = "chat".to_owned();
        // CI installs tmux and must not skip; elsewhere say what is missing.
        if Command::new("tmux").arg("-V").output().is_err() {
            panic!("the terminal UI tests drive the real program in tmux, which is not installed (Debian: apt-get install tmux)");
        }
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
                cmd,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux starts");
        Self { socket, session }
    }

    fn keys(&self, keys: &[&str]) {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "send-keys", "-t", &self.session]);
        c.args(keys);
        assert!(c.status().unwrap().success());
    }

    /// Types text literally (no key-name interpretation), then Enter.
    fn line(&self, text: &str) {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "send-keys", "-t", &self.session, "-l", text]);
        assert!(c.status().unwrap().success());
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what:?} never appeared on screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn chat_command(u: &User) -> String {
    format!(
        "env SOTTO_PASSPHRASE='{PASSPHRASE}' {} --profile {} chat",
        env!("CARGO_BIN_EXE_sotto"),
        u.profile.display()
    )
}

fn write_file(path: &Path, size: usize) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn two_people_talk_and_swap_files_through_the_tui_and_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "hello from the command line"]);

    let tui = Tmux::start(&chat_command(bob), 80, 24);
    let s = tui.wait_for("hello from the command line");
    assert!(s.contains("@alice"), "{s}");
    tui.wait_for("online");

    // Live: a message arrives while bob looks.
    alice.ok(&["send", "@bob", "are you there?"]);
    tui.wait_for("are you there?");

    // Bob answers from the TUI.
    tui.line("yes, typing in the terminal UI");
    tui.wait_for("yes, typing in the terminal UI ✓");
    let got = texts(&alice.receive_json());
    assert!(got.contains(&("@bob".into(), "bob".into(), "yes, typing in the terminal UI".into())), "{got:?}");

    // Bob sends a file with /send.
    let from_bob = root.path().join("from-bob.bin");
    write_file(&from_bob, 300_000);
    tui.line(&format!("/send @alice {}", from_bob.display()));
    tui.wait_for("sent from-bob.bin to @alice");
    let batch = alice.receive_json();
    let file = batch.iter().find(|m| m["kind"] == "file").unwrap_or_else(|| panic!("{batch:?}"));
    let id = file["file"]["id"].as_str().unwrap().to_owned();
    let out = root.path().join("alice-got.bin");
    alice.ok(&["download", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&from_bob).unwrap());

    // Alice sends a file; bob downloads it with /download.
    let from_alice = root.path().join("photo.png");
    write_file(&from_alice, 200_000);
    alice.ok(&["send", "@bob", "--file", from_alice.to_str().unwrap()]);
    tui.wait_for("[file photo.png");
    // The id bob's screen shows is the message id, the same on both sides.
    let id = alice
        .ok(&["history", "@bob", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["file"]["name"] == "photo.png")
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(tui.screen().contains(&id[..20]), "the screen shows the id to type");
    tui.line(&format!("/download {id}"));
    tui.wait_for("saved ");
    let saved = bob.profile.join("downloads").join("photo.png");
    assert_eq!(std::fs::read(&saved).unwrap(), std::fs::read(&from_alice).unwrap());

    // Help, then quit cleanly.
    tui.line("/help");
    tui.wait_for("/verify @h");
    tui.keys(&["Escape"]);
    tui.line("/exit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tui.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tui.alive(), "sotto chat exits on /exit");
}

#[test]
fn a_small_phone_sized_terminal_does_not_garble() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "a message long enough to need wrapping on a narrow phone screen, word by word"]);
    let tui = Tmux::start(&chat_command(bob), 40, 16);
    let s = tui.wait_for("word by word");
    assert!(s.lines().all(|l| l.chars().count() <= 40), "{s}");
    assert!(!s.contains(" chats "), "the list folds away on a narrow screen:\n{s}");
}

#[test]
fn a_message_typed_while_the_server_is_down_is_kept_shown_as_pending_and_sent_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "hello"]);
    let note = root.path().join("chat-stderr.txt");
    let tui = Tmux::start(&format!("{} 2>{}", chat_command(bob), note.display()), 80, 24);
    tui.wait_for("hello");
    tui.wait_for("online");
    let (data, port) = (server.data.clone(), server.port);
    server.kill();
    tui.line("typed while the server was down");
    // Shown as pending (matching the bare text could catch it still in the
    // input line, before Enter was read).
    tui.wait_for("typed while the server was down …");
    tui.wait_for("reconnecting");
    tui.line("/exit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tui.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = std::fs::read_to_string(&note).unwrap();
    assert!(said.contains("1 message is still waiting to be sent"), "says so on quit: {said:?}");
    // Kept across the restart of everything; sent by the next command.
    let _server = Server::start_on(&data, port, &[]);
    assert!(bob.ok(&["history", "@alice"]).contains("typed while the server was down (not yet sent)"));
    bob.ok(&["receive"]);
    let got: Vec<_> = texts(&alice.receive_json()).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(got, vec!["typed while the server was down".to_owned()], "delivered once");
}

#[test]
fn devices_are_linked_listed_and_removed_from_the_terminal_ui() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    bob.ok(&["send", "@alice", "hello alice"]);
    let tui = Tmux::start(&chat_command(alice), 100, 30);
    tui.wait_for("hello alice");
    tui.line("/devices");
    tui.wait_for("(this device)");
    // A phone waits to be linked; alice types its code into the UI.
    let phone = User::new(root.path(), "alice-phone");
    let (child, code, out) = start_link(&phone, &server, "phone");
    tui.line(&format!("/device add {code}"));
    tui.wait_for("linked device 2 (\"phone\")");
    let rest = finish_link(child, out);
    assert!(rest.contains("linked: @alice (device 2, \"phone\")"), "{rest}");
    tui.line("/devices");
    tui.wait_for("2 \"phone\" (last seen");
    // The phone reads what bob sends from now on.
    bob.ok(&["send", "@alice", "to both of alice's devices"]);
    let got = phone.ok(&["receive", "--wait", "5"]);
    assert!(got.contains("to both of alice's devices"), "{got}");
    tui.line("/device remove 2");
    tui.wait_for("removed device 2");
    let refused = phone.run(&["receive"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("link it again"));
    tui.line("/device remove x");
    tui.wait_for("usage: /device remove ID");
}

#[test]
fn a_message_request_is_held_and_accepted_from_the_terminal_ui() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with_requests(root.path(), &["alice", "mallory"]);
    let (alice, mallory) = (&u[0], &u[1]);
    let tui = Tmux::start(&chat_command(alice), 120, 30);
    tui.wait_for("chats");
    mallory.ok(&["send", "@alice", "psst, over here"]);
    tui.wait_for("message request from @mallory");
    assert!(!tui.screen().contains("psst, over here"), "nothing of it shows: {}", tui.screen());
    tui.line("/requests");
    tui.wait_for("@mallory from @mallory (1 message(s))");
    tui.line("/accept @mallory");
    tui.wait_for("accepted @mallory");
    tui.wait_for("psst, over here");
    tui.line("/msg @mallory who are you?");
    let got = mallory.ok(&["receive", "--wait", "5"]);
    assert!(got.contains("who are you?"), "{got}");
}

#[test]
fn replies_reactions_edits_deletes_receipts_and_typing_in_the_terminal_ui() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "dinner at eight?"]);
    let tui = Tmux::start(&chat_command(bob), 100, 30);
    tui.wait_for("dinner at eight?");
    tui.wait_for("online");
    // Alice's message was on Bob's screen: she sees it read.
    let read = || {
        alice.receive_json();
        alice.ok(&["history", "@bob"]).contains("dinner at eight? ✓✓ read")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read() {
        assert!(Instant::now() < deadline, "never read: {}", alice.ok(&["history", "@bob"]));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Select Alice's message with Ctrl-↑ and answer it.
    tui.keys(&["C-Up"]);
    tui.wait_for("selected alice");
    tui.line("yes, see you there");
    tui.wait_for("↪ alice: dinner at eight?");
    let got = alice.receive_json();
    let reply = got.iter().find(|m| m["text"] == "yes, see you there").expect("alice has the reply");
    assert!(reply["reply_to"].is_string(), "{reply}");
    // A reaction on the newest message from Alice.
    tui.line("/react 🎉");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        alice.receive_json();
        if alice.ok(&["history", "@bob"]).contains("[🎉 1]") {
            break;
        }
        assert!(Instant::now() < deadline, "the reaction never reached alice");
        std::thread::sleep(Duration::from_millis(300));
    }
    // ↑ in the empty line edits Bob's last message.
    tui.keys(&["Up"]);
    tui.wait_for("editing your last message");
    tui.keys(&["C-u"]);
    tui.line("yes, see you at eight");
    tui.wait_for("yes, see you at eight (edited)");
    // Typing from Alice shows; then she edits her question.
    alice.ok(&["typing", "@bob"]);
    tui.wait_for("alice is typing…");
    let question =
        alice.ok(&["history", "@bob", "--json"]).lines().find(|l| l.contains("dinner at eight?")).unwrap().to_owned();
    let id = serde_json::from_str::<serde_json::Value>(&question).unwrap()["id"].as_str().unwrap().to_owned();
    alice.ok(&["edit", &id, "dinner at nine?"]);
    tui.wait_for("dinner at nine? (edited)");
    // Delete for everyone asks first; y deletes.
    tui.line("/delete");
    tui.wait_for("for everyone? y deletes");
    tui.keys(&["y"]);
    tui.wait_for("[message deleted]");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        alice.receive_json();
        if !alice.ok(&["history", "@bob"]).contains("see you at eight") {
            break;
        }
        assert!(Instant::now() < deadline, "the delete never reached alice");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The timer shows in the title.
    tui.line("/timer 1h");
    tui.wait_for("@alice ⏱ 1 hour");
    tui.line("/exit");
}

#[test]
fn hotlist_search_members_safety_numbers_and_new_groups_in_a_narrow_terminal_ui() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["send", "@bob", "the kayak trip is on saturday"]);
    // 50 columns: no conversation list on the left.
    let tui = Tmux::start(&chat_command(bob), 50, 24);
    tui.wait_for("the kayak trip is on saturday");
    tui.wait_for("online");

    // A message elsewhere waits in the status bar's hotlist.
    carol.ok(&["send", "@bob", "are you coming too?"]);
    tui.wait_for("@carol(1)");

    // A send to nobody leaves no conversation behind.
    tui.line("/msg @nobody hello?");
    tui.wait_for("error:");
    let s = tui.screen();
    assert!(s.contains("@alice") && !s.contains("@nobody"), "back in @alice, nothing of @nobody:\n{s}");

    // A new group takes focus at once.
    tui.line("/group create trip @alice @carol");
    tui.wait_for("#trip");
    tui.line("/members");
    let s = tui.wait_for("(admin)");
    assert!(s.contains("@bob (you) (admin)") && s.contains("@alice") && s.contains("@carol"), "{s}");
    tui.keys(&["Escape"]);

    // The whole safety number, however narrow the screen.
    tui.line("/verify @alice");
    let s = tui.wait_for("safety number with @alice");
    let number = alice.ok(&["verify", "@bob"]);
    let first = number.lines().next().unwrap().to_owned();
    let want: String = first.chars().filter(|c| c.is_ascii_digit()).collect();
    let shown: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    assert!(want.len() >= 60 && shown.contains(&want), "the number is cut:\n{s}\nwant {want}");
    tui.keys(&["Escape"]);
    let digits = want.clone();
    tui.line(&format!("/confirm @alice {digits}"));
    tui.wait_for("@alice is verified");

    // Search opens the message in its conversation.
    tui.line("/search kayak");
    tui.wait_for("1 found for \"kayak\"");
    tui.keys(&["Enter"]);
    let s = tui.wait_for("found in @alice");
    assert!(s.contains("the kayak trip is on saturday"), "{s}");

    // A notice from the server's operator: in a box of its own, marked as
    // not end-to-end encrypted; /notices shows it again.
    let out = std::process::Command::new(server_bin())
        .args(["announce", "Upgrade tonight at 22:00", "--data", server.data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = tui.wait_for("Upgrade tonight at 22:00");
    assert!(s.contains("server notice") && s.contains("Not end-to-end"), "{s}");
    tui.keys(&["Escape"]);
    tui.line("/notices");
    let s = tui.wait_for("/notices shows them again");
    assert!(s.contains("Upgrade tonight at 22:00"), "{s}");
    tui.keys(&["Escape"]);
}
