//! Changes other nodes must hear of. A store shared by several nodes
//! (PostgreSQL) rings the others after each commit; each node wakes its own
//! connections, which then read from their cursors in the store. The ring
//! is only a doorbell: it carries which group (or inbox, or account), never
//! a message, so a lost ring costs latency, never a message.

use sotto_proto::DeviceRef;

/// What changed, as another node rang it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A group's log has new entries.
    Group(Vec<u8>),
    /// These devices have new welcomes.
    Inbox(Vec<DeviceRef>),
    /// The account was banned or removed: close its connections.
    Kick(String),
    /// The device was removed from its account: close its connections.
    KickDevice(DeviceRef),
    /// The operator wrote a notice.
    Notices,
    /// Rings may have been missed (the listening connection broke): every
    /// connection looks at every group it is in.
    All,
}

/// One live connection, as a node publishes it for the operator's view of
/// the whole deployment (`sotto-server sessions --store ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The node holding the connection (its id on the doorbell).
    pub node: String,
    /// The device.
    pub device: DeviceRef,
    /// The peer's address.
    pub remote: String,
    /// Connected since (Unix seconds).
    pub since: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// What the operator sees of a deployment: its nodes alive, as (id,
/// address), and their connections.
#[derive(Debug, Clone, Default)]
pub struct DeploymentView {
    /// Each node that published lately: its id and address.
    pub nodes: Vec<(String, String)>,
    /// Their live connections.
    pub sessions: Vec<LiveSession>,
}

/// A store's line to the other nodes sharing it. The embedded SQLite store
/// has none: every default here does nothing.
pub trait Changes: Send + Sync + 'static {
    /// Rings the other nodes (best effort; after the change is committed).
    fn ring(&self, _change: &Change) {}

    /// Changes the other nodes rang, as they come; `None` when no other node
    /// shares this store. Called once, by the node.
    fn listen(&self) -> Option<std::sync::mpsc::Receiver<Change>> {
        None
    }

    /// Whether other nodes may share this store.
    fn shared(&self) -> bool {
        false
    }

    /// Replaces this node's published connections with `sessions` and marks
    /// the node (listening on `address`) alive; called every few seconds.
    fn publish_sessions(&self, _address: &str, _sessions: &[LiveSession]) -> super::StoreResult<()> {
        Ok(())
    }

    /// Removes this node's published connections (it is shutting down).
    fn forget_node(&self) {}

    /// The live connections of every node that published lately, with the
    /// nodes that did as (id, address) (`None` when the store is not shared).
    fn deployment_sessions(&self) -> super::StoreResult<Option<DeploymentView>> {
        Ok(None)
    }

    /// Which of `handles` have a connection on another node (as the nodes
    /// last published theirs, a few seconds ago at most): presence across
    /// a deployment.
    fn online_elsewhere(&self, _handles: &[String]) -> super::StoreResult<Vec<String>> {
        Ok(Vec::new())
    }

    /// Every device that may still read these groups (their members and
    /// those removed who have not yet read their removal), as (group,
    /// device): whom a ring wakes. One query for all the rings that came
    /// together.
    fn readers(&self, _groups: &[Vec<u8>]) -> super::StoreResult<Vec<(Vec<u8>, DeviceRef)>> {
        Ok(Vec::new())
    }
}

impl Change {
    /// As a notification payload: `<kind>:<fields>`.
    pub fn encode(&self) -> String {
        match self {
            Change::Group(g) => format!("g:{}", hex::encode(g)),
            Change::Inbox(devs) => {
                let list: Vec<String> = devs.iter().map(|d| format!("{}/{}", d.device_id, d.handle)).collect();
                format!("i:{}", list.join(","))
            }
            Change::Kick(handle) => format!("k:{handle}"),
            Change::KickDevice(d) => format!("d:{}/{}", d.device_id, d.handle),
            Change::Notices => "n:".into(),
            Change::All => "a:".into(),
        }
    }

    /// As notification payloads from `node` (`<node>|<change>`), each under
    /// PostgreSQL's 8000-byte limit: a long list of devices is split.
    pub fn payloads(&self, node: &str) -> Vec<String> {
        const MOST: usize = 7000;
        match self {
            Change::Inbox(devs) if self.encode().len() > MOST => {
                let mut out = Vec::new();
                let mut part: Vec<DeviceRef> = Vec::new();
                let mut len = 0;
                for d in devs {
                    let one = d.handle.len() + 12;
                    if len + one > MOST && !part.is_empty() {
                        out.push(format!("{node}|{}", Change::Inbox(std::mem::take(&mut part)).encode()));
                        len = 0;
                    }
                    len += one;
                    part.push(d.clone());
                }
                if !part.is_empty() {
                    out.push(format!("{node}|{}", Change::Inbox(part).encode()));
                }
                out
            }
            other => vec![format!("{node}|{}", other.encode())],
        }
    }

    /// From a payload; `None` for anything malformed (ignored: a ring is
    /// only a hint).
    pub fn decode(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once(':')?;
        let device = |x: &str| {
            let (id, handle) = x.split_once('/')?;
            Some(DeviceRef { handle: handle.to_owned(), device_id: id.parse().ok()? })
        };
        Some(match kind {
            "g" => Change::Group(hex::decode(rest).ok()?),
            "i" => Change::Inbox(rest.split(',').map(device).collect::<Option<_>>()?),
            "k" if !rest.is_empty() => Change::Kick(rest.to_owned()),
            "d" => Change::KickDevice(device(rest)?),
            "n" => Change::Notices,
            "a" => Change::All,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_and_garbage_is_ignored() {
        let d = DeviceRef { handle: "ali/ce".into(), device_id: 3 };
        for c in [
            Change::Group(vec![2, 0, 255]),
            Change::Inbox(vec![d.clone(), DeviceRef { handle: "bob".into(), device_id: 1 }]),
            Change::Kick("mallory".into()),
            Change::KickDevice(d),
            Change::Notices,
            Change::All,
        ] {
            assert_eq!(Change::decode(&c.encode()), Some(c));
        }
        for bad in ["", "g:zz", "x:1", "i:a/b", "k:", "nothing"] {
            assert_eq!(Change::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_list_of_devices_rings_in_several_notifications_under_the_limit() {
        let devs: Vec<DeviceRef> =
            (0..2000).map(|i| DeviceRef { handle: format!("member{i:05}"), device_id: i % 7 + 1 }).collect();
        let payloads = Change::Inbox(devs.clone()).payloads("node1");
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() < 8000, "{}", p.len());
            let (node, change) = p.split_once('|').unwrap();
            assert_eq!(node, "node1");
            match Change::decode(change) {
                Some(Change::Inbox(d)) => back.extend(d),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, devs);
        assert_eq!(Change::Notices.payloads("n"), vec!["n|n:".to_string()]);
    }
}
