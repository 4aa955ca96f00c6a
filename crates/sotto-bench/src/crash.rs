//! `crash`: clients send numbered messages while the server is killed with
//! SIGKILL at random moments and restarted, and (with `--cut`) while a proxy
//! between them cuts their connections at random byte offsets, mid-frame.
//! Every message a sender saw acknowledged must reach its receiver exactly
//! once, in server order. With `--file-mib`, a file then goes up and down
//! through the cutting proxy, resuming after every cut, and must arrive
//! byte for byte.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use serde_bytes::ByteBuf;
use sotto_proto::{DeviceRef, Push, Request, Response, ServerAddress, ServerMessage};

use crate::client::{Account, Conn};
use crate::nodes::Nodes;
use crate::proc::Proc;
use crate::proxy::CutProxy;

/// The outcome.
pub struct CrashResult {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub kills: u32,
    /// Times every node's database connections were cut (with `--nodes`).
    pub db_cuts: u32,
    /// Connections the proxy cut (0 without `--cut`).
    pub cuts: u64,
    /// The file transfer through the cutting proxy, if asked for.
    pub file: Option<FileFaults>,
}

/// A file sent and fetched through connections cut mid-transfer.
pub struct FileFaults {
    pub bytes: u64,
    /// Attempts the upload and the download took (1 each without a cut).
    pub upload_attempts: u32,
    pub download_attempts: u32,
    /// Connections cut during the transfer.
    pub cuts: u64,
    pub identical: bool,
}

/// The same address on another port (the proxy's).
fn via(address: &ServerAddress, port: u16) -> ServerAddress {
    ServerAddress { port, ..address.clone() }
}

fn start(data: &Path, port: u16) -> Result<(Proc, ServerAddress)> {
    let p = Proc::spawn(&["serve", "--data", data.to_str().context("path")?, "--port", &port.to_string()])?;
    Ok((ServerAddress::parse(&p.line)?, p)).map(|(a, p)| (p, a))
}

/// Opens a connection to any of `addresses` (a random one each try, as a
/// load balancer would pick), retrying while they are down.
async fn connect(addresses: &[ServerAddress], acct: &Account, register: bool) -> Conn {
    loop {
        let address = &addresses[rand::thread_rng().gen_range(0..addresses.len())];
        if let Ok(c) = Conn::open(address, acct, register).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The servers under test: one on SQLite, or several nodes on one
/// PostgreSQL.
struct Servers {
    data: std::path::PathBuf,
    port: u16,
    nodes: Option<Nodes>,
    running: Vec<Mutex<Option<Proc>>>,
}

impl Servers {
    fn count(&self) -> usize {
        self.nodes.as_ref().map(Nodes::len).unwrap_or(1)
    }

    fn start(&self, i: usize) -> Result<ServerAddress> {
        let (p, address) = match &self.nodes {
            Some(n) => n.start(i)?,
            None => {
                let (p, a) = start(&self.data, self.port)?;
                (p, a)
            }
        };
        *self.running[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
        Ok(address)
    }

    fn kill(&self, i: usize) {
        if let Some(mut p) = self.running[i].lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = p.child.kill(); // SIGKILL
            let _ = p.child.wait();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        // The nodes go before their schema is dropped.
        for i in 0..self.running.len() {
            self.kill(i);
        }
    }
}

/// `nodes`: several nodes on this PostgreSQL (a connection string) instead
/// of one server on SQLite.
pub async fn run(
    kills: u32,
    messages: u64,
    pairs: usize,
    cut: bool,
    file_mib: u64,
    nodes: Option<(String, usize)>,
) -> Result<CrashResult> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let nodes = match &nodes {
        Some((store, n)) => Some(Nodes::new(dir.path(), store, *n)?),
        None => None,
    };
    let count = nodes.as_ref().map(Nodes::len).unwrap_or(1);
    let servers = Arc::new(Servers { data, port, nodes, running: (0..count).map(|_| Mutex::new(None)).collect() });
    let mut addresses = Vec::new();
    for i in 0..count {
        addresses.push(servers.start(i)?);
    }
    let address = addresses[0].clone();

    // Set up pairs while the server is up.
    let mut setups = Vec::new();
    for i in 0..pairs {
        let (s, r) = (Account::new(&format!("cs{i}")), Account::new(&format!("cr{i}")));
        let mut sc = Conn::open(&address, &s, true).await?;
        Conn::open(&addresses[(i + 1) % count], &r, true).await?;
        let mut group: Vec<u8> = rand::random::<[u8; 16]>().to_vec();
        group[0] = 2;
        sc.request(Request::CreateGroup { group_id: group.clone(), roles: false }).await?;
        sc.request(Request::Commit {
            group_id: group.clone(),
            epoch: 0,
            client_id: vec![0xff],
            commit: vec![0; 16],
            welcome: Some(ByteBuf::from(vec![0; 16])),
            added: vec![DeviceRef { handle: r.handle.clone(), device_id: 1 }],
            removed: vec![],
        })
        .await?;
        setups.push((s, r, group));
    }

    // Clients talk through the cutting proxy when asked: each connection
    // dies after 1 to 64 KiB, a few dozen messages at most.
    let proxy = if cut { Some(CutProxy::start(([127, 0, 0, 1], port).into(), 1024..64 * 1024).await?) } else { None };
    let addresses = match &proxy {
        Some(p) => vec![via(&address, p.addr.port())],
        None => addresses,
    };
    let address = addresses[0].clone();

    let sent = Arc::new(AtomicU64::new(0));
    let done_sending = Arc::new(AtomicBool::new(false));
    let per_pair = messages / pairs as u64;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let acked: Arc<Mutex<HashMap<usize, HashSet<u64>>>> = Arc::default();
    let delivered: Arc<Mutex<HashMap<usize, Vec<u64>>>> = Arc::default();
    for (i, (s, r, group)) in setups.into_iter().enumerate() {
        let (addr, sent, acked, group2) = (addresses.clone(), sent.clone(), acked.clone(), group.clone());
        senders.push(tokio::spawn(async move {
            let address = addr;
            let mut conn = connect(&address, &s, false).await;
            for n in 1..=per_pair {
                // The same client id on every retry: the server stores it once.
                let req = Request::Send {
                    group_id: group2.clone(),
                    epoch: 1,
                    client_id: n.to_le_bytes().to_vec(),
                    payload: n.to_le_bytes().to_vec(),
                };
                sent.fetch_add(1, Ordering::Relaxed);
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), conn.request(req.clone())).await {
                        Ok(Ok(Response::Appended { .. })) => {
                            acked.lock().unwrap_or_else(|p| p.into_inner()).entry(i).or_default().insert(n);
                            break;
                        }
                        _ => conn = connect(&address, &s, false).await,
                    }
                }
            }
        }));
        let (address, delivered, done) = (addresses.clone(), delivered.clone(), done_sending.clone());
        receivers.push(tokio::spawn(async move {
            let mut last_seq = 0u64;
            let mut idle_after_done = 0;
            'outer: loop {
                let mut conn = connect(&address, &r, false).await;
                if conn.request(Request::Sync).await.is_err() {
                    continue;
                }
                loop {
                    let msg = match tokio::time::timeout(Duration::from_millis(500), conn.read()).await {
                        Err(_) => {
                            if done.load(Ordering::Relaxed) {
                                idle_after_done += 1;
                                if idle_after_done >= 4 {
                                    break 'outer;
                                }
                            }
                            continue;
                        }
                        Ok(Err(_)) => continue 'outer,
                        Ok(Ok(m)) => m,
                    };
                    idle_after_done = 0;
                    match msg {
                        ServerMessage::Push(Push::Deliver(d)) if d.kind == sotto_proto::MessageKind::Application => {
                            // Duplicates are what the server sends again after a
                            // lost ack; a client drops those by sequence number.
                            if d.seq > last_seq {
                                last_seq = d.seq;
                                let n = u64::from_le_bytes(d.payload[..8].try_into().unwrap_or([0; 8]));
                                delivered.lock().unwrap_or_else(|p| p.into_inner()).entry(i).or_default().push(n);
                            }
                            let id = conn.take_id();
                            use futures_util::SinkExt;
                            if conn
                                .sink
                                .send(crate::client::frame(id, Request::Ack { group_id: group.clone(), seq: d.seq }))
                                .await
                                .is_err()
                            {
                                continue 'outer;
                            }
                        }
                        ServerMessage::Push(Push::Welcome { welcome_id, .. }) => {
                            let id = conn.take_id();
                            use futures_util::SinkExt;
                            let _ = conn.sink.send(crate::client::frame(id, Request::AckWelcome { welcome_id })).await;
                        }
                        _ => {}
                    }
                }
            }
        }));
    }

    // The killer: a random node at a time; with several nodes, every third
    // time every node's database connections instead.
    let killer = {
        let servers = servers.clone();
        tokio::spawn(async move {
            let (mut done, mut db_cuts) = (0, 0);
            while done < kills {
                let wait = rand::thread_rng().gen_range(100..600);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                done += 1;
                if let Some(nodes) = servers.nodes.as_ref().filter(|_| done % 3 == 0) {
                    if nodes.cut_database_connections().is_ok() {
                        db_cuts += 1;
                    }
                    continue;
                }
                let i = rand::thread_rng().gen_range(0..servers.count());
                servers.kill(i);
                let down = rand::thread_rng().gen_range(20..200);
                tokio::time::sleep(Duration::from_millis(down)).await;
                while servers.start(i).is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (done, db_cuts)
        })
    };
    for s in senders {
        s.await?;
    }
    let (kills_done, db_cuts) = killer.await?;
    done_sending.store(true, Ordering::Relaxed);
    for r in receivers {
        r.await?;
    }
    let cuts = proxy.as_ref().map(|p| p.stats.cuts.load(Ordering::Relaxed)).unwrap_or(0);
    let file =
        if file_mib > 0 { Some(file_through_cuts(&address, port, file_mib << 20, dir.path()).await?) } else { None };
    drop(servers);

    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let delivered = delivered.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (mut lost, mut duplicated, mut out_of_order, mut total_acked, mut total_delivered) = (0, 0, 0, 0, 0);
    for i in 0..pairs {
        let a = acked.get(&i).cloned().unwrap_or_default();
        let d = delivered.get(&i).cloned().unwrap_or_default();
        total_acked += a.len() as u64;
        total_delivered += d.len() as u64;
        let seen: HashSet<u64> = d.iter().copied().collect();
        duplicated += (d.len() - seen.len()) as u64;
        lost += a.iter().filter(|n| !seen.contains(n)).count() as u64;
        // One sender per group, sending in order: server order is 1, 2, 3...
        out_of_order += d.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
    }
    Ok(CrashResult {
        sent: sent.load(Ordering::Relaxed),
        acked: total_acked,
        delivered: total_delivered,
        lost,
        duplicated,
        out_of_order,
        kills: kills_done - db_cuts,
        db_cuts,
        cuts,
        file,
    })
}

/// Registers two ephemeral clients directly, then sends a file from one to
/// the other through a proxy that cuts every connection after 1 to 16 MiB:
/// each command is simply run again after a failure, as a person would,
/// and must resume rather than start over.
async fn file_through_cuts(address: &ServerAddress, port: u16, size: u64, dir: &Path) -> Result<FileFaults> {
    use sotto_client::Session;
    use sotto_core::Messenger;
    let proxy = CutProxy::start(([127, 0, 0, 1], port).into(), (1 << 20)..(16 << 20)).await?;
    let through = via(address, proxy.addr.port()).to_string();
    let path = dir.join("payload.bin");
    crate::files::write_file(&path, size)?;
    let tag: u32 = rand::random();
    let (ha, hb) = (format!("fa{tag}"), format!("fb{tag}"));
    let (a, b) = (
        crate::bench_person(Messenger::create_ephemeral(&ha, &through))?,
        crate::bench_person(Messenger::create_ephemeral(&hb, &through))?,
    );
    // Accounts are made while the proxy lets everything through:
    // registering is not something a person retries blindly.
    proxy.stats.armed.store(false, Ordering::Relaxed);
    Session::register(&a, None).await?.close().await;
    Session::register(&b, None).await?.close().await;
    proxy.stats.armed.store(true, Ordering::Relaxed);
    let quiet: sotto_client::Progress = Arc::new(|_, _| {});
    let retry_limit = 500;
    let mut upload_attempts = 0;
    loop {
        upload_attempts += 1;
        anyhow::ensure!(upload_attempts <= retry_limit, "the upload never finished");
        let Ok(mut s) = Session::open(&a).await else { continue };
        if s.send_file(&[format!("@{hb}")], &path, None, quiet.clone()).await.is_ok() {
            s.close().await;
            break;
        }
    }
    let mut download_attempts = 0;
    let out = dir.join("received.bin");
    let id = loop {
        download_attempts += 1;
        anyhow::ensure!(download_attempts <= retry_limit, "the file message never arrived");
        let Ok(mut s) = Session::open(&b).await else { continue };
        if s.sync().await.is_err() {
            continue;
        }
        let files: Vec<_> = b.take_unfetched()?;
        anyhow::ensure!(files.len() <= 1, "the file message arrived {} times", files.len());
        if let Some(m) = files.into_iter().next() {
            break m.id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        }
    };
    loop {
        download_attempts += 1;
        anyhow::ensure!(download_attempts <= retry_limit, "the download never finished");
        let Ok(mut s) = Session::open(&b).await else { continue };
        if s.download_file(&id, Some(&out), quiet.clone()).await.is_ok() {
            break;
        }
    }
    let identical = crate::files::same_bytes(&path, &out)?;
    Ok(FileFaults {
        bytes: size,
        upload_attempts,
        download_attempts,
        cuts: proxy.stats.cuts.load(Ordering::Relaxed),
        identical,
    })
}
