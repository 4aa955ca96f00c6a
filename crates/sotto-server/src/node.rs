//! The composition root: one place that puts a server together (store,
//! relay, blob folder, operator socket, metrics, maintenance, the listener)
//! and runs it. The binary, the integration tests and the benchmarks all
//! call this, so what they test and measure is what operators run.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::data_dir::{self, DataDirError};
use crate::relay::{now_ms, Relay, RelayConfig};
use crate::server::{self, ListenConfig};
use crate::store::{LiveSession, SqliteStore, Store, StoreError};

/// Why a server could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data folder.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The database.
    #[error("cannot open the database in {}: {source}", .dir.display())]
    Store {
        /// The data folder.
        dir: PathBuf,
        /// Why.
        source: StoreError,
    },
}

/// How often abandoned uploads are looked for.
const ABANDONED_SCAN: Duration = Duration::from_secs(300);
/// How often the retention purge runs.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How often groups with their own (disappearing) retention are purged:
/// an entry outlives its timer on the server by at most this.
const GROUP_PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// What runs beside the client listener.
#[derive(Default)]
pub struct Services {
    /// The operator socket in the data folder (Unix only).
    pub admin_socket: bool,
    /// Prometheus `/metrics` on this listener.
    pub metrics: Option<TcpListener>,
    /// Retention purge and removal of abandoned uploads.
    pub maintenance: bool,
}

impl Services {
    /// Everything an operator's server runs.
    pub fn all(metrics: Option<TcpListener>) -> Self {
        Self { admin_socket: true, metrics, maintenance: true }
    }
}

/// A server put together, not yet listening.
pub struct Node {
    relay: Arc<Relay>,
    data: PathBuf,
    /// The SQLite store, when the node opened one itself (to fold its WAL
    /// back in on shutdown).
    sqlite: Option<Arc<SqliteStore>>,
}

/// Opens (or creates) the SQLite store in a data folder, with the folder
/// and database files readable by the owner only.
pub fn open_store(data: &Path) -> Result<SqliteStore, NodeError> {
    std::fs::create_dir_all(data).map_err(|source| DataDirError::Io { path: data.to_owned(), source })?;
    data_dir::private(data, 0o700)?;
    let store = SqliteStore::open(&data.join("relay.db"))
        .map_err(|source| NodeError::Store { dir: data.to_owned(), source })?;
    // SQLite creates the -wal and -shm files with the database's mode.
    for name in ["relay.db", "relay.db-wal", "relay.db-shm"] {
        let p = data.join(name);
        if p.exists() {
            data_dir::private(&p, 0o600)?;
        }
    }
    Ok(store)
}

impl Node {
    /// A node on the SQLite store in `data`.
    pub fn open(data: &Path, config: RelayConfig, server_id: Vec<u8>) -> Result<Self, NodeError> {
        Self::open_with_blobs(data, &data.join("blobs"), config, server_id)
    }

    /// A node on the SQLite store in `data`, with file bytes in `blob_dir`.
    pub fn open_with_blobs(
        data: &Path,
        blob_dir: &Path,
        config: RelayConfig,
        server_id: Vec<u8>,
    ) -> Result<Self, NodeError> {
        let store = Arc::new(open_store(data)?);
        let mut node = Self::with_store_and_blobs(store.clone(), data, blob_dir, config, server_id)?;
        node.sqlite = Some(store);
        Ok(node)
    }

    /// A node on any store (a test's fault-injecting one, another backend).
    pub fn with_store(
        store: Arc<dyn Store>,
        data: &Path,
        config: RelayConfig,
        server_id: Vec<u8>,
    ) -> Result<Self, NodeError> {
        Self::with_store_and_blobs(store, data, &data.join("blobs"), config, server_id)
    }

    /// As [`Node::with_store`], keeping file bytes in `blob_dir`: nodes
    /// sharing a PostgreSQL store point it at one shared folder, so a file
    /// uploaded through one node is downloaded through any.
    pub fn with_store_and_blobs(
        store: Arc<dyn Store>,
        data: &Path,
        blob_dir: &Path,
        config: RelayConfig,
        server_id: Vec<u8>,
    ) -> Result<Self, NodeError> {
        let blob_dir = blob_dir.to_owned();
        std::fs::create_dir_all(&blob_dir).map_err(|source| DataDirError::Io { path: blob_dir.clone(), source })?;
        data_dir::private(&blob_dir, 0o700)?;
        let relay = Arc::new(Relay::new(store, config, server_id, blob_dir));
        Ok(Self { relay, data: data.to_owned(), sqlite: None })
    }

    /// The relay, for what needs it before or while serving (invites in
    /// tests, the first invite in the binary).
    pub fn relay(&self) -> Arc<Relay> {
        self.relay.clone()
    }

    /// Serves clients on `listener` until `shutdown` completes, with the
    /// chosen services beside it; then stops them and leaves the store
    /// tidy.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        listen: ListenConfig,
        services: Services,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut tasks = Vec::new();
        #[cfg(unix)]
        if services.admin_socket {
            let (data, relay) = (self.data.clone(), self.relay.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::admin::serve(&data, relay).await {
                    tracing::warn!(error = %e, "operator socket unavailable");
                }
            }));
        }
        if let Some(listener) = services.metrics {
            tasks.push(tokio::spawn(serve_metrics(listener, self.relay.clone())));
        }
        // Rings from the other nodes sharing the store (PostgreSQL), and
        // this node's connections published for the operator's view.
        if let Some(rings) = self.relay.store.listen() {
            let relay = self.relay.clone();
            let _ = std::thread::Builder::new().name("sotto-rings".into()).spawn(move || follow_rings(&relay, &rings));
        }
        if self.relay.store.shared() {
            // What the operator tells nodes apart by: the listen address,
            // or the machine's name where it listens on every interface.
            let address = match listener.local_addr() {
                Ok(a) if a.ip().is_unspecified() => {
                    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    format!("{}:{}", host.trim(), a.port())
                }
                Ok(a) => a.to_string(),
                Err(_) => String::new(),
            };
            tasks.push(tokio::spawn(publish_sessions(self.relay.clone(), address)));
        }
        if services.maintenance {
            tasks.push(tokio::spawn(remove_abandoned(self.relay.clone())));
            tasks.push(tokio::spawn(purge(self.relay.clone())));
            tasks.push(tokio::spawn(purge_group_retention(self.relay.clone())));
        }
        let result = server::run(listener, tls, self.relay.clone(), listen, shutdown).await;
        for t in &tasks {
            t.abort();
        }
        // Every acknowledged write is already durable; fold the WAL back in
        // so the next start is quick.
        if let Some(store) = &self.sqlite {
            store.checkpoint();
        }
        if services.admin_socket {
            let _ = std::fs::remove_file(crate::admin::socket_path(&self.data));
        }
        if self.relay.store.shared() {
            let relay = self.relay.clone();
            let _ = tokio::task::spawn_blocking(move || relay.store.forget_node()).await;
        }
        result
    }
}

/// Wakes this node's connections for what another node committed; they
/// then read from their cursors in the store (a ring carries no message).
/// Runs on a thread of its own: it blocks on the rings and on the store.
fn follow_rings(relay: &Relay, rings: &std::sync::mpsc::Receiver<crate::store::Change>) {
    use crate::store::Change;
    use sotto_proto::{ErrorBody, ErrorCode};
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let first = match rings.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(change) => change,
            Err(RecvTimeoutError::Timeout) if *relay.shutdown.borrow() => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Everything rung meanwhile is handled together: the groups that
        // moved need one query for whom to wake, however many rang.
        let mut groups: Vec<Vec<u8>> = Vec::new();
        for change in std::iter::once(first).chain(rings.try_iter().take(10_000)) {
            match change {
                Change::Group(g) if g.is_empty() => {}
                Change::Group(g) => groups.push(g),
                Change::Inbox(devices) => relay.hub.wake_inbox(&devices),
                Change::Kick(handle) => relay.hub.kick_account(&handle, ErrorBody::new(ErrorCode::Banned)),
                Change::KickDevice(d) => relay.hub.kick_account_device(&d, ErrorBody::new(ErrorCode::DeviceRevoked)),
                Change::Notices => relay.hub.wake_notices(),
                Change::All => {
                    for s in relay.hub.sessions() {
                        let device = sotto_proto::DeviceRef { handle: s.handle, device_id: s.device_id };
                        relay.hub.wake_inbox(std::slice::from_ref(&device));
                        for m in relay.store.memberships(&device).unwrap_or_default() {
                            relay.hub.wake_group(std::slice::from_ref(&device), &m.group_id);
                        }
                    }
                    relay.hub.wake_notices();
                }
            }
        }
        if groups.is_empty() {
            continue;
        }
        groups.sort();
        groups.dedup();
        match relay.store.readers(&groups) {
            Ok(mut readers) => {
                readers.sort_by(|a, b| a.0.cmp(&b.0));
                for chunk in readers.chunk_by(|a, b| a.0 == b.0) {
                    let devices: Vec<sotto_proto::DeviceRef> = chunk.iter().map(|(_, d)| d.clone()).collect();
                    relay.hub.wake_group(&devices, &chunk[0].0);
                }
            }
            Err(e) => tracing::warn!(error = %e, "rings from another node: cannot read the groups' members"),
        }
    }
}

/// How often a node on a shared store publishes its connections.
const PUBLISH_SESSIONS: Duration = Duration::from_secs(5);

/// Publishes this node's live connections every few seconds, so the
/// operator's `sessions` and `stats` on any node see the whole deployment
/// (and a node that stops publishing drops out of it).
async fn publish_sessions(relay: Arc<Relay>, address: String) {
    let mut tick = tokio::time::interval(PUBLISH_SESSIONS);
    loop {
        tick.tick().await;
        let relay = relay.clone();
        let address = address.clone();
        let published = tokio::task::spawn_blocking(move || {
            let sessions: Vec<LiveSession> = relay
                .hub
                .sessions()
                .into_iter()
                .map(|s| LiveSession {
                    // The store puts in this node's id.
                    node: String::new(),
                    device: sotto_proto::DeviceRef { handle: s.handle, device_id: s.device_id },
                    remote: s.remote,
                    since: s.since,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                })
                .collect();
            relay.store.publish_sessions(&address, &sessions)
        })
        .await;
        if let Ok(Err(e)) = published {
            tracing::warn!(error = %e, "could not publish this node's connections to the deployment");
        }
    }
}

async fn serve_metrics(listener: TcpListener, relay: Arc<Relay>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics at /metrics");
    }
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let r = relay.clone();
            async move {
                let st = r.store.clone();
                let stats =
                    tokio::task::spawn_blocking(move || st.stats()).await.ok().and_then(Result::ok).unwrap_or_default();
                let stages = r.store.stage_timings();
                r.metrics.render(r.hub.connections(), &stats, stages.as_deref())
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}

async fn remove_abandoned(relay: Arc<Relay>) {
    let mut tick = tokio::time::interval(ABANDONED_SCAN);
    loop {
        tick.tick().await;
        let n = crate::blobs::remove_abandoned(&relay, crate::blobs::ABANDONED_AFTER).await;
        if n > 0 {
            tracing::info!(removed = n, "abandoned uploads removed");
        }
    }
}

async fn purge_group_retention(relay: Arc<Relay>) {
    let mut tick = tokio::time::interval(GROUP_PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let st = relay.store.clone();
        match tokio::task::spawn_blocking(move || st.purge_group_retention(now_ms())).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(deleted = n, "disappearing-message purge"),
            Ok(Err(e)) => tracing::error!(error = %e, "disappearing-message purge failed"),
            _ => {}
        }
        // Files sent in disappearing conversations go with their timer.
        let st = relay.store.clone();
        match tokio::task::spawn_blocking(move || st.expire_group_blobs(now_ms())).await {
            Ok(Ok(ids)) => {
                for id in &ids {
                    crate::blob_files::remove_bytes(&relay.blob_dir, id).await;
                }
                if !ids.is_empty() {
                    tracing::debug!(deleted = ids.len(), "disappearing files removed");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "disappearing-file purge failed"),
            Err(_) => {}
        }
    }
}

async fn purge(relay: Arc<Relay>) {
    let retention_ms = relay.config.retention.as_millis() as i64;
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let st = relay.store.clone();
        match tokio::task::spawn_blocking(move || st.purge_expired(now_ms(), retention_ms)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "retention purge"),
            Ok(Err(e)) => tracing::error!(error = %e, "retention purge failed"),
            _ => {}
        }
        let st = relay.store.clone();
        if let Ok(Ok(ids)) = tokio::task::spawn_blocking(move || st.expire_blobs(now_ms() - retention_ms)).await {
            for id in &ids {
                crate::blob_files::remove_bytes(&relay.blob_dir, id).await;
            }
            if !ids.is_empty() {
                tracing::info!(deleted = ids.len(), "expired files removed");
            }
        }
    }
}
