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
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
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

async fn websocket(ws: WebSocketUpgrade, State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    let limit = sotto_proto::limits::MAX_FRAME_BYTES;
    ws.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| crate::session::serve(socket, relay))
}

/// Accepts connections until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    relay: Arc<Relay>,
    config: ListenConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(relay);
    let acceptor = tls.map(TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            p = permits.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
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
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => match tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_http(stream, app, &config).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => serve_http(tcp, app, &config).await,
            }
        });
    }
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
