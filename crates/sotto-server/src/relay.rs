//! The relay's request logic: checks, store calls and wake-ups, with no
//! socket in sight. The WebSocket session hands every request here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sotto_proto::codec;
use sotto_proto::limits::{
    GROUP_ID_LEN, KEY_PACKAGES_LOW_WATER, MAX_KEY_PACKAGES_PER_UPLOAD, MAX_MEMBERSHIP_CHANGE, MAX_PAYLOAD_BYTES,
};
use sotto_proto::{
    signing, ClaimedKeyPackage, Delivery, DeviceInfo, DeviceRef, ErrorBody, ErrorCode, MessageKind, Push, Request,
    Response, ServerMessage, UserInfo,
};

use crate::hub::{Fresh, Hub};
use crate::store::{NewMessage, Store, StoreError};

/// Settings the relay logic needs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Anyone may register without an invite.
    pub open_registration: bool,
    /// How long undelivered messages are kept.
    pub retention: Duration,
    /// How long a connection may stay unauthenticated.
    pub auth_timeout: Duration,
    /// How often the server pings an idle WebSocket.
    pub ping_interval: Duration,
    /// A connection silent for this long is dropped.
    pub idle_timeout: Duration,
    /// A peer that accepts no bytes for this long is dropped (it stopped
    /// reading; its pushes must not pile up).
    pub write_timeout: Duration,
    /// Whether members may see which of their co-members are online.
    pub presence: bool,
    /// Largest blob (encrypted file) accepted.
    pub max_blob_bytes: u64,
    /// Most blob bytes one account may have stored at once.
    pub blob_quota: u64,
    /// Sustained requests per second per connection.
    pub request_rate: u32,
    /// Requests a connection may make at once above the rate.
    pub request_burst: u32,
    /// Sustained request bytes per second per connection.
    pub byte_rate: u64,
    /// Request bytes a connection may send at once above the rate (at
    /// least the largest frame, or such a frame could never pass).
    pub byte_burst: u64,
    /// Most groups one device may create.
    pub max_groups_per_device: u64,
    /// How long a blob upload may send nothing before the server closes it.
    /// A client on a slow link still sends something every few seconds;
    /// one that stopped only holds a connection slot.
    pub upload_idle: Duration,
    /// Claims of one account's KeyPackages one account may make per hour
    /// (a conversation needs one; see `pair_budget.rs`).
    pub key_package_claims_per_target: u32,
    /// Claims of anyone's KeyPackages one account may make per hour.
    pub key_package_claims_per_hour: u32,
    /// Times one account may add another account's devices to groups per
    /// hour (each is a welcome in their inbox).
    pub adds_per_target: u32,
    /// Adds of anyone's devices one account may make per hour.
    pub adds_per_hour: u32,
}

/// 1 MiB/s: a thousand 1 KiB messages a second, far beyond any person,
/// while one connection flooding 16 KiB messages can no longer slow every
/// other conversation (measured with `sotto-bench backpressure`).
pub const DEFAULT_BYTE_RATE: u64 = 1 << 20;
/// 4 MiB: the largest frame several times over (a commit to a large group,
/// an outbox flushed after a day offline). Beyond it a client hears
/// `rate_limited` and sends again shortly (sotto-client does); a larger
/// burst let a flood's first seconds double everyone else's p99.
pub const DEFAULT_BYTE_BURST: u64 = 4 << 20;

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            open_registration: false,
            retention: Duration::from_secs(30 * 24 * 3600),
            auth_timeout: Duration::from_secs(sotto_proto::limits::AUTH_TIMEOUT_SECS),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            presence: true,
            max_blob_bytes: sotto_proto::limits::DEFAULT_MAX_BLOB_BYTES,
            blob_quota: 4 * sotto_proto::limits::DEFAULT_MAX_BLOB_BYTES,
            request_rate: 500,
            request_burst: 2000,
            byte_rate: DEFAULT_BYTE_RATE,
            byte_burst: DEFAULT_BYTE_BURST,
            max_groups_per_device: 10_000,
            upload_idle: Duration::from_secs(20),
            // A group of a thousand needs a thousand claims by its creator;
            // one person's stock is what must not be drained.
            key_package_claims_per_target: 10,
            key_package_claims_per_hour: 5_000,
            adds_per_target: 30,
            adds_per_hour: 5_000,
        }
    }
}

/// Everything the relay shares between connections.
pub struct Relay {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Live connections.
    pub hub: Hub,
    /// Settings.
    pub config: RelayConfig,
    /// What login signatures are bound to (the TLS key pin, or a stored id).
    pub server_id: Vec<u8>,
    /// Where blob bytes live.
    pub blob_dir: PathBuf,
    /// Bearer tokens for the blob endpoints: token -> (device, expiry).
    pub tokens: Mutex<HashMap<[u8; 32], (DeviceRef, std::time::Instant)>>,
    /// Blobs being uploaded right now: one writer per blob.
    pub uploading: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Counters for /metrics.
    pub metrics: crate::metrics::Metrics,
    /// Budgets for claiming other people's KeyPackages.
    pub claims: crate::pair_budget::PairBudget,
    /// Budgets for adding other people to groups (each add is a welcome
    /// in their inbox).
    pub adds: crate::pair_budget::PairBudget,
    /// Set to true when the server shuts down; sessions say goodbye.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// The answer to a queued request.
pub type Pending<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ErrorBody>> + Send + 'a>>;

/// What [`Relay::submit`] did with a request.
pub enum Submitted<'a> {
    /// An append, queued: its answer.
    Queued(Pending<'a>),
    /// Not an append: handle it with [`Relay::handle`].
    Other(Request),
}

/// How long a blob token is valid.
pub const BLOB_TOKEN_TTL: Duration = Duration::from_secs(3600);

impl Relay {
    /// A relay over `store`, keeping blobs in `blob_dir`.
    pub fn new(store: Arc<dyn Store>, config: RelayConfig, server_id: Vec<u8>, blob_dir: PathBuf) -> Self {
        let claims = crate::pair_budget::PairBudget::new(
            config.key_package_claims_per_target,
            config.key_package_claims_per_hour,
        );
        let adds = crate::pair_budget::PairBudget::new(config.adds_per_target, config.adds_per_hour);
        Self {
            store,
            hub: Hub::default(),
            config,
            server_id,
            blob_dir,
            tokens: Mutex::default(),
            uploading: Mutex::default(),
            metrics: crate::metrics::Metrics::default(),
            claims,
            adds,
            shutdown: tokio::sync::watch::channel(false).0,
        }
    }

    /// The device a blob token belongs to, if it is valid.
    pub fn token_device(&self, token: &[u8]) -> Option<DeviceRef> {
        let token: [u8; 32] = token.try_into().ok()?;
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        tokens.retain(|_, (_, expiry)| *expiry > now);
        tokens.get(&token).map(|(d, _)| d.clone())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::HandleTaken => ErrorCode::HandleTaken,
            StoreError::InviteRequired => ErrorCode::InviteRequired,
            StoreError::InviteInvalid => ErrorCode::InviteInvalid,
            StoreError::UnknownHandle | StoreError::UnknownDevice(_) => ErrorCode::UnknownHandle,
            StoreError::NoKeyPackages => ErrorCode::NoKeyPackages,
            StoreError::UnknownGroup => ErrorCode::UnknownGroup,
            StoreError::GroupExists => ErrorCode::GroupExists,
            StoreError::UnknownBlob => ErrorCode::UnknownBlob,
            StoreError::Invalid(_) => ErrorCode::BadRequest,
            StoreError::NotMember => ErrorCode::NotMember,
            StoreError::StaleEpoch { current } => {
                return ErrorBody {
                    code: ErrorCode::StaleEpoch,
                    message: e.to_string(),
                    current_epoch: Some(*current),
                };
            }
            StoreError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "store failure");
                return ErrorBody::new(ErrorCode::Internal);
            }
        };
        ErrorBody::with_message(code, e.to_string())
    }
}

fn bad(message: impl Into<String>) -> ErrorBody {
    ErrorBody::with_message(ErrorCode::BadRequest, message)
}

fn verify(key: &[u8], payload: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(key) else { return false };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    let Ok(sig) = Signature::from_slice(signature) else { return false };
    key.verify(payload, &sig).is_ok()
}

/// Sequence numbers, epochs and ids are stored as SQL integers (63 bits);
/// a larger one names nothing that can exist, so it is a bad request, not
/// a store failure.
fn check_integers(request: &Request) -> Result<(), ErrorBody> {
    let (name, value) = match request {
        Request::Commit { epoch, .. } | Request::Send { epoch, .. } | Request::PutGroupInfo { epoch, .. } => {
            ("epoch", *epoch)
        }
        Request::Ack { seq, .. } => ("seq", *seq),
        Request::AckWelcome { welcome_id } => ("welcome_id", *welcome_id),
        Request::Fetch { after_seq, .. } => ("after_seq", *after_seq),
        _ => return Ok(()),
    };
    if value > i64::MAX as u64 {
        return Err(bad(format!("{name} {value} is larger than any the server hands out (at most 2^63-1)")));
    }
    Ok(())
}

/// Cuts a fetch answer so its frame stays under the protocol's frame
/// limit (the client asks again from the last one it got). The first
/// message always fits: a payload is at most MAX_PAYLOAD_BYTES.
fn within_frame(mut messages: Vec<sotto_proto::Delivery>) -> Vec<sotto_proto::Delivery> {
    // Room for the frame's own fields and each delivery's envelope.
    const ENVELOPE: usize = 256;
    let budget = sotto_proto::limits::MAX_FRAME_BYTES - 4096;
    let mut used = 0;
    let keep = messages
        .iter()
        .position(|d| {
            used += d.payload.len() + d.group_id.len() + d.sender.handle.len() + ENVELOPE;
            used > budget
        })
        .unwrap_or(messages.len())
        .max(1);
    messages.truncate(keep);
    messages
}

fn check_group_id(group_id: &[u8]) -> Result<(), ErrorBody> {
    if group_id.len() != GROUP_ID_LEN {
        return Err(bad(format!("a group id is {GROUP_ID_LEN} bytes")));
    }
    Ok(())
}

fn check_client_id(client_id: &[u8]) -> Result<(), ErrorBody> {
    if client_id.is_empty() || client_id.len() > 32 {
        return Err(bad("a client id is 1 to 32 bytes"));
    }
    Ok(())
}

/// Runs a store call on the blocking pool: SQLite must not stall the
/// async workers that serve everyone else.
async fn blocking_timed<T: Send + 'static>(
    metrics: &crate::metrics::Metrics,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ErrorBody> {
    let started = std::time::Instant::now();
    let r = tokio::task::spawn_blocking(f).await;
    metrics.store_time(started.elapsed());
    match r {
        Ok(r) => r.map_err(ErrorBody::from),
        Err(e) => {
            tracing::error!(error = %e, "store task failed");
            Err(ErrorBody::new(ErrorCode::Internal))
        }
    }
}

impl Relay {
    /// Handles `Register` or `Login` on an unauthenticated connection.
    /// Returns the device now logged in.
    pub async fn authenticate(&self, challenge: &[u8], request: Request) -> Result<(DeviceRef, Response), ErrorBody> {
        let payload = signing::login_payload(&self.server_id, challenge);
        match request {
            Request::Register { handle, account_key, device, invite, signature } => {
                sotto_proto::validate_handle(&handle)
                    .map_err(|m| ErrorBody::with_message(ErrorCode::InvalidHandle, m))?;
                if account_key.len() != 32 || device.device_key.len() != 32 {
                    return Err(bad("keys are 32-byte Ed25519 public keys"));
                }
                let cert_payload = signing::device_certificate_payload(&handle, device.device_id, &device.device_key);
                if !verify(&account_key, &cert_payload, &device.certificate) {
                    return Err(ErrorBody::new(ErrorCode::BadCertificate));
                }
                if !verify(&device.device_key, &payload, &signature) {
                    return Err(ErrorBody::new(ErrorCode::AuthFailed));
                }
                let store = self.store.clone();
                let require = !self.config.open_registration;
                let (h, d) = (handle.clone(), device.clone());
                blocking_timed(&self.metrics, move || {
                    store.register(&h, &account_key, &d, invite.as_deref(), require, now_ms())
                })
                .await?;
                tracing::info!(handle = %handle, "account registered");
                let dref = DeviceRef { handle, device_id: device.device_id };
                Ok((dref.clone(), Response::LoggedIn { device: dref, key_packages: 0 }))
            }
            Request::Login { handle, device_id, signature, copy, takeover } => {
                let store = self.store.clone();
                let h = handle.clone();
                let account = blocking_timed(&self.metrics, move || store.account(&h)).await?;
                // Unknown handle and bad signature answer alike, so login
                // does not tell a stranger which handles exist.
                let Some(account) = account else { return Err(ErrorBody::new(ErrorCode::AuthFailed)) };
                let Some(device) = account.devices.iter().find(|d| d.device_id == device_id) else {
                    return Err(ErrorBody::new(ErrorCode::AuthFailed));
                };
                if !verify(&device.device_key, &payload, &signature) {
                    return Err(ErrorBody::new(ErrorCode::AuthFailed));
                }
                if account.banned {
                    return Err(ErrorBody::new(ErrorCode::Banned));
                }
                let dref = DeviceRef { handle, device_id };
                if let Some(copy) = copy.filter(|c| !c.is_empty() && c.len() <= 32) {
                    let (store, d) = (self.store.clone(), dref.clone());
                    let claimed =
                        blocking_timed(&self.metrics, move || store.claim_copy(&d, &copy, takeover, now_ms())).await?;
                    if let Err(since) = claimed {
                        let when = humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + Duration::from_millis(since.max(0) as u64),
                        );
                        return Err(ErrorBody::with_message(
                            ErrorCode::StaleCopy,
                            format!(
                                "this copy of the profile is out of date: a backup of it was restored on another device at {when}, and that copy is the one in use now. Keep using that one and remove this copy (its history is in the backup up to then)"
                            ),
                        ));
                    }
                    if takeover {
                        // The copy it replaces is cut off at once.
                        self.hub.kick_account_device(
                            &dref,
                            ErrorBody::with_message(
                                ErrorCode::StaleCopy,
                                "this copy of the profile was replaced by one restored from a backup",
                            ),
                        );
                    }
                }
                let store = self.store.clone();
                let d = dref.clone();
                let key_packages = blocking_timed(&self.metrics, move || store.key_package_count(&d)).await?;
                Ok((dref.clone(), Response::LoggedIn { device: dref, key_packages }))
            }
            _ => Err(ErrorBody::new(ErrorCode::NotAuthenticated)),
        }
    }

    /// Queues a `Send` or `Commit` with the store and returns the future of
    /// its answer, which resolves once the append is durable. Any other
    /// request is given back. Queuing happens before this returns, so a
    /// session that submits a client's requests in order has them appended
    /// in that order, however many it keeps in flight.
    pub fn submit<'a>(&'a self, me: &DeviceRef, request: Request) -> Submitted<'a> {
        let ready = |r: Result<Response, ErrorBody>| Submitted::Queued(Box::pin(std::future::ready(r)));
        if let Err(e) = check_integers(&request) {
            return ready(Err(e));
        }
        let now = now_ms();
        let (group_id, added, ticket, (epoch, kind, payload)) = match request {
            Request::Commit { group_id, epoch, client_id, commit, welcome, added, removed } => {
                if let Err(e) = check_group_id(&group_id).and_then(|_| check_client_id(&client_id)) {
                    return ready(Err(e));
                }
                if commit.len() > MAX_PAYLOAD_BYTES || welcome.as_ref().is_some_and(|w| w.len() > MAX_PAYLOAD_BYTES) {
                    return ready(Err(ErrorBody::new(ErrorCode::FrameTooLarge)));
                }
                if added.len() + removed.len() > MAX_MEMBERSHIP_CHANGE {
                    return ready(Err(bad("too many membership changes in one commit")));
                }
                let mut targets: Vec<&str> =
                    added.iter().map(|d| d.handle.as_str()).filter(|h| *h != me.handle).collect();
                targets.sort_unstable();
                targets.dedup();
                let when = std::time::Instant::now();
                if let Some(t) = targets.iter().find(|t| !self.adds.allow(&me.handle, t, when)) {
                    return ready(Err(ErrorBody::with_message(
                        ErrorCode::RateLimited,
                        format!("@{t} was added to groups too often this hour; try again later"),
                    )));
                }
                if !added.is_empty() && welcome.is_none() {
                    return ready(Err(bad("a commit that adds devices must carry a welcome")));
                }
                let ticket = self.store.append_queued(
                    &NewMessage {
                        group_id: &group_id,
                        sender: me,
                        epoch,
                        kind: MessageKind::Commit,
                        client_id: &client_id,
                        payload: &commit,
                        added: &added,
                        removed: &removed,
                        welcome: welcome.as_deref().map(|v| &v[..]),
                    },
                    now,
                );
                (group_id, added, ticket, (epoch, MessageKind::Commit, commit))
            }
            Request::Send { group_id, epoch, client_id, payload } => {
                if let Err(e) = check_group_id(&group_id).and_then(|_| check_client_id(&client_id)) {
                    return ready(Err(e));
                }
                if payload.len() > MAX_PAYLOAD_BYTES {
                    return ready(Err(ErrorBody::new(ErrorCode::FrameTooLarge)));
                }
                let ticket = self.store.append_queued(
                    &NewMessage {
                        group_id: &group_id,
                        sender: me,
                        epoch,
                        kind: MessageKind::Application,
                        client_id: &client_id,
                        payload: &payload,
                        added: &[],
                        removed: &[],
                        welcome: None,
                    },
                    now,
                );
                (group_id, Vec::new(), ticket, (epoch, MessageKind::Application, payload))
            }
            other => return Submitted::Other(other),
        };
        let started = std::time::Instant::now();
        let sender = me.clone();
        Submitted::Queued(Box::pin(async move {
            let appended = match ticket.await {
                Ok(r) => r.map_err(ErrorBody::from)?,
                Err(_) => return Err(ErrorBody::new(ErrorCode::Internal)),
            };
            self.metrics.store_time(started.elapsed());
            if !appended.duplicate {
                self.metrics.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let delivery = Delivery {
                    group_id: group_id.clone(),
                    seq: appended.seq,
                    epoch,
                    sender: sender.clone(),
                    kind,
                    payload,
                    stored_at: now,
                };
                // The entry exactly as the store would give it back, encoded
                // once for every recipient.
                match codec::encode(&ServerMessage::Push(Push::Deliver(delivery))) {
                    Ok(frame) => {
                        let fresh = Fresh { seq: appended.seq, frame: frame.into() };
                        if added.is_empty() {
                            self.hub.deliver(&appended.members, &group_id, &fresh);
                        } else {
                            // New members read from after the commit that
                            // adds them: they look in the store.
                            let (new, old): (Vec<DeviceRef>, Vec<DeviceRef>) =
                                appended.members.iter().cloned().partition(|m| added.contains(m));
                            self.hub.deliver(&old, &group_id, &fresh);
                            self.hub.wake_group(&new, &group_id);
                        }
                    }
                    Err(_) => self.hub.wake_group(&appended.members, &group_id),
                }
                if !added.is_empty() {
                    self.hub.wake_inbox(&added);
                }
            }
            Ok(Response::Appended { seq: appended.seq, epoch: appended.epoch, duplicate: appended.duplicate })
        }))
    }

    /// Handles a request from a logged-in device (everything but `Sync`,
    /// which the session drives).
    pub async fn handle(&self, me: &DeviceRef, request: Request) -> Result<Response, ErrorBody> {
        let request = match self.submit(me, request) {
            Submitted::Queued(pending) => return pending.await,
            Submitted::Other(request) => request,
        };
        let store = self.store.clone();
        match request {
            Request::Register { .. } | Request::Login { .. } => Err(ErrorBody::new(ErrorCode::AlreadyAuthenticated)),
            Request::Sync => Err(bad("sync is handled by the session")),
            Request::DeleteAccount => {
                let handle = me.handle.clone();
                blocking_timed(&self.metrics, move || store.remove_account(&handle)).await?;
                // Its other devices' connections end too (this one gets
                // its answer first: the kick is seen on the next turn).
                self.hub.kick_account(
                    &me.handle,
                    ErrorBody::with_message(ErrorCode::NotAuthenticated, "this account was deleted"),
                );
                tracing::info!(handle = %me.handle, "account deleted by its owner");
                Ok(Response::Done)
            }
            Request::UploadKeyPackages { packages, last_resort } => {
                if packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
                    return Err(bad(format!("at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload")));
                }
                if packages.iter().chain(last_resort.iter()).any(|p| p.is_empty() || p.len() > 16 * 1024) {
                    return Err(bad("a key package is 1 byte to 16 KiB"));
                }
                let me = me.clone();
                let packages: Vec<Vec<u8>> = packages.into_iter().map(|p| p.into_vec()).collect();
                let n = blocking_timed(&self.metrics, move || {
                    store.add_key_packages(&me, &packages, last_resort.as_deref().map(|v| &v[..]))
                })
                .await?;
                Ok(Response::KeyPackagesStored { key_packages: n })
            }
            Request::ClaimKeyPackages { handle } => {
                if !self.claims.allow(&me.handle, &handle, std::time::Instant::now()) {
                    return Err(ErrorBody::with_message(
                        ErrorCode::RateLimited,
                        format!("too many key package claims for @{handle} this hour; try again later"),
                    ));
                }
                let h = handle.clone();
                let s2 = store.clone();
                let claimed = blocking_timed(&self.metrics, move || s2.claim_key_packages(&h)).await?;
                let h = handle.clone();
                let account = blocking_timed(&self.metrics, move || store.account(&h))
                    .await?
                    .ok_or_else(|| ErrorBody::new(ErrorCode::UnknownHandle))?;
                let mut packages = Vec::with_capacity(claimed.len());
                for (device, package, left) in claimed {
                    if (left as usize) < KEY_PACKAGES_LOW_WATER {
                        self.hub
                            .key_packages_low(&DeviceRef { handle: handle.clone(), device_id: device.device_id }, left);
                    }
                    packages.push(ClaimedKeyPackage { device, package });
                }
                Ok(Response::KeyPackages { handle, account_key: account.account_key, packages })
            }
            Request::LookupUser { handle } => {
                let account = blocking_timed(&self.metrics, move || store.account(&handle))
                    .await?
                    .ok_or_else(|| ErrorBody::new(ErrorCode::UnknownHandle))?;
                Ok(Response::User(UserInfo {
                    handle: account.handle,
                    account_key: account.account_key,
                    devices: account.devices,
                }))
            }
            Request::CreateGroup { group_id } => {
                check_group_id(&group_id)?;
                let (s2, me2) = (store.clone(), me.clone());
                let created = blocking_timed(&self.metrics, move || s2.groups_created(&me2)).await?;
                if created >= self.config.max_groups_per_device {
                    return Err(ErrorBody::with_message(
                        ErrorCode::LimitExceeded,
                        format!(
                            "a device may create at most {} groups on this server",
                            self.config.max_groups_per_device
                        ),
                    ));
                }
                let me = me.clone();
                blocking_timed(&self.metrics, move || store.create_group(&group_id, &me, now_ms())).await?;
                Ok(Response::Done)
            }
            Request::Commit { .. } | Request::Send { .. } => Err(bad("appends are queued by submit")),
            Request::Ack { group_id, seq } => {
                let me = me.clone();
                blocking_timed(&self.metrics, move || store.ack(&group_id, &me, seq)).await?;
                Ok(Response::Done)
            }
            Request::AckWelcome { welcome_id } => {
                let me = me.clone();
                blocking_timed(&self.metrics, move || store.ack_welcome(&me, welcome_id)).await?;
                Ok(Response::Done)
            }
            Request::Fetch { group_id, after_seq, limit } => {
                let me = me.clone();
                let messages =
                    blocking_timed(&self.metrics, move || store.fetch(&group_id, &me, after_seq, limit)).await?;
                Ok(Response::Messages { messages: within_frame(messages) })
            }
            Request::BlobToken => {
                let token: [u8; 32] = rand::random();
                let expiry = std::time::Instant::now() + BLOB_TOKEN_TTL;
                self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token, (me.clone(), expiry));
                Ok(Response::BlobToken { token: token.to_vec(), expires_in: BLOB_TOKEN_TTL.as_secs() })
            }
            Request::ShareBlob { blob_id, group_id } => {
                let me = me.clone();
                blocking_timed(&self.metrics, move || store.share_blob(&blob_id, &me, &group_id)).await?;
                Ok(Response::Done)
            }
            Request::BlobFetched { blob_id } => {
                let me = me.clone();
                let id = blob_id.clone();
                if blocking_timed(&self.metrics, move || store.blob_fetched(&id, &me)).await? {
                    crate::blobs::remove_bytes(&self.blob_dir, &blob_id).await;
                }
                Ok(Response::Done)
            }
            Request::PutGroupInfo { group_id, epoch, group_info } => {
                check_group_id(&group_id)?;
                if group_info.len() > MAX_PAYLOAD_BYTES {
                    return Err(ErrorBody::new(ErrorCode::FrameTooLarge));
                }
                let me = me.clone();
                blocking_timed(&self.metrics, move || store.put_group_info(&group_id, &me, epoch, &group_info)).await?;
                Ok(Response::Done)
            }
            Request::GetGroupInfo { group_id } => {
                let me = me.clone();
                match blocking_timed(&self.metrics, move || store.group_info(&group_id, &me)).await? {
                    Some((epoch, group_info)) => Ok(Response::GroupInfo { epoch, group_info }),
                    None => {
                        Err(ErrorBody::with_message(ErrorCode::UnknownGroup, "no group info stored for this group yet"))
                    }
                }
            }
            Request::Leave { group_id } => {
                check_group_id(&group_id)?;
                let me = me.clone();
                blocking_timed(&self.metrics, move || store.leave(&group_id, &me)).await?;
                Ok(Response::Done)
            }
            Request::Presence { handles } => {
                if !self.config.presence {
                    return Ok(Response::Presence { enabled: false, online: vec![] });
                }
                if handles.len() > 1000 {
                    return Err(bad("ask about at most 1000 accounts at once"));
                }
                let me = me.clone();
                let shared = blocking_timed(&self.metrics, move || store.co_members(&me, &handles)).await?;
                let online = shared.into_iter().map(|h| {
                    let on = self.hub.account_online(&h);
                    (h, on)
                });
                Ok(Response::Presence { enabled: true, online: online.collect() })
            }
            Request::GroupState { group_id } => {
                let me = me.clone();
                let group = blocking_timed(&self.metrics, move || {
                    let g = store.group(&group_id)?.ok_or(StoreError::UnknownGroup)?;
                    if !g.members.contains(&me) {
                        return Err(StoreError::NotMember);
                    }
                    Ok(g)
                })
                .await?;
                Ok(Response::Group { epoch: group.epoch, members: group.members, last_seq: group.last_seq })
            }
        }
    }
}

/// Verifies a device certificate; used by tests and operator tools.
pub fn certificate_valid(handle: &str, account_key: &[u8], device: &DeviceInfo) -> bool {
    verify(
        account_key,
        &signing::device_certificate_payload(handle, device.device_id, &device.device_key),
        &device.certificate,
    )
}
