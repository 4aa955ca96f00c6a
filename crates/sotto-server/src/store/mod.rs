//! The server's storage as domain traits ([`Accounts`], [`KeyPackages`],
//! [`GroupLog`], [`Blobs`], [`OperatorViews`]; [`Store`] is all five). The
//! relay logic speaks only these, so a second backend (PostgreSQL, say)
//! implements them piece by piece and runs the same [`conformance`] suite
//! (one named test per property, written by [`store_conformance!`]).
//!
//! Every method is one atomic step: when it returns `Ok`, what it wrote is
//! durable. The relay acknowledges a client only after that.

mod blob_rules;
mod changes;
pub mod conformance;
mod key_package_rules;
pub mod pg;
mod queued;
mod roles;
pub mod sqlite;
pub mod stage_timings;

use sotto_proto::{Delivery, DeviceInfo, DeviceRef, MessageKind};
use std::sync::Arc;

pub use changes::{Change, Changes, DeploymentView, LiveSession};
pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// What can go wrong in a store call. The domain variants map one to one
/// onto protocol error codes; `Backend` is a failure of the store itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The handle is registered already.
    #[error("handle is taken")]
    HandleTaken,
    /// Registration needs an invite and none was given.
    #[error("an invite is required")]
    InviteRequired,
    /// The invite is unknown, used up or expired.
    #[error("invite is unknown, used up or expired")]
    InviteInvalid,
    /// No account has this handle.
    #[error("unknown handle")]
    UnknownHandle,
    /// No device has this id in the account.
    #[error("unknown device {0}")]
    UnknownDevice(DeviceRef),
    /// The account's devices have no KeyPackage left.
    #[error("no key packages left")]
    NoKeyPackages,
    /// The account has as many devices as allowed.
    #[error("the account has {0} devices, as many as this server allows; remove one first")]
    DeviceLimit(u32),
    /// The device was removed from its account.
    #[error("this device was removed from its account")]
    DeviceRevoked,
    /// The group does not exist.
    #[error("unknown group")]
    UnknownGroup,
    /// No blob has this id (or it belongs to someone else).
    #[error("no such file, or it is not yours")]
    UnknownBlob,
    /// The group exists already.
    #[error("group exists")]
    GroupExists,
    /// The device is not in the group.
    #[error("not a member of the group")]
    NotMember,
    /// Only an admin of the group may do this.
    #[error("{0}")]
    NotAdmin(String),
    /// The message's epoch is not the group's.
    #[error("stale epoch; current is {current}")]
    StaleEpoch {
        /// The group's current epoch.
        current: u64,
    },
    /// The request contradicts what is stored.
    #[error("{0}")]
    Invalid(String),
    /// A stock or size limit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The backend failed.
    #[error("store failure: {0}")]
    Backend(String),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The answer to a queued append, delivered once it is durable.
pub type AppendTicket = tokio::sync::oneshot::Receiver<StoreResult<Appended>>;

/// Who removes an account: its owner (the invite that admitted it admits
/// one more person) or an operator (the invite stays used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The account's own request (`delete_account`, an ephemeral end).
    ByOwner,
    /// `sotto-server users remove`.
    ByOperator,
}

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Its handle.
    pub handle: String,
    /// Ed25519 account key.
    pub account_key: Vec<u8>,
    /// Whether the operator banned it.
    pub banned: bool,
    /// Its devices.
    pub devices: Vec<DeviceInfo>,
    /// Numbers of devices removed from it (they may never log in again,
    /// and their numbers are not reused).
    pub revoked: Vec<u32>,
}

/// A message to append to a group's log.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The group.
    pub group_id: &'a [u8],
    /// The posting device.
    pub sender: &'a DeviceRef,
    /// The epoch it claims.
    pub epoch: u64,
    /// Commit or application.
    pub kind: MessageKind,
    /// The sender's idempotency key.
    pub client_id: &'a [u8],
    /// The MLS message.
    pub payload: &'a [u8],
    /// For commits: devices added (get `welcome` in their inbox).
    pub added: &'a [DeviceRef],
    /// For commits: devices removed from routing.
    pub removed: &'a [DeviceRef],
    /// For commits that add: the MLS welcome.
    pub welcome: Option<&'a [u8]>,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message's sequence number.
    pub seq: u64,
    /// The group's epoch after the append.
    pub epoch: u64,
    /// True when the client id was seen before; nothing was written.
    pub duplicate: bool,
    /// Devices to wake: every member after the change (shared: the SQLite
    /// store hands out one list per group until its membership changes).
    pub members: Arc<[DeviceRef]>,
}

/// A group's routing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Current epoch.
    pub epoch: u64,
    /// Newest sequence number (0 when empty).
    pub last_seq: u64,
    /// Member devices.
    pub members: Vec<DeviceRef>,
    /// Admins of a named group (empty: no roles, everyone may).
    pub admins: Vec<String>,
    /// Members who are not admins may add people.
    pub members_can_add: bool,
}

/// A welcome waiting in a device's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWelcome {
    /// Inbox id.
    pub id: u64,
    /// The group joined.
    pub group_id: Vec<u8>,
    /// Who added the device.
    pub sender: DeviceRef,
    /// The MLS welcome.
    pub welcome: Vec<u8>,
}

/// A device's membership in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group.
    pub group_id: Vec<u8>,
    /// Highest sequence number the device acknowledged.
    pub cursor: u64,
}

/// A blob's record (the bytes live in files; see `blobs.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// Id.
    pub id: Vec<u8>,
    /// The uploading device.
    pub owner: DeviceRef,
    /// Declared total size in bytes.
    pub size: u64,
    /// All bytes are stored.
    pub complete: bool,
    /// When the upload started (ms).
    pub created_at: i64,
}

/// An invite as operators see it (the code itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    /// Row id, for revoking.
    pub id: i64,
    /// Registrations left.
    pub uses_left: u32,
    /// Expiry (ms), if any.
    pub expires_at: Option<i64>,
    /// Minted (ms).
    pub created_at: i64,
}

/// An account as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// Handle.
    pub handle: String,
    /// Number of devices.
    pub devices: u32,
    /// Groups its devices are in.
    pub groups: u32,
    /// Banned.
    pub banned: bool,
    /// Registered (ms).
    pub created_at: i64,
}

/// Counts for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Registered accounts.
    pub accounts: u64,
    /// Groups.
    pub groups: u64,
    /// Messages waiting for at least one device.
    pub messages: u64,
    /// Welcomes waiting.
    pub welcomes: u64,
    /// Blobs stored (complete or not).
    pub blobs: u64,
    /// Their declared bytes.
    pub blob_bytes: u64,
}

/// Accounts and their devices: registration (with invites), bans, which
/// copy of a profile may log in, deletion.
pub trait Accounts: Send + Sync + 'static {
    /// Mints an invite; only the SHA-256 of the code is kept.
    fn create_invite(&self, code: &str, uses: u32, expires_at: Option<i64>, now: i64) -> StoreResult<()>;

    /// Creates an account with its first device. With `require_invite`, the
    /// invite is checked and one use consumed in the same step.
    fn register(
        &self,
        handle: &str,
        account_key: &[u8],
        device: &DeviceInfo,
        invite: Option<&str>,
        require_invite: bool,
        now: i64,
    ) -> StoreResult<()>;

    /// An account and its devices.
    fn account(&self, handle: &str) -> StoreResult<Option<AccountRecord>>;

    /// Which copy of a device's profile may log in (see `Request::Login`):
    /// the first copy seen is recorded; another copy is let in, and
    /// recorded, only with `takeover`. Returns when the copy in use was
    /// recorded, or `Err(since)` for a stale copy.
    fn claim_copy(&self, device: &DeviceRef, copy: &[u8], takeover: bool, now: i64) -> StoreResult<Result<(), i64>>;

    /// Sets or clears the ban flag.
    fn set_banned(&self, handle: &str, banned: bool) -> StoreResult<()>;

    /// Deletes an account with its devices, KeyPackages, memberships,
    /// welcomes and files; its handle becomes free. An account deleted by
    /// its owner gives its invite's use back; one an operator removed does
    /// not.
    fn remove_account(&self, handle: &str, removal: Removal) -> StoreResult<()>;

    /// Adds a device (its certificate already checked) to an account that
    /// has fewer than `max_devices`. A number in use or once revoked is
    /// refused (`Invalid`).
    fn add_device(&self, handle: &str, device: &DeviceInfo, max_devices: u32, now: i64) -> StoreResult<()>;

    /// Removes a device for good: its KeyPackages, copies, welcomes and
    /// memberships go (it is routed nothing more), and its number is
    /// recorded as revoked. Returns the groups it was in.
    fn remove_device(&self, device: &DeviceRef, now: i64) -> StoreResult<Vec<Vec<u8>>>;

    /// Records that a device logged in.
    fn device_seen(&self, device: &DeviceRef, now: i64) -> StoreResult<()>;

    /// An account's devices with when each was added and last seen.
    fn device_records(&self, handle: &str) -> StoreResult<Vec<sotto_proto::DeviceRecord>>;
}

/// KeyPackage stock per device: each one-time package is handed out once.
pub trait KeyPackages: Send + Sync + 'static {
    /// Adds KeyPackages, each with the suite it is for (and replaces the
    /// last-resort one of each suite given); returns the one-time stock
    /// after (the scarcest suite's, see `key_package_rules::stock`).
    fn add_key_packages(
        &self,
        device: &DeviceRef,
        packages: &[(u16, Vec<u8>)],
        last_resorts: &[(u16, Vec<u8>)],
    ) -> StoreResult<u32>;

    /// One-time KeyPackages in stock for a device.
    fn key_package_count(&self, device: &DeviceRef) -> StoreResult<u32>;

    /// Takes one KeyPackage per device of the account (only of the devices
    /// in `only`, when given) of a suite in `suites` (most wanted first;
    /// chosen by `key_package_rules::choose_suites`): a one-time package,
    /// deleted as it is handed out, or else that suite's last-resort one.
    /// Returns the devices' keys with their packages and the one-time
    /// stock each has left.
    fn claim_key_packages(
        &self,
        handle: &str,
        only: Option<&[u32]>,
        suites: &[u16],
    ) -> StoreResult<Vec<(DeviceInfo, Vec<u8>, u32)>>;
}

/// Groups and their ordered logs: membership, appends with the epoch and
/// idempotency rules, cursors, welcomes, GroupInfo, retention.
pub trait GroupLog: Send + Sync + 'static {
    /// Creates a group at epoch 0 with one member; with `roles`, the group
    /// has roles and its creator is the first admin.
    fn create_group_with(&self, group_id: &[u8], creator: &DeviceRef, roles: bool, now: i64) -> StoreResult<()>;

    /// Creates a group, with roles when its id says it is a named group
    /// (as apps before `CreateGroup { roles }` marked them).
    fn create_group(&self, group_id: &[u8], creator: &DeviceRef, now: i64) -> StoreResult<()> {
        self.create_group_with(group_id, creator, group_id.first() == Some(&2), now)
    }

    /// A group's routing state.
    fn group(&self, group_id: &[u8]) -> StoreResult<Option<GroupRecord>>;

    /// Appends to a group's log: checks membership, idempotency and epoch,
    /// applies a commit's membership change and stores its welcomes.
    fn append(&self, message: &NewMessage<'_>, now: i64) -> StoreResult<Appended>;

    /// Queues an append and returns at once; the ticket resolves when the
    /// append is durable (or refused). Appends queued one after another
    /// are applied in that order, which lets a session pipeline a client's
    /// messages without reordering them. The default runs `append` now.
    fn append_queued(&self, message: &NewMessage<'_>, now: i64) -> AppendTicket {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(self.append(message, now));
        rx
    }

    /// Messages after `after_seq` that the device may read (from its join on).
    fn fetch(&self, group_id: &[u8], device: &DeviceRef, after_seq: u64, limit: u32) -> StoreResult<Vec<Delivery>>;

    /// Groups the device is in, with its cursors.
    fn memberships(&self, device: &DeviceRef) -> StoreResult<Vec<Membership>>;

    /// Stores the group's GroupInfo for `epoch` (which must be current) as
    /// given by a member.
    fn put_group_info(&self, group_id: &[u8], device: &DeviceRef, epoch: u64, group_info: &[u8]) -> StoreResult<()>;

    /// The group's stored GroupInfo and its epoch, for a member.
    fn group_info(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, Vec<u8>)>>;

    /// Groups this device created.
    fn groups_created(&self, device: &DeviceRef) -> StoreResult<u64>;

    /// Removes the device from the group's routing (it left).
    fn leave(&self, group_id: &[u8], device: &DeviceRef) -> StoreResult<()>;

    /// Of `handles`, those that share at least one group with `device`
    /// that they accepted (a person added by a stranger does not show the
    /// stranger whether they are online).
    fn co_members(&self, device: &DeviceRef, handles: &[String]) -> StoreResult<Vec<String>>;

    /// Records whether the device's account accepts the group (the device
    /// must be a member). The creator's account accepts its group from the
    /// start.
    fn set_accepted(&self, group_id: &[u8], device: &DeviceRef, accepted: bool) -> StoreResult<()>;

    /// Makes `handle` (a member account) an admin or a member again; `by`
    /// must be an admin. The last admin cannot step down.
    fn set_role(&self, group_id: &[u8], by: &DeviceRef, handle: &str, admin: bool) -> StoreResult<()>;

    /// Whether members who are not admins may add people; `by` must be an
    /// admin.
    fn set_group_policy(&self, group_id: &[u8], by: &DeviceRef, members_can_add: bool) -> StoreResult<()>;

    /// Keeps the group's entries at most `retention_ms` (the device must
    /// be a member); `None` goes back to the server's retention.
    fn set_retention(&self, group_id: &[u8], device: &DeviceRef, retention_ms: Option<i64>) -> StoreResult<()>;

    /// Deletes the entries of groups with their own retention that are
    /// older than it. Returns rows deleted.
    fn purge_group_retention(&self, now: i64) -> StoreResult<u64>;

    /// Moves the device's cursor forward and deletes what every member has.
    fn ack(&self, group_id: &[u8], device: &DeviceRef, seq: u64) -> StoreResult<()>;

    /// Welcomes waiting for the device, oldest first.
    fn welcomes(&self, device: &DeviceRef) -> StoreResult<Vec<StoredWelcome>>;

    /// Deletes a welcome from the device's inbox; returns the group it was
    /// into (`None` when there was no such welcome).
    fn ack_welcome(&self, device: &DeviceRef, welcome_id: u64) -> StoreResult<Option<Vec<u8>>>;

    /// Deletes messages, welcomes and idempotency keys older than the
    /// retention period, and expired invites. Returns rows deleted.
    fn purge_expired(&self, now: i64, retention_ms: i64) -> StoreResult<u64>;
}

/// File blobs: resumable uploads, who may read them, deletion once fetched
/// or expired.
pub trait Blobs: Send + Sync + 'static {
    /// Starts (or finds) a blob upload. A new blob must fit `max_size` and
    /// the owner's `quota` (sum of the account's blob sizes). An existing
    /// blob of another device is refused as not found.
    fn begin_blob(
        &self,
        id: &[u8],
        owner: &DeviceRef,
        size: u64,
        max_size: u64,
        quota: u64,
        now: i64,
    ) -> StoreResult<BlobRecord>;

    /// A blob's record.
    fn blob(&self, id: &[u8]) -> StoreResult<Option<BlobRecord>>;

    /// Marks a blob's bytes complete.
    fn complete_blob(&self, id: &[u8]) -> StoreResult<()>;

    /// Lets the group's current members (but the owner) fetch the blob.
    fn share_blob(&self, id: &[u8], owner: &DeviceRef, group_id: &[u8]) -> StoreResult<()>;

    /// Whether the device may read the blob (owner or shared with it).
    fn may_read_blob(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool>;

    /// Records that a recipient fetched the blob; returns true when every
    /// recipient has, and the record is deleted (the caller deletes bytes).
    fn blob_fetched(&self, id: &[u8], device: &DeviceRef) -> StoreResult<bool>;

    /// Uploads that have not finished (the server removes those whose bytes
    /// stopped arriving a while ago, so their quota is not held for good).
    fn incomplete_blobs(&self) -> StoreResult<Vec<BlobRecord>>;

    /// Deletes one blob's record and who may read it.
    fn remove_blob(&self, id: &[u8]) -> StoreResult<()>;

    /// Deletes the records of blobs older than `cutoff` and returns their ids.
    fn expire_blobs(&self, cutoff: i64) -> StoreResult<Vec<Vec<u8>>>;

    /// Deletes the records of blobs shared only with groups that have their
    /// own retention (a disappearing timer), once it ran out for every one
    /// of them, and returns their ids (the caller removes the bytes).
    fn expire_group_blobs(&self, now: i64) -> StoreResult<Vec<Vec<u8>>>;
}

/// What the operator lists and counts.
pub trait OperatorViews: Send + Sync + 'static {
    /// Every live invite.
    fn list_invites(&self) -> StoreResult<Vec<InviteRecord>>;

    /// Deletes an invite by id or by code; false if there was none.
    fn revoke_invite(&self, id_or_code: &str) -> StoreResult<bool>;

    /// Every account.
    fn list_accounts(&self) -> StoreResult<Vec<AccountSummary>>;

    /// Counts.
    fn stats(&self) -> StoreResult<StoreStats>;

    /// How long writes spent in each stage so far, in the order of
    /// [`stage_timings::STAGES`]; `None` for a store that does not time
    /// them.
    fn stage_timings(&self) -> Option<Vec<stage_timings::HistogramSnapshot>> {
        None
    }

    /// Keeps an operator notice for every user; returns its id (ids only
    /// grow, also after old notices are dropped). The newest
    /// [`KEPT_NOTICES`] are kept.
    fn add_notice(&self, text: &str, now: i64) -> StoreResult<u64>;

    /// Notices with ids above `after`, oldest first, at most `limit` (the
    /// newest ones when there are more).
    fn notices_after(&self, after: u64, limit: usize) -> StoreResult<Vec<sotto_proto::Notice>>;
}

/// How many operator notices a store keeps (a device offline for longer
/// than it takes the operator to write this many misses the oldest).
pub const KEPT_NOTICES: u64 = 100;

/// A whole backend: every domain. The relay holds an `Arc<dyn Store>`; a
/// backend implements the five domain traits (each small, each with its
/// own part of the conformance suite) and gets this for free.
///
/// Synchronous on purpose: the server calls it from a blocking thread
/// pool, and a synchronous trait is easy to implement for any backend.
/// Every method is one atomic step.
pub trait Store: Accounts + KeyPackages + GroupLog + Blobs + OperatorViews + Changes {}

impl<T: Accounts + KeyPackages + GroupLog + Blobs + OperatorViews + Changes> Store for T {}
