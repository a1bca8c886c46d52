//! What a limiter counts by. Keys are fixed-size, so one key costs the same memory whatever the client sends.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

/// A client address as the limiters see it: IPv4 per address, IPv6 per /64, and an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer) as the IPv4 address it carries.
///
/// A /64 is one subscriber's LAN: a single host can rotate through its 2⁶⁴ addresses at will, so counting per
/// IPv6 address would let one client multiply its quota and fill the tables. The same normalisation suits any
/// other per-address bound (connections, bans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(u32),
    /// The upper 64 bits of the address: its /64 network.
    V6Net64(u64),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6Net64((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// A tenant as a keyed 64-bit hash of its name. The `site` a request names is client input, so the limiters
/// never store the string: a key stays 8 bytes. With a per-process random SipHash key a collision cannot be
/// aimed at; by chance, two of n names collide with probability about n²/2⁶⁵.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct TenantKey(u64);

impl TenantKey {
    pub(super) fn new(hasher: &RandomState, tenant: &str) -> Self {
        TenantKey(hasher.hash_one(tenant))
    }
}

/// One client address within one tenant.
pub(super) type AddrTenantKey = (AddrKey, TenantKey);
