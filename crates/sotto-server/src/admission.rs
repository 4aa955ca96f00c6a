//! Who may hold a connection: the total and per-address caps (one guard per
//! connection, released when its longest-lived task ends) and the budget
//! of connections that have not logged in yet. Shared by the listener, the
//! WebSocket session and the blob endpoints, so none imports another.

use std::sync::Arc;

use crate::relay::Relay;

/// Open connections per address.
pub struct PerIp {
    pub(crate) counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// What the per-address cap counts an address as: IPv4 as it is, IPv6 by
/// its first `v6_prefix` bits (a single host commonly has a /64 to pick
/// addresses from).
pub fn address_bucket(ip: std::net::IpAddr, v6_prefix: u8) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let keep = u32::from(v6_prefix.min(128));
                let mask = if keep == 0 { 0 } else { u128::MAX << (128 - keep) };
                std::net::IpAddr::V6((bits & mask).into())
            }
        },
        v4 => v4,
    }
}

/// The connections that have not logged in yet, oldest first, so the
/// oldest can be closed when the budget is full.
#[derive(Default)]
pub struct Unauthenticated {
    waiting: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Unauthenticated {
    /// Registers a new connection; closes the oldest waiting one first if
    /// `max` are waiting already.
    pub(crate) fn admit(self: &Arc<Self>, max: usize, relay: &Relay) -> Admission {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evict = Arc::new(tokio::sync::Notify::new());
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        while waiting.len() >= max.max(1) {
            let Some((_, oldest)) = waiting.pop_first() else { break };
            oldest.notify_one();
            relay.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        waiting.insert(id, evict.clone());
        Admission { id, evict, registry: self.clone() }
    }

    /// How many connections are waiting to log in.
    pub fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's place among those not logged in yet. Logging in (or a
/// valid blob token) gives it up; `evicted` completes if the server
/// closed it to make room for a newer one.
#[derive(Clone)]
pub struct Admission {
    id: u64,
    evict: Arc<tokio::sync::Notify>,
    registry: Arc<Unauthenticated>,
}

impl Admission {
    /// The connection proved who it is: it no longer counts against the
    /// unauthenticated budget and is never evicted.
    pub fn authenticated(&self) {
        self.registry.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }

    /// Whether the connection is still waiting to log in.
    pub fn waiting(&self) -> bool {
        self.registry.waiting.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&self.id)
    }

    /// Completes when the server closes this connection to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

/// What a connection holds while it is open: its place under the total and
/// per-address caps. A WebSocket session outlives the HTTP connection task
/// that upgraded it, so the guard travels into the session (see
/// [`ConnSlot`]) and is released only when the session ends.
pub struct ConnGuard {
    pub(crate) _permit: tokio::sync::OwnedSemaphorePermit,
    pub(crate) per_ip: Arc<PerIp>,
    pub(crate) ip: std::net::IpAddr,
    pub(crate) relay: Arc<Relay>,
    pub(crate) admission: Option<Admission>,
}

impl ConnGuard {
    /// The connection's place among those not logged in yet.
    pub fn admission(&self) -> Option<Admission> {
        self.admission.clone()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(a) = &self.admission {
            a.authenticated();
        }
        self.relay.metrics.connections_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.per_ip.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The connection's guard, handed to whichever task lives longest.
#[derive(Clone)]
pub struct ConnSlot(pub Arc<std::sync::Mutex<Option<ConnGuard>>>);

impl ConnSlot {
    /// Takes the guard (the WebSocket handler does, for its session).
    pub fn take(&self) -> Option<ConnGuard> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The connection showed a valid token (blob requests): it is no
    /// longer held to the login deadline nor counted as unauthenticated.
    pub fn authenticated(&self) {
        if let Some(a) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|g| g.admission()) {
            a.authenticated();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address_bucket;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_of_one_64_count_as_one_address() {
        let a = address_bucket(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = address_bucket(ip("2001:db8:1:2:ffff:1:2:3"), 64);
        assert_eq!(a, b, "one host picking addresses from its /64");
        assert_ne!(a, address_bucket(ip("2001:db8:1:3::1"), 64), "the next /64 is someone else");
        assert_eq!(address_bucket(ip("2001:db8:1:2::1"), 48), address_bucket(ip("2001:db8:1:3::1"), 48));
        assert_ne!(address_bucket(ip("2001:db8::1"), 128), address_bucket(ip("2001:db8::2"), 128));
    }

    #[test]
    fn ipv4_is_counted_per_address_also_when_mapped_into_ipv6() {
        assert_eq!(address_bucket(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(address_bucket(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
        assert_ne!(address_bucket(ip("192.0.2.7"), 64), address_bucket(ip("192.0.2.8"), 64));
    }
}
