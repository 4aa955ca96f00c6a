//! The relay's request logic: checks, store calls and wake-ups, with no
//! socket in sight. The WebSocket session hands every request here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sotto_proto::codec;
use sotto_proto::limits::{
    GROUP_ID_LEN, KEY_PACKAGES_LOW_WATER, MAX_HANDSHAKE_BYTES, MAX_KEY_PACKAGES_PER_UPLOAD, MAX_MEMBERSHIP_CHANGE,
    MAX_PAYLOAD_BYTES,
};
use sotto_proto::{
    signing, ClaimedKeyPackage, Delivery, DeviceInfo, DeviceRef, ErrorBody, ErrorCode, MessageKind, Push, Request,
    Response, ServerMessage, UserInfo,
};

use crate::hub::{Fresh, Hub};
use crate::store::{NewMessage, Store, StoreError};

mod accounts;
mod append;
mod auth;
mod devices;
mod files;
mod groups;
mod key_packages;
pub mod link;
mod signals;

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
    /// Most devices one account may have.
    pub max_devices: u32,
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
            max_devices: 8,
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
    /// Devices waiting to be linked (in memory: a slot lives minutes).
    pub links: link::LinkSlots,
    /// When each device last passed on a transient signal, per group.
    pub signals: signals::SignalGate,
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
            links: link::LinkSlots::default(),
            signals: signals::SignalGate::default(),
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
            StoreError::DeviceLimit(_) => ErrorCode::DeviceLimit,
            StoreError::DeviceRevoked => ErrorCode::DeviceRevoked,
            StoreError::UnknownGroup => ErrorCode::UnknownGroup,
            StoreError::GroupExists => ErrorCode::GroupExists,
            StoreError::UnknownBlob => ErrorCode::UnknownBlob,
            StoreError::Invalid(_) => ErrorCode::BadRequest,
            StoreError::NotMember => ErrorCode::NotMember,
            StoreError::NotAdmin(_) => ErrorCode::NotAdmin,
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
/// message always fits: a payload is at most MAX_HANDSHAKE_BYTES.
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
    /// Handles a request from a logged-in device (everything but `Sync`,
    /// which the session drives).
    pub async fn handle(&self, me: &DeviceRef, request: Request) -> Result<Response, ErrorBody> {
        let request = match self.submit(me, request) {
            Submitted::Queued(pending) => return pending.await,
            Submitted::Other(request) => request,
        };
        match request {
            Request::Register { .. } | Request::Login { .. } | Request::EnrollDevice { .. } => {
                Err(ErrorBody::new(ErrorCode::AlreadyAuthenticated))
            }
            Request::Sync => Err(bad("sync is handled by the session")),
            Request::Notices { .. } => Err(bad("notices are handled by the session")),
            Request::DeleteAccount => self.delete_account(me).await,
            Request::UploadKeyPackages { packages, last_resort, other_last_resorts } => {
                self.upload_key_packages(me, packages, last_resort.into_iter().chain(other_last_resorts).collect())
                    .await
            }
            Request::ClaimKeyPackages { handle, devices, suites } => {
                self.claim_key_packages(me, handle, devices, suites).await
            }
            Request::LookupUser { handle } => self.lookup_user(handle).await,
            Request::CreateGroup { group_id, roles } => self.create_group(me, group_id, roles).await,
            Request::Commit { .. } | Request::Send { .. } => Err(bad("appends are queued by submit")),
            Request::Ack { group_id, seq } => self.ack(me, group_id, seq).await,
            Request::AckWelcome { welcome_id } => self.ack_welcome(me, welcome_id).await,
            Request::Fetch { group_id, after_seq, limit } => self.fetch(me, group_id, after_seq, limit).await,
            Request::BlobToken => self.blob_token(me).await,
            Request::ShareBlob { blob_id, group_id } => self.share_blob(me, blob_id, group_id).await,
            Request::BlobFetched { blob_id } => self.blob_fetched(me, blob_id).await,
            Request::PutGroupInfo { group_id, epoch, group_info } => {
                self.put_group_info(me, group_id, epoch, group_info).await
            }
            Request::GetGroupInfo { group_id } => self.get_group_info(me, group_id).await,
            Request::Leave { group_id } => self.leave(me, group_id).await,
            Request::AcceptGroup { group_id, accepted } => self.accept_group(me, group_id, accepted).await,
            Request::Presence { handles } => self.presence(me, handles).await,
            Request::GroupState { group_id } => self.group_state(me, group_id).await,
            Request::AddDevice { device } => self.add_device(me, device).await,
            Request::RemoveDevice { device_id } => self.remove_device(me, device_id).await,
            Request::ListDevices => self.list_devices(me).await,
            Request::LinkOffer { key_package } => self.links.offer(key_package),
            Request::LinkFetch { slot } => self.links.fetch(&slot),
            Request::LinkAnswer { slot, answer } => self.links.answer(&slot, answer),
            Request::Signal { group_id, payload } => self.signal(me, group_id, payload).await,
            Request::SetRetention { group_id, secs } => self.set_retention(me, group_id, secs).await,
            Request::SetRole { group_id, handle, admin } => self.set_role(me, group_id, handle, admin).await,
            Request::SetGroupPolicy { group_id, members_can_add } => {
                self.set_group_policy(me, group_id, members_can_add).await
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
