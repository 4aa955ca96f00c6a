//! What makes sotto a place to live in every day, end to end with the real
//! server and CLI: picture previews, notices from the server's operator,
//! mute on every device of a person, preferences kept in the profile.

mod common;

use common::*;

fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

#[test]
fn a_picture_arrives_with_a_small_preview_inside_the_message_and_other_files_without() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    let photo = root.path().join("holiday.png");
    std::fs::write(&photo, png(1600, 1200)).unwrap();
    let notes = root.path().join("notes.png");
    std::fs::write(&notes, b"not a picture, whatever the name says").unwrap();
    alice.ok(&["send", "@bob", "--file", photo.to_str().unwrap()]);
    alice.ok(&["send", "@bob", "--file", notes.to_str().unwrap()]);
    let got = bob.receive_json();
    let files: Vec<&serde_json::Value> = got.iter().filter(|m| m["kind"] == "file").collect();
    assert_eq!(files.len(), 2, "{got:?}");
    assert_eq!(files[0]["file"]["name"], "holiday.png");
    assert_eq!(files[0]["file"]["thumbnail"], serde_json::json!({"width": 320, "height": 240}));
    assert!(files[1]["file"].get("thumbnail").is_none(), "no preview for what is not a picture: {}", files[1]);
    // The preview is in the message Bob's device decrypted: a JPEG, small.
    let m = open_profile(bob);
    let (_, info) = m.file_message(files[0]["id"].as_str().unwrap()).unwrap();
    let t = info.thumbnail.expect("a preview");
    assert!(t.is_acceptable() && t.jpeg.len() < 48 * 1024, "{} bytes", t.jpeg.len());
    // Downloading the same picture twice gives the same copy, not two.
    drop(m);
    let id = files[0]["id"].as_str().unwrap();
    let first = bob.ok(&["download", id]);
    let second = bob.ok(&["download", id]);
    assert_eq!(first, second);
    let path = first.trim().strip_prefix("saved: ").unwrap_or_else(|| panic!("{first}"));
    assert_eq!(std::fs::read(path).unwrap(), png(1600, 1200));
}

fn announce(server: &Server, text: &str) -> std::process::Output {
    announce_at(&server.data, text)
}

#[test]
fn the_operators_notice_reaches_everyone_once_apart_from_conversations_and_cleaned() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "hi"]);
    // Alice is connected and waiting; Bob is offline.
    let waiting =
        alice.cmd().args(["receive", "--json", "--wait", "8"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = announce(&server, "Upgrade at 22:00 \u{1b}[31mUTC\u{7}; back in 15 minutes.");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("connected devices have it now"));
    let live = waiting.wait_with_output().unwrap();
    let live: Vec<serde_json::Value> =
        String::from_utf8_lossy(&live.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let notice = live.iter().find(|m| m["kind"] == "notice").unwrap_or_else(|| panic!("pushed live: {live:?}"));
    assert_eq!(notice["from"], "operator");
    assert_eq!(notice["encrypted"], false);
    assert_eq!(notice["text"], "Upgrade at 22:00 [31mUTC; back in 15 minutes.", "no terminal escapes");
    assert!(notice.get("conversation").is_none(), "in no conversation");
    assert!(!alice.receive_json().iter().any(|m| m["kind"] == "notice"), "shown once");

    // Bob was offline: he gets it when he connects, in words that say what it is.
    let line = bob.ok(&["receive"]);
    assert!(
        line.contains("notice from the operator of this server (not end-to-end encrypted): Upgrade at 22:00"),
        "{line}"
    );
    assert!(!bob.ok(&["receive"]).contains("notice"), "once");

    // Written while the server is down: kept, delivered after the restart.
    let (data, port) = (server.data.clone(), server.port);
    server.kill();
    let out = announce_at(&data, "we are back");
    assert!(String::from_utf8_lossy(&out.stdout).contains("the server is not running"), "{out:?}");
    let server = Server::start_on(&data, port, &[]);
    let got = alice.receive_json();
    let texts: Vec<&str> = got.iter().filter(|m| m["kind"] == "notice").filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["we are back"]);
    let empty = announce(&server, "  ");
    assert_eq!(empty.status.code(), Some(1), "an empty notice is refused");
    assert!(String::from_utf8_lossy(&empty.stderr).contains("1 to 2000 bytes"));
}

fn announce_at(data: &std::path::Path, text: &str) -> std::process::Output {
    std::process::Command::new(server_bin())
        .args(["announce", text, "--data", data.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn muting_on_one_device_mutes_on_the_others_and_preferences_stay_on_the_device() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    bob.ok(&["send", "@alice", "hi alice"]);
    alice.receive_json();
    let laptop = User::new(root.path(), "alice-laptop");
    link(&laptop, alice, &server, "laptop");
    laptop.receive_json();

    {
        let phone = open_profile(alice);
        phone.set_muted("@bob", true).unwrap();
        phone.set_preference("draft.@bob", "half a thought").unwrap();
    }
    alice.receive_json(); // sends what waits
    laptop.receive_json();
    let lap = open_profile(&laptop);
    assert!(lap.is_muted("@bob").unwrap(), "muted on the laptop too");
    assert!(lap.preferences().unwrap().is_empty(), "a draft stays on the device it was written on");
    drop(lap);
    {
        let phone = open_profile(alice);
        assert_eq!(phone.preferences().unwrap().get("draft.@bob").map(String::as_str), Some("half a thought"));
        phone.set_muted("@bob", false).unwrap();
    }
    alice.receive_json();
    laptop.receive_json();
    assert!(!open_profile(&laptop).is_muted("@bob").unwrap(), "and unmuted");
}
