//! The client state machine. Sans-I/O: each method takes what arrived or
//! what the person asked for, changes the encrypted store in one
//! transaction, and returns what must be sent.

use crate::sql::Cached;
use std::path::{Path, PathBuf};

use openmls::prelude::{tls_codec::*, *};
use rusqlite::{params, Connection, OptionalExtension};
use serde_bytes::ByteBuf;
use sotto_proto::{ClaimedKeyPackage, Delivery, DeviceRef, MessageKind, Request};

use crate::content::{Body, Content};
use crate::db::{self, ProfileKey};
use crate::error::{CoreError, CoreResult};
use crate::identity::{Identity, SottoCredential};
use crate::provider::{self, Provider};

mod annotations;
mod commits;
mod contacts;
mod devices;
mod enroll;
mod files;
mod group_state;
mod group_successor;
mod history;
mod inbound;
mod info;
mod membership;
mod model;
mod notices;
mod outbox;
mod own_group;
mod preferences;
mod profiles;
mod receipts;
mod requests;
mod roles;
mod roles_state;
mod schema;
mod search;
mod signals;
mod successor;
mod timer;

pub use annotations::Annotated;
pub use devices::{LinkCandidate, OwnDevice};
pub use files::UploadState;
pub use group_successor::{CarriedState, GroupMove};
pub use info::{ConversationInfo, MemberDevice};
pub use model::*;
pub use notices::ServerNotice;
pub use outbox::*;
pub use own_group::HistoryOffer;
pub use preferences::{MAX_PREFERENCES, MAX_PREFERENCE_BYTES};
pub use profiles::PersonProfile;
pub use requests::MessageRequest;
pub use roles::{GroupRoles, RoleChange, RoleRight};
pub(crate) use schema::SCHEMA;
pub(crate) use search::register as register_search;
pub use search::MAX_SEARCH_HITS;
pub use successor::MoveCandidate;
pub use timer::{timer_words, MAX_TIMER_SECS};

/// The setting naming the suites this device's KeyPackages were last
/// published for.
const PUBLISHED_SUITES: &str = "key_package_suites";

fn published_suites() -> String {
    crate::suite::wanted().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
}

/// Past epochs whose secrets are kept so that messages sent just before a
/// commit still decrypt. The server rejects messages of old epochs, so this
/// only covers the window between a commit being accepted and a member
/// processing it; three is ample, and fewer kept secrets means less to lose
/// if the device is compromised.
pub(crate) const MAX_PAST_EPOCHS: usize = 3;

/// How this device makes a group of `suite`; `roles` go into its MLS state
/// (named groups).
pub(crate) fn create_config(roles: Option<&GroupRoles>, suite: Ciphersuite) -> CoreResult<MlsGroupCreateConfig> {
    let extensions = match roles {
        Some(roles) => roles_state::with_roles(Extensions::empty(), roles)?,
        None => Extensions::empty(),
    };
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(suite)
        .capabilities(roles_state::capabilities())
        .with_group_context_extensions(extensions)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(32)
        .build())
}

pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(32)
        .build()
}

pub(crate) fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Commit => "commit",
        MessageKind::Application => "application",
    }
}

pub(crate) fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encodes");
    out
}

/// Reads a credential of a member this device already validated (on add or
/// welcome); MLS authenticated the sender as that member.
pub(crate) fn member_credential(credential: &Credential) -> CoreResult<SottoCredential> {
    let basic = BasicCredential::try_from(credential.clone()).map_err(|e| CoreError::BadCredential(e.to_string()))?;
    ciborium::from_reader(basic.identity()).map_err(|e| CoreError::BadCredential(e.to_string()))
}

/// The messenger of one profile.
pub struct Messenger {
    pub(crate) conn: Connection,
    crypto: provider::Crypto,
    /// How deep in `tx` we are (for nesting as savepoints).
    tx_depth: std::cell::Cell<u32>,
    pub(crate) identity: Identity,
    dir: PathBuf,
    env: Environment,
}

/// Where a messenger reads the time and draws the ids it makes (message,
/// client and group ids) from: the system clock and the operating system's
/// random source unless a simulation passes its own, so that one seed
/// replays the same ids and times. Keys, copy ids and anything secret never
/// come from here: they always come from the operating system.
pub struct Environment {
    clock: Box<dyn Fn() -> i64 + Send>,
    ids: std::cell::RefCell<Box<dyn rand::RngCore + Send>>,
    /// The counter at the front of client ids ([`Messenger::new_client_id`]).
    sends: std::cell::Cell<Option<u64>>,
}

impl Environment {
    /// The system clock and random source.
    pub fn system() -> Self {
        Self::new(now_ms, rand::rngs::OsRng)
    }

    /// A given clock (milliseconds since the Unix epoch) and id source.
    pub fn new(clock: impl Fn() -> i64 + Send + 'static, ids: impl rand::RngCore + Send + 'static) -> Self {
        Self { clock: Box::new(clock), ids: std::cell::RefCell::new(Box::new(ids)), sends: Default::default() }
    }
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Environment")
    }
}

impl Messenger {
    /// The one place a messenger is put together, with the system clock and
    /// id source.
    fn assemble(conn: Connection, identity: Identity, dir: PathBuf) -> CoreResult<Self> {
        Ok(Self {
            conn,
            crypto: provider::new_crypto()?,
            tx_depth: Default::default(),
            identity,
            dir,
            env: Environment::system(),
        })
    }

    /// Replaces the clock and id source (see [`Environment`]).
    pub fn set_environment(&mut self, env: Environment) {
        self.env = env;
    }

    /// Now, by this messenger's clock (ms since the Unix epoch).
    /// The messenger's clock, milliseconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        (self.env.clock)()
    }

    /// A fresh 16-byte id (message, client or group id).
    pub(crate) fn new_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        self.env.ids.borrow_mut().fill_bytes(&mut id);
        id
    }

    /// A fresh id for the server's exactly-once check of one send: a
    /// counter that starts at a random point in each run, then 8 random
    /// bytes. The server keeps these ids in a B-tree by sender; ids that
    /// sort in the order they are made land next to each other, one page
    /// written per conversation and batch instead of one page per message
    /// (random ids made that the relay's largest disk cost). Unlike a
    /// timestamp, the counter tells the server nothing it does not already
    /// see (how many sends came from this device, in which order).
    pub(crate) fn new_client_id(&self) -> Vec<u8> {
        let next = match self.env.sends.get() {
            Some(n) => n.wrapping_add(1),
            // Half the range: no wrap-around to the front in practice.
            None => self.env.ids.borrow_mut().next_u64() >> 1,
        };
        self.env.sends.set(Some(next));
        let mut tail = [0u8; 8];
        self.env.ids.borrow_mut().fill_bytes(&mut tail);
        [next.to_be_bytes(), tail].concat()
    }

    /// Creates a profile with a fresh identity for `handle` on `server`.
    pub fn create(dir: &Path, key: &ProfileKey, handle: &str, server: &str) -> CoreResult<Self> {
        let identity = Identity::generate(handle)?;
        let mut conn = db::create(dir, key)?;
        let result = (|| -> CoreResult<()> {
            conn.execute_batch(SCHEMA)?;
            schema::upgrade(&conn)?;
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
        Self::assemble(conn, identity, dir.to_owned())
    }

    /// An ephemeral messenger: identity and history live in memory only and
    /// vanish with the process; nothing touches the disk.
    pub fn create_ephemeral(handle: &str, server: &str) -> CoreResult<Self> {
        let identity = Identity::generate(handle)?;
        let mut conn = Connection::open_in_memory()?;
        conn.set_prepared_statement_cache_capacity(128);
        conn.execute_batch(SCHEMA)?;
        schema::upgrade(&conn)?;
        provider::migrate(&mut conn).map_err(CoreError::Mls)?;
        conn.exec("INSERT INTO settings(k, v) VALUES('identity', ?)", [identity.to_bytes()])?;
        conn.exec("INSERT INTO settings(k, v) VALUES('server', ?)", [server.as_bytes()])?;
        Self::assemble(conn, identity, PathBuf::new())
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
        schema::upgrade(&conn)?;
        let bytes: Vec<u8> = conn
            .row("SELECT v FROM settings WHERE k='identity'", [], |r| r.get(0))
            .optional()?
            .ok_or_else(|| CoreError::NoProfile(dir.display().to_string()))?;
        let identity = Identity::from_bytes(&bytes)?;
        Self::assemble(conn, identity, dir.to_owned())
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

    pub(crate) fn setting(&self, k: &str) -> CoreResult<Option<Vec<u8>>> {
        Ok(self.conn.row("SELECT v FROM settings WHERE k=?", [k], |r| r.get(0)).optional()?)
    }

    pub(crate) fn set_setting(&self, k: &str, v: &[u8]) -> CoreResult<()> {
        self.conn.exec("INSERT OR REPLACE INTO settings(k, v) VALUES(?, ?)", params![k, v])?;
        Ok(())
    }

    /// Whether this device has not yet published KeyPackages of every
    /// suite it speaks (a profile from before the post-quantum suite: its
    /// stock on the server is all classical until it uploads again).
    pub fn key_package_suites_missing(&self) -> CoreResult<bool> {
        Ok(self.setting(PUBLISHED_SUITES)?.as_deref() != Some(published_suites().as_bytes()))
    }

    /// Records that KeyPackages of every suite this device speaks are on
    /// the server.
    pub fn key_package_suites_published(&self) -> CoreResult<()> {
        self.set_setting(PUBLISHED_SUITES, published_suites().as_bytes())
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

    pub(crate) fn provider(&self) -> Provider<'_> {
        Provider::new(&self.crypto, &self.conn)
    }

    pub(crate) fn load_group(&self, group_id: &[u8]) -> CoreResult<MlsGroup> {
        MlsGroup::load(self.provider().storage(), &GroupId::from_slice(group_id))
            .map_err(CoreError::mls)?
            .ok_or_else(|| CoreError::NotFound("conversation state is missing".into()))
    }

    /// A request that uploads `n` fresh one-time KeyPackages of each suite
    /// this device speaks and a new last-resort one of each.
    pub fn key_package_upload(&self, n: usize) -> CoreResult<Request> {
        self.tx(|me| {
            let provider = me.provider();
            let signer = me.identity.signer();
            let mut packages = Vec::with_capacity(n);
            let build = |suite: Ciphersuite, last_resort: bool| -> CoreResult<Vec<u8>> {
                // Every package says it understands the last-resort
                // extension: a package carrying it must, or the person
                // claiming it refuses it (and a drained person could not be
                // reached at all).
                // It says so of the roles extension too, so it can join a
                // named group whose MLS state holds its roles.
                let mut b = KeyPackage::builder().leaf_node_capabilities(roles_state::capabilities());
                if last_resort {
                    b = b.mark_as_last_resort();
                }
                let bundle = b.build(suite, &provider, &signer, me.identity.credential()).map_err(CoreError::mls)?;
                bundle.key_package().tls_serialize_detached().map_err(CoreError::mls)
            };
            for suite in crate::suite::SUITES {
                for _ in 0..n {
                    packages.push(ByteBuf::from(build(suite, false)?));
                }
            }
            let [first, rest @ ..] = crate::suite::SUITES;
            Ok(Request::UploadKeyPackages {
                packages,
                last_resort: Some(ByteBuf::from(build(first, true)?)),
                other_last_resorts: rest
                    .iter()
                    .map(|s| build(*s, true).map(ByteBuf::from))
                    .collect::<CoreResult<_>>()?,
            })
        })
    }
}

#[cfg(test)]
mod client_id_tests {
    use super::Messenger;

    #[test]
    fn client_ids_sort_in_the_order_they_are_made_and_never_repeat() {
        let m = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
        let ids: Vec<Vec<u8>> = (0..1000).map(|_| m.new_client_id()).collect();
        assert!(ids.iter().all(|id| id.len() == 16));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "each id sorts after the one before");
        // Another run of the app starts somewhere else: not a continuation.
        let other = Messenger::create_ephemeral("alice", "sotto://x:1").unwrap();
        let next = other.new_client_id();
        assert!(!ids.contains(&next));
        assert_ne!(next[..8], ids[999][..8]);
    }
}
