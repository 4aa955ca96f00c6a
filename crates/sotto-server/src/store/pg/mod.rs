//! The PostgreSQL store, for several server nodes sharing one database
//! (`sotto-server --store postgresql://...`). PostgreSQL is the durable,
//! ordered log: every rule that must hold across nodes (one sequence per
//! group, the first commit of an epoch wins, a KeyPackage is claimed once)
//! is decided by the database with row locks, never by a node's memory.
//!
//! The trait is synchronous, as for SQLite: the relay calls it from
//! blocking threads. The `postgres` crate's client (a small runtime of
//! its own around `tokio-postgres`) fits that; `r2d2` keeps the pool.

use std::sync::mpsc;

use ::postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use sha2::{Digest, Sha256};
use sotto_proto::{Delivery, DeviceInfo, DeviceRef, MessageKind};

use super::*;

mod accounts;
mod blobs;
mod changes;
mod group_log;
mod key_packages;
mod operator;
mod schema;
mod tx;
mod writer;

use tx::Tx;

type Pool = r2d2::Pool<tx::Manager>;

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    /// Taken out only when the store is dropped (see its `Drop`).
    pool: Option<Pool>,
    /// Appends go through one writer thread per node that commits what is
    /// queued in one transaction (one commit for many acknowledged
    /// messages), as the SQLite store does.
    jobs: mpsc::Sender<writer::Job>,
    /// For the listening connection (rings from other nodes).
    config: ::postgres::Config,
    /// This node's name on the notification channel, so it skips its own.
    node: String,
    /// How long appends spend queued and committing (`/metrics`).
    timings: Arc<crate::store::stage_timings::StageTimings>,
}

/// The notification channel the nodes ring each other on.
const CHANNEL: &str = "sotto_changes";

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn invite_hash(code: &str) -> Vec<u8> {
    Sha256::digest(code.trim().as_bytes()).to_vec()
}

fn kind_code(kind: MessageKind) -> i16 {
    match kind {
        MessageKind::Commit => 1,
        MessageKind::Application => 2,
    }
}

fn kind_from(code: i16) -> MessageKind {
    if code == 1 {
        MessageKind::Commit
    } else {
        MessageKind::Application
    }
}

/// PostgreSQL has no unsigned integers: sequence numbers, epochs and device
/// numbers are stored as BIGINT.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn dev_id(d: &DeviceRef) -> i64 {
    i64::from(d.device_id)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn device_number(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl PgStore {
    /// Connects to `url` (`postgresql://user@host/db`, or `host=/run/pg
    /// user=sotto dbname=sotto`), brings the schema up to date and starts
    /// the writer. Call it outside an async context (it blocks).
    pub fn open(url: &str) -> StoreResult<Self> {
        Self::open_in(url, None)
    }

    /// As [`PgStore::open`], with every table in `schema` (created if
    /// missing): for tests, which each get an empty store in one database.
    pub fn open_in(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let mut config: ::postgres::Config =
            url.parse().map_err(|e| StoreError::Backend(format!("not a PostgreSQL address ({e})")))?;
        // So an operator (and the crash bench) can tell the nodes' sessions
        // in pg_stat_activity.
        if config.get_application_name().is_none() {
            config.application_name("sotto-server");
        }
        if let Some(schema) = schema {
            if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Invalid("a schema name is letters, digits and _".into()));
            }
            let mut admin = config.connect(NoTls).map_err(backend)?;
            admin.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).map_err(backend)?;
            config.options(&format!("-c search_path={schema}"));
        }
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(tx::Manager(PostgresConnectionManager::new(config.clone(), NoTls)))
            .map_err(backend)?;
        migrate(pool.get().map_err(backend)?.client())?;
        let (jobs, rx) = mpsc::channel();
        let client = config.connect(NoTls).map_err(backend)?;
        let node = hex::encode(rand::random::<[u8; 8]>());
        let (writer_config, writer_node) = (config.clone(), node.clone());
        let timings = Arc::new(crate::store::stage_timings::StageTimings::default());
        let writer_timings = timings.clone();
        std::thread::Builder::new()
            .name("sotto-pg-writer".into())
            .spawn(move || writer::run(client, writer_config, &writer_node, rx, writer_timings))
            .map_err(backend)?;
        Ok(Self { pool: Some(pool), jobs, config, node, timings })
    }

    /// A value every node of the deployment shares (the TLS key, the server
    /// id): the one stored, or `make()`'s, stored by whichever node comes
    /// first.
    pub fn shared_value(&self, name: &str, make: impl FnOnce() -> Vec<u8>) -> StoreResult<Vec<u8>> {
        let fresh = make();
        self.with_tx(|tx| {
            tx.execute("INSERT INTO deployment(name, value) VALUES($1,$2) ON CONFLICT DO NOTHING", &[&name, &fresh])
                .map_err(backend)?;
            Ok(tx.query_one("SELECT value FROM deployment WHERE name=$1", &[&name]).map_err(backend)?.get(0))
        })
    }

    fn pool(&self) -> StoreResult<&Pool> {
        self.pool.as_ref().ok_or_else(|| StoreError::Backend("the store was closed".into()))
    }

    /// Runs `f` in one transaction; it is committed only if `f` succeeds.
    fn with_tx<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        off_runtime(|| {
            let mut client = self.pool()?.get().map_err(backend)?;
            let mut tx = client.transaction().map_err(backend)?;
            let out = f(&mut tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
    }
}

impl Drop for PgStore {
    /// Closing a connection blocks on the client's own runtime, which
    /// cannot run on an async thread (an operator command drops its store
    /// at the end of an `async fn`).
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            off_runtime(move || drop(pool));
        }
    }
}

/// Runs blocking database work. The `postgres` client drives a runtime of
/// its own, which cannot start on a thread already driving async code (the
/// binary's operator commands call the store from `async fn`s): there the
/// work moves off the async thread first. The relay's calls, on blocking
/// threads, run as they are.
pub(super) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Applies the migrations this database lacks, each in its own
/// transaction. An advisory lock makes nodes started together take turns.
fn migrate(client: &mut ::postgres::Client) -> StoreResult<()> {
    let mut tx = client.transaction().map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock(7427361)", &[]).map_err(backend)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations(number BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .map_err(backend)?;
    let have: i64 =
        tx.query_one("SELECT coalesce(max(number), 0) FROM schema_migrations", &[]).map_err(backend)?.get(0);
    let known = schema::MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if have > known {
        return Err(StoreError::Backend(format!(
            "this database was made by a newer sotto-server (schema {have}, this one knows up to {known}); upgrade this node"
        )));
    }
    for (number, sql) in schema::MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations(number, applied_at) VALUES($1, $2)",
            &[number, &crate::relay::now_ms()],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

fn devices_of(tx: &mut Tx<'_>, handle: &str) -> StoreResult<Vec<DeviceInfo>> {
    let rows = tx
        .query("SELECT device_id, device_key, certificate FROM devices WHERE handle=$1 ORDER BY device_id", &[&handle])
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| DeviceInfo { device_id: device_number(r.get(0)), device_key: r.get(1), certificate: r.get(2) })
        .collect())
}

fn members_of(tx: &mut Tx<'_>, group_id: &[u8]) -> StoreResult<Vec<DeviceRef>> {
    let rows = tx
        .query(
            "SELECT handle, device_id FROM members WHERE group_id=$1 AND until_seq IS NULL ORDER BY handle, device_id",
            &[&group_id],
        )
        .map_err(backend)?;
    Ok(rows.iter().map(|r| DeviceRef { handle: r.get(0), device_id: device_number(r.get(1)) }).collect())
}

/// A current member's (joined_seq, cursor).
fn member_row(tx: &mut Tx<'_>, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, u64)>> {
    Ok(reader_row(tx, group_id, device)?.filter(|r| r.2.is_none()).map(|r| (r.0, r.1)))
}

/// A device that may still read: (joined_seq, cursor, until_seq).
fn reader_row(tx: &mut Tx<'_>, group_id: &[u8], device: &DeviceRef) -> StoreResult<Option<(u64, u64, Option<u64>)>> {
    let row = tx
        .query_opt(
            "SELECT joined_seq, cursor, until_seq FROM members WHERE group_id=$1 AND handle=$2 AND device_id=$3",
            &[&group_id, &device.handle, &dev_id(device)],
        )
        .map_err(backend)?;
    Ok(row.map(|r| (unsigned(r.get(0)), unsigned(r.get(1)), r.get::<_, Option<i64>>(2).map(unsigned))))
}

/// A group's (epoch, last_seq); `lock` holds its row until the
/// transaction ends, so no other node appends to it meanwhile.
fn group_row(tx: &mut Tx<'_>, group_id: &[u8], lock: bool) -> StoreResult<Option<(u64, u64)>> {
    let sql = if lock {
        "SELECT epoch, last_seq FROM groups WHERE group_id=$1 FOR UPDATE"
    } else {
        "SELECT epoch, last_seq FROM groups WHERE group_id=$1"
    };
    let row = tx.query_opt(sql, &[&group_id]).map_err(backend)?;
    Ok(row.map(|r| (unsigned(r.get(0)), unsigned(r.get(1)))))
}

fn blob_row(tx: &mut Tx<'_>, id: &[u8]) -> StoreResult<Option<BlobRecord>> {
    let row = tx
        .query_opt("SELECT owner_handle, owner_device, size, complete, created_at FROM blobs WHERE id=$1", &[&id])
        .map_err(backend)?;
    Ok(row.map(|r| BlobRecord {
        id: id.to_vec(),
        owner: DeviceRef { handle: r.get(0), device_id: device_number(r.get(1)) },
        size: unsigned(r.get(2)),
        complete: r.get(3),
        created_at: r.get(4),
    }))
}

fn one_time_count(tx: &mut Tx<'_>, device: &DeviceRef) -> StoreResult<u32> {
    Ok(super::key_package_rules::stock(&suite_counts(tx, device)?))
}

/// `(suite, one-time packages)` for every suite the device keeps packages
/// of (a suite with only its last-resort package counts 0).
fn suite_counts(tx: &mut Tx<'_>, device: &DeviceRef) -> StoreResult<Vec<(u16, u32)>> {
    let rows = tx
        .query(
            "SELECT suite, count(*) FILTER (WHERE NOT last_resort) FROM key_packages
             WHERE handle=$1 AND device_id=$2 GROUP BY suite",
            &[&device.handle, &dev_id(device)],
        )
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| {
            let suite: i32 = r.get(0);
            let n: i64 = r.get(1);
            (u16::try_from(suite).unwrap_or(0), u32::try_from(n).unwrap_or(u32::MAX))
        })
        .collect())
}

/// Deletes the group's messages that every member has acknowledged.
fn delete_fully_acked(tx: &mut Tx<'_>, group_id: &[u8]) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM messages WHERE group_id=$1 AND seq <= (SELECT coalesce(min(cursor), 0) FROM members WHERE group_id=$1)",
        &[&group_id],
    )
    .map_err(backend)?;
    Ok(())
}

/// The PostgreSQL the tests use: `SOTTO_TEST_POSTGRES` (a connection
/// string; `scripts/pg-cluster.sh` starts a throwaway cluster and prints
/// one). Without it the PostgreSQL tests skip and say so, unless
/// `SOTTO_REQUIRE_POSTGRES` is set (CI), where a skip would hide a gap.
pub fn test_postgres() -> Option<String> {
    match std::env::var("SOTTO_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("SOTTO_REQUIRE_POSTGRES").is_some() => {
            panic!("SOTTO_REQUIRE_POSTGRES is set but SOTTO_TEST_POSTGRES is not: start one with scripts/pg-cluster.sh")
        }
        _ => {
            eprintln!(
                "skipped: no PostgreSQL for the tests (set SOTTO_TEST_POSTGRES; scripts/pg-cluster.sh starts a throwaway one)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty store: its own schema in the test database.
    fn fresh() -> PgStore {
        let url = test_postgres().expect("checked by the suite first");
        let schema = format!("t{}", hex::encode(rand::random::<[u8; 8]>()));
        PgStore::open_in(&url, Some(&schema)).unwrap()
    }

    crate::store_conformance!(fresh(), if test_postgres().is_some());

    /// Appends are timed: queued, committed, answered; PostgreSQL syncs
    /// inside its commit, so there is no sync stage.
    #[test]
    fn appends_are_timed_by_stage() {
        if test_postgres().is_none() {
            return;
        }
        let s = fresh();
        let alice = conformance::dev("alice");
        conformance::register(&s, "alice");
        s.create_group(b"g-timed", &alice, 0).unwrap();
        for i in 0..3u8 {
            s.append(&conformance::msg(b"g-timed", &alice, 0, &[i], MessageKind::Application), 0).unwrap();
        }
        let t = s.stage_timings().unwrap();
        let count =
            |name: &str| t[crate::store::stage_timings::STAGES.iter().position(|(n, _)| *n == name).unwrap()].count();
        assert_eq!((count("queue"), count("durable")), (3, 3));
        assert!((1..=3).contains(&count("commit")), "{}", count("commit"));
        assert_eq!((count("sync_wait"), count("sync")), (0, 0));
    }

    #[test]
    fn nodes_share_one_value_whoever_comes_first() {
        let Some(url) = test_postgres() else { return };
        let schema = format!("t{}", hex::encode(rand::random::<[u8; 8]>()));
        let (a, b) = (PgStore::open_in(&url, Some(&schema)).unwrap(), PgStore::open_in(&url, Some(&schema)).unwrap());
        let first = a.shared_value("tls_key", || b"made by a".to_vec()).unwrap();
        assert_eq!(first, b"made by a");
        assert_eq!(b.shared_value("tls_key", || b"made by b".to_vec()).unwrap(), first);
    }

    /// Two nodes on one database: of two commits on the same epoch, sent
    /// through different nodes at once, exactly one wins; messages sent
    /// through both get one unbroken sequence; a KeyPackage is claimed once.
    #[test]
    fn two_nodes_race_and_the_database_decides() {
        let Some(url) = test_postgres() else { return };
        let schema = format!("t{}", hex::encode(rand::random::<[u8; 8]>()));
        let nodes = [
            std::sync::Arc::new(PgStore::open_in(&url, Some(&schema)).unwrap()),
            std::sync::Arc::new(PgStore::open_in(&url, Some(&schema)).unwrap()),
        ];
        let (alice, bob) = (conformance::dev("alice"), conformance::dev("bob"));
        conformance::register(&*nodes[0], "alice");
        conformance::register(&*nodes[0], "bob");
        nodes[0].create_group(b"g-race", &alice, 0).unwrap();
        let added = [bob.clone()];
        let mut add = conformance::msg(b"g-race", &alice, 0, b"add", MessageKind::Commit);
        add.added = &added;
        nodes[1].append(&add, 0).unwrap();
        // 20 commits on epoch 1, half through each node, all at once.
        let handles: Vec<_> = (0..20u8)
            .map(|i| {
                let node = nodes[usize::from(i % 2)].clone();
                let sender = if i % 3 == 0 { alice.clone() } else { bob.clone() };
                std::thread::spawn(move || {
                    let cid = [b'c', i];
                    node.append(&conformance::msg(b"g-race", &sender, 1, &cid, MessageKind::Commit), 0)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(StoreError::StaleEpoch { current: 2 }))));
        // Then 200 messages through both nodes from several threads.
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let node = nodes[usize::from(t % 2)].clone();
                let sender = alice.clone();
                std::thread::spawn(move || {
                    (0..50u8)
                        .map(|i| {
                            let cid = [b'm', t, i];
                            node.append(&conformance::msg(b"g-race", &sender, 2, &cid, MessageKind::Application), 0)
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (3..203).collect::<Vec<u64>>(), "one unbroken sequence across nodes");
        // One KeyPackage, claimed from both nodes at once: once.
        nodes[0].add_key_packages(&bob, &[(1, b"only".to_vec())], &[]).unwrap();
        let claims: Vec<_> = nodes
            .iter()
            .map(|n| {
                let n = n.clone();
                std::thread::spawn(move || n.claim_key_packages("bob", None, &[1]))
            })
            .collect();
        let got: Vec<_> = claims.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1, "{got:?}");
    }

    #[test]
    fn what_was_written_is_there_after_reopening() {
        let Some(url) = test_postgres() else { return };
        let schema = format!("t{}", hex::encode(rand::random::<[u8; 8]>()));
        conformance::durability(|| PgStore::open_in(&url, Some(&schema)).unwrap());
    }
}
