//! Deterministic simulation of the relay and its clients under a hostile
//! network.
//!
//! Real parts: the relay's request logic (the sans-I/O boundary every
//! WebSocket session uses) over a real SQLite store, and real MLS clients
//! (`sotto-core`, each with its own store). Simulated: the network between
//! them and the clients' timers (re-sending the outbox, polling, key
//! updates, concurrent commits). Each client talks over one connection, as
//! over WebSocket: in order within it (TCP hides packet loss and
//! reordering), but any connection may be cut at any moment, losing every
//! request and answer in flight, after which the client reconnects and
//! re-sends, so the server sees duplicates; and the connections of different
//! clients are delayed and interleaved arbitrarily. One seeded generator
//! decides everything, and the relay runs each request to completion before
//! the next, so a seed always replays the same schedule:
//!
//!     SOTTO_SIM_SEED=1234 cargo test -p sotto-server --test simulation
//!
//! (`SOTTO_SIM_SEEDS=500` runs more seeds.) After the faults stop and the
//! network drains, every member must hold every message exactly once, in
//! the log's order, no group may be out of step, and all members must agree
//! on the MLS epoch and its authenticator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sotto_core::{Body, Invitee, Messenger};
use sotto_proto::{DeviceRef, ErrorBody, ErrorCode, Request, Response};
use sotto_server::relay::{Relay, RelayConfig, Submitted};
use sotto_server::store::{SqliteStore, Store};

const CLIENTS: usize = 4;
const GROUP: &str = "#sim";

/// What a client is waiting to hear about, by request id.
#[derive(Debug, Clone)]
enum Waiting {
    /// An outbox item (by client id).
    Post(Vec<u8>),
    /// A fetch of the group's log.
    Fetch,
    /// Anything whose answer changes nothing (acks).
    Nothing,
}

struct Client {
    m: Messenger,
    me: DeviceRef,
    next_id: u64,
    waiting: BTreeMap<u64, Waiting>,
    /// Outbox items the server called stale: rebuilt at the next re-send.
    stale: BTreeSet<Vec<u8>>,
    /// This connection's requests on their way to the server, in order.
    up: VecDeque<(u64, Request)>,
    /// Its answers on their way back, in order.
    down: VecDeque<(u64, Result<Response, ErrorBody>)>,
}

impl Client {
    fn request(&mut self, request: Request, waiting: Waiting) {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.insert(id, waiting);
        self.up.push_back((id, request));
    }

    /// The connection is cut: everything in flight either way is lost.
    fn cut(&mut self) {
        self.up.clear();
        self.down.clear();
        self.waiting.clear();
    }

    fn busy(&self) -> bool {
        !self.up.is_empty() || !self.down.is_empty()
    }
}

struct Faults {
    /// Chance per step that some client's connection is cut.
    cut: f64,
}

struct Sim {
    rng: StdRng,
    relay: Relay,
    clients: Vec<Client>,
    group: Vec<u8>,
    /// Texts each client asked to send.
    sent: Vec<Vec<String>>,
}

async fn answer(relay: &Relay, me: &DeviceRef, request: Request) -> Result<Response, ErrorBody> {
    match relay.submit(me, request) {
        Submitted::Queued(pending) => pending.await,
        Submitted::Other(request) => relay.handle(me, request).await,
    }
}

impl Sim {
    /// Registers the clients and makes one group of all of them, over a
    /// perfect network.
    async fn new(seed: u64, dir: &std::path::Path) -> Self {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let relay = Relay::new(store.clone(), RelayConfig::default(), vec![1; 32], dir.to_path_buf());
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let m = Messenger::create_ephemeral(&format!("c{i}"), "sotto://sim:1").unwrap();
            let info = m.identity().device_info();
            store.register(&m.identity().handle, &m.identity().account_key(), &info, None, false, 0).unwrap();
            let me = m.me();
            let upload = m.key_package_upload(4).unwrap();
            answer(&relay, &me, upload).await.unwrap();
            clients.push(Client {
                m,
                me,
                next_id: 1,
                waiting: BTreeMap::new(),
                stale: BTreeSet::new(),
                up: VecDeque::new(),
                down: VecDeque::new(),
            });
        }
        let mut invitees = Vec::new();
        for c in &clients[1..] {
            let handle = c.m.identity().handle.clone();
            let claim = Request::ClaimKeyPackages { handle: handle.clone() };
            let Response::KeyPackages { account_key, packages, .. } =
                answer(&relay, &clients[0].me, claim).await.unwrap()
            else {
                panic!("no key packages")
            };
            invitees.push(Invitee { handle, account_key, packages });
        }
        let commit = clients[0].m.create_group("sim", invitees).unwrap();
        answer(&relay, &clients[0].me, Request::CreateGroup { group_id: commit.group_id.clone() }).await.unwrap();
        let Response::Appended { seq, .. } = answer(&relay, &clients[0].me, commit.to_request()).await.unwrap() else {
            panic!()
        };
        clients[0].m.accepted(&commit.client_id, seq).unwrap();
        for c in &clients[1..] {
            c.m.handle_welcome(&commit.group_id, commit.welcome.as_deref().unwrap()).unwrap();
        }
        let group = commit.group_id.clone();
        // Members learn the group's name from the creator's announcement.
        let announce = clients[0].m.announce(GROUP).unwrap();
        let Response::Appended { seq, .. } = answer(&relay, &clients[0].me, announce.to_request()).await.unwrap()
        else {
            panic!()
        };
        clients[0].m.accepted(&announce.client_id, seq).unwrap();
        for c in &clients[1..] {
            let fetch = Request::Fetch { group_id: group.clone(), after_seq: 0, limit: 50 };
            let Response::Messages { messages } = answer(&relay, &c.me, fetch).await.unwrap() else { panic!() };
            c.m.handle_deliveries(&messages).unwrap();
        }
        Sim { rng: StdRng::seed_from_u64(seed), relay, clients, group, sent: vec![Vec::new(); CLIENTS] }
    }

    /// Sends every outbox item again, in order, as the client's flush
    /// does (a reconnect, or a timer after a stale answer). Items the server
    /// called stale are first rebuilt in the client's current epoch, which
    /// moves them to the back of the outbox, behind everything encrypted
    /// before them.
    fn resend(&mut self, c: usize) {
        let client = &mut self.clients[c];
        for cid in std::mem::take(&mut client.stale) {
            let Some(item) = client.m.outbox().unwrap().into_iter().find(|i| i.client_id == cid) else { continue };
            match item.kind {
                sotto_proto::MessageKind::Commit => client.m.redo_commit(&cid).unwrap(),
                sotto_proto::MessageKind::Application => client.m.reencrypt(&cid).unwrap(),
            };
        }
        for item in client.m.outbox().unwrap() {
            client.request(item.to_request(), Waiting::Post(item.client_id.clone()));
        }
    }

    fn poll(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let after = client.m.cursor(&self.group).unwrap().unwrap_or(0);
        let fetch = Request::Fetch { group_id: self.group.clone(), after_seq: after, limit: 50 };
        client.request(fetch, Waiting::Fetch);
    }

    /// Moves one packet on client `c`'s connection: the next request to
    /// the server (answered at once, the answer queued behind the others)
    /// or the next answer to the client.
    async fn deliver(&mut self, c: usize, upward: bool) {
        if upward {
            if let Some((id, request)) = self.clients[c].up.pop_front() {
                let result = answer(&self.relay, &self.clients[c].me, request).await;
                self.clients[c].down.push_back((id, result));
            }
        } else if let Some((id, result)) = self.clients[c].down.pop_front() {
            self.on_answer(c, id, result);
        }
    }

    /// A cut and the client's reconnect: it re-sends its outbox first (the
    /// server sees duplicates of whatever it already stored), then reads on.
    fn reconnect(&mut self, c: usize) {
        self.clients[c].cut();
        self.resend(c);
        self.poll(c);
    }

    fn on_answer(&mut self, c: usize, id: u64, result: Result<Response, ErrorBody>) {
        let group = self.group.clone();
        let client = &mut self.clients[c];
        let Some(waiting) = client.waiting.remove(&id) else { panic!("c{c}: an answer to nothing") };
        match (waiting, result) {
            (Waiting::Post(cid), Ok(Response::Appended { seq, .. })) => client.m.accepted(&cid, seq).unwrap(),
            (Waiting::Post(cid), Err(e)) if e.code == ErrorCode::StaleEpoch => {
                client.stale.insert(cid);
            }
            (Waiting::Fetch, Ok(Response::Messages { messages })) => {
                if let Some(last) = messages.last().map(|d| d.seq) {
                    client.m.handle_deliveries(&messages).unwrap();
                    let ack = Request::Ack { group_id: group, seq: last };
                    client.request(ack, Waiting::Nothing);
                }
            }
            (Waiting::Nothing, _) => {}
            (w, r) => panic!("client c{c}: unexpected answer {r:?} to {w:?}"),
        }
    }

    /// One step of the schedule.
    async fn step(&mut self, n: u64, faults: &Faults) {
        let c = self.rng.gen_range(0..CLIENTS);
        if self.rng.gen_bool(faults.cut) {
            self.reconnect(c);
            return;
        }
        match self.rng.gen_range(0..100) {
            0..=24 => self.deliver(c, true).await,
            25..=49 => self.deliver(c, false).await,
            50..=62 => {
                let text = format!("c{c} #{n}");
                let item = self.clients[c].m.prepare_text(GROUP, &text).unwrap();
                self.sent[c].push(text);
                self.clients[c].request(item.to_request(), Waiting::Post(item.client_id));
            }
            63..=66 => {
                // A key update: commits race each other and the texts. One
                // commit at a time per device, as the client does.
                let pending =
                    self.clients[c].m.outbox().unwrap().iter().any(|i| i.kind == sotto_proto::MessageKind::Commit);
                if pending {
                    return;
                }
                if let Some(item) = self.clients[c].m.update_keys(&self.group).unwrap() {
                    self.clients[c].request(item.to_request(), Waiting::Post(item.client_id));
                }
            }
            67..=84 => self.poll(c),
            _ => {
                // A timer: after a stale answer the client catches up and
                // flushes its outbox again.
                if !self.clients[c].stale.is_empty() {
                    self.resend(c);
                }
            }
        }
    }

    /// Faults off: drain every connection, then reconnect everyone (which
    /// re-sends and polls) until outboxes are empty and nothing new comes.
    async fn settle(&mut self) {
        for round in 0..200 {
            let mut fetched_any = false;
            while let Some(c) = (0..CLIENTS).find(|&c| self.clients[c].busy()) {
                while !self.clients[c].up.is_empty() {
                    self.deliver(c, true).await;
                }
                while let Some((id, result)) = self.clients[c].down.pop_front() {
                    if let Ok(Response::Messages { messages }) = &result {
                        fetched_any |= !messages.is_empty();
                    }
                    self.on_answer(c, id, result);
                }
            }
            let quiet = self.clients.iter().all(|c| c.m.outbox().unwrap().is_empty() && c.stale.is_empty());
            if quiet && !fetched_any && round > 0 {
                return;
            }
            for c in 0..CLIENTS {
                self.reconnect(c);
            }
        }
        panic!("the system did not settle in 200 rounds without faults");
    }

    fn check(&self, seed: u64) {
        let ctx = format!("seed {seed} (replay: SOTTO_SIM_SEED={seed})");
        // Everyone's view of the conversation, by server order.
        let mut views = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let history = c.m.history(GROUP).unwrap();
            let missing = |m: &&sotto_core::StoredMessage| {
                m.state == "system" && matches!(&m.body, Body::Text { text } if text.contains("may be missing"))
            };
            let markers: Vec<_> = history.iter().filter(missing).map(|m| &m.body).collect();
            assert!(markers.is_empty(), "{ctx}: c{i} lost step with the group: {markers:?}");
            let mut texts: Vec<(u64, String)> = history
                .iter()
                .filter(|m| m.state != "system")
                .filter_map(|m| match &m.body {
                    Body::Text { text } => {
                        Some((m.seq.unwrap_or_else(|| panic!("{ctx}: c{i} has {text:?} unsent")), text.clone()))
                    }
                    _ => None,
                })
                .collect();
            let received_order: Vec<u64> = history.iter().filter(|m| !m.outgoing).filter_map(|m| m.seq).collect();
            assert!(received_order.windows(2).all(|w| w[0] < w[1]), "{ctx}: c{i} received out of log order");
            texts.sort();
            let seqs: BTreeSet<u64> = texts.iter().map(|t| t.0).collect();
            assert_eq!(seqs.len(), texts.len(), "{ctx}: c{i} holds a message twice");
            views.push(texts);
        }
        let mut all_sent: Vec<&String> = self.sent.iter().flatten().collect();
        all_sent.sort();
        for (i, v) in views.iter().enumerate() {
            let mut got: Vec<&String> = v.iter().map(|t| &t.1).collect();
            got.sort();
            assert_eq!(got, all_sent, "{ctx}: c{i} does not hold exactly the messages sent");
            assert_eq!(v, &views[0], "{ctx}: c{i} and c0 disagree on the order");
        }
        let states: Vec<(u64, Vec<u8>)> = self.clients.iter().map(|c| c.m.epoch_state(&self.group).unwrap()).collect();
        assert!(states.iter().all(|s| s == &states[0]), "{ctx}: members disagree on the epoch: {states:?}");
    }
}

async fn run(seed: u64, steps: u64) -> (usize, u64) {
    // Shown only when the test fails: the seed to replay.
    eprintln!("simulating seed {seed} (replay: SOTTO_SIM_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::new(seed, dir.path()).await;
    let faults = Faults { cut: 0.03 };
    for n in 0..steps {
        sim.step(n, &faults).await;
    }
    sim.settle().await;
    sim.check(seed);
    (sim.sent.iter().map(Vec::len).sum(), sim.clients[0].m.epoch_state(&sim.group).unwrap().0)
}

#[tokio::test(flavor = "current_thread")]
async fn every_message_once_in_order_and_one_epoch_despite_a_hostile_network() {
    let seeds: Vec<u64> = match std::env::var("SOTTO_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SOTTO_SIM_SEED is a number")],
        Err(_) => (0..std::env::var("SOTTO_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(24)).collect(),
    };
    let (mut messages, mut epochs) = (0, 0);
    for seed in seeds {
        let (m, e) = run(seed, 300).await;
        messages += m;
        epochs += e;
    }
    // The schedule must actually exercise something.
    assert!(messages > 0 && epochs > 1, "messages {messages}, epochs {epochs}");
}
