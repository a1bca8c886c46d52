//! ratelimit: how often a client may send. Three keyed GCRA limiters (governor) — per client address, per
//! tenant, per address × tenant — each with its own quota, checked in that order; the first that refuses
//! decides, and a refused request consumes nothing in the limiters after it. A refusal carries the limiter
//! and the wait until the request would conform, for `429` + `Retry-After` ([`retry_after_secs`]).
//!
//! This is a runtime service, not config: the app owns one [`RateLimitService`], calls [`RateLimitService::check`]
//! per request, [`RateLimitService::sweep`] every [`SWEEP_PERIOD`], and [`RateLimitService::reconfigure`] with
//! each new snapshot. Time comes from an injected governor clock ([`QuantaClock`] in production,
//! `FakeRelativeClock` in tests).
//!
//! **Keys.** IPv4 per address, IPv6 per /64, IPv4-mapped IPv6 as IPv4 ([`AddrKey`]); tenants as a keyed 64-bit
//! hash of the name, because the name is client input. Every key is fixed-size.
//!
//! **Bounded state.** A key lives while its cell differs from a fresh one (at most one burst window,
//! `burst / rate`, after its last request) and until the next sweep drops it (`retain_recent` +
//! `shrink_to_fit`). Between sweeps a flood of distinct addresses is held by a hard cap: each limiter keeps at
//! most `max_keys` keys, and a key that arrives while its limiter is full shares one **overflow cell** with
//! every other such key, under that limiter's quota. Of the three ways to behave when full this is the safe
//! one for a public edge: evicting known keys would hand a flood fresh bursts and push out the clients it
//! competes with; refusing new keys outright would lock out every new visitor until the next sweep. With the
//! overflow cell, memory stays bounded, every known client keeps its own quota, past the cap a flood gains
//! nothing by rotating addresses (all new ones share one key's quota), and new visitors still get some
//! service. `max_keys` should sit well above the keys legitimately active within one sweep period plus one
//! burst window; a key count at the cap ([`RateLimitService::key_counts`]) means a flood or a cap too small.
//!
//! **Memory**, measured by `tests/ratelimit_flood.rs` (counting allocator; 1,000,000 distinct addresses, half
//! IPv4, half IPv6 /64s, each naming its own tenant, in one instant; `max_keys` 100,000; x86-64, 8 DashMap
//! shards): per key 32.8 B (address), 22.3 B (tenant), 43.3 B (address × tenant), 98 B for all three; the
//! peak while tables grow was at most 7 % above that, and a sweep returned everything. A key is its fixed-size
//! entry (16, 8 or 24 B of key plus an 8 B cell) and a control byte in a hash table that is between 7/16 and
//! 7/8 full, so the worst case is 57, 39 and 75 B: **at most about 171 B × `max_keys`** for all three
//! limiters, 17 MB at the default 100,000, plus a few KB per limiter.
//!
//! **Reload.** governor fixes a limiter's quota at construction, so [`RateLimitService::reconfigure`] builds new
//! limiters over the same cells (they outlive limiters; see `store`) and swaps them in. A key keeps its state:
//! its time debt (how far its theoretical arrival time lies ahead) carries over, capped at one full burst of
//! the new quota, and from then on the new rate and burst apply. So a reload never resets a key to a full
//! burst and never grants more than the new quota. The debt is time, not requests: ten requests at 100/s are
//! 100 ms, which leaves four of a new burst of five at 1/s; a key that had spent a slow old quota is, under a
//! faster one, at most one new interval from its next request. Converting the debt into requests would be
//! more exact, but that rewrite races with checks still running on the old limiters and can overshoot by a
//! whole old burst; time debt needs no rewrite beyond the cap. A limiter switched off drops its keys;
//! switched back on, its clients start fresh.
//!
//! **Detect mode** runs the same checks with the same state, so [`Decision::Detected`] marks exactly the
//! requests enforcement would refuse, and lets them pass.
//!
//! **Cost** (`cargo bench --bench guard_ratelimit`, all three limiters on, `QuantaClock`; two runs on a busy
//! 2-vCPU machine): `check` of a known key 190–200 ns, of a refused key 80–90 ns (the first limiter refuses),
//! of a new address (two inserts, table growth included) 0.36–0.74 µs, of a new address with full tables
//! (overflow cell) 110–135 ns; a sweep of 200,000 idle keys 2.4–4 ms, each shard write-locked for its share.

mod key;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::{Hash, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, QuantaClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::RateLimiter;

pub use key::AddrKey;
use key::{AddrTenantKey, TenantKey};
use store::{Store, Table};

/// How often the app should call [`RateLimitService::sweep`]. Keys idle for one burst window are then gone
/// within five seconds, so `max_keys` only has to cover about five seconds (plus a burst window) of distinct
/// clients, while a sweep of full default tables costs a few milliseconds every five seconds.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(5);

/// The default for [`RateLimits::max_keys`]: a few megabytes per limiter when full.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One limiter's quota: a sustained rate and the burst a fresh (or long idle) key may send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub rate_per_s: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Quota {
    fn gcra(self) -> governor::Quota {
        governor::Quota::per_second(self.rate_per_s).allow_burst(self.burst)
    }
}

/// Whether a refusal refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    /// Count what would be refused, refuse nothing.
    Detect,
}

/// The runtime form of the rate-limit settings; `None` switches a limiter off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub per_address: Option<Quota>,
    pub per_tenant: Option<Quota>,
    pub per_address_tenant: Option<Quota>,
    /// Keys each limiter holds before new keys share its overflow cell. 0 sends every key there.
    pub max_keys: usize,
    pub mode: Mode,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_address: None,
            per_tenant: None,
            per_address_tenant: None,
            max_keys: DEFAULT_MAX_KEYS,
            mode: Mode::Enforce,
        }
    }
}

/// The three limiters, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    Address,
    Tenant,
    AddressTenant,
}

impl Which {
    /// Check order; also the order of [`RateLimitService::key_counts`].
    pub const ALL: [Which; 3] = [Which::Address, Which::Tenant, Which::AddressTenant];

    /// The `limiter` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Which::Address => "address",
            Which::Tenant => "tenant",
            Which::AddressTenant => "address_tenant",
        }
    }
}

/// What [`RateLimitService::check`] decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refuse: `limiter` would let the request through in `retry_after` at the earliest.
    Limited {
        limiter: Which,
        retry_after: Duration,
    },
    /// Detect mode: let the request through, but `limiter` would have refused it.
    Detected {
        limiter: Which,
    },
}

impl Decision {
    /// The `Retry-After` value, for a refusal.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match *self {
            Decision::Limited { retry_after, .. } => Some(retry_after_secs(retry_after)),
            Decision::Allow | Decision::Detected { .. } => None,
        }
    }
}

/// A wait as `Retry-After` seconds: rounded up, at least 1, so a client that obeys it is not refused again
/// for coming back a fraction of a second early.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

type Limiter<K, C> = RateLimiter<K, Store<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters built from one [`RateLimits`]; replaced whole by a reload.
struct Generation<C: Clock> {
    limits: RateLimits,
    address: Option<Limiter<AddrKey, C>>,
    tenant: Option<Limiter<TenantKey, C>>,
    address_tenant: Option<Limiter<AddrTenantKey, C>>,
}

/// The state of the three limiters, which outlives every generation.
struct Tables {
    address: Arc<Table<AddrKey>>,
    tenant: Arc<Table<TenantKey>>,
    address_tenant: Arc<Table<AddrTenantKey>>,
}

/// The three limiters with their state, which lives across reloads.
pub struct RateLimitService<C: Clock = QuantaClock> {
    clock: C,
    /// The time base of every table: TATs are stored as nanoseconds since this instant.
    origin: C::Instant,
    tenant_hasher: RandomState,
    tables: Tables,
    current: ArcSwap<Generation<C>>,
}

impl<C: Clock + Clone> RateLimitService<C> {
    pub fn new(limits: RateLimits, clock: C) -> Self {
        let origin = clock.now();
        let tables = Tables {
            address: Arc::new(Table::new()),
            tenant: Arc::new(Table::new()),
            address_tenant: Arc::new(Table::new()),
        };
        let current = ArcSwap::from_pointee(build(limits, &clock, 0, &tables));
        RateLimitService {
            clock,
            origin,
            tenant_hasher: RandomState::new(),
            tables,
            current,
        }
    }

    /// Counts one request from `addr` for `tenant` against the address, tenant and address × tenant
    /// limiters, in that order, stopping at the first that refuses.
    pub fn check(&self, addr: IpAddr, tenant: &str) -> Decision {
        let generation = self.current.load();
        let addr = AddrKey::from(addr);
        let tenant = TenantKey::new(&self.tenant_hasher, tenant);
        let refusal = refusal(generation.address.as_ref(), &addr)
            .map(|wait| (Which::Address, wait))
            .or_else(|| {
                refusal(generation.tenant.as_ref(), &tenant).map(|wait| (Which::Tenant, wait))
            })
            .or_else(|| {
                refusal(generation.address_tenant.as_ref(), &(addr, tenant))
                    .map(|wait| (Which::AddressTenant, wait))
            });
        match (refusal, generation.limits.mode) {
            (None, _) => Decision::Allow,
            (Some((limiter, retry_after)), Mode::Enforce) => Decision::Limited {
                limiter,
                retry_after,
            },
            (Some((limiter, _)), Mode::Detect) => Decision::Detected { limiter },
        }
    }

    /// Drops the keys that are indistinguishable from new ones and returns their memory. Call every
    /// [`SWEEP_PERIOD`]; it costs one pass over each table.
    pub fn sweep(&self) {
        let generation = self.current.load();
        sweep(generation.address.as_ref());
        sweep(generation.tenant.as_ref());
        sweep(generation.address_tenant.as_ref());
    }

    /// Keys held per limiter, in [`Which::ALL`] order (the overflow cells not counted). At most `max_keys`
    /// each, unless a reload just lowered `max_keys`: then new keys overflow until sweeps bring it down.
    pub fn key_counts(&self) -> [usize; 3] {
        let t = &self.tables;
        [t.address.len(), t.tenant.len(), t.address_tenant.len()]
    }

    /// The limits in force.
    pub fn limits(&self) -> RateLimits {
        self.current.load().limits.clone()
    }

    /// Applies new limits at once, to existing keys too: see "Reload" in the module docs.
    pub fn reconfigure(&self, new: RateLimits) {
        let t = &self.tables;
        let next = build(new.clone(), &self.clock, self.since_origin(), t);
        self.current.store(Arc::new(next));
        let now = self.since_origin();
        settle(&t.address, new.per_address, now);
        settle(&t.tenant, new.per_tenant, now);
        settle(&t.address_tenant, new.per_address_tenant, now);
    }

    fn since_origin(&self) -> u64 {
        self.clock.now().duration_since(self.origin).as_u64()
    }
}

impl<C: Clock + Clone> fmt::Debug for RateLimitService<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("limits", &self.limits())
            .field("key_counts", &self.key_counts())
            .finish_non_exhaustive()
    }
}

/// Limiters for `limits`, starting `shift` nanoseconds after the origin, over the service's tables.
fn build<C: Clock + Clone>(limits: RateLimits, clock: &C, shift: u64, t: &Tables) -> Generation<C> {
    let max_keys = limits.max_keys;
    Generation {
        address: limiter(limits.per_address, &t.address, shift, max_keys, clock),
        tenant: limiter(limits.per_tenant, &t.tenant, shift, max_keys, clock),
        address_tenant: limiter(
            limits.per_address_tenant,
            &t.address_tenant,
            shift,
            max_keys,
            clock,
        ),
        limits,
    }
}

fn limiter<K: Hash + Eq + Clone, C: Clock + Clone>(
    quota: Option<Quota>,
    table: &Arc<Table<K>>,
    shift: u64,
    max_keys: usize,
    clock: &C,
) -> Option<Limiter<K, C>> {
    quota.map(|q| {
        let store = Store::new(Arc::clone(table), shift, max_keys);
        RateLimiter::new(q.gcra(), store, clock.clone())
    })
}

/// After a reload: a limiter switched off forgets its keys; one switched on caps every key's debt at one full
/// burst of its quota from `now`.
fn settle<K: Hash + Eq + Clone>(table: &Table<K>, quota: Option<Quota>, now: u64) {
    match quota {
        None => table.clear(),
        Some(q) => {
            let burst_window = q.gcra().burst_size_replenished_in();
            table.cap_debt(now.saturating_add(burst_window.as_nanos() as u64));
        }
    }
}

/// The wait `limiter` imposes on `key`, if it refuses; `None` also when the limiter is off.
fn refusal<K: Hash + Eq + Clone, C: Clock>(
    limiter: Option<&Limiter<K, C>>,
    key: &K,
) -> Option<Duration> {
    let limiter = limiter?;
    let not_until = limiter.check_key(key).err()?;
    Some(not_until.wait_time_from(limiter.clock().now()))
}

fn sweep<K: Hash + Eq + Clone, C: Clock>(limiter: Option<&Limiter<K, C>>) {
    if let Some(limiter) = limiter {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}
