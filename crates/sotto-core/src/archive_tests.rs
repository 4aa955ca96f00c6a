//! The history archive: what goes in (the last days of what the person
//! sees, files whose copy is unchanged), what stays out (older messages,
//! message requests, what is unsent), and how it comes back on another
//! profile (ahead of what is there, no duplicates, files checked).

use std::path::Path;

use rusqlite::params;
use sha2::{Digest, Sha256};

use crate::content::Body;
use crate::db::ProfileKey;
use crate::files::FileInfo;
use crate::messenger::{cbor, Messenger};

const DAY: i64 = 24 * 3600 * 1000;

fn profile(dir: &Path) -> Messenger {
    Messenger::create(dir, &ProfileKey::KeyFile, "alice", "sotto://127.0.0.1:1").unwrap()
}

fn put(m: &Messenger, id: u8, conversation: &str, sent_at: i64, body: &Body, state: &str) {
    m.conn
        .execute(
            "INSERT INTO messages(id, conversation, group_id, sender, outgoing, sent_at, received_at, body, state, fetched)
             VALUES(?, ?, NULL, 'bob', 0, ?, ?, ?, ?, 1)",
            params![vec![id; 16], conversation, sent_at, sent_at, cbor(body), state],
        )
        .unwrap();
}

fn text(t: &str) -> Body {
    Body::Text { text: t.into() }
}

fn file_body(id: u8, bytes: &[u8], name: &str) -> Body {
    Body::File {
        file: FileInfo {
            blob_id: vec![id; 16],
            key: vec![0; 32],
            nonce: vec![0; 19],
            size: bytes.len() as u64,
            name: name.into(),
            media_type: "application/octet-stream".into(),
            sha256: Sha256::digest(bytes).to_vec(),
            thumbnail: None,
            padded: None,
        },
        caption: None,
    }
}

fn texts(m: &Messenger, conversation: &str) -> Vec<String> {
    m.history(conversation)
        .unwrap()
        .into_iter()
        .map(|s| match s.body {
            Body::Text { text } => text,
            Body::File { file, .. } => format!("file:{}", file.name),
            _ => "?".into(),
        })
        .collect()
}

#[test]
fn the_last_days_go_to_the_new_device_ahead_of_its_own_messages_with_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let phone = profile(&tmp.path().join("phone"));
    let now = phone.now();
    // 2.5 MiB: three parts in the archive.
    let photo: Vec<u8> = (0..(5 << 19)).map(|i| (i % 251) as u8).collect();
    let photo_path = tmp.path().join("photo.bin");
    std::fs::write(&photo_path, &photo).unwrap();
    let edited_path = tmp.path().join("notes.txt");
    std::fs::write(&edited_path, b"first version").unwrap();

    put(&phone, 1, "@bob", now - 40 * DAY, &text("too old"), "received");
    put(&phone, 2, "@bob", now - 2 * DAY, &text("hello"), "received");
    put(&phone, 3, "@bob", now - DAY, &file_body(3, &photo, "photo.bin"), "received");
    phone.record_file_copy(&[3; 16], &photo_path).unwrap();
    put(&phone, 4, "@bob", now - DAY, &file_body(4, b"first version", "notes.txt"), "received");
    phone.record_file_copy(&[4; 16], &edited_path).unwrap();
    std::fs::write(&edited_path, b"changed since").unwrap();
    put(&phone, 5, "@bob", now - 1000, &text("still sending"), "pending");
    // A message request's messages are not the person's conversations yet.
    phone
        .conn
        .execute(
            "INSERT INTO groups(group_id, conversation, created_at, request_from) VALUES(?, '@mallory', 0, 'mallory')",
            [vec![9u8; 16]],
        )
        .unwrap();
    put(&phone, 6, "@mallory", now - 1000, &text("buy now"), "received");

    let archive = phone.dir().join("history.sotto");
    let (summary, secret) = phone.write_history_archive(&archive, now - 30 * DAY).unwrap();
    assert_eq!((summary.messages, summary.files), (3, 1), "hello, the photo and the edited file's message");
    let raw = std::fs::read(&archive).unwrap();
    assert!(raw.starts_with(b"SOTTO-BACKUP 1\n"), "the backup's container");
    assert!(!raw.windows(5).any(|w| w == b"hello"), "nothing readable in the archive");

    let laptop = profile(&tmp.path().join("laptop"));
    put(&laptop, 7, "@bob", now, &text("written after linking"), "received");
    let near = laptop.dir().join("incoming");
    std::fs::create_dir_all(&near).unwrap();

    let wrong = laptop.import_history_archive(&archive, "not the secret", &near).unwrap_err();
    assert!(wrong.to_string().contains("does not open with its key"), "{wrong}");

    let got = laptop.import_history_archive(&archive, &secret, &near).unwrap();
    assert_eq!((got.messages, got.files), (3, 1));
    assert_eq!(texts(&laptop, "@bob"), ["hello", "file:photo.bin", "file:notes.txt", "written after linking"]);
    assert!(laptop.history("@mallory").unwrap().is_empty());
    let restored = laptop.downloads_dir().unwrap().join("photo.bin");
    assert_eq!(std::fs::read(&restored).unwrap(), photo, "the file's bytes, checked against its checksum");
    assert!(!laptop.downloads_dir().unwrap().join("notes.txt").exists(), "a changed copy is not passed on");
    assert_eq!(std::fs::read_dir(&near).unwrap().count(), 0, "no decrypted copy left behind");

    // The same archive again (a retried hand-over): nothing twice.
    let again = laptop.import_history_archive(&archive, &secret, &near).unwrap();
    assert_eq!(again.messages, 0);
    assert_eq!(texts(&laptop, "@bob").len(), 4);
}

#[test]
fn a_damaged_archive_is_a_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let laptop = profile(&tmp.path().join("laptop"));
    let near = laptop.dir().join("incoming");
    std::fs::create_dir_all(&near).unwrap();
    for bytes in [b"".as_slice(), b"SOTTO-BACKUP 1\n", b"SOTTO-BACKUP 1\nargon2id 1 1 1 00\ngarbage", &[0xff; 64]] {
        let path = tmp.path().join("bad.sotto");
        std::fs::write(&path, bytes).unwrap();
        let err = laptop.import_history_archive(&path, "secret", &near).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    assert!(laptop.conversations().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&near).unwrap().count(), 0);
}
