//! The PostgreSQL store's doorbell between nodes: LISTEN/NOTIFY on one
//! channel, rung after commit (never inside the write transaction, where
//! NOTIFY takes a global lock at commit).

#[allow(unused_imports)]
use super::*;
use crate::store::{Change, Changes, DeploymentView, LiveSession};
use ::postgres::fallible_iterator::FallibleIterator;
use std::time::Duration;

impl Changes for PgStore {
    fn ring(&self, change: &Change) {
        let payloads = change.payloads(&self.node);
        let sent = off_runtime(|| {
            self.pool()?.get().map_err(backend).and_then(|mut c| {
                c.client()
                    .execute("SELECT pg_notify($1, x) FROM unnest($2::text[]) x", &[&CHANNEL, &payloads])
                    .map_err(backend)
            })
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not ring the other nodes");
        }
    }

    fn listen(&self) -> Option<mpsc::Receiver<Change>> {
        let (tx, rx) = mpsc::channel();
        let (config, node) = (self.config.clone(), self.node.clone());
        std::thread::Builder::new().name("sotto-pg-listen".into()).spawn(move || listen(config, &node, tx)).ok()?;
        Some(rx)
    }

    fn shared(&self) -> bool {
        true
    }

    fn publish_sessions(&self, address: &str, sessions: &[LiveSession]) -> StoreResult<()> {
        let now = crate::relay::now_ms();
        let handles: Vec<&str> = sessions.iter().map(|s| s.device.handle.as_str()).collect();
        let devices: Vec<i64> = sessions.iter().map(|s| dev_id(&s.device)).collect();
        let remotes: Vec<&str> = sessions.iter().map(|s| s.remote.as_str()).collect();
        let since: Vec<i64> = sessions.iter().map(|s| int(s.since)).collect();
        let bytes_in: Vec<i64> = sessions.iter().map(|s| int(s.bytes_in)).collect();
        let bytes_out: Vec<i64> = sessions.iter().map(|s| int(s.bytes_out)).collect();
        self.with_tx(|tx| {
            tx.execute(
                "INSERT INTO nodes(node, address, seen_at) VALUES($1,$2,$3)
                 ON CONFLICT(node) DO UPDATE SET seen_at=$3, address=$2",
                &[&self.node, &address, &now],
            )
            .map_err(backend)?;
            tx.execute("DELETE FROM live_sessions WHERE node=$1", &[&self.node]).map_err(backend)?;
            tx.execute(
                "INSERT INTO live_sessions(node, handle, device_id, remote, since, bytes_in, bytes_out)
                 SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])",
                &[&self.node, &handles, &devices, &remotes, &since, &bytes_in, &bytes_out],
            )
            .map_err(backend)?;
            // A node killed without a goodbye: its rows go after a while.
            tx.execute("DELETE FROM nodes WHERE seen_at < $1", &[&(now - NODE_GONE_AFTER_MS)]).map_err(backend)?;
            Ok(())
        })
    }

    fn forget_node(&self) {
        if let Err(e) =
            self.with_tx(|tx| tx.execute("DELETE FROM nodes WHERE node=$1", &[&self.node]).map_err(backend).map(drop))
        {
            tracing::warn!(error = %e, "could not remove this node from the deployment's list");
        }
    }

    fn deployment_sessions(&self) -> StoreResult<Option<DeploymentView>> {
        let alive = crate::relay::now_ms() - NODE_ALIVE_WITHIN_MS;
        self.with_tx(|tx| {
            let nodes = tx
                .query("SELECT node, address FROM nodes WHERE seen_at >= $1 ORDER BY address, node", &[&alive])
                .map_err(backend)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let rows = tx
                .query(
                    "SELECT s.node, s.handle, s.device_id, s.remote, s.since, s.bytes_in, s.bytes_out
                     FROM live_sessions s JOIN nodes n ON n.node = s.node WHERE n.seen_at >= $1
                     ORDER BY s.handle, s.device_id, s.since",
                    &[&alive],
                )
                .map_err(backend)?;
            let sessions = rows
                .iter()
                .map(|r| LiveSession {
                    node: r.get(0),
                    device: DeviceRef { handle: r.get(1), device_id: device_number(r.get(2)) },
                    remote: r.get(3),
                    since: unsigned(r.get(4)),
                    bytes_in: unsigned(r.get(5)),
                    bytes_out: unsigned(r.get(6)),
                })
                .collect();
            Ok(Some(DeploymentView { nodes, sessions }))
        })
    }

    fn online_elsewhere(&self, handles: &[String]) -> StoreResult<Vec<String>> {
        let alive = crate::relay::now_ms() - NODE_ALIVE_WITHIN_MS;
        self.with_tx(|tx| {
            let rows = tx
                .query(
                    "SELECT DISTINCT s.handle FROM live_sessions s JOIN nodes n ON n.node = s.node
                     WHERE n.seen_at >= $1 AND s.node <> $2 AND s.handle = ANY($3)",
                    &[&alive, &self.node, &handles],
                )
                .map_err(backend)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn readers(&self, groups: &[Vec<u8>]) -> StoreResult<Vec<(Vec<u8>, DeviceRef)>> {
        self.with_tx(|tx| {
            let rows = tx
                .query("SELECT group_id, handle, device_id FROM members WHERE group_id = ANY($1)", &[&groups])
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), DeviceRef { handle: r.get(1), device_id: device_number(r.get(2)) }))
                .collect())
        })
    }
}

/// A node that has not published for this long is not counted as alive.
const NODE_ALIVE_WITHIN_MS: i64 = 30_000;
/// ... and its rows are removed after this long.
const NODE_GONE_AFTER_MS: i64 = 300_000;

/// Listens until the node goes (the receiver is dropped). A broken
/// connection is made again; rings sent meanwhile may be lost, so after it
/// every connection looks at every group ([`Change::All`]).
fn listen(config: ::postgres::Config, node: &str, out: mpsc::Sender<Change>) {
    let own = format!("{node}|");
    let mut first = true;
    loop {
        let mut client = match config.connect(NoTls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for the other nodes; trying again");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(error = %e, "cannot listen for the other nodes; trying again");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        if !first && out.send(Change::All).is_err() {
            return;
        }
        first = false;
        let mut notifications = client.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_secs(30));
        loop {
            match iter.next() {
                Ok(Some(n)) => {
                    let payload = n.payload();
                    if payload.starts_with(&own) {
                        continue;
                    }
                    let Some((_, change)) = payload.split_once('|') else { continue };
                    if let Some(change) = Change::decode(change) {
                        if out.send(change).is_err() {
                            return;
                        }
                    }
                }
                // Quiet for a while: see that the node still wants rings.
                Ok(None) => {
                    if out.send(Change::Group(Vec::new())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the line to the other nodes; listening again");
                    break;
                }
            }
        }
    }
}
