//! Test harness: a real relay on 127.0.0.1:0 with real TLS and a temporary
//! data directory, and accounts that register and log in like clients do.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use sotto_client::{ClientError, Connection};
use sotto_proto::{DeviceInfo, DeviceRef, Request, Response, ServerAddress, Transport};
use sotto_server::node::{Node, Services};
use sotto_server::relay::{Relay, RelayConfig};
use sotto_server::server::ListenConfig;

use tokio::sync::oneshot;

pub struct TestServer {
    pub address: ServerAddress,
    pub relay: Arc<Relay>,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(data: &Path, config: RelayConfig) -> Self {
        Self::start_with(data, config, ListenConfig::default()).await
    }

    pub async fn start_with(data: &Path, config: RelayConfig, listen: ListenConfig) -> Self {
        let tls = sotto_server::tls::self_signed(&data.join("tls"), &[]).unwrap();
        let pin = tls.pin.unwrap();
        // The same composition root as the binary (node::Node), with the
        // operator socket and maintenance tasks left out.
        let node = Node::open(data, config, pin.to_vec()).unwrap();
        let relay = node.relay();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            node.serve(listener, Some(tls.config), listen, Services::default(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            address: ServerAddress { host: "127.0.0.1".into(), port, transport: Transport::Pinned(pin) },
            relay,
            data: data.to_owned(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.address).await.unwrap()
    }

    pub fn invite(&self, uses: u32) -> String {
        let code = sotto_server::invite::new_code();
        self.relay.store.create_invite(&code, uses, None, sotto_server::relay::now_ms()).unwrap();
        code
    }
}

pub fn open() -> RelayConfig {
    RelayConfig { open_registration: true, ..Default::default() }
}

pub struct Account {
    pub handle: String,
    pub account: SigningKey,
    pub device: SigningKey,
}

impl Account {
    pub fn new(handle: &str) -> Self {
        let mut rng = rand::rngs::OsRng;
        Self { handle: handle.into(), account: SigningKey::generate(&mut rng), device: SigningKey::generate(&mut rng) }
    }

    pub fn me(&self) -> DeviceRef {
        DeviceRef { handle: self.handle.clone(), device_id: 1 }
    }

    pub fn device_info(&self) -> DeviceInfo {
        let key = self.device.verifying_key().to_bytes().to_vec();
        let cert = self.account.sign(&sotto_proto::signing::device_certificate_payload(&self.handle, 1, &key));
        DeviceInfo { device_id: 1, device_key: key, certificate: cert.to_bytes().to_vec() }
    }

    pub fn register_request(&self, conn: &Connection, invite: Option<String>) -> Request {
        Request::Register {
            handle: self.handle.clone(),
            account_key: self.account.verifying_key().to_bytes().to_vec(),
            device: self.device_info(),
            invite,
            signature: self.device.sign(&conn.login_payload()).to_bytes().to_vec(),
        }
    }

    pub async fn register(&self, conn: &mut Connection, invite: Option<String>) -> Result<Response, ClientError> {
        let req = self.register_request(conn, invite);
        conn.request(req).await
    }

    pub async fn login(&self, conn: &mut Connection) -> Result<Response, ClientError> {
        let signature = self.device.sign(&conn.login_payload()).to_bytes().to_vec();
        conn.request(Request::Login {
            handle: self.handle.clone(),
            device_id: 1,
            signature,
            copy: None,
            takeover: false,
        })
        .await
    }

    /// Connects and registers (open server) or logs in.
    pub async fn online(&self, server: &TestServer) -> Connection {
        let mut conn = server.connect().await;
        match self.login(&mut conn).await {
            Ok(_) => conn,
            Err(_) => {
                let mut conn = server.connect().await;
                self.register(&mut conn, None).await.unwrap();
                conn
            }
        }
    }
}

pub fn code(e: &ClientError) -> sotto_proto::ErrorCode {
    e.code().unwrap_or_else(|| panic!("expected a server error code, got {e}"))
}

/// Creates group `g` on `conn` (epoch 0) and adds `others` with one commit;
/// returns the commit's sequence number.
pub async fn group_with(conn: &mut Connection, g: &[u8], others: &[&Account]) -> u64 {
    conn.request(Request::CreateGroup { group_id: g.to_vec(), roles: false }).await.unwrap();
    let r = conn
        .request(Request::Commit {
            group_id: g.to_vec(),
            epoch: 0,
            client_id: b"add".to_vec(),
            commit: b"commit".to_vec(),
            welcome: Some(serde_bytes::ByteBuf::from(b"welcome".to_vec())),
            added: others.iter().map(|a| a.me()).collect(),
            removed: vec![],
        })
        .await
        .unwrap();
    match r {
        Response::Appended { seq, .. } => seq,
        other => panic!("{other:?}"),
    }
}
