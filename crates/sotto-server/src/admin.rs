//! The operator's line to a running server: a Unix socket in the data
//! directory, readable by its owner only. One JSON request per line, one
//! JSON answer per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use sotto_proto::{ErrorBody, ErrorCode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::relay::Relay;

/// Where the socket lives.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("admin.sock")
}

/// Serves operator requests until the task is dropped.
#[cfg(unix)]
pub async fn serve(data: &Path, relay: Arc<Relay>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let relay = relay.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = BufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match serde_json::from_str::<Value>(&line) {
                    Ok(req) => handle(&relay, &req).await,
                    Err(e) => json!({"error": format!("not JSON: {e}")}),
                };
                if wr.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn handle(relay: &Relay, req: &Value) -> Value {
    match req["cmd"].as_str() {
        Some("sessions") => json!({"sessions": relay.hub.sessions()}),
        Some("kick") => {
            let Some(handle) = req["handle"].as_str() else { return json!({"error": "kick needs a handle"}) };
            let before = relay.hub.sessions().iter().filter(|s| s.handle == handle).count();
            relay.hub.kick_account(handle, ErrorBody::new(ErrorCode::Banned));
            json!({"kicked": before})
        }
        Some("notices") => {
            relay.hub.wake_notices();
            json!({"connections": relay.hub.connections()})
        }
        Some("stats") => json!({"connections": relay.hub.connections()}),
        _ => json!({"error": "unknown command"}),
    }
}

/// Sends one request to the running server's socket. `None` when no server
/// runs on this data directory.
#[cfg(unix)]
pub async fn request(data: &Path, req: Value) -> Option<Value> {
    let stream = tokio::net::UnixStream::connect(socket_path(data)).await.ok()?;
    let (rd, mut wr) = stream.into_split();
    wr.write_all(format!("{req}\n").as_bytes()).await.ok()?;
    let line = BufReader::new(rd).lines().next_line().await.ok()??;
    serde_json::from_str(&line).ok()
}
