//! A full disk (SQLite's own page limit on the live database): every write
//! that cannot be stored reaches the sender as a retryable error, never as
//! an acknowledgement; nothing panics; once space is back the same retries
//! go through, and the log has each message exactly once, in order.

mod common;

use std::sync::Arc;

use common::*;
use sotto_proto::{ErrorCode, Request, Response};
use sotto_server::relay::Relay;
use sotto_server::server::{self, ListenConfig};
use sotto_server::store::{SqliteStore, Store};

#[tokio::test]
async fn a_full_disk_gives_retryable_errors_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tls = sotto_server::tls::self_signed(&dir.path().join("tls"), &[]).unwrap();
    let pin = tls.pin.unwrap();
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("relay.db")).unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let relay = Arc::new(Relay::new(store, open(), pin.to_vec(), dir.path().join("blobs")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = sotto_proto::ServerAddress {
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
        transport: sotto_proto::Transport::Pinned(pin),
    };
    tokio::spawn(server::run(listener, Some(tls.config), relay, ListenConfig::default(), std::future::pending()));

    let connect = || sotto_client::Connection::connect(&address);
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = connect().await.unwrap();
    alice.register(&mut a, None).await.unwrap();
    let mut b = connect().await.unwrap();
    bob.register(&mut b, None).await.unwrap();
    let g = vec![2u8; 16];
    group_with(&mut a, &g, &[&bob]).await;

    // The disk fills up.
    sqlite.set_max_bytes(0).unwrap();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..200u32 {
        let req = Request::Send {
            group_id: g.clone(),
            epoch: 1,
            client_id: i.to_le_bytes().to_vec(),
            payload: vec![7; 4096],
        };
        match a.request(req).await {
            Ok(Response::Appended { seq, .. }) => acked.push((i, seq)),
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Internal), "a full disk is a retryable server error: {e}");
                refused.push(i);
            }
            Ok(other) => panic!("{other:?}"),
        }
    }
    assert!(!refused.is_empty(), "the page limit really bit");
    // Reads still work and the server still answers everyone.
    assert!(matches!(b.request(Request::GroupState { group_id: g.clone() }).await.unwrap(), Response::Group { .. }));

    // Space comes back; the sender retries what was refused, same ids.
    sqlite.set_max_bytes(1 << 30).unwrap();
    for i in refused {
        let req = Request::Send {
            group_id: g.clone(),
            epoch: 1,
            client_id: i.to_le_bytes().to_vec(),
            payload: vec![7; 4096],
        };
        match a.request(req).await.unwrap() {
            Response::Appended { seq, duplicate, .. } => {
                assert!(!duplicate, "a refused message was never stored");
                acked.push((i, seq));
            }
            other => panic!("{other:?}"),
        }
    }
    let Response::Messages { messages } =
        b.request(Request::Fetch { group_id: g.clone(), after_seq: 1, limit: 500 }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(messages.len(), 200, "each message exactly once");
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat in the log");
    let mut acked_seqs: Vec<u64> = acked.iter().map(|x| x.1).collect();
    acked_seqs.sort_unstable();
    assert_eq!(acked_seqs, seqs);
}
