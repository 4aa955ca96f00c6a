//! A running server under a mix of hostile clients at once, while a normal
//! pair keeps talking: it never crashes, never leaks another device's data,
//! and the normal messages keep flowing (latency printed for the record).

mod common;

use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::Signer;
use serde_bytes::ByteBuf;
use sotto_proto::{codec, ClientMessage, ErrorCode, Push, Request, Response};
use sotto_server::server::ListenConfig;
use tokio::io::AsyncWriteExt;

/// Alice sends `n` messages to bob; returns each one's send-to-delivery time.
async fn talk(
    a: &mut sotto_client::Connection,
    b: &mut sotto_client::Connection,
    g: &[u8],
    n: u32,
    tag: u32,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let id = (tag * 100_000 + i).to_le_bytes().to_vec();
        a.request(Request::Send { group_id: g.to_vec(), epoch: 1, client_id: id.clone(), payload: id.clone() })
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), b.next_push()).await.expect("delivery in time").unwrap()
            {
                Push::Deliver(d) if d.payload == id => break,
                _ => {}
            }
        }
        times.push(t.elapsed());
    }
    times
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() - 1) * 99 / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_stop_a_normal_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let listen =
        ListenConfig { max_connections_per_ip: 5000, handshake_timeout: Duration::from_secs(5), ..Default::default() };
    let server = TestServer::start_with(dir.path(), open(), listen).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = alice.online(&server).await;
    let mut b = bob.online(&server).await;
    let g = vec![2u8; 16];
    group_with(&mut a, &g, &[&bob]).await;
    b.request(Request::Sync).await.unwrap();
    while !matches!(b.next_push().await.unwrap(), Push::SyncDone) {}
    let mut bk = bob.online(&server).await;
    bk.request(Request::UploadKeyPackages {
        // Classical-suite headers: the server reads only those.
        packages: (0..20u8).map(|i| ByteBuf::from([&[0, 1, 0, 1][..], &[i; 40]].concat())).collect(),
        last_resort: None,
        other_last_resorts: vec![],
    })
    .await
    .unwrap();
    let quiet = p99(talk(&mut a, &mut b, &g, 40, 1).await);

    let addr = server.address.authority();
    let attacks = async {
        let mut tasks = Vec::new();
        // 1,000 idle TCP connections that never speak.
        let idle = {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                for _ in 0..1000 {
                    if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
                        held.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
                held.len()
            })
        };
        // Garbage instead of TLS.
        for _ in 0..50 {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                    let _ = s.write_all(&[0x16, 0x03, 0x03, 0xff, 0xff, 1, 2, 3, 4, 5]).await;
                }
            }));
        }
        for round in 0..10u32 {
            let server_addr = server.address.clone();
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                // Valid frames in the wrong order, garbage, truncation.
                let mut c = sotto_client::Connection::connect(&server_addr).await.unwrap();
                assert_eq!(c.request(Request::Sync).await.unwrap_err().code(), Some(ErrorCode::NotAuthenticated));
                assert_eq!(
                    c.request(Request::Ack { group_id: g.clone(), seq: 1 }).await.unwrap_err().code(),
                    Some(ErrorCode::NotAuthenticated)
                );
                let full = codec::encode(&ClientMessage { id: 9, request: Request::Sync }).unwrap();
                let _ = c.send_raw(full[..full.len() / 2].to_vec()).await;
                // A replayed login: a signature made for another connection.
                let other = sotto_client::Connection::connect(&server_addr).await.unwrap();
                let stolen = Account::new("alice");
                let mut r = sotto_client::Connection::connect(&server_addr).await.unwrap();
                let sig = stolen.device.sign(&other.login_payload()).to_bytes().to_vec();
                let err = r
                    .request(Request::Login {
                        handle: "alice".into(),
                        device_id: 1,
                        signature: sig,
                        copy: None,
                        takeover: false,
                    })
                    .await
                    .unwrap_err();
                assert_eq!(err.code(), Some(ErrorCode::AuthFailed));
                // A logged-in stranger: everything about alice's group is refused.
                let mallory = Account::new(&format!("mallory{round}"));
                let mut m = sotto_client::Connection::connect(&server_addr).await.unwrap();
                mallory.register(&mut m, None).await.unwrap();
                for req in [
                    Request::Fetch { group_id: g.clone(), after_seq: 0, limit: 500 },
                    Request::Ack { group_id: g.clone(), seq: 1_000_000 },
                    Request::Send { group_id: g.clone(), epoch: 1, client_id: vec![7], payload: b"spoof".to_vec() },
                    Request::GroupState { group_id: g.clone() },
                    Request::Leave { group_id: g.clone() },
                    Request::GetGroupInfo { group_id: g.clone() },
                ] {
                    assert_eq!(m.request(req).await.unwrap_err().code(), Some(ErrorCode::NotMember));
                }
                // Claiming bob's key packages in a loop: they run out, then
                // the answer is a clear error, not a crash.
                for _ in 0..10 {
                    match m
                        .request(Request::ClaimKeyPackages { handle: "bob".into(), devices: None, suites: vec![] })
                        .await
                    {
                        Ok(Response::KeyPackages { .. }) => {}
                        Err(e) => assert!(matches!(e.code(), Some(ErrorCode::NoKeyPackages | ErrorCode::RateLimited))),
                        Ok(other) => panic!("{other:?}"),
                    }
                }
                // An oversized frame closes only this connection.
                let _ = m.send_raw(vec![0u8; sotto_proto::limits::MAX_FRAME_BYTES + 1]).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        idle.await.unwrap()
    };
    let (held, times) = tokio::join!(attacks, talk(&mut a, &mut b, &g, 40, 2));
    let under_siege = p99(times);
    eprintln!("normal pair p99: quiet {quiet:?}, under siege {under_siege:?} ({held} idle connections held)");
    assert!(held >= 900, "the idle connections were really open: {held}");
    assert!(under_siege < Duration::from_secs(2), "the normal pair kept talking: p99 {under_siege:?}");
    // Nothing of alice's reached anyone else; the log holds exactly her 80 messages.
    let Response::Messages { messages } =
        b.request(Request::Fetch { group_id: g.clone(), after_seq: 1, limit: 500 }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(messages.len(), 80);
    assert!(messages.iter().all(|m| m.sender == alice.me()));
    // And the server still takes new people.
    Account::new("latecomer").online(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stops_reading_is_dropped_and_nobody_else_waits() {
    let dir = tempfile::tempdir().unwrap();
    let config = sotto_server::relay::RelayConfig {
        write_timeout: Duration::from_secs(1),
        // The flood must reach the server at full speed: this is about a
        // reader that stopped, not the senders' budgets.
        request_rate: 100_000,
        request_burst: 100_000,
        byte_rate: 1 << 40,
        byte_burst: 1 << 40,
        ..open()
    };
    let server = TestServer::start(dir.path(), config).await;
    let (alice, bob, carol, dave) =
        (Account::new("alice"), Account::new("bob"), Account::new("carol"), Account::new("dave"));
    let mut a = alice.online(&server).await;
    let mut c = carol.online(&server).await;
    let mut d = dave.online(&server).await;
    let mut b = bob.online(&server).await;
    let (g1, g2) = (vec![2u8; 16], vec![3u8; 16]);
    group_with(&mut a, &g1, &[&bob]).await;
    group_with(&mut c, &g2, &[&dave]).await;
    d.request(Request::Sync).await.unwrap();
    while !matches!(d.next_push().await.unwrap(), Push::SyncDone) {}
    let quiet = p99(talk(&mut c, &mut d, &g2, 30, 1).await);

    // Bob syncs, then never reads again.
    b.request(Request::Sync).await.unwrap();
    let flood = async {
        let started = Instant::now();
        for i in 0..3000u32 {
            a.request(Request::Send {
                group_id: g1.clone(),
                epoch: 1,
                client_id: i.to_le_bytes().to_vec(),
                payload: vec![9; 16 * 1024],
            })
            .await
            .unwrap();
        }
        started.elapsed()
    };
    let (flood_time, times) = tokio::join!(flood, talk(&mut c, &mut d, &g2, 30, 2));
    let busy = p99(times);
    eprintln!(
        "other pair p99: quiet {quiet:?}, during the flood {busy:?}; 3000 x 16 KiB acknowledged in {flood_time:?}"
    );
    assert!(busy < Duration::from_secs(1), "the others kept talking: {busy:?}");
    // Bob's session gave up on him once he took no bytes for a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.relay.hub.is_online(&bob.me()) {
        assert!(Instant::now() < deadline, "the stuck session was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);
    // Nothing was lost: on his next connection he gets all 3000.
    let mut b = bob.online(&server).await;
    b.request(Request::Sync).await.unwrap();
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), b.next_push()).await.unwrap().unwrap() {
            Push::Deliver(dl) if dl.kind == sotto_proto::MessageKind::Application => got += 1,
            Push::SyncDone => break,
            _ => {}
        }
    }
    assert_eq!(got, 3000);
}
