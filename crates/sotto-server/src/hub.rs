//! Who is connected: the live connections of each device, and the wake-ups
//! the relay sends them. A wake-up says "look at group G" (or "look at your
//! inbox"), and may carry the new, already durable log entries themselves
//! so the connection need not read them back from the store. The
//! connection uses carried entries only when they continue exactly where it
//! is; otherwise it reads the store from where it is, so a lost, merged or
//! reordered wake-up can never reorder or drop a message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sotto_proto::{DeviceRef, ErrorBody};
use tokio::sync::Notify;

/// A durable log entry ready to push: its sequence number and its encoded
/// `Deliver` frame, one copy shared by every recipient's connection.
#[derive(Clone, Debug)]
pub struct Fresh {
    /// Its place in the group's log.
    pub seq: u64,
    /// The encoded push.
    pub frame: bytes::Bytes,
}

/// Most bytes of carried entries one connection may have waiting; past it,
/// wake-ups fall back to "read the store", so a connection that stopped
/// reading holds at most this much (plus one entry per group). A receiver
/// that falls this far behind reads the store, which costs it a read and a
/// second encoding per entry: at 256 KiB busy receivers kept falling back
/// (three quarters of the relay's deliveries came from the store under
/// full load); at 1 MiB one wake-up in twenty still did (a receiver on a
/// shared core can go half a second between two looks at its mailbox, and
/// each fallback reads hundreds of entries back); at 4 MiB none do after
/// the first (issue 22: +5 % and then +3.5 % on one core). The memory is
/// bounded by [`MAX_FRESH_TOTAL`] whatever this is.
pub const MAX_FRESH_BYTES: usize = 4 * 1024 * 1024;

/// Most bytes of carried entries all connections together may have
/// waiting, so that many slow connections cannot hold `MAX_FRESH_BYTES`
/// each: past it, every wake-up falls back to the store. (Checked, then
/// counted: wake-ups from several senders at once may pass it by a few
/// entries. The frames are shared by all recipients, so the real memory
/// is less than the count.)
pub const MAX_FRESH_TOTAL: usize = 64 * 1024 * 1024;

/// What a connection should look at when it wakes. Merging is the point:
/// a thousand messages to one group while the connection is busy are one
/// entry here, so memory stays bounded by the number of groups and
/// [`MAX_FRESH_BYTES`].
#[derive(Default, Debug)]
pub struct Pending {
    /// Groups with new log entries, each with the entries themselves when
    /// they were carried (`None`: read them from the store).
    pub groups: HashMap<Vec<u8>, Option<Vec<Fresh>>>,
    /// Bytes carried so far (an upper bound: entries dropped for the store
    /// fallback are not subtracted).
    fresh_bytes: usize,
    /// New welcomes.
    pub inbox: bool,
    /// The device's KeyPackage stock fell to this.
    pub key_packages_low: Option<u32>,
    /// The operator wrote a notice.
    pub notices: bool,
    /// Close the connection with this reason (ban, removal).
    pub kick: Option<ErrorBody>,
    /// Transient signals (typing indicators), encoded; a few at most: a
    /// connection that does not take them loses the oldest.
    pub signals: Vec<bytes::Bytes>,
}

/// Most transient signals waiting for one connection.
pub const MAX_SIGNALS_WAITING: usize = 16;

/// A connection's mailbox for wake-ups.
pub struct Mailbox {
    pending: Mutex<Pending>,
    notify: Notify,
    /// The hub's count of carried bytes waiting in all mailboxes.
    fresh_total: Arc<AtomicUsize>,
}

impl Mailbox {
    /// Takes everything pending.
    pub fn take(&self) -> Pending {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.fresh_total.fetch_sub(taken.fresh_bytes, Ordering::Relaxed);
        taken
    }

    /// Waits until something is pending.
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    fn update(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        // notify_one stores a permit, so a wake between take() and wait()
        // is not lost.
        self.notify.notify_one();
    }
}

/// What operators see of a live connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// When it logged in.
    pub since: std::time::SystemTime,
    /// WebSocket bytes received.
    pub bytes_in: AtomicU64,
    /// WebSocket bytes sent.
    pub bytes_out: AtomicU64,
}

/// A live session as `sotto-server sessions` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// Handle.
    pub handle: String,
    /// Device.
    pub device_id: u32,
    /// Client address.
    pub remote: String,
    /// Logged in at (seconds since the Unix epoch).
    pub since: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// The live connections of one device, by connection id.
type Connections = Vec<(u64, Arc<Mailbox>, Arc<ConnInfo>)>;

/// Live connections by device.
#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    devices: Mutex<HashMap<DeviceRef, Connections>>,
    /// Carried bytes waiting in all mailboxes (see [`MAX_FRESH_TOTAL`]).
    fresh_total: Arc<AtomicUsize>,
}

/// Removes the connection from the hub when dropped.
pub struct Registration<'a> {
    hub: &'a Hub,
    device: DeviceRef,
    id: u64,
    /// The connection's mailbox.
    pub mailbox: Arc<Mailbox>,
    /// The connection's counters.
    pub info: Arc<ConnInfo>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // What it still carried no longer counts against the total.
        drop(self.mailbox.take());
        let mut devices = self.hub.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = devices.get_mut(&self.device) {
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                devices.remove(&self.device);
            }
        }
    }
}

impl Hub {
    /// Registers a logged-in connection of `device` from `remote`.
    pub fn register(&self, device: DeviceRef, remote: std::net::SocketAddr) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox {
            pending: Mutex::default(),
            notify: Notify::new(),
            fresh_total: self.fresh_total.clone(),
        });
        let info = Arc::new(ConnInfo {
            remote,
            since: std::time::SystemTime::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        });
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).entry(device.clone()).or_default().push((
            id,
            mailbox.clone(),
            info.clone(),
        ));
        Registration { hub: self, device, id, mailbox, info }
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<SessionView> {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<SessionView> = map
            .iter()
            .flat_map(|(d, list)| {
                list.iter().map(move |(_, _, i)| SessionView {
                    handle: d.handle.clone(),
                    device_id: d.device_id,
                    remote: i.remote.to_string(),
                    since: i.since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    bytes_in: i.bytes_in.load(Ordering::Relaxed),
                    bytes_out: i.bytes_out.load(Ordering::Relaxed),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.handle, a.device_id, a.since).cmp(&(&b.handle, b.device_id, b.since)));
        out
    }

    fn each(&self, devices: &[DeviceRef], f: impl Fn(&mut Pending)) {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        for d in devices {
            for (_, mb, _) in map.get(d).into_iter().flatten() {
                mb.update(&f);
            }
        }
    }

    /// Tells the devices' connections that a group has new entries.
    pub fn wake_group(&self, devices: &[DeviceRef], group_id: &[u8]) {
        self.each(devices, |p| {
            p.groups.insert(group_id.to_vec(), None);
        });
    }

    /// Tells the devices' connections that a group has a new entry, and
    /// hands them the entry so they need not read it back.
    pub fn deliver(&self, devices: &[DeviceRef], group_id: &[u8], fresh: &Fresh) {
        let total = &self.fresh_total;
        self.each(devices, |p| {
            let len = fresh.frame.len();
            let fits = p.fresh_bytes + len <= MAX_FRESH_BYTES && total.load(Ordering::Relaxed) + len <= MAX_FRESH_TOTAL;
            let slot = p.groups.entry(group_id.to_vec()).or_insert_with(|| Some(Vec::new()));
            match slot {
                Some(list) if fits => {
                    list.push(fresh.clone());
                    p.fresh_bytes += len;
                    total.fetch_add(len, Ordering::Relaxed);
                }
                // Over the budget, or already reading this group from the store.
                _ => *slot = None,
            }
        });
    }

    /// Hands a transient signal to the devices' live connections (and to
    /// nobody else: it is not kept anywhere).
    pub fn signal(&self, devices: &[DeviceRef], frame: bytes::Bytes) {
        self.each(devices, |p| {
            if p.signals.len() >= MAX_SIGNALS_WAITING {
                p.signals.remove(0);
            }
            p.signals.push(frame.clone());
        });
    }

    /// Tells the devices' connections that their inbox has new welcomes.
    pub fn wake_inbox(&self, devices: &[DeviceRef]) {
        self.each(devices, |p| p.inbox = true);
    }

    /// Tells a device its KeyPackage stock is low.
    pub fn key_packages_low(&self, device: &DeviceRef, remaining: u32) {
        self.each(std::slice::from_ref(device), |p| p.key_packages_low = Some(remaining));
    }

    /// Tells every live connection the operator wrote a notice (each that
    /// asked for notices reads the new ones).
    pub fn wake_notices(&self) {
        let devices: Vec<DeviceRef> = self.devices.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        self.each(&devices, |p| p.notices = true);
    }

    /// Closes every connection of the account's devices.
    pub fn kick_account(&self, handle: &str, reason: ErrorBody) {
        let devices: Vec<DeviceRef> = {
            let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            map.keys().filter(|d| d.handle == handle).cloned().collect()
        };
        self.each(&devices, |p| p.kick = Some(reason.clone()));
    }

    /// Asks every live connection of one device to close with `reason`.
    pub fn kick_account_device(&self, device: &DeviceRef, reason: ErrorBody) {
        self.each(std::slice::from_ref(device), |p| p.kick = Some(reason.clone()));
    }

    /// Number of live authenticated connections.
    pub fn connections(&self) -> usize {
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }

    /// Whether any device of the account has a live connection.
    pub fn account_online(&self, handle: &str) -> bool {
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).keys().any(|d| d.handle == handle)
    }

    /// Whether any connection of the device is live.
    pub fn is_online(&self, device: &DeviceRef) -> bool {
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).contains_key(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(seq: u64, len: usize) -> Fresh {
        Fresh { seq, frame: bytes::Bytes::from(vec![0u8; len]) }
    }

    #[test]
    fn carried_entries_are_capped_then_fall_back_to_the_store() {
        let hub = Hub::default();
        let dev = DeviceRef { handle: "bob".into(), device_id: 1 };
        let reg = hub.register(dev.clone(), ([127, 0, 0, 1], 1).into());
        let (g1, g2) = (vec![1u8; 16], vec![2u8; 16]);
        let per = 1024;
        let fits = MAX_FRESH_BYTES / per;
        for seq in 1..=fits as u64 {
            hub.deliver(std::slice::from_ref(&dev), &g1, &fresh(seq, per));
        }
        // One more does not fit: this group now says "read the store".
        hub.deliver(std::slice::from_ref(&dev), &g1, &fresh(fits as u64 + 1, per));
        hub.deliver(std::slice::from_ref(&dev), &g2, &fresh(1, per));
        let p = reg.mailbox.take();
        assert!(matches!(p.groups.get(&g1), Some(None)));
        assert!(matches!(p.groups.get(&g2), Some(None)), "the cap is per connection, not per group");
        // Taking resets the budget.
        hub.deliver(std::slice::from_ref(&dev), &g2, &fresh(2, per));
        let p = reg.mailbox.take();
        assert_eq!(p.groups[&g2].as_ref().map(|v| v.len()), Some(1));
        // A plain wake-up turns carried entries into a store read.
        hub.deliver(std::slice::from_ref(&dev), &g2, &fresh(3, per));
        hub.wake_group(std::slice::from_ref(&dev), &g2);
        hub.deliver(std::slice::from_ref(&dev), &g2, &fresh(4, per));
        assert!(matches!(reg.mailbox.take().groups.get(&g2), Some(None)));
    }

    #[test]
    fn all_connections_together_carry_at_most_the_total_and_get_it_back() {
        let hub = Hub::default();
        let per_conn = MAX_FRESH_BYTES;
        let fill = MAX_FRESH_TOTAL / per_conn;
        let devs: Vec<DeviceRef> =
            (0..fill as u32 + 2).map(|i| DeviceRef { handle: format!("d{i}"), device_id: 1 }).collect();
        let regs: Vec<_> = devs.iter().map(|d| hub.register(d.clone(), ([127, 0, 0, 1], 1).into())).collect();
        let g = vec![7u8; 16];
        // One entry of a connection's whole budget each: the first `fill`
        // connections use up the total, the rest must read the store.
        for d in &devs {
            hub.deliver(std::slice::from_ref(d), &g, &fresh(1, per_conn));
        }
        assert_eq!(hub.fresh_total.load(Ordering::Relaxed), fill * per_conn);
        let taken: Vec<Pending> = regs.iter().map(|r| r.mailbox.take()).collect();
        assert!(taken[..fill].iter().all(|p| matches!(p.groups.get(&g), Some(Some(v)) if v.len() == 1)));
        assert!(taken[fill..].iter().all(|p| matches!(p.groups.get(&g), Some(None))));
        assert_eq!(hub.fresh_total.load(Ordering::Relaxed), 0, "taking gives the bytes back");
        // A connection that goes away gives back what it still carried.
        hub.deliver(std::slice::from_ref(&devs[0]), &g, &fresh(2, 1000));
        assert_eq!(hub.fresh_total.load(Ordering::Relaxed), 1000);
        drop(regs);
        assert_eq!(hub.fresh_total.load(Ordering::Relaxed), 0);
    }
}
