//! The listener: TLS (or plain HTTP behind a proxy), HTTP routing, and the
//! WebSocket upgrade. Each connection lives in its own task with its own
//! deadlines, so a silent or hostile peer costs only its own task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::admission::{address_bucket, ConnGuard, ConnSlot, PerIp, Unauthenticated};
use crate::relay::Relay;

/// Transport-level limits.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// HTTP request headers must arrive within this.
    pub header_timeout: Duration,
    /// Most simultaneous connections; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address; more are closed.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for open connections to finish.
    pub drain_timeout: Duration,
    /// IPv6 addresses are counted per prefix of this many bits for
    /// `max_connections_per_ip`: one host usually holds a whole /64.
    pub ipv6_prefix: u8,
    /// Most connections that have not yet logged in (or shown a blob
    /// token). When full, the oldest of them is closed to make room, so
    /// connections that send nothing cannot lock out the people who log
    /// in, and those logged in keep the rest of `max_connections`.
    pub max_unauthenticated: usize,
    /// Everything before login (TLS, HTTP request or HTTP/2 preface,
    /// WebSocket upgrade) must be done within this, whatever each phase's
    /// own deadline says.
    pub login_deadline: Duration,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 200,
            drain_timeout: Duration::from_secs(10),
            ipv6_prefix: 64,
            max_unauthenticated: 2_000,
            login_deadline: Duration::from_secs(20),
        }
    }
}

/// The HTTP routes.
pub fn router(relay: Arc<Relay>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/ws", get(websocket))
        .merge(crate::blobs::routes())
        .with_state(relay)
}

/// The client's address, attached to each connection's requests.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// Bytes of queued frames a session writes out at once. Pushes and answers
/// are fed in bursts and flushed at the end of each, so a burst becomes a
/// few large TLS records; the buffer only grows on connections that burst.
const WRITE_BUFFER: usize = 32 * 1024;

async fn websocket(
    ws: WebSocketUpgrade,
    State(relay): State<Arc<Relay>>,
    peer: Option<axum::Extension<Peer>>,
    slot: Option<axum::Extension<ConnSlot>>,
) -> impl IntoResponse {
    let guard = slot.and_then(|s| s.take());
    let limit = sotto_proto::limits::MAX_FRAME_BYTES;
    let remote = peer.map(|p| p.0 .0).unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    // Small buffers: tungstenite's defaults (128 KiB read buffer) made
    // every idle connection cost ~145 KiB (found with heaptrack); the read
    // buffer grows when a large frame arrives. Each halving (4 -> 2 -> 1
    // KiB) saved about 1-2 KiB per idle connection (17.3 -> 15.3 KiB under
    // glibc; 16.3 -> 15.3 under jemalloc, see memory.rs) at no measurable
    // cost in throughput or latency: socket reads happen below, in TLS, in
    // whole records; this is only how much plaintext the WebSocket layer
    // copies at once.
    ws.max_message_size(limit).max_frame_size(limit).read_buffer_size(1024).write_buffer_size(WRITE_BUFFER).on_upgrade(
        move |socket| {
            // Boxed before the future that keeps it is built (see serve).
            let socket = Box::new(socket);
            async move {
                let admission = guard.as_ref().and_then(|g| g.admission());
                // Held for the whole session: its place under the caps.
                let _guard = guard;
                crate::session::serve(socket, relay, remote, admission).await
            }
        },
    )
}

/// Accepts connections until `shutdown` completes, then tells every session
/// to finish (in-flight requests complete) and waits for them, at most
/// `drain_timeout`.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    relay: Arc<Relay>,
    config: ListenConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(relay.clone());
    let acceptor = tls.map(TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let per_ip = Arc::new(PerIp { counts: Default::default() });
    let unauthenticated = Arc::new(Unauthenticated::default());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let bucket = address_bucket(peer.ip(), config.ipv6_prefix);
        {
            let mut counts = per_ip.counts.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(bucket).or_insert(0);
            if *n >= config.max_connections_per_ip {
                relay.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(%peer, "too many connections from this address; closed");
                continue;
            }
            *n += 1;
        }
        relay.metrics.connections_accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        relay.metrics.connections_open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let admission = unauthenticated.admit(config.max_unauthenticated, &relay);
        let guard = ConnGuard {
            _permit: permit,
            per_ip: per_ip.clone(),
            ip: bucket,
            relay: relay.clone(),
            admission: Some(admission.clone()),
        };
        let slot = ConnSlot(Arc::new(std::sync::Mutex::new(Some(guard))));
        let app = app.clone().layer(axum::Extension(Peer(peer))).layer(axum::Extension(slot));
        let acceptor = acceptor.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let connection = async {
                match acceptor {
                    Some(acceptor) => {
                        match tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => serve_http(stream, app, &config).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => serve_http(tcp, app, &config).await,
                }
            };
            // Until it authenticates, the connection lives at most
            // login_deadline, and yields its place to a newer one when the
            // unauthenticated budget is full. The HTTP connection ends
            // when it becomes a WebSocket (the session has its own login
            // deadline and watches the same admission).
            let expiry = async {
                tokio::select! {
                    // Eviction takes it out of the waiting list too, so it
                    // must close without asking `waiting()` (asking made
                    // evicted connections live until their TLS deadline,
                    // and new people wait behind them).
                    _ = admission.evicted() => {}
                    _ = tokio::time::sleep(config.login_deadline) => {
                        if !admission.waiting() {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = connection => {}
                _ = expiry => tracing::debug!(%peer, "closed before logging in"),
            }
            // The router (and with it the slot) drops here; an upgraded
            // session took the guard and keeps it.
        });
    }
    // Stop: sessions finish their current request, say goodbye and close.
    drop(listener);
    let _ = relay.shutdown.send(true);
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    while permits.available_permits() < config.max_connections && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn serve_http<I>(io: I, app: Router, config: &ListenConfig)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    let service = TowerToHyperService::new(app);
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
