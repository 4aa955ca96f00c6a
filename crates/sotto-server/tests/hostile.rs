//! Hostile and broken peers: each gets a clear error or a close, and no
//! other connection notices.

mod common;

use std::time::Duration;

use common::*;
use sotto_proto::{codec, ErrorCode, Request, ServerMessage};
use sotto_server::relay::RelayConfig;
use sotto_server::server::ListenConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A real client doing real work must finish well within this, whatever
/// else is going on.
const PATIENCE: Duration = Duration::from_secs(10);

async fn real_client_works(server: &TestServer, handle: &str) {
    tokio::time::timeout(PATIENCE, async {
        let acct = Account::new(handle);
        let mut conn = acct.online(server).await;
        conn.request(Request::CreateGroup { group_id: vec![7; 16], roles: false }).await.ok();
        conn.request(Request::LookupUser { handle: handle.into() }).await.unwrap();
    })
    .await
    .expect("a real client is served while others misbehave");
}

/// Reads until the peer closes; true if it closed within the deadline.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn garbage_instead_of_tls_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let mut raw = TcpStream::connect(server.address.authority()).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage garbage").await.unwrap();
    assert!(closed_within(&mut raw, PATIENCE).await);
    real_client_works(&server, "alice").await;
}

#[tokio::test]
async fn hundreds_of_silent_connections_do_not_slow_a_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let listen =
        ListenConfig { handshake_timeout: Duration::from_secs(2), max_connections_per_ip: 1000, ..Default::default() };
    let server = TestServer::start_with(dir.path(), open(), listen).await;
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(server.address.authority()).await.unwrap();
        if i % 2 == 0 {
            // Half send the first bytes of a TLS record and stall.
            s.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
        }
        idle.push(s);
    }
    real_client_works(&server, "alice").await;
    // The stalled handshakes are cut off at the handshake deadline.
    assert!(closed_within(&mut idle[0], Duration::from_secs(5)).await);
    assert!(closed_within(&mut idle[1], Duration::from_secs(5)).await);
    real_client_works(&server, "bob").await;
}

#[tokio::test]
async fn unauthenticated_connections_are_closed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig { auth_timeout: Duration::from_millis(500), ..open() };
    let server = TestServer::start(dir.path(), config).await;
    let mut conn = server.connect().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let err = conn.read_any().await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::NotAuthenticated, "the server says why it closes: {err}");
    real_client_works(&server, "alice").await;
}

#[tokio::test]
async fn oversized_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let alice = Account::new("alice");
    let mut bystander = alice.online(&server).await;
    let mut conn = Account::new("mallory").online(&server).await;
    let _ = conn.send_raw(vec![0u8; sotto_proto::limits::MAX_FRAME_BYTES + 1024]).await;
    assert!(conn.read_any().await.is_err(), "the connection is closed");
    // The bystander carries on.
    bystander.request(Request::LookupUser { handle: "alice".into() }).await.unwrap();
}

#[tokio::test]
async fn invalid_cbor_gets_an_error_then_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let mut conn = Account::new("mallory").online(&server).await;
    // Valid CBOR, not a message; then not CBOR at all.
    conn.send_raw(codec::encode(&vec![1u32, 2, 3]).unwrap()).await.unwrap();
    match conn.read_any().await.unwrap() {
        ServerMessage::Response { result: Err(e), .. } => assert_eq!(e.code, ErrorCode::MalformedFrame),
        other => panic!("{other:?}"),
    }
    // The connection still works after one bad frame.
    conn.request(Request::LookupUser { handle: "mallory".into() }).await.unwrap();
    conn.send_raw(b"\xff\xff\xff".to_vec()).await.unwrap();
    assert!(matches!(conn.read_any().await.unwrap(), ServerMessage::Response { result: Err(_), .. }));
    // The third strike closes it, with the reason.
    conn.send_raw(b"\x00".to_vec()).await.unwrap();
    let err = conn.read_any().await.unwrap_err();
    assert!(
        matches!(err, sotto_client::ClientError::Closed(Some(ref r)) if r.code == ErrorCode::MalformedFrame),
        "{err}"
    );
    real_client_works(&server, "alice").await;
}

#[tokio::test]
async fn bad_requests_get_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let mut conn = Account::new("alice").online(&server).await;
    let bad_group = conn.request(Request::CreateGroup { group_id: vec![1; 3], roles: false }).await.unwrap_err();
    assert_eq!(code(&bad_group), ErrorCode::BadRequest);
    let too_many = (0..101).map(|_| serde_bytes::ByteBuf::from(vec![1u8])).collect();
    let err = conn
        .request(Request::UploadKeyPackages { packages: too_many, last_resort: None, other_last_resorts: vec![] })
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest);
    let err = conn
        .request(Request::ClaimKeyPackages { handle: "nobody".into(), devices: None, suites: vec![] })
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::UnknownHandle);
    let err = conn
        .request(Request::Commit {
            group_id: vec![5; 16],
            epoch: 0,
            client_id: vec![1],
            commit: vec![1],
            welcome: None,
            added: vec![],
            removed: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::UnknownGroup);
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        RelayConfig { ping_interval: Duration::from_millis(100), idle_timeout: Duration::from_millis(500), ..open() };
    let server = TestServer::start(dir.path(), config).await;
    let alice = Account::new("alice");
    let conn = alice.online(&server).await;
    assert!(server.relay.hub.is_online(&alice.me()));
    // The client reads nothing, so it answers no ping.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!server.relay.hub.is_online(&alice.me()), "the silent peer was dropped");
    drop(conn);
}

/// Opens a raw WebSocket to the server (pinned TLS, no protocol client), to
/// see exactly what the server sends, close codes included.
async fn raw_websocket(
    server: &TestServer,
) -> tokio_tungstenite::WebSocketStream<Box<dyn sotto_client::transport::Io>> {
    let (io, _) = sotto_client::transport::open(&server.address).await.unwrap();
    let url = format!("wss://{}/v1/ws", server.address.authority());
    let (ws, _) = tokio_tungstenite::client_async(url, io).await.unwrap();
    ws
}

#[tokio::test]
async fn a_frame_over_the_limit_is_closed_with_code_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let mut ws = raw_websocket(&server).await;
    let hello = ws.next().await.unwrap().unwrap();
    assert!(matches!(hello, Message::Binary(_)), "hello first");
    let _ = ws.send(Message::Binary(vec![0u8; sotto_proto::limits::MAX_FRAME_BYTES + 1024].into())).await;
    let close = tokio::time::timeout(PATIENCE, async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Close(frame)) = m {
                return frame;
            }
        }
        None
    })
    .await
    .expect("the server closes");
    let frame = close.expect("with a close frame");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
    real_client_works(&server, "alice").await;
}

#[tokio::test]
async fn connections_that_never_log_in_cannot_lock_out_people() {
    // A server for 40 connections, at most 10 of them not logged in. An
    // attacker opens 60 that finish TLS (or not) and then send nothing.
    let dir = tempfile::tempdir().unwrap();
    let listen = ListenConfig {
        max_connections: 40,
        max_unauthenticated: 10,
        max_connections_per_ip: 1000,
        login_deadline: Duration::from_secs(30),
        ..Default::default()
    };
    let server = TestServer::start_with(dir.path(), open(), listen).await;
    // Someone logged in before the attack keeps working through it.
    let carol = Account::new("carol");
    let mut logged_in = carol.online(&server).await;
    let mut idle = Vec::new();
    for i in 0..60 {
        if i % 2 == 0 {
            let (io, _) = sotto_client::transport::open(&server.address).await.unwrap();
            idle.push(Box::new(io) as Box<dyn std::any::Any + Send>);
        } else {
            idle.push(Box::new(TcpStream::connect(server.address.authority()).await.unwrap()));
        }
    }
    logged_in.request(Request::LookupUser { handle: "carol".into() }).await.expect("served during the attack");
    // New people still log in: each new connection pushes out the oldest
    // silent one instead of waiting behind it.
    real_client_works(&server, "alice").await;
    real_client_works(&server, "bob").await;
    logged_in.request(Request::LookupUser { handle: "alice".into() }).await.unwrap();
    drop(idle);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_after_tls_is_closed_at_the_login_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let listen = ListenConfig { login_deadline: Duration::from_millis(700), ..Default::default() };
    let server = TestServer::start_with(dir.path(), open(), listen).await;
    let (mut io, _) = sotto_client::transport::open(&server.address).await.unwrap();
    // Half an HTTP/2 preface, then silence.
    io.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    io.flush().await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "closed");
    assert!(started.elapsed() < Duration::from_secs(5), "at the deadline, not the HTTP/2 keep-alive");
    real_client_works(&server, "alice").await;
}

#[tokio::test]
async fn integers_beyond_63_bits_are_a_bad_request_not_a_server_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), open()).await;
    let mut conn = Account::new("alice").online(&server).await;
    conn.request(Request::CreateGroup { group_id: vec![7; 16], roles: false }).await.unwrap();
    let huge = 1u64 << 63;
    for req in [
        Request::Fetch { group_id: vec![7; 16], after_seq: huge, limit: 10 },
        Request::Ack { group_id: vec![7; 16], seq: u64::MAX },
        Request::AckWelcome { welcome_id: huge },
        Request::Send { group_id: vec![7; 16], epoch: huge, client_id: vec![1; 16], payload: vec![1] },
    ] {
        let err = conn.request(req.clone()).await.unwrap_err();
        assert_eq!(code(&err), ErrorCode::BadRequest, "{req:?}: {err}");
    }
    conn.request(Request::LookupUser { handle: "alice".into() }).await.expect("and the connection goes on");
}

#[tokio::test]
async fn a_stalled_upload_is_closed_and_its_quota_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig { upload_idle: Duration::from_millis(500), blob_quota: 1500, ..open() };
    let server = TestServer::start(dir.path(), config).await;
    let alice = Account::new("alice");
    let mut conn = alice.online(&server).await;
    let token = match conn.request(Request::BlobToken).await.unwrap() {
        sotto_proto::Response::BlobToken { token, .. } => hex::encode(token),
        other => panic!("{other:?}"),
    };
    // Headers for 1,000 bytes, 100 of them, then silence.
    let (mut io, _) = sotto_client::transport::open(&server.address).await.unwrap();
    let id = "ab".repeat(16);
    let head = format!(
        "PUT /v1/blobs/{id}?offset=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nx-sotto-size: 1000\r\nContent-Length: 1000\r\n\r\n"
    );
    io.write_all(head.as_bytes()).await.unwrap();
    io.write_all(&[7u8; 100]).await.unwrap();
    io.flush().await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok() && started.elapsed() < Duration::from_secs(5), "closed at the idle limit");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("x-sotto-stored: 100"), "what arrived is kept for a resume: {answer}");
    // Unfinished, it still counts towards the quota...
    let id_bytes = vec![0xab; 16];
    let blob = server.relay.store.blob(&id_bytes).unwrap().expect("kept for a resume");
    assert!(!blob.complete);
    assert!(server.relay.store.begin_blob(&[1; 16], &alice.me(), 1000, 10_000, 1500, 0).is_err(), "quota held");
    // ...until the server gives up on it, and the space is free again.
    assert_eq!(sotto_server::blobs::remove_abandoned(&server.relay, Duration::ZERO).await, 1);
    assert!(server.relay.store.blob(&id_bytes).unwrap().is_none());
    assert!(!server.data.join("blobs").join(format!("{id}.part")).exists(), "its bytes are gone");
    server.relay.store.begin_blob(&[1; 16], &alice.me(), 1000, 10_000, 1500, 0).expect("quota free");
    real_client_works(&server, "bob").await;
}
