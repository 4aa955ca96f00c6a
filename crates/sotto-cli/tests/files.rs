//! End-to-end encrypted files through the real server and CLI.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A file of `size` pseudo-random bytes (xorshift: fast and incompressible).
fn random_file(path: &Path, size: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).unwrap();
            if n == 0 {
                return false;
            }
            nb += n;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
    }
}

/// Size of the largest file in `dir` whose name ends with `.part`.
fn part_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Runs a command and kills it (SIGKILL) once `watch` reports at least
/// `at` bytes. Returns whether it was killed before it finished.
fn run_and_cut(mut cmd: std::process::Command, watch: impl Fn() -> u64, at: u64) -> bool {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return false;
        }
        if watch() >= at {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        assert!(Instant::now() < deadline, "transfer did not progress");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn file_id(batch: &[serde_json::Value]) -> String {
    let m = batch.iter().find(|m| m["kind"] == "file").unwrap_or_else(|| panic!("no file in {batch:?}"));
    m["file"]["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_200_mib_file_survives_cuts_in_upload_and_download() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    let size = 200 * 1024 * 1024;
    let original = root.path().join("big.bin");
    random_file(&original, size);

    let blobs = server.data.join("blobs");
    let mut send = alice.cmd();
    send.args(["send", "@bob", "--file", original.to_str().unwrap(), "the big one"]);
    let cut = run_and_cut(send, || part_size(&blobs), size as u64 / 5);
    assert!(cut, "the upload was cut halfway");
    let stored_after_cut = part_size(&blobs);
    assert!(stored_after_cut > 0 && stored_after_cut < size as u64);
    // The same command again resumes and completes.
    alice.ok(&["send", "@bob", "--file", original.to_str().unwrap(), "the big one"]);

    let got = bob.receive_json();
    assert_eq!(got.len(), 1, "one file message, even though the send ran twice: {got:?}");
    assert_eq!(got[0]["kind"], "file");
    assert_eq!(got[0]["file"]["name"], "big.bin");
    assert_eq!(got[0]["file"]["size"], size as u64);
    assert_eq!(got[0]["text"], "the big one");
    let id = file_id(&got);

    let downloads = bob.profile.join("downloads");
    let mut fetch = bob.cmd();
    fetch.args(["download", &id]);
    assert!(run_and_cut(fetch, || part_size(&downloads), size as u64 / 5), "the download was cut halfway");
    assert!(!downloads.join("big.bin").exists(), "no partial file under the real name");
    let out = bob.ok(&["download", &id]);
    let saved = PathBuf::from(out.trim().strip_prefix("saved: ").unwrap());
    assert_eq!(saved, downloads.join("big.bin"));
    assert!(same_bytes(&original, &saved), "bob's copy is byte-identical");
    assert_eq!(part_size(&downloads), 0, "no leftovers");
    // Every recipient fetched it: the server deleted it.
    assert!(std::fs::read_dir(&blobs).unwrap().next().is_none(), "the server keeps no copy");
}

#[test]
fn tampered_reordered_and_truncated_blobs_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    let original = root.path().join("doc.bin");
    random_file(&original, 300 * 1024);
    let blob_file = |server: &Server| -> PathBuf {
        std::fs::read_dir(server.data.join("blobs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_none())
            .unwrap()
    };
    let downloads = bob.profile.join("downloads");
    let cipher_chunk = 64 * 1024 + 16;

    for case in ["tamper", "reorder", "truncate"] {
        alice.ok(&["send", "@bob", "--file", original.to_str().unwrap()]);
        let id = file_id(&bob.receive_json());
        let path = blob_file(&server);
        let mut bytes = std::fs::read(&path).unwrap();
        match case {
            "tamper" => bytes[cipher_chunk + 10] ^= 0x40,
            "reorder" => {
                let (a, b) = bytes.split_at_mut(cipher_chunk);
                a.swap_with_slice(&mut b[..cipher_chunk]);
            }
            _ => {
                // A server that serves a consistently shorter file.
                bytes.truncate(bytes.len() - (bytes.len() - 4 * cipher_chunk));
                let db = rusqlite::Connection::open(server.data.join("relay.db")).unwrap();
                db.execute("UPDATE blobs SET size=?", [bytes.len() as i64]).unwrap();
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let out = bob.run(&["download", &id]);
        assert!(!out.status.success(), "{case}: the download must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("tampered") || err.contains("damaged"), "{case}: {err}");
        assert!(!downloads.join("doc.bin").exists(), "{case}: nothing saved as if complete");
        assert_eq!(part_size(&downloads), 0, "{case}: no partial file left");
        std::fs::remove_file(&path).unwrap();
        let db = rusqlite::Connection::open(server.data.join("relay.db")).unwrap();
        db.execute_batch("DELETE FROM blobs; DELETE FROM blob_readers;").unwrap();
    }
}

#[test]
fn hostile_names_limits_and_strangers() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_on(&root.path().join("server"), 0, &["--max-file-size", "1000000"]);
    let users: Vec<User> = ["alice", "bob", "carol"].iter().map(|n| User::new(root.path(), n)).collect();
    for (i, u) in users.iter().enumerate() {
        let invite = if i == 0 { server.first_invite.clone().unwrap() } else { server.invite() };
        u.init(&server, &invite);
    }
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);

    // A name with control characters, escape sequences and leading dots.
    let nasty = root.path().join("..\u{1b}[31mred\u{7}\nline.txt");
    random_file(&nasty, 1000);
    alice.ok(&["send", "@bob", "--file", nasty.to_str().unwrap()]);
    let got = bob.receive_json();
    assert_eq!(got[0]["file"]["name"], "[31mredline.txt");
    let id = file_id(&got);
    let saved = PathBuf::from(bob.ok(&["download", &id]).trim().strip_prefix("saved: ").unwrap());
    assert_eq!(saved, bob.profile.join("downloads").join("[31mredline.txt"));
    // Downloading again gives the copy already there (checked against the
    // file's hash), not a second one.
    let again = bob.ok(&["download", &id]);
    assert_eq!(again.trim().strip_prefix("saved: "), saved.to_str());
    assert!(same_bytes(&nasty, &saved));
    assert_eq!(std::fs::read_dir(saved.parent().unwrap()).unwrap().count(), 1, "one copy");
    // A copy that changed is not the file: the server already forgot it,
    // so the download fails, and the changed copy is never overwritten.
    std::fs::write(&saved, b"changed by hand").unwrap();
    assert!(!bob.run(&["download", &id]).status.success());
    assert_eq!(std::fs::read(&saved).unwrap(), b"changed by hand");
    // -o to an existing file is refused.
    alice.ok(&["send", "@bob", "--file", nasty.to_str().unwrap()]);
    let id2 = file_id(&bob.receive_json());
    let out = bob.run(&["download", &id2, "-o", saved.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    // Over the server's limit: refused before a byte is uploaded.
    let big = root.path().join("big.bin");
    random_file(&big, 2_000_000);
    let out = alice.run(&["send", "@bob", "--file", big.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("takes files up to"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parts = std::fs::read_dir(server.data.join("blobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert_eq!(parts, 0);

    // A stranger with a valid token cannot fetch a blob not shared with her.
    let blob_id = {
        let db = rusqlite::Connection::open(server.data.join("relay.db")).unwrap();
        db.query_row("SELECT id FROM blobs LIMIT 1", [], |r| r.get::<_, Vec<u8>>(0)).unwrap()
    };
    runtime().block_on(async {
        let m = open_profile(carol);
        let mut s = sotto_client::Session::open(&m).await.unwrap();
        let token = match s.connection().request(sotto_proto::Request::BlobToken).await.unwrap() {
            sotto_proto::Response::BlobToken { token, .. } => token,
            r => panic!("{r:?}"),
        };
        let address = sotto_proto::ServerAddress::parse(&m.server().unwrap()).unwrap();
        let client = sotto_client::blobs::BlobClient::new(address, &token);
        assert_eq!(client.status(&blob_id).await.unwrap(), None);
        let err = client.download(&blob_id, 0).await.err().unwrap();
        assert!(err.to_string().contains("no such file for this device"), "{err}");
    });
}

#[test]
fn a_file_to_a_group_is_uploaded_once_and_fetched_by_all() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    alice.ok(&["group", "create", "crew", "@bob", "@carol"]);
    let original = root.path().join("plan.pdf");
    random_file(&original, 700 * 1024);
    alice.ok(&["send", "#crew", "--file", original.to_str().unwrap(), "the plan"]);
    let blobs = || std::fs::read_dir(server.data.join("blobs")).unwrap().count();
    assert_eq!(blobs(), 1, "uploaded once");
    for who in [bob, carol] {
        let got = who.receive_json();
        let m = got.iter().find(|m| m["kind"] == "file").unwrap();
        assert_eq!(m["conversation"], "#crew");
        assert_eq!(m["file"]["media_type"], "application/pdf");
        let id = m["file"]["id"].as_str().unwrap();
        let out = who.ok(&["download", id, "-o", root.path().join(format!("{}.pdf", who.name)).to_str().unwrap()]);
        assert!(out.contains("saved"));
        assert!(same_bytes(&original, &root.path().join(format!("{}.pdf", who.name))));
    }
    assert_eq!(blobs(), 0, "deleted once every member fetched it");
}

#[test]
fn a_file_message_is_queued_once_however_often_its_send_is_run_again() {
    // `send --file` interrupted after the upload but before the server
    // acknowledged the message resumes the same upload when run again; the
    // message it queues then must be the one already in the outbox.
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob", "carol"]);
    let alice = &u[0];
    alice.ok(&["send", "@bob", "hi"]);
    alice.ok(&["group", "create", "pair", "@carol"]);
    let m = open_profile(alice);
    let file = sotto_core::files::FileInfo {
        blob_id: vec![7; 16],
        key: vec![1; 32],
        nonce: vec![2; 19],
        size: 5,
        name: "notes.txt".into(),
        media_type: "text/plain".into(),
        sha256: vec![0; 32],
        thumbnail: None,
        padded: None,
    };
    let first = m.prepare_file("@bob", file.clone(), None).unwrap().expect("queued the first time");
    assert!(m.prepare_file("@bob", file.clone(), Some("again".into())).unwrap().is_none());
    let outbox = m.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].client_id, first.client_id);
    // The same upload shared with another conversation is another message.
    assert!(m.prepare_file("#pair", file.clone(), None).unwrap().is_some());
    assert!(m.prepare_file("#pair", file, None).unwrap().is_none());
    assert_eq!(m.outbox().unwrap().len(), 2);
}

#[test]
fn an_export_with_files_saves_each_file_beside_it_and_names_one_nobody_kept() {
    let root = tempfile::tempdir().unwrap();
    let (_server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    let (plan, photo, gone) =
        (root.path().join("plan.txt"), root.path().join("photo.bin"), root.path().join("gone.bin"));
    random_file(&plan, 100_000);
    random_file(&photo, 300_000);
    random_file(&gone, 5_000);
    for f in [&plan, &photo, &gone] {
        bob.ok(&["send", "@alice", "--file", f.to_str().unwrap()]);
    }
    let got = alice.receive_json();
    let id_of = |name: &str| {
        got.iter().find(|m| m["kind"] == "file" && m["file"]["name"] == name).unwrap()["file"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Alice saved the plan already (the server then deletes its copy); the
    // photo she never fetched; "gone" she saved elsewhere and deleted.
    alice.ok(&["download", &id_of("plan.txt")]);
    let elsewhere = root.path().join("elsewhere.bin");
    alice.ok(&["download", &id_of("gone.bin"), "-o", elsewhere.to_str().unwrap()]);
    std::fs::remove_file(&elsewhere).unwrap();

    let out = root.path().join("export").join("with-bob.txt");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let run = alice.run(&["export", "@bob", "--with-files", "-o", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "an incomplete export is an error: {stderr}");
    assert!(stderr.contains("not saved: gone.bin"), "the missing file is named: {stderr}");
    let files = root.path().join("export").join("with-bob-files");
    assert!(same_bytes(&files.join("plan.txt"), &plan), "copied from the downloads folder");
    assert!(same_bytes(&files.join("photo.bin"), &photo), "fetched from the server and checked");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("saved as with-bob-files/plan.txt"), "{text}");
    assert!(text.contains("saved as with-bob-files/photo.bin"), "{text}");

    // A second export finds the photo in the profile's downloads although
    // the server deleted its copy after the first.
    let all = root.path().join("all");
    let run = alice.run(&["export", "--all", all.to_str().unwrap(), "--with-files"]);
    assert_eq!(run.status.code(), Some(1), "gone.bin is still missing");
    assert!(same_bytes(&all.join("files").join("photo.bin"), &photo));
    assert!(same_bytes(&all.join("files").join("plan.txt"), &plan));
    // Without a place for the files, the command says what to give.
    let run = alice.run(&["export", "@bob", "--with-files"]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("give -o FILE or --all DIR"));
}

/// `sotto web` for `u`: the child and the address and token its URL shows.
fn start_web(u: &User) -> (std::process::Child, String, String) {
    let mut child = u.cmd().args(["web", "--no-open"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let url = value_after(&mut out, "url: ", "sotto web");
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, token) = rest.split_once("/?token=").unwrap();
    (child, addr.to_owned(), token.to_owned())
}

/// Posts `file` to the page's upload endpoint as the browser does; returns
/// the HTTP status line and body, or `None` if the connection broke.
fn web_upload(addr: &str, token: &str, to: &str, name: &str, file: &Path) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let len = std::fs::metadata(file).unwrap().len();
    write!(
        s,
        "POST /api/upload?to={to}&name={name} HTTP/1.1\r\nHost: {addr}\r\nX-Sotto-Token: {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    std::io::copy(&mut std::fs::File::open(file).unwrap(), &mut s).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
fn a_web_upload_cut_by_a_crash_resumes_when_the_same_file_is_sent_again_and_leaves_no_plaintext() {
    let root = tempfile::tempdir().unwrap();
    let (server, u) = server_with(root.path(), &["alice", "bob"]);
    let (alice, bob) = (&u[0], &u[1]);
    alice.ok(&["send", "@bob", "send me the big one"]);
    bob.receive_json();
    let size = 64 * 1024 * 1024;
    let original = root.path().join("video.bin");
    random_file(&original, size);
    let blobs = server.data.join("blobs");
    let outgoing = bob.profile.join("outgoing");
    // A stray half-received copy from an older crash, with no upload behind
    // it, is removed when the page starts.
    std::fs::create_dir_all(outgoing.join("0123")).unwrap();
    std::fs::write(outgoing.join("0123").join("old.bin"), b"plaintext left behind").unwrap();

    let (mut web, addr, token) = start_web(bob);
    assert!(!outgoing.join("0123").exists(), "a stray staged copy is gone at start");
    let posting = {
        let (addr, token, original) = (addr.clone(), token.clone(), original.clone());
        std::thread::spawn(move || web_upload(&addr, &token, "@alice", "video.bin", &original))
    };
    // Crash `sotto web` once a fifth of the encrypted file is on the server.
    let deadline = Instant::now() + Duration::from_secs(120);
    while part_size(&blobs) < size as u64 / 5 {
        assert!(Instant::now() < deadline, "the upload did not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    web.kill().unwrap();
    web.wait().unwrap();
    let _ = posting.join();
    let first_part = part_size(&blobs);
    assert!(first_part > 0 && first_part < size as u64, "cut halfway: {first_part}");

    // Started again and given the same file, it resumes the same upload.
    let (mut web, addr, token) = start_web(bob);
    let answer = web_upload(&addr, &token, "@alice", "video.bin", &original).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("file_sent"), "{answer}");
    let stored: Vec<PathBuf> = files_under(&blobs);
    assert_eq!(stored.len(), 1, "one blob, resumed, not a second upload from the start: {stored:?}");
    // And no plaintext is left in the profile.
    assert!(files_under(&outgoing).is_empty(), "{:?}", files_under(&outgoing));
    web.kill().unwrap();
    web.wait().unwrap();

    let got = alice.receive_json();
    let files: Vec<_> = got.iter().filter(|m| m["kind"] == "file").collect();
    assert_eq!(files.len(), 1, "one file message: {got:?}");
    assert_eq!(files[0]["file"]["size"], size as u64);
    let out = alice.ok(&["download", &file_id(&got)]);
    let saved = PathBuf::from(out.trim().strip_prefix("saved: ").unwrap());
    assert!(std::fs::read(&saved).unwrap() == std::fs::read(&original).unwrap(), "byte-identical");
}
