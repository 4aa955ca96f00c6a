//! `compare-mqtt`: the same load as `relay` (sender/receiver pairs, 1 KiB
//! payloads, a window of unacknowledged sends per sender) against an MQTT
//! broker with QoS 1, so the ratio between sotto and, say, Mosquitto can be
//! reproduced in one run. Each pair has its own topic; the receiver
//! subscribes with QoS 1 and acknowledges each message, the sender keeps
//! `window` publishes waiting for their PUBACK.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use rumqttc::{Connect, ConnectReturnCode, Packet, PubAck, Publish, QoS, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::relay::{self, Counts, RelayResult, PAYLOAD};

/// A Mosquitto started for the comparison (killed when dropped).
pub struct Broker {
    child: std::process::Child,
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts `mosquitto` (Debian's package) on a free port of 127.0.0.1,
    /// pinned to `cpus` when given, with persistence off (its default) and
    /// `window` messages in flight to each subscriber, like sotto's window.
    pub fn start(cpus: Option<&str>, window: usize) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages {window}\nmax_queued_messages 100000\nlog_dest none\n"
            ),
        )?;
        let mut command = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list, "mosquitto"]);
                c
            }
            None => Command::new("mosquitto"),
        };
        let child =
            command.arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context(
                "mosquitto could not be started: install it (apt-get install -y mosquitto) or pass --broker",
            )?;
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut broker = Broker { child, address, _dir: dir };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(address).is_err() {
            // Through taskset, a missing mosquitto shows only as an exit.
            if let Ok(Some(status)) = broker.child.try_wait() {
                bail!(
                    "mosquitto stopped at once ({status}): install it (apt-get install -y mosquitto) or pass --broker"
                );
            }
            if Instant::now() > until {
                bail!("mosquitto did not start listening on {address} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MAX_PACKET: usize = 64 * 1024;

/// One MQTT 3.1.1 connection, the packets encoded and decoded by rumqttc's
/// codec but the socket driven here: like `relay`'s sender, a burst of
/// publishes goes out in one write (rumqttc's own event loop writes and
/// flushes each publish alone, which made the broker read per message).
struct MqttConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl MqttConn {
    async fn open(broker: SocketAddr, id: String) -> Result<Self> {
        let stream = TcpStream::connect(broker).await.with_context(|| format!("no MQTT broker at {broker}"))?;
        stream.set_nodelay(true)?;
        let mut c = MqttConn { stream, buf: BytesMut::with_capacity(64 * 1024) };
        let mut connect = Connect::new(id);
        connect.keep_alive = 60;
        connect.clean_session = true;
        c.send(&[Packet::Connect(connect)]).await?;
        match c.next().await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok(c),
            other => bail!("the broker refused the connection: {other:?}"),
        }
    }

    async fn send(&mut self, packets: &[Packet]) -> Result<()> {
        let mut out = BytesMut::new();
        for p in packets {
            p.write(&mut out, MAX_PACKET).map_err(|e| anyhow::anyhow!("MQTT encoding: {e}"))?;
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next packet (reading more when none is buffered).
    async fn next(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }

    fn buffered(&mut self) -> Result<Option<Packet>> {
        match Packet::read(&mut self.buf, MAX_PACKET) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => bail!("the broker sent something that is not MQTT: {e}"),
        }
    }
}

/// Runs `pairs` publisher/subscriber pairs against `broker` for `duration`.
pub async fn run(broker: SocketAddr, pairs: usize, duration: Duration, window: usize) -> Result<RelayResult> {
    let run_id: u32 = rand::random();
    let mut set = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let topic = format!("sotto-bench/{run_id:08x}/{i}");
        let mut rx = MqttConn::open(broker, format!("r{run_id:08x}-{i}")).await?;
        let mut subscribe = Subscribe::new(topic.as_str(), QoS::AtLeastOnce);
        subscribe.pkid = 1; // 0 is not a packet id: the broker would hang up
        rx.send(&[Packet::Subscribe(subscribe)]).await?;
        loop {
            if let Packet::SubAck(_) = rx.next().await? {
                break;
            }
        }
        let tx = MqttConn::open(broker, format!("s{run_id:08x}-{i}")).await?;
        set.push((topic, rx, tx));
    }
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (topic, rx, tx) in set {
        let (c, stop_rx) = (counts.clone(), stop.clone());
        receivers.push(tokio::spawn(receive(rx, c, stop_rx)));
        let c = counts.clone();
        senders.push(tokio::spawn(send(tx, topic, c, t0, duration, window)));
    }
    for s in senders {
        s.await??;
    }
    // As in `relay`: the rate counts until every sender's window drained.
    let sending_done = t0.elapsed().as_secs_f64();
    let (sent, acked, received) = relay::drain_and_stop(&counts, &stop, receivers).await?;
    Ok(RelayResult {
        elapsed: sending_done,
        sent,
        acked,
        received,
        lost: acked.saturating_sub(received),
        duplicated: counts.duplicated.load(Ordering::Relaxed),
        refused: 0,
        latencies_ns: Vec::new(),
    })
}

/// A subscriber: counts each publish (by the number in its payload, so a
/// redelivery counts as a duplicate) and acknowledges what one read
/// brought in one write.
async fn receive(mut rx: MqttConn, c: Arc<Counts>, stop: Arc<AtomicU64>) -> Result<()> {
    let mut seen = HashSet::new();
    loop {
        let mut acks = Vec::new();
        while let Some(p) = rx.buffered()? {
            if let Packet::Publish(p) = p {
                let n = p.payload.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                if seen.insert(n.unwrap_or(0)) {
                    c.received.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                acks.push(Packet::PubAck(PubAck::new(p.pkid)));
            }
        }
        if !acks.is_empty() {
            rx.send(&acks).await?;
        }
        match tokio::time::timeout(Duration::from_millis(300), rx.stream.read_buf(&mut rx.buf)).await {
            Err(_) if stop.load(Ordering::Relaxed) == 1 => return Ok(()),
            Err(_) => {}
            Ok(Ok(0)) => bail!("the broker closed a receiver's connection"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

/// A publisher with `window` publishes waiting for their PUBACK at most;
/// every free slot goes out in one write.
async fn send(
    tx: MqttConn,
    topic: String,
    c: Arc<Counts>,
    t0: Instant,
    duration: Duration,
    window: usize,
) -> Result<()> {
    let MqttConn { stream, mut buf } = tx;
    let (mut read, mut write) = stream.into_split();
    let permits = Arc::new(Semaphore::new(window));
    let (p2, c2) = (permits.clone(), c.clone());
    let acks = tokio::spawn(async move {
        loop {
            loop {
                match Packet::read(&mut buf, MAX_PACKET) {
                    Ok(Packet::PubAck(_)) => {
                        c2.acked.fetch_add(1, Ordering::Relaxed);
                        p2.add_permits(1);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let deadline = t0 + duration;
    let mut i: u64 = 0;
    let mut out = BytesMut::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(permit)) = tokio::time::timeout(left, permits.acquire()).await else { break };
        permit.forget();
        let mut burst = 1;
        while let Ok(p) = permits.try_acquire() {
            p.forget();
            burst += 1;
        }
        for _ in 0..burst {
            i += 1;
            let mut payload = vec![0x5a; PAYLOAD];
            payload[..8].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_le_bytes());
            payload[8..16].copy_from_slice(&i.to_le_bytes());
            let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload);
            p.pkid = (i % u16::MAX as u64) as u16 + 1;
            Packet::Publish(p).write(&mut out, MAX_PACKET).map_err(|e| anyhow::anyhow!("MQTT encoding: {e}"))?;
        }
        write.write_all(&out).await?;
        out.clear();
        c.sent.fetch_add(burst as u64, Ordering::Relaxed);
    }
    // Let the window drain, then hang up.
    let _ = tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(window as u32)).await;
    acks.abort();
    let mut bye = BytesMut::new();
    let _ = Packet::Disconnect.write(&mut bye, MAX_PACKET);
    let _ = write.write_all(&bye).await;
    Ok(())
}
