//! End-to-end harness: the real `sotto-server` binary on 127.0.0.1 with a
//! temporary data directory, and the real `sotto` binary with temporary
//! profiles.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::Once;

pub const PASSPHRASE: &str = "test passphrase";

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sotto")).parent().unwrap().to_owned()
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> std::time::SystemTime {
    files_under(dir)
        .iter()
        .filter_map(|p| p.metadata().and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// The server binary. `cargo test --workspace` builds it; `cargo test -p
/// sotto-cli` alone would not (it is another package's binary), so build it
/// when it is missing or older than the server's or protocol's sources.
pub fn server_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let path = bin_dir().join("sotto-server");
    BUILD.call_once(|| {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let built = path.metadata().and_then(|m| m.modified()).ok();
        let sources = newest(&crates.join("sotto-server/src")).max(newest(&crates.join("sotto-proto/src")));
        if built.is_none_or(|b| b < sources) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let ok = Command::new(cargo).args(["build", "--quiet", "-p", "sotto-server"]).status().unwrap().success();
            assert!(ok, "building sotto-server failed");
        }
    });
    path
}

pub struct Server {
    pub data: PathBuf,
    pub address: String,
    pub port: u16,
    pub first_invite: Option<String>,
    child: Child,
}

impl Server {
    pub fn start(data: &Path) -> Self {
        Self::start_on(data, 0, &[])
    }

    pub fn start_on(data: &Path, port: u16, extra: &[&str]) -> Self {
        let mut child = Command::new(server_bin())
            .env("RUST_LOG", std::env::var("SOTTO_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into()))
            .args(["--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sotto-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut first_invite = None;
        let address = loop {
            let line = lines.next().expect("server printed its address").unwrap();
            if let Some(code) = line.strip_prefix("invite: ") {
                first_invite = Some(code.to_owned());
            }
            if let Some(a) = line.strip_prefix("address: ") {
                break a.to_owned();
            }
        };
        let port = address.rsplit_once(':').unwrap().1.split('#').next().unwrap().parse().unwrap();
        Self { data: data.to_owned(), address, port, first_invite, child }
    }

    pub fn invite(&self) -> String {
        let out = Command::new(server_bin()).args(["invite", "--data", self.data.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().strip_prefix("invite: ").unwrap().to_owned()
    }

    /// SIGKILL: no chance to flush anything that was not already durable.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Kills and starts again on the same port and data.
    pub fn restart(self) -> Self {
        let (data, port) = (self.data.clone(), self.port);
        self.kill();
        Self::start_on(&data, port, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct User {
    pub name: String,
    pub profile: PathBuf,
}

impl User {
    pub fn new(root: &Path, name: &str) -> Self {
        Self { name: name.into(), profile: root.join(format!("profile-{name}")) }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sotto"));
        c.arg("--profile").arg(&self.profile).env("SOTTO_PASSPHRASE", PASSPHRASE).stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sotto {args:?} as {} failed:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A profile that shows conversations from anyone at once (the tests
    /// of other features need no message requests in the way).
    pub fn init(&self, server: &Server, invite: &str) {
        self.ok(&["init", "--server", &server.address, "--name", &self.name, "--invite", invite, "--auto-accept"]);
    }

    /// A profile with the default: conversations from people not accepted
    /// yet wait as message requests.
    pub fn init_strict(&self, server: &Server, invite: &str) {
        self.ok(&["init", "--server", &server.address, "--name", &self.name, "--invite", invite]);
    }

    pub fn receive_json(&self) -> Vec<serde_json::Value> {
        self.ok(&["receive", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).map(|b| b.windows(needle.len()).any(|w| w == needle)).unwrap_or(false))
        .collect()
}

pub fn open_profile(u: &User) -> sotto_core::Messenger {
    sotto_core::Messenger::open(&u.profile, &sotto_core::ProfileKey::Passphrase(PASSPHRASE.to_owned().into())).unwrap()
}

/// A receive --json batch without its receipt lines (each device says
/// it has what it received; tests of other things count messages).
pub fn without_receipts(batch: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    batch.into_iter().filter(|m| m["kind"] != "receipt").collect()
}

/// Texts (kind `text`) in a receive --json batch, as (conversation, from, text).
pub fn texts(batch: &[serde_json::Value]) -> Vec<(String, String, String)> {
    batch
        .iter()
        .filter(|m| m["kind"] == "text")
        .map(|m| {
            (
                m["conversation"].as_str().unwrap().to_owned(),
                m["from"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A server with these users registered (conversations from anyone show
/// at once for them).
pub fn server_with(root: &Path, names: &[&str]) -> (Server, Vec<User>) {
    users_on(root, names, User::init)
}

/// A server with these users registered with the default: conversations
/// from people they have not accepted wait as message requests.
pub fn server_with_requests(root: &Path, names: &[&str]) -> (Server, Vec<User>) {
    users_on(root, names, User::init_strict)
}

fn users_on(root: &Path, names: &[&str], init: fn(&User, &Server, &str)) -> (Server, Vec<User>) {
    let server = Server::start(&root.join("server"));
    let users: Vec<User> = names.iter().map(|n| User::new(root, n)).collect();
    for (i, u) in users.iter().enumerate() {
        let invite = if i == 0 { server.first_invite.clone().unwrap() } else { server.invite() };
        init(u, &server, &invite);
    }
    (server, users)
}

/// Starts `sotto link` for `new` and returns the child and the code it shows.
pub fn start_link(new: &User, server: &Server, name: &str) -> (Child, String, BufReader<ChildStdout>) {
    let mut child = new
        .cmd()
        .args(["link", "--server", &server.address, "--name", name, "--wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let code = value_after(&mut out, "code: ", "sotto link");
    (child, code, out)
}

/// Reads a child's output up to the line starting with `prefix` and
/// returns the rest of that line.
pub fn value_after(out: &mut BufReader<ChildStdout>, prefix: &str, what: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{what} ended before printing {prefix:?}");
        if let Some(v) = line.trim().strip_prefix(prefix) {
            return v.to_owned();
        }
    }
}

pub fn finish_link(mut child: Child, mut out: BufReader<ChildStdout>) -> String {
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!err.contains("warning"), "{err}");
    assert!(status.success(), "sotto link failed:\n{rest}\n{err}");
    rest
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Links `new` as another device of `existing`'s account; returns what
/// the new device printed.
pub fn link(new: &User, existing: &User, server: &Server, name: &str) -> String {
    let (child, code, out) = start_link(new, server, name);
    let added = existing.ok(&["device", "add", &code, "--yes"]);
    assert!(added.contains(&format!("(\"{name}\")")), "{added}");
    finish_link(child, out)
}

/// `a` and `b`, both open and up to date, each add someone to `group` in
/// the same epoch: the first commit wins, the other client redoes its add
/// on the new epoch by itself.
pub fn add_at_the_same_moment(a: &User, a_adds: &str, b: &User, b_adds: &str, group: &str) {
    runtime().block_on(async {
        let (ma, mb) = (open_profile(a), open_profile(b));
        let mut sa = sotto_client::Session::open(&ma).await.unwrap();
        let mut sb = sotto_client::Session::open(&mb).await.unwrap();
        sa.sync().await.unwrap();
        sb.sync().await.unwrap();
        sa.add_to_group(group, &[a_adds.into()]).await.unwrap();
        sb.add_to_group(group, &[b_adds.into()]).await.unwrap();
        sa.close().await;
        sb.close().await;
    });
}
