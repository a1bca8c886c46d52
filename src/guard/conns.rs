//! conns: connection bounds beside the global `limits.max_connections` semaphore, and the accounting of refused
//! connections. [`AddrSlots`] caps concurrent connections per client address (IPv4 per address, IPv6 per /64,
//! as [`AddrKey`] normalises them). Guarantees: an entry exists only while that address has an open connection
//! (the [`Slot`] removes it on drop), so the table never holds more entries than there are open connections,
//! which the global cap bounds. A refused connection ends with a reason from [`Refused`] — a closed enum of its
//! own, apart from the per-request `Reject`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::bans::BanTable;
use super::lists::{self, ListRefusal, ListenerLists};
use super::ratelimit::AddrKey;
use crate::listener::Kind;

/// `[guard.lists]` (with its per-listener tables) and `[guard.connections]` compiled; lives in the config
/// snapshot and is read per accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnPolicy {
    pub lists: ListenerLists,
    /// Concurrent connections one address (IPv6: one /64) may hold open per gateway.
    pub max_per_address: NonZeroU32,
}

impl Default for ConnPolicy {
    fn default() -> Self {
        Self {
            lists: ListenerLists::default(),
            max_per_address: NonZeroU32::new(256).expect("non-zero"),
        }
    }
}

/// Why a connection was closed right after accept, before any TLS work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Denied,
    NotAllowed,
    PerAddressCap,
    /// A listener that requires PROXY v2 got a missing, malformed or truncated header (or none in time).
    ProxyHeader,
    /// The address is banned ([`bans`](super::bans)).
    Banned,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::Denied,
        Refused::NotAllowed,
        Refused::PerAddressCap,
        Refused::ProxyHeader,
        Refused::Banned,
    ];

    /// The `reason` label of `tollgate_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Denied => "denied",
            Refused::NotAllowed => "not_allowed",
            Refused::PerAddressCap => "per_address_cap",
            Refused::ProxyHeader => "proxy_header",
            Refused::Banned => "banned",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<ListRefusal> for Refused {
    fn from(r: ListRefusal) -> Self {
        match r {
            ListRefusal::Denied => Refused::Denied,
            ListRefusal::NotAllowed => Refused::NotAllowed,
        }
    }
}

/// Concurrent connections per client address. Shared by the listeners; outlives reloads (the cap comes
/// from the snapshot at each accept, so a new cap applies to new connections).
#[derive(Debug, Default)]
pub struct AddrSlots {
    open: Arc<Mutex<HashMap<AddrKey, u32>>>,
}

/// One open connection's place in [`AddrSlots`]; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    open: Arc<Mutex<HashMap<AddrKey, u32>>>,
    key: AddrKey,
}

impl AddrSlots {
    /// Takes a place for `ip` unless it already holds `max` connections.
    pub fn try_take(&self, ip: IpAddr, max: NonZeroU32) -> Option<Slot> {
        let key = AddrKey::from(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max.get() {
            return None;
        }
        *n += 1;
        Some(Slot {
            open: self.open.clone(),
            key,
        })
    }

    /// Addresses with at least one open connection.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The accept-time stage on listener `kind`: lists first (`[guard.lists]` and the listener's own table;
/// pure; deny wins over everything), then bans, then the per-address cap. `Ok` carries the connection's slot.
pub fn admit(
    ip: IpAddr,
    kind: Kind,
    policy: &ConnPolicy,
    slots: &AddrSlots,
    bans: &BanTable,
    now: Instant,
) -> Result<Slot, Refused> {
    lists::check_listener(ip, kind, &policy.lists)?;
    if bans.banned(ip, now).is_some() {
        return Err(Refused::Banned);
    }
    slots
        .try_take(ip, policy.max_per_address)
        .ok_or(Refused::PerAddressCap)
}

/// `tollgate_connections_refused_total{listener, reason}`.
pub struct RefusedMetrics {
    refused: IntCounterVec,
}

impl RefusedMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let refused = IntCounterVec::new(
            Opts::new(
                "tollgate_connections_refused_total",
                "Connections closed right after accept, before TLS, by listener and reason.",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self { refused })
    }

    /// The counters of one listener, resolved once (call when its accept loop starts).
    pub fn for_listener(&self, listener: &str) -> [IntCounter; Refused::ALL.len()] {
        Refused::ALL.map(|r| self.refused.with_label_values(&[listener, r.label()]))
    }
}

/// Counts `r` in counters from [`RefusedMetrics::for_listener`].
pub fn count(counters: &[IntCounter; Refused::ALL.len()], r: Refused) {
    counters[r.index()].inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::lists::Lists;

    fn cap(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn cap_per_address_and_entries_removed_on_close() {
        let slots = AddrSlots::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = slots.try_take(a, cap(2)).unwrap();
        let s2 = slots.try_take(a, cap(2)).unwrap();
        assert!(slots.try_take(a, cap(2)).is_none());
        let s3 = slots.try_take(b, cap(2)).unwrap();
        assert_eq!(slots.len(), 2);
        drop(s1);
        let s4 = slots.try_take(a, cap(2)).unwrap();
        drop((s2, s3, s4));
        assert!(slots.is_empty(), "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let slots = AddrSlots::default();
        let one = |t: &str| slots.try_take(t.parse().unwrap(), cap(1));
        let _a = one("2001:db8:0:1::1").unwrap();
        assert!(one("2001:db8:0:1::ffff").is_none(), "same /64");
        let _b = one("2001:db8:0:2::1").unwrap();
        let _c = one("192.0.2.9").unwrap();
        assert!(
            one("::ffff:192.0.2.9").is_none(),
            "mapped = the IPv4 address"
        );
    }

    #[test]
    fn a_lowered_cap_applies_to_new_connections_only() {
        let slots = AddrSlots::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<Slot> = (0..3)
            .map(|_| slots.try_take(ip, cap(3)).unwrap())
            .collect();
        assert!(slots.try_take(ip, cap(2)).is_none());
        drop(held);
        assert!(slots.try_take(ip, cap(2)).is_some());
    }

    #[test]
    fn admit_checks_lists_before_the_cap() {
        let slots = AddrSlots::default();
        let policy = ConnPolicy {
            lists: ListenerLists {
                global: Lists {
                    allow: vec![],
                    deny: vec!["192.0.2.0/24".parse().unwrap()],
                },
                ..ListenerLists::default()
            },
            max_per_address: cap(1),
        };
        let p = Kind::Public;
        let (bans, now) = (BanTable::default(), Instant::now());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            admit(ip, p, &policy, &slots, &bans, now).unwrap_err(),
            Refused::Denied
        );
        assert!(slots.is_empty(), "a denied peer takes no slot");
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let _s = admit(other, p, &policy, &slots, &bans, now).unwrap();
        assert_eq!(
            admit(other, p, &policy, &slots, &bans, now).unwrap_err(),
            Refused::PerAddressCap
        );
        let third: IpAddr = "198.51.100.2".parse().unwrap();
        let ban = crate::guard::bans::BanPolicy::default();
        bans.ban(&ban, third, crate::guard::bans::BanReason::Anomaly, now);
        assert_eq!(
            admit(third, p, &policy, &slots, &bans, now).unwrap_err(),
            Refused::Banned
        );
        assert_eq!(slots.len(), 1, "a banned peer takes no slot");
    }

    #[test]
    fn admit_reads_the_listeners_own_lists() {
        let slots = AddrSlots::default();
        let policy = ConnPolicy {
            lists: ListenerLists {
                redirect: Lists {
                    allow: vec![],
                    deny: vec!["192.0.2.1/32".parse().unwrap()],
                },
                ..ListenerLists::default()
            },
            max_per_address: cap(4),
        };
        let (bans, now) = (BanTable::default(), Instant::now());
        let ip: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let redirect = Kind::Redirect { https_port: 443 };
        assert_eq!(
            admit(ip, redirect, &policy, &slots, &bans, now).unwrap_err(),
            Refused::Denied
        );
        assert!(slots.is_empty());
        let _s = admit(ip, Kind::Public, &policy, &slots, &bans, now).expect("public serves it");
    }

    #[test]
    fn labels_are_distinct_and_indexed() {
        for (i, r) in Refused::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
