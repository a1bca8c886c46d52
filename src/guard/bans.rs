//! bans: addresses refused for a while because the anomaly engine or a behaviour rule caught them. Like
//! fail2ban's `recidive` jail, each repeat doubles the ban: the n-th ban of an address lasts
//! `ttl · 2ⁿ⁻¹`, capped at `max_ttl`; its strikes are forgotten `forget` after its last ban ends.
//!
//! Guarantees:
//! - Keys are [`AddrKey`]s (IPv4 per address, IPv6 per /64): rotating through a /64 does not escape a ban.
//! - Addresses in `exempt` are never banned (monitoring, an office, a load balancer's health checks).
//! - The table holds at most `max_entries` addresses. When full, expired and forgotten entries go first,
//!   then the entry whose ban ends soonest; evictions are counted, never silent.
//! - Time is a parameter (`now`): callers pass a monotonic instant (tokio's, so tests run on a paused clock).
//! - A ban is checked on accept, before TLS ([`conns`](super::conns)), and per request for connections that
//!   were open when it landed.
//!
//! The table lives in the app, outside the config snapshot: bans survive a reload, and a reloaded policy
//! applies to the next ban.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::ratelimit::AddrKey;

/// `[guard.bans]` in its runtime form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanPolicy {
    /// Detect: log and count what would have been banned, ban nothing.
    pub enforce: bool,
    /// The first ban's length.
    pub ttl: Duration,
    /// The cap on a doubled ban.
    pub max_ttl: Duration,
    /// How long after its last ban ends an address keeps its strikes.
    pub forget: Duration,
    pub max_entries: usize,
    /// Never banned; canonical networks (IPv4-mapped written as IPv4).
    pub exempt: Vec<IpNet>,
}

impl Default for BanPolicy {
    fn default() -> Self {
        Self {
            enforce: true,
            ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(86_400),
            forget: Duration::from_secs(86_400),
            max_entries: 100_000,
            exempt: Vec::new(),
        }
    }
}

/// Why an address is banned; the `reason` label of `tollgate_bans_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    /// A request reached the anomaly threshold.
    Anomaly,
    /// Too many 4xx answers in the behaviour window.
    ClientErrors,
    /// Too many distinct unknown `site` keys in the window.
    UnknownSites,
    /// More events than any real browser sends in the window.
    EventRate,
}

impl BanReason {
    pub const ALL: [BanReason; 4] = [
        BanReason::Anomaly,
        BanReason::ClientErrors,
        BanReason::UnknownSites,
        BanReason::EventRate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BanReason::Anomaly => "anomaly",
            BanReason::ClientErrors => "client_errors",
            BanReason::UnknownSites => "unknown_sites",
            BanReason::EventRate => "event_rate",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What [`BanTable::ban`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanOutcome {
    /// Banned (or, already banned, extended) for `ttl`; `strike` counts this address's bans, 1 for the first.
    Banned {
        ttl: Duration,
        strike: u32,
        evicted: bool,
    },
    /// Detect mode: it would have been banned for `ttl`.
    WouldBan { ttl: Duration, strike: u32 },
    /// The address is exempt.
    Exempt,
    /// Already banned: a second offence during a ban is not a new strike.
    AlreadyBanned,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    until: Instant,
    strikes: u32,
    reason: BanReason,
}

impl Entry {
    fn forgotten(&self, now: Instant, forget: Duration) -> bool {
        now >= self.until + forget
    }
}

/// One ban, as `GET /admin/bans` lists it. IPv6 entries are their /64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BanView {
    #[serde(skip)]
    pub key: AddrKey,
    pub address: String,
    pub remaining_s: u64,
    pub strikes: u32,
    pub reason: &'static str,
}

/// The ban table, shared by every listener.
#[derive(Debug, Default)]
pub struct BanTable {
    entries: Mutex<HashMap<AddrKey, Entry>>,
}

/// `ttl · 2^(strike-1)`, capped.
pub fn ttl_for(policy: &BanPolicy, strike: u32) -> Duration {
    let doublings = strike.saturating_sub(1).min(32);
    policy
        .ttl
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(policy.max_ttl)
        .min(policy.max_ttl)
}

pub fn exempt(policy: &BanPolicy, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    policy.exempt.iter().any(|n| n.contains(&ip))
}

impl BanTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddrKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time left on `ip`'s ban, if it is banned at `now`.
    pub fn banned(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let entries = self.lock();
        let e = entries.get(&AddrKey::from(ip))?;
        (e.until > now).then(|| e.until - now)
    }

    /// Bans `ip` for its next strike, unless it is exempt or already banned.
    pub fn ban(
        &self,
        policy: &BanPolicy,
        ip: IpAddr,
        reason: BanReason,
        now: Instant,
    ) -> BanOutcome {
        if exempt(policy, ip) {
            return BanOutcome::Exempt;
        }
        let key = AddrKey::from(ip);
        let mut entries = self.lock();
        let prior = match entries.get(&key) {
            Some(e) if e.until > now => return BanOutcome::AlreadyBanned,
            Some(e) if !e.forgotten(now, policy.forget) => e.strikes,
            _ => 0,
        };
        let strike = prior.saturating_add(1);
        let ttl = ttl_for(policy, strike);
        if !policy.enforce {
            return BanOutcome::WouldBan { ttl, strike };
        }
        let evicted = !entries.contains_key(&key) && make_room(&mut entries, policy, now);
        entries.insert(
            key,
            Entry {
                until: now + ttl,
                strikes: strike,
                reason,
            },
        );
        BanOutcome::Banned {
            ttl,
            strike,
            evicted,
        }
    }

    /// Lifts `ip`'s ban (and forgets its strikes); `false` if it had none.
    pub fn lift(&self, ip: IpAddr) -> bool {
        self.lock().remove(&AddrKey::from(ip)).is_some()
    }

    /// Bans in force at `now`, longest remaining first.
    pub fn list(&self, now: Instant) -> Vec<BanView> {
        let entries = self.lock();
        let mut out: Vec<BanView> = entries
            .iter()
            .filter(|(_, e)| e.until > now)
            .map(|(k, e)| BanView {
                key: *k,
                address: key_text(k),
                remaining_s: (e.until - now).as_secs().max(1),
                strikes: e.strikes,
                reason: e.reason.label(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.remaining_s
                .cmp(&a.remaining_s)
                .then(a.address.cmp(&b.address))
        });
        out
    }

    /// Drops forgotten entries; returns (bans in force, entries kept).
    pub fn sweep(&self, policy: &BanPolicy, now: Instant) -> (usize, usize) {
        let mut entries = self.lock();
        entries.retain(|_, e| !e.forgotten(now, policy.forget));
        let active = entries.values().filter(|e| e.until > now).count();
        (active, entries.len())
    }

    /// Bans in force at `now`.
    pub fn active(&self, now: Instant) -> usize {
        self.lock().values().filter(|e| e.until > now).count()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees one place when the table is full: forgotten entries first, then the ban that ends soonest.
/// Returns whether a ban in force (or remembered strikes) had to go.
fn make_room(entries: &mut HashMap<AddrKey, Entry>, policy: &BanPolicy, now: Instant) -> bool {
    if entries.len() < policy.max_entries.max(1) {
        return false;
    }
    entries.retain(|_, e| !e.forgotten(now, policy.forget));
    if entries.len() < policy.max_entries.max(1) {
        return false;
    }
    let soonest = entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k);
    if let Some(k) = soonest {
        entries.remove(&k);
    }
    true
}

fn key_text(k: &AddrKey) -> String {
    match *k {
        AddrKey::V4(v) => std::net::Ipv4Addr::from(v).to_string(),
        AddrKey::V6Net64(net) => {
            let addr = std::net::Ipv6Addr::from(u128::from(net) << 64);
            format!("{addr}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BanPolicy {
        BanPolicy {
            ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(300),
            forget: Duration::from_secs(3600),
            max_entries: 3,
            ..BanPolicy::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_ban_lands_and_expires() {
        let (t, p, t0) = (BanTable::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        assert!(matches!(
            t.ban(&p, a, BanReason::Anomaly, t0),
            BanOutcome::Banned { strike: 1, .. }
        ));
        assert_eq!(t.banned(a, t0), Some(Duration::from_secs(60)));
        assert_eq!(
            t.banned(a, t0 + Duration::from_secs(59)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(t.banned(a, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn repeats_double_up_to_the_cap_and_are_forgotten() {
        let (t, p, mut now) = (BanTable::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        let mut ttls = Vec::new();
        for _ in 0..5 {
            match t.ban(&p, a, BanReason::ClientErrors, now) {
                BanOutcome::Banned { ttl, .. } => ttls.push(ttl.as_secs()),
                other => panic!("{other:?}"),
            }
            now += ttls.last().map(|s| Duration::from_secs(*s)).unwrap();
        }
        assert_eq!(ttls, [60, 120, 240, 300, 300]);
        // an hour after the last ban ended, the address starts again at one strike
        now += Duration::from_secs(3600);
        assert!(matches!(
            t.ban(&p, a, BanReason::Anomaly, now),
            BanOutcome::Banned { strike: 1, .. }
        ));
    }

    #[test]
    fn an_offence_during_a_ban_is_not_a_strike() {
        let (t, p, t0) = (BanTable::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        t.ban(&p, a, BanReason::Anomaly, t0);
        assert_eq!(
            t.ban(&p, a, BanReason::Anomaly, t0 + Duration::from_secs(1)),
            BanOutcome::AlreadyBanned
        );
        assert!(matches!(
            t.ban(&p, a, BanReason::Anomaly, t0 + Duration::from_secs(60)),
            BanOutcome::Banned { strike: 2, .. }
        ));
    }

    #[test]
    fn never_touches_another_address_and_v6_bans_the_64() {
        let (t, p, t0) = (BanTable::default(), policy(), Instant::now());
        t.ban(&p, ip("2001:db8:0:1::5"), BanReason::Anomaly, t0);
        t.ban(&p, ip("::ffff:192.0.2.7"), BanReason::Anomaly, t0);
        assert!(t.banned(ip("2001:db8:0:1::ffff"), t0).is_some(), "same /64");
        assert!(t.banned(ip("2001:db8:0:2::5"), t0).is_none());
        assert!(t.banned(ip("192.0.2.7"), t0).is_some(), "mapped = IPv4");
        assert!(t.banned(ip("192.0.2.8"), t0).is_none());
        let listed: Vec<String> = t.list(t0).into_iter().map(|b| b.address).collect();
        assert_eq!(listed, ["192.0.2.7", "2001:db8:0:1::/64"]);
    }

    #[test]
    fn exempt_addresses_and_detect_mode_ban_nothing() {
        let t0 = Instant::now();
        let t = BanTable::default();
        let mut p = policy();
        p.exempt = vec!["198.51.100.0/24".parse().unwrap()];
        assert_eq!(
            t.ban(&p, ip("::ffff:198.51.100.9"), BanReason::Anomaly, t0),
            BanOutcome::Exempt
        );
        p.enforce = false;
        assert!(matches!(
            t.ban(&p, ip("192.0.2.1"), BanReason::Anomaly, t0),
            BanOutcome::WouldBan { strike: 1, .. }
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_soonest_ending() {
        let (t, p, t0) = (BanTable::default(), policy(), Instant::now());
        for (i, at) in [(1, 0), (2, 10), (3, 20)] {
            let now = t0 + Duration::from_secs(at);
            t.ban(&p, ip(&format!("192.0.2.{i}")), BanReason::Anomaly, now);
        }
        let now = t0 + Duration::from_secs(30);
        assert!(matches!(
            t.ban(&p, ip("192.0.2.4"), BanReason::Anomaly, now),
            BanOutcome::Banned { evicted: true, .. }
        ));
        assert_eq!(t.len(), 3);
        assert!(t.banned(ip("192.0.2.1"), now).is_none(), "ended soonest");
        assert!(t.banned(ip("192.0.2.2"), now).is_some());
        // a flood of offenders never grows it
        for i in 0..1000u32 {
            t.ban(
                &p,
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                BanReason::Anomaly,
                now,
            );
        }
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn lifting_forgets_the_strikes() {
        let (t, p, t0) = (BanTable::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        t.ban(&p, a, BanReason::Anomaly, t0);
        assert!(t.lift(a));
        assert!(!t.lift(a));
        assert!(t.banned(a, t0).is_none());
        assert!(matches!(
            t.ban(&p, a, BanReason::Anomaly, t0),
            BanOutcome::Banned { strike: 1, .. }
        ));
    }
}
