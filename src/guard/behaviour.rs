//! behaviour: what one address does across requests, over a sliding window, in the spirit of fail2ban's
//! jails. Three signals, each with a bound no real visitor reaches:
//! - `client_errors`: 4xx answers (a 429 is the rate limiter's business, not counted), a scanner's trail;
//! - `unknown_sites`: distinct unknown `site` keys, someone enumerating tenants;
//! - `events`: accepted events, more than any browser sends (a replayed or scripted beacon).
//!
//! Guarantees:
//! - The window slides: the count is the current fixed window plus the previous one weighted by how much of
//!   it still overlaps (the estimate Cloudflare and nginx-style limiters use), so a burst straddling a window
//!   edge is still seen.
//! - State is bounded: at most `max_keys` addresses (IPv6 per /64); an address silent for two windows is
//!   dropped by [`Behaviour::sweep`]; when the table is full a new address is not tracked and that is counted.
//!   Site names are kept as keyed 64-bit hashes, at most `max_unknown_sites + 1` per address.
//! - Crossing a bound reports it once and starts that address afresh: the ban, not the window, handles what
//!   follows.
//! - Time is a parameter (`now`, monotonic): tests run on explicit instants.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::bans::BanReason;
use super::ratelimit::AddrKey;

/// `[guard.behaviour]` in its runtime form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviourPolicy {
    pub window: Duration,
    pub max_client_errors: u32,
    pub max_unknown_sites: u32,
    pub max_events: u32,
    pub max_keys: usize,
}

impl Default for BehaviourPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            max_client_errors: 60,
            max_unknown_sites: 5,
            max_events: 6_000,
            max_keys: 100_000,
        }
    }
}

/// One thing an address did.
#[derive(Debug, Clone, Copy)]
pub enum Signal<'a> {
    /// A 4xx answer other than 429.
    ClientError,
    /// A refusal for a `site` no tenant has.
    UnknownSite(&'a str),
    /// Events accepted in one request.
    Events(u32),
}

/// What [`Behaviour::observe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Fine,
    /// A bound was crossed; the address's windows start afresh.
    Tripped(BanReason),
    /// The table is full: this address is not tracked (counted by the caller).
    Untracked,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    errors: u32,
    events: u32,
    sites: u32,
}

#[derive(Debug)]
struct Windows {
    start: Instant,
    prev: Counts,
    cur: Counts,
    /// Distinct unknown sites in the current window (hashed).
    sites: Vec<u64>,
}

impl Windows {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            prev: Counts::default(),
            cur: Counts::default(),
            sites: Vec::new(),
        }
    }

    /// Moves the fixed windows forward to the one holding `now`.
    fn advance(&mut self, now: Instant, window: Duration) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < window {
            return;
        }
        let windows = elapsed.as_nanos() / window.as_nanos().max(1);
        self.prev = if windows == 1 {
            self.cur
        } else {
            Counts::default()
        };
        self.cur = Counts::default();
        self.sites.clear();
        let step = window.as_nanos().saturating_mul(windows);
        self.start += Duration::from_nanos(u64::try_from(step).unwrap_or(u64::MAX));
    }

    /// `cur + prev × (share of the previous window the sliding window still covers)`.
    fn estimate(&self, now: Instant, window: Duration, pick: fn(&Counts) -> u32) -> u64 {
        let into = now.saturating_duration_since(self.start).as_nanos();
        let w = window.as_nanos().max(1);
        let left = w.saturating_sub(into);
        u64::from(pick(&self.cur)) + (u128::from(pick(&self.prev)) * left / w) as u64
    }

    fn idle_since(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.start) >= window * 2
    }
}

/// Per-address windows, shared by every request; outlives reloads.
#[derive(Debug, Default)]
pub struct Behaviour {
    hasher: RandomState,
    table: Mutex<HashMap<AddrKey, Windows>>,
}

impl Behaviour {
    pub fn observe(
        &self,
        policy: &BehaviourPolicy,
        ip: IpAddr,
        signal: Signal<'_>,
        now: Instant,
    ) -> Observation {
        let key = AddrKey::from(ip);
        let site_hash = match signal {
            Signal::UnknownSite(site) => Some(self.hasher.hash_one(site)),
            _ => None,
        };
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&key) && table.len() >= policy.max_keys {
            return Observation::Untracked;
        }
        let w = table.entry(key).or_insert_with(|| Windows::new(now));
        w.advance(now, policy.window);
        let (tripped, reason) = match signal {
            Signal::ClientError => {
                w.cur.errors = w.cur.errors.saturating_add(1);
                let n = w.estimate(now, policy.window, |c| c.errors);
                (
                    n > u64::from(policy.max_client_errors),
                    BanReason::ClientErrors,
                )
            }
            Signal::UnknownSite(_) => {
                let h = site_hash.expect("hashed above");
                if !w.sites.contains(&h) && w.sites.len() <= policy.max_unknown_sites as usize {
                    w.sites.push(h);
                    w.cur.sites = w.cur.sites.saturating_add(1);
                }
                let n = w.estimate(now, policy.window, |c| c.sites);
                (
                    n > u64::from(policy.max_unknown_sites),
                    BanReason::UnknownSites,
                )
            }
            Signal::Events(k) => {
                w.cur.events = w.cur.events.saturating_add(k);
                let n = w.estimate(now, policy.window, |c| c.events);
                (n > u64::from(policy.max_events), BanReason::EventRate)
            }
        };
        if !tripped {
            return Observation::Fine;
        }
        table.remove(&key);
        Observation::Tripped(reason)
    }

    /// Drops addresses silent for two windows; returns how many remain.
    pub fn sweep(&self, policy: &BehaviourPolicy, now: Instant) -> usize {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.retain(|_, w| !w.idle_since(now, policy.window));
        if table.capacity() > 2 * table.len() + 64 {
            table.shrink_to_fit();
        }
        table.len()
    }

    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BehaviourPolicy {
        BehaviourPolicy {
            window: Duration::from_secs(10),
            max_client_errors: 5,
            max_unknown_sites: 2,
            max_events: 100,
            max_keys: 4,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn client_errors_trip_past_the_bound_and_start_afresh() {
        let (b, p, t0) = (Behaviour::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        for i in 0..5 {
            let got = b.observe(&p, a, Signal::ClientError, t0 + secs(f64::from(i)));
            assert_eq!(got, Observation::Fine, "error {i}");
        }
        assert_eq!(
            b.observe(&p, a, Signal::ClientError, t0 + secs(5.0)),
            Observation::Tripped(BanReason::ClientErrors)
        );
        assert_eq!(
            b.observe(&p, a, Signal::ClientError, t0 + secs(5.1)),
            Observation::Fine
        );
    }

    #[test]
    fn the_window_slides_across_its_edge() {
        let (b, p, t0) = (Behaviour::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        // five errors at the end of one window, one early in the next: still six within ten seconds
        for _ in 0..5 {
            assert_eq!(
                b.observe(&p, a, Signal::ClientError, t0 + secs(9.5)),
                Observation::Fine
            );
        }
        assert_eq!(
            b.observe(&p, a, Signal::ClientError, t0 + secs(10.5)),
            Observation::Tripped(BanReason::ClientErrors)
        );
        // the same pace spread over time never trips
        let c = ip("192.0.2.2");
        for i in 0..100 {
            let now = t0 + secs(f64::from(i) * 2.5);
            assert_eq!(
                b.observe(&p, c, Signal::ClientError, now),
                Observation::Fine,
                "at {i}"
            );
        }
    }

    #[test]
    fn distinct_unknown_sites_count_once_each() {
        let (b, p, t0) = (Behaviour::default(), policy(), Instant::now());
        let a = ip("192.0.2.1");
        for _ in 0..50 {
            assert_eq!(
                b.observe(&p, a, Signal::UnknownSite("typo"), t0),
                Observation::Fine
            );
        }
        assert_eq!(
            b.observe(&p, a, Signal::UnknownSite("other"), t0),
            Observation::Fine
        );
        assert_eq!(
            b.observe(&p, a, Signal::UnknownSite("third"), t0),
            Observation::Tripped(BanReason::UnknownSites)
        );
    }

    #[test]
    fn event_rate_and_addresses_are_apart() {
        let (b, p, t0) = (Behaviour::default(), policy(), Instant::now());
        assert_eq!(
            b.observe(&p, ip("192.0.2.1"), Signal::Events(100), t0),
            Observation::Fine
        );
        assert_eq!(
            b.observe(&p, ip("192.0.2.2"), Signal::Events(100), t0),
            Observation::Fine
        );
        assert_eq!(
            b.observe(&p, ip("192.0.2.1"), Signal::Events(1), t0),
            Observation::Tripped(BanReason::EventRate)
        );
    }

    #[test]
    fn the_table_is_bounded_and_swept() {
        let (b, p, t0) = (Behaviour::default(), policy(), Instant::now());
        for i in 1..=4 {
            let a = ip(&format!("192.0.2.{i}"));
            assert_eq!(b.observe(&p, a, Signal::ClientError, t0), Observation::Fine);
        }
        assert_eq!(
            b.observe(&p, ip("192.0.2.5"), Signal::ClientError, t0),
            Observation::Untracked
        );
        assert_eq!(
            b.sweep(&p, t0 + secs(19.0)),
            4,
            "not silent for two windows yet"
        );
        assert_eq!(b.sweep(&p, t0 + secs(20.0)), 0);
        assert_eq!(
            b.observe(&p, ip("192.0.2.5"), Signal::ClientError, t0 + secs(20.0)),
            Observation::Fine
        );
    }
}
