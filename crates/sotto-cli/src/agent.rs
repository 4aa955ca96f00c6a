//! The unlock agent, in the manner of ssh-agent: `sotto unlock` asks for a
//! profile's passphrase once, and a background `sotto agent` process keeps
//! the derived database key in memory (never on disk) for a while, behind
//! a Unix socket only its owner can open (0600 in a 0700 folder). Every
//! later command of that person gets the key from it instead of asking.
//! `sotto lock` makes it forget everything; it also forgets each key when
//! its time is up, and exits when it holds none.
//!
//! Anyone who can run programs as the same user can ask the agent for the
//! key while it runs, as with ssh-agent; that is the trade made for not
//! typing the passphrase for every command.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// One request to the agent: a JSON line.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Ask {
    /// Keep this profile's key for `secs` seconds.
    Put { profile: String, key: String, secs: u64 },
    /// The key of this profile, if held.
    Get { profile: String },
    /// Forget one profile's key, or every key (and exit).
    Forget { profile: Option<String> },
}

/// The agent's answer: a JSON line.
#[derive(Serialize, Deserialize, Default)]
struct Answer {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    held: usize,
}

/// Where the agent listens: `SOTTO_AGENT_SOCKET`, or `sotto/agent.sock`
/// in the login session's runtime folder (or in sotto's data folder).
pub fn socket_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SOTTO_AGENT_SOCKET") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("sotto"),
        None => crate::data_home::data_dir()?,
    };
    Ok(base.join("agent.sock"))
}

/// The name a profile is held under: its absolute path.
fn profile_id(dir: &Path) -> String {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()).to_string_lossy().into_owned()
}

/// Sends one request and reads the answer; `None` when no agent runs.
fn ask(socket: &Path, ask: &Ask) -> Option<Answer> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = serde_json::to_string(ask).ok()?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

/// The key the agent holds for the profile in `dir`, if any.
pub fn key_for(dir: &Path) -> Option<Zeroizing<[u8; 32]>> {
    let socket = socket_path().ok()?;
    let answer = ask(&socket, &Ask::Get { profile: profile_id(dir) })?;
    let hex_key = Zeroizing::new(answer.key?);
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_key.as_bytes(), key.as_mut()).ok()?;
    Some(key)
}

/// Hands the agent the key of the profile in `dir` for `hold`, starting
/// the agent first when none runs.
pub fn put(dir: &Path, key: &[u8; 32], hold: Duration) -> Result<()> {
    let socket = socket_path()?;
    let request = Ask::Put { profile: profile_id(dir), key: hex::encode(key), secs: hold.as_secs().max(1) };
    if ask(&socket, &request).is_some() {
        return Ok(());
    }
    // No agent yet: start one, in its own process group so the terminal's
    // Ctrl-C does not reach it, with nothing inherited.
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the sotto program to start the agent")?;
    std::process::Command::new(exe)
        .arg("agent")
        .arg("--socket")
        .arg(&socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the unlock agent")?;
    for _ in 0..100 {
        if ask(&socket, &request).is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the unlock agent did not start (socket {})", socket.display())
}

/// Makes the agent forget one profile, or everything; false when no agent
/// was running.
pub fn forget(dir: Option<&Path>) -> Result<bool> {
    let socket = socket_path()?;
    Ok(ask(&socket, &Ask::Forget { profile: dir.map(profile_id) }).is_some())
}

/// Runs the agent on `socket` until it holds no key (or is told to forget
/// everything).
pub async fn serve(socket: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        bail!("an agent already answers on {}", socket.display());
    }
    let _ = std::fs::remove_file(socket);
    let listener =
        tokio::net::UnixListener::bind(socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let mut keys: HashMap<String, (Zeroizing<String>, tokio::time::Instant)> = HashMap::new();
    // A fresh agent waits a little for its first key, then gives up.
    let mut idle_until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = tokio::time::Instant::now();
        keys.retain(|_, (_, until)| *until > now);
        if keys.is_empty() && now >= idle_until {
            break;
        }
        let next_expiry = keys.values().map(|(_, u)| *u).min().unwrap_or(idle_until);
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = tokio::time::sleep_until(next_expiry.max(now + Duration::from_millis(10))) => continue,
        };
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(read);
        if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await.is_err() {
            continue;
        }
        let line = Zeroizing::new(line);
        let mut answer = Answer::default();
        let mut stop = false;
        match serde_json::from_str::<Ask>(&line) {
            Ok(Ask::Put { profile, key, secs }) => {
                let until = tokio::time::Instant::now() + Duration::from_secs(secs);
                keys.insert(profile, (Zeroizing::new(key), until));
            }
            Ok(Ask::Get { profile }) => answer.key = keys.get(&profile).map(|(k, _)| k.to_string()),
            Ok(Ask::Forget { profile: Some(p) }) => {
                keys.remove(&p);
            }
            Ok(Ask::Forget { profile: None }) => {
                keys.clear();
                stop = true;
            }
            Err(_) => {}
        }
        answer.held = keys.len();
        if keys.is_empty() {
            idle_until = tokio::time::Instant::now();
        }
        let mut out = serde_json::to_string(&answer).unwrap_or_default();
        out.push('\n');
        let _ = write.write_all(out.as_bytes()).await;
        if stop {
            break;
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}
