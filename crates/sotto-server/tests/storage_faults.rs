//! Storage faults. A full disk (SQLite's own page limit on the live
//! database), and injected I/O errors on every n-th store call of the
//! delivery path: every write that cannot be stored reaches the sender as a
//! retryable error, never as an acknowledgement; nothing panics; once the
//! fault is gone the same retries go through, and the log has each message
//! exactly once, in order.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use sotto_proto::{Delivery, DeviceInfo, DeviceRef};
use sotto_proto::{ErrorCode, Request, Response};
use sotto_server::node::{Node, Services};
use sotto_server::server::ListenConfig;
use sotto_server::store::*;

/// A real server (TLS, WebSocket) over `store` on 127.0.0.1, its TLS key
/// and blobs in `dir`.
async fn serve(dir: &std::path::Path, store: Arc<dyn Store>) -> sotto_proto::ServerAddress {
    let tls = sotto_server::tls::self_signed(&dir.join("tls"), &[]).unwrap();
    let pin = tls.pin.unwrap();
    let node = Node::with_store(store, dir, open(), pin.to_vec()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = sotto_proto::ServerAddress {
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
        transport: sotto_proto::Transport::Pinned(pin),
    };
    let services = Services::default();
    tokio::spawn(node.serve(listener, Some(tls.config), ListenConfig::default(), services, std::future::pending()));
    address
}

#[tokio::test]
async fn a_full_disk_gives_retryable_errors_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("relay.db")).unwrap());
    let address = serve(dir.path(), sqlite.clone()).await;

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

/// The store behind a wrapper that fails every n-th call on the delivery
/// path (appends, fetches, acknowledgements, memberships, welcomes) with an
/// I/O error, as a failing disk would.
struct Faulty {
    inner: SqliteStore,
    calls: AtomicU64,
    /// 0: no faults.
    every: AtomicU64,
    injected: AtomicU64,
}

impl Faulty {
    fn fault(&self) -> StoreResult<()> {
        let every = self.every.load(Ordering::Relaxed);
        if every > 0 && self.calls.fetch_add(1, Ordering::Relaxed) % every == every - 1 {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Backend("injected I/O error".into()));
        }
        Ok(())
    }
}

impl Accounts for Faulty {
    fn create_invite(&self, code: &str, uses: u32, expires_at: Option<i64>, now: i64) -> StoreResult<()> {
        self.inner.create_invite(code, uses, expires_at, now)
    }

    fn register(
        &self,
        handle: &str,
        account_key: &[u8],
        device: &DeviceInfo,
        invite: Option<&str>,
        require_invite: bool,
        now: i64,
    ) -> StoreResult<()> {
        self.inner.register(handle, account_key, device, invite, require_invite, now)
    }

    fn account(&self, handle: &str) -> StoreResult<Option<AccountRecord>> {
        self.inner.account(handle)
    }

    fn claim_copy(&self, device: &DeviceRef, copy: &[u8], takeover: bool, now: i64) -> StoreResult<Result<(), i64>> {
        self.inner.claim_copy(device, copy, takeover, now)
    }

    fn set_banned(&self, handle: &str, banned: bool) -> StoreResult<()> {
        self.inner.set_banned(handle, banned)
    }

    fn remove_account(&self, handle: &str, removal: Removal) -> StoreResult<()> {
        self.inner.remove_account(handle, removal)
    }

    fn add_device(&self, handle: &str, device: &DeviceInfo, max_devices: u32, now: i64) -> StoreResult<()> {
        self.inner.add_device(handle, device, max_devices, now)
    }

    fn remove_device(&self, device: &DeviceRef, now: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.inner.remove_device(device, now)
    }

    fn device_seen(&self, device: &DeviceRef, now: i64) -> StoreResult<()> {
        self.inner.device_seen(device, now)
    }

    fn device_records(&self, handle: &str) -> StoreResult<Vec<sotto_proto::DeviceRecord>> {
        self.inner.device_records(handle)
    }
}

impl KeyPackages for Faulty {
    fn add_key_packages(
        &self,
        device: &DeviceRef,
        packages: &[(u16, Vec<u8>)],
        last_resorts: &[(u16, Vec<u8>)],
    ) -> StoreResult<u32> {
        self.inner.add_key_packages(device, packages, last_resorts)
    }

    fn key_package_count(&self, device: &DeviceRef) -> StoreResult<u32> {
        self.inner.key_package_count(device)
    }

    fn claim_key_packages(
        &self,
        handle: &str,
        only: Option<&[u32]>,
        suites: &[u16],
    ) -> StoreResult<Vec<(DeviceInfo, Vec<u8>, u32)>> {
        self.inner.claim_key_packages(handle, only, suites)
    }
}

impl GroupLog for Faulty {
    fn create_group_with(&self, group_id: &[u8], creator: &DeviceRef, roles: bool, now: i64) -> StoreResult<()> {
        self.inner.create_group_with(group_id, creator, roles, now)
    }

    fn group(&self, group_id: &[u8]) -> StoreResult<Option<GroupRecord>> {
        self.inner.group(group_id)
    }

    fn append(&self, message: &NewMessage<'_>, now: i64) -> StoreResult<Appended> {
        self.inner.append(message, now)
    }

    fn append_queued(&self, message: &NewMessage<'_>, now: i64) -> AppendTicket {
        if let Err(e) = self.fault() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Err(e));
            return rx;
        }
        self.inner.append_queued(message, now)
    }

    fn fetch(&self, group_id: &[u8], device: &DeviceRef, after_seq: u64, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.fault()?;
        self.inner.fetch(group_id, device, after_seq, limit)
    }

    fn memberships(&self, device: &DeviceRef) -> StoreResult<Vec<Membership>> {
        self.fault()?;
        self.inner.memberships(device)
    }

    fn put_group_info(&self, group_id: &[u8], device: &DeviceRef, epoch: u64, group_info: &[u8]) -> StoreResult<()> {
        self.inner.put_group_info(group_id, device, epoch, group_info)
    }

    fn group_info(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, Vec<u8>)>> {
        self.inner.group_info(group_id, device)
    }

    fn groups_created(&self, device: &DeviceRef) -> StoreResult<u64> {
        self.inner.groups_created(device)
    }

    fn leave(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<()> {
        self.inner.leave(group_id, device)
    }

    fn co_members(&self, device: &DeviceRef, handles: &[String]) -> StoreResult<Vec<String>> {
        self.inner.co_members(device, handles)
    }

    fn set_accepted(&self, group_id: &[u8], device: &DeviceRef, accepted: bool) -> StoreResult<()> {
        self.inner.set_accepted(group_id, device, accepted)
    }

    fn set_role(&self, group_id: &[u8], by: &DeviceRef, handle: &str, admin: bool) -> StoreResult<()> {
        self.fault()?;
        self.inner.set_role(group_id, by, handle, admin)
    }

    fn set_group_policy(&self, group_id: &[u8], by: &DeviceRef, members_can_add: bool) -> StoreResult<()> {
        self.fault()?;
        self.inner.set_group_policy(group_id, by, members_can_add)
    }

    fn set_retention(&self, group_id: &[u8], device: &DeviceRef, retention_ms: Option<i64>) -> StoreResult<()> {
        self.fault()?;
        self.inner.set_retention(group_id, device, retention_ms)
    }

    fn purge_group_retention(&self, now: i64) -> StoreResult<u64> {
        self.inner.purge_group_retention(now)
    }

    fn ack(&self, group_id: &[u8], device: &DeviceRef, seq: u64) -> StoreResult<()> {
        self.fault()?;
        self.inner.ack(group_id, device, seq)
    }

    fn welcomes(&self, device: &DeviceRef) -> StoreResult<Vec<StoredWelcome>> {
        self.fault()?;
        self.inner.welcomes(device)
    }

    fn ack_welcome(&self, device: &DeviceRef, welcome_id: u64) -> StoreResult<Option<Vec<u8>>> {
        self.fault()?;
        self.inner.ack_welcome(device, welcome_id)
    }

    fn purge_expired(&self, now: i64, retention_ms: i64) -> StoreResult<u64> {
        self.inner.purge_expired(now, retention_ms)
    }
}

impl Blobs for Faulty {
    fn begin_blob(
        &self,
        id: &[u8],
        owner: &DeviceRef,
        size: u64,
        max_size: u64,
        quota: u64,
        now: i64,
    ) -> StoreResult<BlobRecord> {
        self.inner.begin_blob(id, owner, size, max_size, quota, now)
    }

    fn blob(&self, id: &[u8]) -> StoreResult<Option<BlobRecord>> {
        self.inner.blob(id)
    }

    fn complete_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.inner.complete_blob(id)
    }

    fn share_blob(&self, id: &[u8], owner: &DeviceRef, group_id: &[u8]) -> StoreResult<()> {
        self.inner.share_blob(id, owner, group_id)
    }

    fn may_read_blob(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.inner.may_read_blob(id, device)
    }

    fn blob_fetched(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool> {
        self.inner.blob_fetched(id, device)
    }

    fn incomplete_blobs(&self) -> StoreResult<Vec<sotto_server::store::BlobRecord>> {
        self.inner.incomplete_blobs()
    }

    fn remove_blob(&self, id: &[u8]) -> StoreResult<()> {
        self.inner.remove_blob(id)
    }

    fn expire_blobs(&self, cutoff: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.inner.expire_blobs(cutoff)
    }

    fn expire_group_blobs(&self, now: i64) -> StoreResult<Vec<Vec<u8>>> {
        self.inner.expire_group_blobs(now)
    }
}

impl sotto_server::store::Changes for Faulty {}

impl OperatorViews for Faulty {
    fn list_invites(&self) -> StoreResult<Vec<InviteRecord>> {
        self.inner.list_invites()
    }

    fn revoke_invite(&self, id_or_code: &str) -> StoreResult<bool> {
        self.inner.revoke_invite(id_or_code)
    }

    fn list_accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        self.inner.list_accounts()
    }

    fn stats(&self) -> StoreResult<StoreStats> {
        self.inner.stats()
    }

    fn add_notice(&self, text: &str, now: i64) -> StoreResult<u64> {
        self.inner.add_notice(text, now)
    }

    fn notices_after(&self, after: u64, limit: usize) -> StoreResult<Vec<sotto_proto::Notice>> {
        self.inner.notices_after(after, limit)
    }
}

/// Every injected failure reaches the client as a retryable error, never
/// as an acknowledgement; the server keeps serving; once the clients retry
/// (the sender with the same client ids, the receiver by reconnecting and
/// syncing from its cursor), each message arrives exactly once, in order.
#[tokio::test]
async fn injected_io_errors_are_retryable_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(Faulty {
        inner: SqliteStore::open(&dir.path().join("relay.db")).unwrap(),
        calls: AtomicU64::new(0),
        every: AtomicU64::new(0),
        injected: AtomicU64::new(0),
    });
    let address = serve(dir.path(), faulty.clone()).await;
    let (alice, bob) = (Account::new("alice"), Account::new("bob"));
    let mut a = sotto_client::Connection::connect(&address).await.unwrap();
    alice.register(&mut a, None).await.unwrap();
    let mut b = sotto_client::Connection::connect(&address).await.unwrap();
    bob.register(&mut b, None).await.unwrap();
    let g = vec![2u8; 16];
    let added_at = group_with(&mut a, &g, &[&bob]).await;
    b.close().await;

    faulty.every.store(7, Ordering::Relaxed);
    let total = 150u32;
    let mut refusals = 0;
    for i in 0..total {
        let req = Request::Send {
            group_id: g.clone(),
            epoch: 1,
            client_id: i.to_le_bytes().to_vec(),
            payload: i.to_le_bytes().to_vec(),
        };
        loop {
            match a.request(req.clone()).await {
                Ok(Response::Appended { .. }) => break,
                Err(e) => {
                    assert_eq!(e.code(), Some(ErrorCode::Internal), "an I/O error is a retryable server error: {e}");
                    refusals += 1;
                }
                Ok(other) => panic!("{other:?}"),
            }
        }
    }
    assert!(refusals > 0, "faults were injected into appends");

    // Bob reads through the same failing store: each failure costs him the
    // connection or a request, never a message.
    let mut got: Vec<u32> = Vec::new();
    let mut cursor = added_at;
    for _attempt in 0..200 {
        if got.len() == total as usize {
            break;
        }
        let Ok(mut conn) = sotto_client::Connection::connect(&address).await else { continue };
        if bob.login(&mut conn).await.is_err() {
            continue;
        }
        let fetch = Request::Fetch { group_id: g.clone(), after_seq: cursor, limit: 40 };
        let Ok(Response::Messages { messages }) = conn.request(fetch).await else { continue };
        for d in &messages {
            assert_eq!(d.seq, cursor + 1, "no gap, no repeat");
            cursor = d.seq;
            got.push(u32::from_le_bytes(d.payload[..4].try_into().unwrap()));
        }
        if let Some(last) = messages.last() {
            // A failed acknowledgement only means the same messages again.
            let _ = conn.request(Request::Ack { group_id: g.clone(), seq: last.seq }).await;
        }
        conn.close().await;
    }
    assert_eq!(got, (0..total).collect::<Vec<u32>>(), "every message once, in order");
    assert!(faulty.injected.load(Ordering::Relaxed) > 20, "faults hit reads and acknowledgements too");
}
