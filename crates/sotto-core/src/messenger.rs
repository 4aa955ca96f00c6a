//! The client state machine. Sans-I/O: each method takes what arrived or
//! what the person asked for, changes the encrypted store in one
//! transaction, and returns what must be sent.

use crate::sql::Cached;
use std::path::{Path, PathBuf};

use openmls::prelude::{tls_codec::*, *};
use openmls_rust_crypto::RustCrypto;
use rusqlite::{params, Connection, OptionalExtension};
use serde_bytes::ByteBuf;
use sotto_proto::{ClaimedKeyPackage, Delivery, DeviceRef, MessageKind, Request};

use crate::content::{Body, Content};
use crate::db::{self, ProfileKey};
use crate::error::{CoreError, CoreResult};
use crate::identity::{Identity, SottoCredential};
use crate::provider::{self, Provider};

const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Past epochs whose secrets are kept so that messages sent just before a
/// commit still decrypt. The server rejects messages of old epochs, so this
/// only covers the window between a commit being accepted and a member
/// processing it; three is ample, and fewer kept secrets means less to lose
/// if the device is compromised.
const MAX_PAST_EPOCHS: usize = 3;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings(k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contacts(
    handle TEXT PRIMARY KEY,
    account_key BLOB NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    key_changed INTEGER NOT NULL DEFAULT 0,
    -- The new account key seen, held until the person trusts it.
    pending_key BLOB,
    added_at INTEGER NOT NULL
);
-- People this person blocked: their welcomes are dropped, their messages
-- are decrypted (to stay in step) but neither stored nor shown.
CREATE TABLE IF NOT EXISTS blocked(handle TEXT PRIMARY KEY, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS groups(
    group_id BLOB PRIMARY KEY,
    conversation TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    last_update INTEGER NOT NULL DEFAULT 0,
    -- 1 when a delivery could not be processed: the device is out of step
    -- and rejoins by external commit.
    broken INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_conversation ON groups(conversation);
CREATE TABLE IF NOT EXISTS messages(
    n INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    conversation TEXT NOT NULL,
    group_id BLOB,
    seq INTEGER,
    sender TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation, n);
CREATE TABLE IF NOT EXISTS uploads(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    blob_id BLOB NOT NULL,
    key BLOB NOT NULL,
    nonce BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox(
    client_id BLOB PRIMARY KEY,
    group_id BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    message_id BLOB,
    welcome BLOB,
    added BLOB,
    create_group INTEGER NOT NULL DEFAULT 0,
    removed BLOB,
    intent BLOB,
    created_at INTEGER NOT NULL
);
"#;

/// A message in the local history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The sender's message id.
    pub id: Vec<u8>,
    /// `@handle` for one-to-one, `#name` for groups.
    pub conversation: String,
    /// The sender's handle (without `@`).
    pub sender: String,
    /// Sent by this device.
    pub outgoing: bool,
    /// Sender's clock (ms).
    pub sent_at: i64,
    /// When this device stored it (ms).
    pub received_at: i64,
    /// The content.
    pub body: Body,
    /// `pending` (not yet accepted by the server), `sent`, `received`, or
    /// `system` for markers such as "messages may be missing".
    pub state: String,
    /// Server sequence number in its group, once known.
    pub seq: Option<u64>,
}

/// A contact: someone this device shares a conversation with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Handle without `@`.
    pub handle: String,
    /// The account key first seen (trust on first use).
    pub account_key: Vec<u8>,
    /// The person compared safety numbers.
    pub verified: bool,
    /// A different account key was seen since.
    pub key_changed: bool,
}

/// Something that waits for the server's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Idempotency key.
    pub client_id: Vec<u8>,
    /// The group.
    pub group_id: Vec<u8>,
    /// The epoch it was made in.
    pub epoch: u64,
    /// Commit or application message.
    pub kind: MessageKind,
    /// The MLS message.
    pub payload: Vec<u8>,
    /// For application messages: the content id in history.
    pub message_id: Option<Vec<u8>>,
    /// For commits that add devices: the welcome.
    pub welcome: Option<Vec<u8>>,
    /// For commits: devices added.
    pub added: Vec<DeviceRef>,
    /// For commits: devices removed.
    pub removed: Vec<DeviceRef>,
    /// The group must be created on the server first.
    pub create_group: bool,
    /// For commits: what the commit is for, so it can be made again on a
    /// newer epoch when another member's commit wins.
    pub intent: Option<Intent>,
}

/// What a commit is meant to do. Kept with the commit so that a commit that
/// lost an epoch race can be rebuilt on the winner's epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Intent {
    /// Add these people (with the KeyPackages claimed for them).
    Add(Vec<Invitee>),
    /// Remove every device of these handles.
    Remove(Vec<String>),
    /// Refresh this device's keys (post-compromise security).
    Update,
    /// Rejoin by external commit after losing step with the group.
    Rejoin,
}

/// Someone to add, with the KeyPackages the server handed out for them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invitee {
    /// Handle.
    pub handle: String,
    /// The account key the server reported.
    #[serde(with = "serde_bytes")]
    pub account_key: Vec<u8>,
    /// One package per device.
    pub packages: Vec<ClaimedKeyPackage>,
}

/// A commit waiting for the server (the same shape as any outbox item).
pub type PendingCommit = OutboxItem;

impl OutboxItem {
    /// The request that posts it.
    pub fn to_request(&self) -> Request {
        match self.kind {
            MessageKind::Application => Request::Send {
                group_id: self.group_id.clone(),
                epoch: self.epoch,
                client_id: self.client_id.clone(),
                payload: self.payload.clone(),
            },
            MessageKind::Commit => Request::Commit {
                group_id: self.group_id.clone(),
                epoch: self.epoch,
                client_id: self.client_id.clone(),
                commit: self.payload.clone(),
                welcome: self.welcome.clone().map(ByteBuf::from),
                added: self.added.clone(),
                removed: self.removed.clone(),
            },
        }
    }
}

/// What processing produced, for the front end to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new message in history.
    Message(Box<StoredMessage>),
    /// This device joined a conversation.
    Joined {
        /// Its name.
        conversation: String,
    },
    /// A conversation got a new name.
    Renamed {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// Something the person should know (a marker is also in history).
    Warning {
        /// Where, if anywhere.
        conversation: Option<String>,
        /// What.
        text: String,
    },
}

/// The warning shown when a contact's account key changes.
/// A short tag for a group id of any length (the id comes from the server
/// and a welcome, so it may be shorter than ours are): the first `n` bytes
/// of its SHA-256, in hex.
pub(crate) fn short_id(group_id: &[u8], n: usize) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(group_id)[..n.min(32)])
}

pub(crate) fn key_change_text(handle: &str) -> String {
    format!(
        "the account key of @{handle} changed: they may have a new device, or someone may be impersonating them. \
         Compare safety numbers (`sotto verify @{handle}`), then `sotto trust @{handle}`"
    )
}

/// Why a delivery could not be read, in words a person can use.
fn unreadable_reason(e: &CoreError) -> &'static str {
    match e {
        CoreError::Mls(_) => "a message could not be decrypted (this device fell out of step with the conversation)",
        CoreError::Decode { .. } => "a message arrived damaged",
        CoreError::BadCredential(_) => "a message came from a device whose keys do not check out",
        CoreError::Db(_) | CoreError::Io(_) => "this device could not store a message",
        _ => "a message could not be processed",
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(32)
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(32)
        .build()
}

fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Commit => "commit",
        MessageKind::Application => "application",
    }
}

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encodes");
    out
}

/// Reads a credential of a member this device already validated (on add or
/// welcome); MLS authenticated the sender as that member.
fn member_credential(credential: &Credential) -> CoreResult<SottoCredential> {
    let basic = BasicCredential::try_from(credential.clone()).map_err(|e| CoreError::BadCredential(e.to_string()))?;
    ciborium::from_reader(basic.identity()).map_err(|e| CoreError::BadCredential(e.to_string()))
}

/// The messenger of one profile.
pub struct Messenger {
    pub(crate) conn: Connection,
    crypto: RustCrypto,
    /// How deep in `tx` we are (for nesting as savepoints).
    tx_depth: std::cell::Cell<u32>,
    pub(crate) identity: Identity,
    dir: PathBuf,
}

/// Whether a group is a one-to-one chat or a named group. Stored in the
/// first byte of the group id, so a member joining by welcome knows before
/// any message arrives. The server sees it, but it could tell from the
/// member count anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GroupKind {
    /// One-to-one.
    Direct = 1,
    /// Named group.
    Group = 2,
}

impl GroupKind {
    /// The kind a group id says.
    pub fn of(group_id: &[u8]) -> Self {
        if group_id.first() == Some(&2) {
            Self::Group
        } else {
            Self::Direct
        }
    }
}

impl Messenger {
    /// Creates a profile with a fresh identity for `handle` on `server`.
    pub fn create(dir: &Path, key: &ProfileKey, handle: &str, server: &str) -> CoreResult<Self> {
        let identity = Identity::generate(handle)?;
        let mut conn = db::create(dir, key)?;
        let result = (|| -> CoreResult<()> {
            conn.execute_batch(SCHEMA)?;
            provider::migrate(&mut conn).map_err(CoreError::Mls)?;
            conn.exec("INSERT INTO settings(k, v) VALUES('identity', ?)", [identity.to_bytes()])?;
            conn.exec("INSERT INTO settings(k, v) VALUES('server', ?)", [server.as_bytes()])?;
            Ok(())
        })();
        if let Err(e) = result {
            drop(conn);
            db::remove(dir);
            return Err(e);
        }
        Ok(Self { conn, crypto: RustCrypto::default(), tx_depth: Default::default(), identity, dir: dir.to_owned() })
    }

    /// An ephemeral messenger: identity and history live in memory only and
    /// vanish with the process; nothing touches the disk.
    pub fn create_ephemeral(handle: &str, server: &str) -> CoreResult<Self> {
        let identity = Identity::generate(handle)?;
        let mut conn = Connection::open_in_memory()?;
        conn.set_prepared_statement_cache_capacity(128);
        conn.execute_batch(SCHEMA)?;
        provider::migrate(&mut conn).map_err(CoreError::Mls)?;
        conn.exec("INSERT INTO settings(k, v) VALUES('identity', ?)", [identity.to_bytes()])?;
        conn.exec("INSERT INTO settings(k, v) VALUES('server', ?)", [server.as_bytes()])?;
        Ok(Self { conn, crypto: RustCrypto::default(), tx_depth: Default::default(), identity, dir: PathBuf::new() })
    }

    /// Re-keys the profile database under a new passphrase or key file.
    pub fn change_key(&self, key: &ProfileKey) -> CoreResult<()> {
        if self.is_ephemeral() {
            return Err(CoreError::Invalid("an ephemeral profile has no key".into()));
        }
        db::rekey(&self.conn, &self.dir, key)
    }

    /// Whether this messenger keeps nothing on disk.
    pub fn is_ephemeral(&self) -> bool {
        self.dir.as_os_str().is_empty()
    }

    /// Opens an existing profile.
    pub fn open(dir: &Path, key: &ProfileKey) -> CoreResult<Self> {
        let conn = db::open(dir, key)?;
        Self::from_connection(conn, dir)
    }

    pub(crate) fn from_connection(conn: Connection, dir: &Path) -> CoreResult<Self> {
        conn.execute_batch(SCHEMA)?;
        let bytes: Vec<u8> = conn
            .row("SELECT v FROM settings WHERE k='identity'", [], |r| r.get(0))
            .optional()?
            .ok_or_else(|| CoreError::NoProfile(dir.display().to_string()))?;
        let identity = Identity::from_bytes(&bytes)?;
        Ok(Self { conn, crypto: RustCrypto::default(), tx_depth: Default::default(), identity, dir: dir.to_owned() })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This device's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This device on the server.
    pub fn me(&self) -> DeviceRef {
        DeviceRef { handle: self.identity.handle.clone(), device_id: self.identity.device_id }
    }

    fn setting(&self, k: &str) -> CoreResult<Option<Vec<u8>>> {
        Ok(self.conn.row("SELECT v FROM settings WHERE k=?", [k], |r| r.get(0)).optional()?)
    }

    fn set_setting(&self, k: &str, v: &[u8]) -> CoreResult<()> {
        self.conn.exec("INSERT OR REPLACE INTO settings(k, v) VALUES(?, ?)", params![k, v])?;
        Ok(())
    }

    /// The server address this profile belongs to.
    pub fn server(&self) -> CoreResult<String> {
        let v = self.setting("server")?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    /// Whether the server accepted the registration.
    pub fn is_registered(&self) -> CoreResult<bool> {
        Ok(self.setting("registered")?.is_some())
    }

    /// Records that the server accepted the registration.
    pub fn mark_registered(&self) -> CoreResult<()> {
        self.set_setting("registered", b"1")
    }

    /// The `Register` request, signed for this connection.
    pub fn register_request(&self, login_payload: &[u8], invite: Option<String>) -> Request {
        Request::Register {
            handle: self.identity.handle.clone(),
            account_key: self.identity.account_key(),
            device: self.identity.device_info(),
            invite,
            signature: self.identity.sign_login(login_payload),
        }
    }

    /// The `Login` request, signed for this connection.
    pub fn login_request(&self, login_payload: &[u8]) -> Request {
        Request::Login {
            handle: self.identity.handle.clone(),
            device_id: self.identity.device_id,
            signature: self.identity.sign_login(login_payload),
            copy: self.copy_id().ok().map(ByteBuf::from),
            takeover: self.setting("copy_takeover").ok().flatten().is_some(),
        }
    }

    /// The random id of this copy of the profile, made on first use. A
    /// restored backup gets a new one (see `backup.rs`), so the server can
    /// tell two copies of one device apart and let only one in.
    pub fn copy_id(&self) -> CoreResult<Vec<u8>> {
        if let Some(id) = self.setting("copy_id")? {
            return Ok(id);
        }
        let id = rand::random::<[u8; 16]>().to_vec();
        self.set_setting("copy_id", &id)?;
        Ok(id)
    }

    /// The server accepted this copy (after a restore it replaced the old
    /// one): later logins are ordinary.
    pub fn copy_confirmed(&self) -> CoreResult<()> {
        self.conn.exec("DELETE FROM settings WHERE k='copy_takeover'", [])?;
        Ok(())
    }

    /// Makes this profile a fresh copy that replaces the one the server
    /// knows: a new copy id, a takeover at the next login, and every
    /// conversation rejoined with fresh keys (the backup's keys were used
    /// by the other copy since, and using them again would break the
    /// conversation for everyone).
    pub(crate) fn become_new_copy(&self) -> CoreResult<()> {
        self.tx(|me| {
            me.set_setting("copy_id", &rand::random::<[u8; 16]>())?;
            me.set_setting("copy_takeover", b"1")?;
            me.conn.exec("UPDATE groups SET broken=1 WHERE active=1", [])?;
            Ok(())
        })
    }

    /// Runs `f` in one transaction; on error nothing it wrote stays.
    /// Nested calls become savepoints inside the outer transaction, so a
    /// batch of steps can share one commit (one fsync) while each step
    /// still rolls back alone.
    pub(crate) fn tx<T>(&self, f: impl FnOnce(&Self) -> CoreResult<T>) -> CoreResult<T> {
        let depth = self.tx_depth.get();
        let (begin, commit, rollback) = if depth == 0 {
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        } else {
            ("SAVEPOINT nested", "RELEASE nested", "ROLLBACK TO nested; RELEASE nested")
        };
        self.conn.execute_batch(begin)?;
        self.tx_depth.set(depth + 1);
        let r = f(self);
        self.tx_depth.set(depth);
        match r {
            Ok(v) => {
                self.conn.execute_batch(commit)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch(rollback);
                Err(e)
            }
        }
    }

    /// Processes a run of deliveries in one transaction (one disk sync for
    /// all): each is still applied or skipped on its own. The caller then
    /// acknowledges the highest sequence number per group.
    pub fn handle_deliveries(&self, batch: &[Delivery]) -> CoreResult<Vec<Event>> {
        self.tx(|me| {
            let mut events = Vec::new();
            for d in batch {
                events.extend(me.handle_delivery(d)?);
            }
            Ok(events)
        })
    }

    pub(crate) fn provider(&self) -> Provider<'_> {
        Provider::new(&self.crypto, &self.conn)
    }

    pub(crate) fn load_group(&self, group_id: &[u8]) -> CoreResult<MlsGroup> {
        MlsGroup::load(self.provider().storage(), &GroupId::from_slice(group_id))
            .map_err(CoreError::mls)?
            .ok_or_else(|| CoreError::NotFound("conversation state is missing".into()))
    }

    /// A request that uploads `n` fresh one-time KeyPackages and a new
    /// last-resort one.
    pub fn key_package_upload(&self, n: usize) -> CoreResult<Request> {
        self.tx(|me| {
            let provider = me.provider();
            let signer = me.identity.signer();
            let mut packages = Vec::with_capacity(n);
            let build = |last_resort: bool| -> CoreResult<Vec<u8>> {
                // Every package says it understands the last-resort
                // extension: a package carrying it must, or the person
                // claiming it refuses it (and a drained person could not be
                // reached at all).
                let capabilities = Capabilities::builder().extensions(vec![ExtensionType::LastResort]).build();
                let mut b = KeyPackage::builder().leaf_node_capabilities(capabilities);
                if last_resort {
                    b = b.mark_as_last_resort();
                }
                let bundle =
                    b.build(CIPHERSUITE, &provider, &signer, me.identity.credential()).map_err(CoreError::mls)?;
                bundle.key_package().tls_serialize_detached().map_err(CoreError::mls)
            };
            for _ in 0..n {
                packages.push(ByteBuf::from(build(false)?));
            }
            Ok(Request::UploadKeyPackages { packages, last_resort: Some(ByteBuf::from(build(true)?)) })
        })
    }

    /// Records a contact's account key on first sight; on a different key
    /// later, marks the contact changed and refuses.
    /// Records a contact's account key on first sight (trust on first use).
    /// A different key later is held as pending, the contact is marked
    /// changed and unverified, and `true` is returned; nothing fails, so a
    /// key change never loses a message.
    pub(crate) fn note_contact(&self, handle: &str, account_key: &[u8]) -> CoreResult<bool> {
        if handle == self.identity.handle {
            return Ok(false);
        }
        let known: Option<Vec<u8>> =
            self.conn.row("SELECT account_key FROM contacts WHERE handle=?", [handle], |r| r.get(0)).optional()?;
        match known {
            None => {
                self.conn.exec(
                    "INSERT INTO contacts(handle, account_key, added_at) VALUES(?,?,?)",
                    params![handle, account_key, now_ms()],
                )?;
                Ok(false)
            }
            Some(k) if k == account_key => Ok(false),
            Some(_) => {
                self.conn.exec(
                    "UPDATE contacts SET key_changed=1, verified=0, pending_key=? WHERE handle=?",
                    params![account_key, handle],
                )?;
                Ok(true)
            }
        }
    }

    /// Closes a one-to-one conversation the server says the peer is no
    /// longer in (they left it, or never joined because they blocked this
    /// person): the next message starts a new one instead of going where
    /// nobody reads it. Not while this device's own add is still waiting
    /// in the outbox.
    pub fn close_dead_direct(&self, group_id: &[u8], handle: &str) -> CoreResult<bool> {
        let waiting: Option<i64> = self
            .conn
            .row("SELECT 1 FROM outbox WHERE group_id=? AND kind='commit' LIMIT 1", [group_id], |r| r.get(0))
            .optional()?;
        if waiting.is_some() {
            return Ok(false);
        }
        let conversation = format!("@{handle}");
        self.tx(|me| {
            me.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [group_id])?;
            me.insert_system(
                &conversation,
                group_id,
                0,
                &format!("@{handle} is not in this conversation any more; the next message starts a new one"),
            )?;
            Ok(true)
        })
    }

    /// Blocks `handle`: their welcomes are dropped and their messages are
    /// not stored or shown, in any conversation. True if newly blocked.
    pub fn block(&self, handle: &str) -> CoreResult<bool> {
        Ok(self.conn.exec("INSERT OR IGNORE INTO blocked(handle, since) VALUES(?,?)", params![handle, now_ms()])? > 0)
    }

    /// Lifts a block. True if `handle` was blocked.
    pub fn unblock(&self, handle: &str) -> CoreResult<bool> {
        Ok(self.conn.exec("DELETE FROM blocked WHERE handle=?", [handle])? > 0)
    }

    /// Whether this person blocked `handle`.
    pub fn is_blocked(&self, handle: &str) -> CoreResult<bool> {
        Ok(self
            .conn
            .row("SELECT 1 FROM blocked WHERE handle=?", [handle], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some())
    }

    /// Everyone blocked, by handle.
    pub fn blocked(&self) -> CoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT handle FROM blocked ORDER BY handle")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the account key the server reports for `handle` now (see
    /// `note_contact`); true when it differs from the known one, which
    /// holds sending to them until the person trusts the new key.
    pub fn observe_account_key(&self, handle: &str, account_key: &[u8]) -> CoreResult<bool> {
        self.note_contact(handle, account_key)
    }

    /// Refuses to build anything for a contact whose key changed and is not
    /// yet trusted, or whose key differs from the one given.
    fn require_trusted(&self, handle: &str, account_key: &[u8]) -> CoreResult<()> {
        let row: Option<(Vec<u8>, bool)> = self
            .conn
            .row("SELECT account_key, key_changed FROM contacts WHERE handle=?", [handle], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match row {
            Some((k, false)) if k == account_key => Ok(()),
            None => Ok(()),
            _ => Err(CoreError::KeyChanged(handle.to_owned())),
        }
    }

    /// Notes the invitees' keys (outside any transaction, so a change is
    /// remembered even though the operation is refused).
    pub(crate) fn precheck(&self, invitees: &[Invitee]) -> CoreResult<()> {
        for inv in invitees {
            self.note_contact(&inv.handle, &inv.account_key)?;
            self.require_trusted(&inv.handle, &inv.account_key)?;
        }
        Ok(())
    }

    /// The canonical group of a conversation: when both people started a
    /// chat at once there are two groups; both sides pick the smaller id, so
    /// they converge on one without talking about it.
    pub fn conversation_group(&self, conversation: &str) -> CoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .row(
                "SELECT group_id FROM groups WHERE conversation=? AND active=1 ORDER BY group_id LIMIT 1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Starts a one-to-one conversation from the peer's claimed KeyPackages:
    /// a new two-party group and the commit that adds every device of the
    /// peer. Returns the commit to post (the group is created on the server
    /// first).
    pub fn start_direct(&self, invitee: Invitee) -> CoreResult<PendingCommit> {
        let handle = invitee.handle.clone();
        if handle == self.identity.handle {
            return Err(CoreError::Invalid("you cannot start a conversation with yourself".into()));
        }
        self.start_group(GroupKind::Direct, &format!("@{handle}"), vec![invitee])
    }

    /// Creates a group conversation and the commit that adds everyone.
    pub(crate) fn start_group(
        &self,
        kind: GroupKind,
        conversation: &str,
        invitees: Vec<Invitee>,
    ) -> CoreResult<PendingCommit> {
        self.tx(|me| {
            let provider = me.provider();
            let mut group_id: [u8; 16] = rand::random();
            group_id[0] = kind as u8;
            MlsGroup::new_with_group_id(
                &provider,
                &me.identity.signer(),
                &create_config(),
                GroupId::from_slice(&group_id),
                me.identity.credential(),
            )
            .map_err(CoreError::mls)?;
            let now = now_ms();
            me.conn.exec(
                "INSERT INTO groups(group_id, conversation, last_update, created_at) VALUES(?,?,?,?)",
                params![group_id.to_vec(), conversation, now, now],
            )?;
            let mut item = me
                .build_commit(&group_id, Intent::Add(invitees))?
                .ok_or_else(|| CoreError::NotFound("nobody to add".into()))?;
            item.create_group = true;
            me.put_outbox(&item)?;
            Ok(item)
        })
    }

    /// Validates claimed KeyPackages against the handle and account key the
    /// server reported, and the credential chain inside each.
    fn validate_invitee(&self, invitee: &Invitee) -> CoreResult<Vec<(KeyPackage, DeviceRef)>> {
        let handle = &invitee.handle;
        self.note_contact(handle, &invitee.account_key)?;
        self.require_trusted(handle, &invitee.account_key)?;
        let provider = self.provider();
        let mut out = Vec::new();
        for c in &invitee.packages {
            let kp = KeyPackageIn::tls_deserialize_exact(c.package.as_slice())
                .map_err(|e| CoreError::decode("key package", e))?
                .validate(provider.crypto(), ProtocolVersion::Mls10)
                .map_err(|e| CoreError::BadCredential(format!("key package of @{handle}: {e}")))?;
            let leaf = kp.leaf_node();
            let cred = SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice())?;
            if &cred.handle != handle
                || cred.account_key != invitee.account_key
                || cred.device_id != c.device.device_id
                || leaf.signature_key().as_slice() != c.device.device_key.as_slice()
            {
                return Err(CoreError::BadCredential(format!("the server gave a key package that is not @{handle}'s")));
            }
            out.push((kp, DeviceRef { handle: handle.clone(), device_id: cred.device_id }));
        }
        if out.is_empty() {
            return Err(CoreError::NotFound(format!("@{handle} has no device to talk to")));
        }
        Ok(out)
    }

    /// The credentials of a group's current members.
    pub(crate) fn member_credentials(&self, group_id: &[u8]) -> CoreResult<Vec<SottoCredential>> {
        let group = self.load_group(group_id)?;
        Ok(Self::member_handles(&group).into_iter().map(|(_, c)| c).collect())
    }

    /// The handles of a group's current members.
    pub(crate) fn member_handles_of(group: &MlsGroup) -> Vec<String> {
        Self::member_handles(group).into_iter().map(|(_, c)| c.handle).collect()
    }

    /// The handles of a group's current members (by their credentials).
    fn member_handles(group: &MlsGroup) -> Vec<(LeafNodeIndex, SottoCredential)> {
        group.members().filter_map(|m| member_credential(&m.credential).ok().map(|c| (m.index, c))).collect()
    }

    /// Makes the commit for `intent` on the group's current epoch, leaving
    /// it pending in the MLS state. `None` when there is nothing left to do
    /// (for example, the person was added by someone else meanwhile).
    pub(crate) fn build_commit(&self, group_id: &[u8], intent: Intent) -> CoreResult<Option<OutboxItem>> {
        let mut group = self.load_group(group_id)?;
        if !group.is_active() {
            return Err(CoreError::Invalid("you are no longer a member of this conversation".into()));
        }
        let provider = self.provider();
        let signer = self.identity.signer();
        let members = Self::member_handles(&group);
        let (commit, welcome, added, removed) = match &intent {
            Intent::Add(invitees) => {
                let mut packages = Vec::new();
                let mut added = Vec::new();
                for inv in invitees {
                    if members.iter().any(|(_, c)| c.handle == inv.handle) {
                        continue;
                    }
                    for (kp, d) in self.validate_invitee(inv)? {
                        packages.push(kp);
                        added.push(d);
                    }
                }
                if packages.is_empty() {
                    return Ok(None);
                }
                let (commit, welcome, _) = group.add_members(&provider, &signer, &packages).map_err(CoreError::mls)?;
                (commit, Some(welcome), added, vec![])
            }
            Intent::Remove(handles) => {
                let targets: Vec<(LeafNodeIndex, DeviceRef)> = members
                    .iter()
                    .filter(|(_, c)| handles.contains(&c.handle) && c.handle != self.identity.handle)
                    .map(|(i, c)| (*i, DeviceRef { handle: c.handle.clone(), device_id: c.device_id }))
                    .collect();
                if targets.is_empty() {
                    return Ok(None);
                }
                let leaves: Vec<LeafNodeIndex> = targets.iter().map(|(i, _)| *i).collect();
                let (commit, welcome, _) = group.remove_members(&provider, &signer, &leaves).map_err(CoreError::mls)?;
                (commit, welcome, vec![], targets.into_iter().map(|(_, d)| d).collect())
            }
            Intent::Rejoin => return Err(CoreError::Invalid("a rejoin is made from the group's GroupInfo".into())),
            Intent::Update => {
                let bundle =
                    group.self_update(&provider, &signer, LeafNodeParameters::default()).map_err(CoreError::mls)?;
                self.conn.exec("UPDATE groups SET last_update=? WHERE group_id=?", params![now_ms(), group_id])?;
                (bundle.commit().clone(), None, vec![], vec![])
            }
        };
        Ok(Some(OutboxItem {
            client_id: rand::random::<[u8; 16]>().to_vec(),
            group_id: group_id.to_vec(),
            epoch: group.epoch().as_u64(),
            kind: MessageKind::Commit,
            payload: commit.tls_serialize_detached().map_err(CoreError::mls)?,
            message_id: None,
            welcome: match welcome {
                Some(w) => Some(w.tls_serialize_detached().map_err(CoreError::mls)?),
                None => None,
            },
            added,
            removed,
            create_group: false,
            intent: Some(intent),
        }))
    }

    /// Queues a commit for `intent` in a conversation.
    pub(crate) fn queue_commit(&self, group_id: &[u8], intent: Intent) -> CoreResult<Option<PendingCommit>> {
        self.tx(|me| {
            let Some(item) = me.build_commit(group_id, intent)? else { return Ok(None) };
            me.put_outbox(&item)?;
            Ok(Some(item))
        })
    }

    /// A commit lost its epoch to another member's: after catching up,
    /// rebuild it from its intent on the current epoch. `None` when nothing
    /// is left to do.
    pub fn redo_commit(&self, client_id: &[u8]) -> CoreResult<Option<PendingCommit>> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(None) };
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            let mut group = me.load_group(&item.group_id)?;
            if group.pending_commit().is_some() {
                group.clear_pending_commit(me.provider().storage()).map_err(CoreError::mls)?;
            }
            let Some(intent) = item.intent else { return Ok(None) };
            let Some(new) = me.build_commit(&item.group_id, intent)? else { return Ok(None) };
            me.put_outbox(&new)?;
            Ok(Some(new))
        })
    }

    pub(crate) fn put_outbox(&self, item: &OutboxItem) -> CoreResult<()> {
        self.conn.exec(
            "INSERT OR REPLACE INTO outbox(client_id, group_id, epoch, kind, payload, message_id, welcome, added, create_group,
             removed, intent, created_at)
             VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            params![
                item.client_id,
                item.group_id,
                item.epoch,
                kind_name(item.kind),
                item.payload,
                item.message_id,
                item.welcome,
                cbor(&item.added),
                item.create_group,
                cbor(&item.removed),
                item.intent.as_ref().map(cbor),
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Everything waiting for the server, oldest first.
    pub fn outbox(&self) -> CoreResult<Vec<OutboxItem>> {
        let mut stmt = self.conn.prepare(
            "SELECT client_id, group_id, epoch, kind, payload, message_id, welcome, added, create_group, removed, intent
             FROM outbox ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let added: Vec<u8> = r.get(7)?;
            Ok(OutboxItem {
                client_id: r.get(0)?,
                group_id: r.get(1)?,
                epoch: r.get(2)?,
                kind: if r.get::<_, String>(3)? == "commit" { MessageKind::Commit } else { MessageKind::Application },
                payload: r.get(4)?,
                message_id: r.get(5)?,
                welcome: r.get(6)?,
                added: ciborium::from_reader(added.as_slice()).unwrap_or_default(),
                create_group: r.get(8)?,
                removed: r
                    .get::<_, Option<Vec<u8>>>(9)?
                    .and_then(|b| ciborium::from_reader(b.as_slice()).ok())
                    .unwrap_or_default(),
                intent: r.get::<_, Option<Vec<u8>>>(10)?.and_then(|b| ciborium::from_reader(b.as_slice()).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The server accepted an outbox item at `seq`: merge a commit, mark a
    /// message sent.
    pub fn accepted(&self, client_id: &[u8], seq: u64) -> CoreResult<()> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(()) };
            if item.kind == MessageKind::Commit {
                let mut group = me.load_group(&item.group_id)?;
                if group.pending_commit().is_some() {
                    group.merge_pending_commit(&me.provider()).map_err(CoreError::mls)?;
                }
            }
            if item.intent == Some(Intent::Rejoin) {
                // Everything before our external commit is unreadable to us.
                me.conn.exec(
                    "UPDATE groups SET broken=0, cursor=max(cursor, ?) WHERE group_id=?",
                    params![seq, item.group_id],
                )?;
                let conversation = me.conversation_of(&item.group_id)?;
                me.insert_system(&conversation, &item.group_id, seq, "rejoined the conversation")?;
            }
            if let Some(mid) = &item.message_id {
                me.conn.exec("UPDATE messages SET state='sent', seq=? WHERE id=?", params![seq, mid])?;
            }
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            Ok(())
        })
    }

    /// Encrypts a text for a conversation and queues it. The message shows
    /// in history as pending until [`Messenger::accepted`].
    pub fn prepare_text(&self, conversation: &str, text: &str) -> CoreResult<OutboxItem> {
        let content = Content::text(text, now_ms())?;
        self.prepare_content(conversation, &content)
    }

    pub(crate) fn prepare_content(&self, conversation: &str, content: &Content) -> CoreResult<OutboxItem> {
        if let Some(handle) = conversation.strip_prefix('@') {
            if !content.body.is_control() && self.is_blocked(handle)? {
                return Err(CoreError::Blocked(handle.to_owned()));
            }
            let changed: Option<bool> =
                self.conn.row("SELECT key_changed FROM contacts WHERE handle=?", [handle], |r| r.get(0)).optional()?;
            if changed == Some(true) {
                return Err(CoreError::KeyChanged(handle.to_owned()));
            }
        }
        let group_id = self
            .conversation_group(conversation)?
            .ok_or_else(|| CoreError::NotFound(format!("no conversation {conversation}")))?;
        self.tx(|me| {
            let now = now_ms();
            me.conn.exec(
                "INSERT INTO messages(id, conversation, group_id, sender, outgoing, sent_at, received_at, body, state, fetched)
                 VALUES(?,?,?,?,1,?,?,?,?,1)",
                params![
                    content.id,
                    conversation,
                    group_id,
                    me.identity.handle,
                    content.sent_at,
                    now,
                    cbor(&content.body),
                    if content.body.is_control() { "control" } else { "pending" }
                ],
            )?;
            let item = me.encrypt(&group_id, content, rand::random::<[u8; 16]>().to_vec())?;
            me.put_outbox(&item)?;
            Ok(item)
        })
    }

    fn encrypt(&self, group_id: &[u8], content: &Content, client_id: Vec<u8>) -> CoreResult<OutboxItem> {
        let mut group = self.load_group(group_id)?;
        if !group.is_active() {
            return Err(CoreError::Invalid("you are no longer a member of this conversation".into()));
        }
        // A one-to-one message nobody else can ever read would sit "sent"
        // for good. (A named group of one is allowed: people may be added.)
        if !content.body.is_control()
            && GroupKind::of(group_id) == GroupKind::Direct
            && !Self::member_handles(&group).iter().any(|(_, c)| c.handle != self.identity.handle)
        {
            return Err(CoreError::Invalid(
                "nobody else is in this conversation any more, so nobody could read the message; nothing was sent"
                    .into(),
            ));
        }
        let provider = self.provider();
        let msg =
            group.create_message(&provider, &self.identity.signer(), &content.encode()).map_err(CoreError::mls)?;
        Ok(OutboxItem {
            client_id,
            group_id: group_id.to_vec(),
            epoch: group.epoch().as_u64(),
            kind: MessageKind::Application,
            payload: msg.tls_serialize_detached().map_err(CoreError::mls)?,
            message_id: Some(content.id.clone()),
            welcome: None,
            added: vec![],
            removed: vec![],
            create_group: false,
            intent: None,
        })
    }

    /// Re-encrypts a queued message in the group's current epoch (after the
    /// server said the epoch was stale and the group caught up).
    pub fn reencrypt(&self, client_id: &[u8]) -> CoreResult<Option<OutboxItem>> {
        self.tx(|me| {
            let Some(item) = me.outbox()?.into_iter().find(|i| i.client_id == client_id) else { return Ok(None) };
            let Some(mid) = item.message_id.clone() else { return Ok(None) };
            let (body, sent_at): (Vec<u8>, i64) =
                me.conn.row("SELECT body, sent_at FROM messages WHERE id=?", [&mid], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let body: Body =
                ciborium::from_reader(body.as_slice()).map_err(|e| CoreError::decode("stored message", e))?;
            // A fresh client id: the old one may be remembered by the server
            // with the stale epoch.
            let new =
                me.encrypt(&item.group_id, &Content { id: mid, sent_at, body }, rand::random::<[u8; 16]>().to_vec())?;
            me.conn.exec("DELETE FROM outbox WHERE client_id=?", [client_id])?;
            me.put_outbox(&new)?;
            Ok(Some(new))
        })
    }

    /// Processes a welcome into a group. A welcome for a group this device
    /// already has (re-delivered because its acknowledgement was lost) is
    /// accepted silently.
    pub fn handle_welcome(&self, group_id: &[u8], welcome: &[u8]) -> CoreResult<Vec<Event>> {
        self.handle_welcome_from(None, group_id, welcome)
    }

    /// [`Messenger::handle_welcome`] for a welcome the server says `adder`
    /// sent: refused with [`CoreError::Blocked`] when this person blocked
    /// them (the caller acknowledges it and leaves the group on the server,
    /// so it is gone for good).
    pub fn handle_welcome_from(&self, adder: Option<&str>, group_id: &[u8], welcome: &[u8]) -> CoreResult<Vec<Event>> {
        if let Some(a) = adder.filter(|a| self.is_blocked(a).unwrap_or(false)) {
            return Err(CoreError::Blocked(a.to_owned()));
        }
        let known: Option<i64> =
            self.conn.row("SELECT 1 FROM groups WHERE group_id=?", [group_id], |r| r.get(0)).optional()?;
        if known.is_some() {
            return Ok(vec![]);
        }
        let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|e| CoreError::decode("welcome", e))?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(CoreError::decode("welcome", "not a welcome message"));
        };
        self.tx(|me| {
            let provider = me.provider();
            let staged =
                StagedWelcome::new_from_welcome(&provider, &join_config(), welcome, None).map_err(CoreError::mls)?;
            if staged.group_context().group_id().as_slice() != group_id {
                return Err(CoreError::decode("welcome", "group id differs from the server's"));
            }
            let mut others = Vec::new();
            for m in staged.members() {
                let cred = SottoCredential::validate(&m.credential, &m.signature_key)?;
                if cred.handle != me.identity.handle {
                    others.push(cred);
                }
            }
            let mut events = Vec::new();
            for o in &others {
                if me.note_contact(&o.handle, &o.account_key)? {
                    events.push(Event::Warning { conversation: None, text: key_change_text(&o.handle) });
                }
            }
            let mut handles: Vec<&str> = others.iter().map(|o| o.handle.as_str()).collect();
            handles.sort();
            handles.dedup();
            if GroupKind::of(group_id) == GroupKind::Direct && handles.iter().any(|h| me.is_blocked(h).unwrap_or(false))
            {
                // A one-to-one from someone blocked (whatever the server
                // claimed about who sent it): not joined.
                return Err(CoreError::Blocked(handles.join(", @")));
            }
            let conversation = match (GroupKind::of(group_id), handles.as_slice()) {
                (GroupKind::Direct, [one]) => format!("@{one}"),
                // The name arrives in the group's first message; until then
                // the conversation goes by a placeholder.
                _ => format!("#new-{}", short_id(group_id, 4)),
            };
            staged.into_group(&provider).map_err(CoreError::mls)?;
            let now = now_ms();
            me.conn.exec(
                "INSERT INTO groups(group_id, conversation, last_update, created_at) VALUES(?,?,?,?)",
                params![group_id, conversation, now, now],
            )?;
            events.insert(0, Event::Joined { conversation });
            Ok(events)
        })
    }

    /// Groups this device is out of step with and must rejoin.
    pub fn broken_groups(&self) -> CoreResult<Vec<Vec<u8>>> {
        let mut stmt = self.conn.prepare("SELECT group_id FROM groups WHERE broken=1 AND active=1")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The group's GroupInfo (with ratchet tree) for its current epoch, to
    /// store on the server after a commit of ours.
    pub fn export_group_info(&self, group_id: &[u8]) -> CoreResult<(u64, Vec<u8>)> {
        let group = self.load_group(group_id)?;
        let gi =
            group.export_group_info(self.provider().crypto(), &self.identity.signer(), true).map_err(CoreError::mls)?;
        Ok((group.epoch().as_u64(), gi.tls_serialize_detached().map_err(CoreError::mls)?))
    }

    /// Replaces this device's state of a group by joining it afresh with an
    /// external commit built from the group's GroupInfo. Returns the commit
    /// to post; the old state is gone.
    pub fn rejoin(&self, group_id: &[u8], epoch: u64, group_info: &[u8]) -> CoreResult<OutboxItem> {
        let msg = MlsMessageIn::tls_deserialize_exact(group_info).map_err(|e| CoreError::decode("group info", e))?;
        let MlsMessageBodyIn::GroupInfo(verifiable) = msg.extract() else {
            return Err(CoreError::decode("group info", "not a GroupInfo"));
        };
        self.tx(|me| {
            let provider = me.provider();
            if let Some(mut old) =
                MlsGroup::load(provider.storage(), &GroupId::from_slice(group_id)).map_err(CoreError::mls)?
            {
                old.delete(provider.storage()).map_err(CoreError::mls)?;
            }
            me.conn.exec("DELETE FROM outbox WHERE group_id=? AND intent IS NOT NULL", [group_id])?;
            let (group, bundle) = MlsGroup::external_commit_builder()
                .with_config(join_config())
                .build_group(&provider, verifiable, me.identity.credential())
                .map_err(CoreError::mls)?
                .load_psks(provider.storage())
                .map_err(CoreError::mls)?
                .build(provider.rand(), provider.crypto(), &me.identity.signer(), |_| true)
                .map_err(CoreError::mls)?
                .finalize(&provider)
                .map_err(CoreError::mls)?;
            if group.group_id().as_slice() != group_id {
                return Err(CoreError::decode("group info", "it describes another group"));
            }
            for m in group.members() {
                let cred = SottoCredential::validate(&m.credential, &m.signature_key)?;
                me.note_contact(&cred.handle, &cred.account_key)?;
            }
            let item = OutboxItem {
                client_id: rand::random::<[u8; 16]>().to_vec(),
                group_id: group_id.to_vec(),
                epoch,
                kind: MessageKind::Commit,
                payload: bundle.commit().tls_serialize_detached().map_err(CoreError::mls)?,
                message_id: None,
                welcome: None,
                added: vec![],
                removed: vec![],
                create_group: false,
                intent: Some(Intent::Rejoin),
            };
            me.put_outbox(&item)?;
            Ok(item)
        })
    }

    /// The conversation a group belongs to.
    pub fn conversation_of(&self, group_id: &[u8]) -> CoreResult<String> {
        self.conn
            .row("SELECT conversation FROM groups WHERE group_id=?", [group_id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| CoreError::NotFound("unknown conversation".into()))
    }

    /// This device's cursor in a group (highest processed sequence number).
    pub fn cursor(&self, group_id: &[u8]) -> CoreResult<Option<u64>> {
        Ok(self.conn.row("SELECT cursor FROM groups WHERE group_id=?", [group_id], |r| r.get(0)).optional()?)
    }

    /// Processes one entry of a group's log. Returns what to show; the
    /// caller acknowledges `delivery.seq` afterwards. Entries at or below
    /// the cursor are duplicates and change nothing.
    pub fn handle_delivery(&self, d: &Delivery) -> CoreResult<Vec<Event>> {
        let row: Option<(String, u64, bool)> = self
            .conn
            .row("SELECT conversation, cursor, broken FROM groups WHERE group_id=?", [&d.group_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((conversation, cursor, broken)) = row else {
            return Ok(vec![Event::Warning {
                conversation: None,
                text: "a message arrived for a conversation this device never joined".into(),
            }]);
        };
        if d.seq <= cursor {
            return Ok(vec![]);
        }
        if broken {
            // Out of step already (the marker is shown); what arrives
            // until the rejoin cannot be read.
            self.conn.exec(
                "UPDATE groups SET cursor=? WHERE group_id=? AND cursor < ?",
                params![d.seq, d.group_id, d.seq],
            )?;
            return Ok(vec![]);
        }
        self.tx(|me| {
            me.conn.execute_batch("SAVEPOINT process")?;
            let outcome = me.process(d, &conversation);
            let events = match outcome {
                Ok(events) => {
                    me.conn.execute_batch("RELEASE process")?;
                    events
                }
                Err(e) => {
                    // Undo whatever openmls half-wrote, keep the marker, and
                    // move on: one bad message must not block the rest.
                    me.conn.execute_batch("ROLLBACK TO process; RELEASE process")?;
                    // The library's own words go to the log, not to the
                    // person: they can act on "missing", not on an error name.
                    tracing::warn!(seq = d.seq, error = %e, "a message could not be read; rejoining");
                    let text = format!("messages may be missing: {}; rejoining", unreadable_reason(&e));
                    let marker = me.insert_system(&conversation, &d.group_id, d.seq, &text)?;
                    me.conn.exec("UPDATE groups SET broken=1 WHERE group_id=?", [&d.group_id])?;
                    vec![
                        Event::Warning { conversation: Some(conversation.clone()), text },
                        Event::Message(Box::new(marker)),
                    ]
                }
            };
            me.conn.exec(
                "UPDATE groups SET cursor=? WHERE group_id=? AND cursor < ?",
                params![d.seq, d.group_id, d.seq],
            )?;
            Ok(events)
        })
    }

    fn process(&self, d: &Delivery, conversation: &str) -> CoreResult<Vec<Event>> {
        let mut group = self.load_group(&d.group_id)?;
        let provider = self.provider();
        if d.sender == self.me() {
            // Our own entry coming back. A commit the server accepted but we
            // did not merge (we crashed in between) is merged now.
            if d.kind == MessageKind::Commit && group.pending_commit().is_some() && group.epoch().as_u64() == d.epoch {
                group.merge_pending_commit(&provider).map_err(CoreError::mls)?;
            }
            return Ok(vec![]);
        }
        let msg = MlsMessageIn::tls_deserialize_exact(d.payload.as_slice())
            .map_err(|e| CoreError::decode("MLS message", e))?;
        let protocol = msg.try_into_protocol_message().map_err(|e| CoreError::decode("MLS message", e))?;
        if d.kind == MessageKind::Commit && group.pending_commit().is_some() {
            // Someone else's commit won this epoch; ours is void. It stays
            // in the outbox and is rebuilt from its intent when re-sent.
            group.clear_pending_commit(provider.storage()).map_err(CoreError::mls)?;
        }
        let processed = group.process_message(&provider, protocol).map_err(CoreError::mls)?;
        let sender = member_credential(processed.credential())?;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let content = Content::decode(&app.into_bytes())?;
                if content.body.is_control() {
                    return self.apply_control(&d.group_id, conversation, &sender.handle, d.seq, content.body);
                }
                let exists: Option<i64> =
                    self.conn.row("SELECT 1 FROM messages WHERE id=?", [&content.id], |r| r.get(0)).optional()?;
                if exists.is_some() || self.is_blocked(&sender.handle)? {
                    return Ok(vec![]);
                }
                let m = StoredMessage {
                    id: content.id,
                    conversation: conversation.to_owned(),
                    sender: sender.handle,
                    outgoing: false,
                    sent_at: content.sent_at,
                    received_at: now_ms(),
                    body: content.body,
                    state: "received".into(),
                    seq: Some(d.seq),
                };
                self.conn.exec(
                    "INSERT INTO messages(id, conversation, group_id, seq, sender, outgoing, sent_at, received_at, body, state, fetched)
                     VALUES(?,?,?,?,?,0,?,?,?,'received',0)",
                    params![m.id, m.conversation, d.group_id, d.seq, m.sender, m.sent_at, m.received_at, cbor(&m.body)],
                )?;
                Ok(vec![Event::Message(Box::new(m))])
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                if let Some(leaf) = staged.update_path_leaf_node() {
                    SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice())?;
                }
                for add in staged.add_proposals() {
                    let leaf = add.add_proposal().key_package().leaf_node();
                    let cred = SottoCredential::validate(leaf.credential(), leaf.signature_key().as_slice())?;
                    self.note_contact(&cred.handle, &cred.account_key)?;
                }
                let removed = staged.self_removed();
                let gone: Vec<String> = staged
                    .remove_proposals()
                    .filter_map(|r| group.member(r.remove_proposal().removed()).and_then(|c| member_credential(c).ok()))
                    .map(|c| c.handle)
                    .filter(|h| h != &self.identity.handle)
                    .collect();
                let joined: Vec<String> = staged
                    .add_proposals()
                    .filter_map(|a| member_credential(a.add_proposal().key_package().leaf_node().credential()).ok())
                    .map(|c| c.handle)
                    .collect();
                group.merge_staged_commit(&provider, *staged).map_err(CoreError::mls)?;
                if removed {
                    self.conn.exec("UPDATE groups SET active=0 WHERE group_id=?", [&d.group_id])?;
                    let text = "you were removed from this conversation".to_owned();
                    let marker = self.insert_system(conversation, &d.group_id, d.seq, &text)?;
                    return Ok(vec![
                        Event::Warning { conversation: Some(conversation.to_owned()), text },
                        Event::Message(Box::new(marker)),
                    ]);
                }
                let mut events = Vec::new();
                if GroupKind::of(&d.group_id) == GroupKind::Group {
                    let notes = joined
                        .iter()
                        .map(|h| format!("@{} added @{h}", sender.handle))
                        .chain(gone.iter().map(|h| format!("@{h} is no longer in the group")));
                    for text in notes {
                        let m = self.insert_system(conversation, &d.group_id, d.seq, &text)?;
                        events.push(Event::Message(Box::new(m)));
                    }
                }
                Ok(events)
            }
            // Standalone proposals are not used by sotto clients; a commit
            // that references one will carry it.
            ProcessedMessageContent::ProposalMessage(_) | ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }

    pub(crate) fn insert_system(
        &self,
        conversation: &str,
        group_id: &[u8],
        seq: u64,
        text: &str,
    ) -> CoreResult<StoredMessage> {
        let now = now_ms();
        let m = StoredMessage {
            id: rand::random::<[u8; 16]>().to_vec(),
            conversation: conversation.to_owned(),
            sender: String::new(),
            outgoing: false,
            sent_at: now,
            received_at: now,
            body: Body::Text { text: text.to_owned() },
            state: "system".into(),
            seq: Some(seq),
        };
        self.conn.exec(
            "INSERT INTO messages(id, conversation, group_id, seq, sender, outgoing, sent_at, received_at, body, state, fetched)
             VALUES(?,?,?,?,'',0,?,?,?,'system',0)",
            params![m.id, conversation, group_id, seq, now, now, cbor(&m.body)],
        )?;
        Ok(m)
    }

    pub(crate) fn messages_where(&self, clause: &str, arg: &dyn rusqlite::ToSql) -> CoreResult<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT id, conversation, sender, outgoing, sent_at, received_at, body, state, seq FROM messages WHERE state != 'control' AND {clause} ORDER BY n"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            let body: Vec<u8> = r.get(6)?;
            Ok(StoredMessage {
                id: r.get(0)?,
                conversation: r.get(1)?,
                sender: r.get(2)?,
                outgoing: r.get(3)?,
                sent_at: r.get(4)?,
                received_at: r.get(5)?,
                body: ciborium::from_reader(body.as_slice()).unwrap_or(Body::Unknown),
                state: r.get(7)?,
                seq: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Incoming messages not yet handed out by `receive`, marking them so.
    pub fn take_unfetched(&self) -> CoreResult<Vec<StoredMessage>> {
        self.tx(|me| {
            let out = me.messages_where("fetched=0 AND outgoing=?", &0)?;
            me.conn.exec("UPDATE messages SET fetched=1 WHERE fetched=0", [])?;
            Ok(out)
        })
    }

    /// A conversation's history, in order.
    pub fn history(&self, conversation: &str) -> CoreResult<Vec<StoredMessage>> {
        self.messages_where("conversation=?", &conversation)
    }

    /// Every contact.
    pub fn contacts(&self) -> CoreResult<Vec<Contact>> {
        let mut stmt =
            self.conn.prepare("SELECT handle, account_key, verified, key_changed FROM contacts ORDER BY handle")?;
        let rows = stmt.query_map([], |r| {
            Ok(Contact { handle: r.get(0)?, account_key: r.get(1)?, verified: r.get(2)?, key_changed: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every conversation name, with its newest activity first.
    pub fn conversations(&self) -> CoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT g.conversation, max(coalesce(m.n, 0)) AS last FROM groups g LEFT JOIN messages m ON m.conversation = g.conversation
             GROUP BY g.conversation ORDER BY last DESC, g.conversation",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
