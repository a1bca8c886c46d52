//! The rate limiters ([`tollgate::guard::ratelimit`]) with all three on and the production clock: `check`
//! for a key already held, for new keys (two inserts: address and address × tenant), for a refused key
//! (Retry-After computed), for new keys while the tables are full (overflow cell), and a sweep of 100,000
//! idle keys per limiter.
//!
//!     cargo bench --bench guard_ratelimit

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use governor::clock::QuantaClock;
use tollgate::guard::ratelimit::{Quota, RateLimitService, RateLimits};

fn quota(rate_per_s: u32, burst: u32) -> Option<Quota> {
    Some(Quota {
        rate_per_s: NonZeroU32::new(rate_per_s).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    })
}

/// All three limiters with one quota.
fn service(q: Option<Quota>, max_keys: usize) -> RateLimitService {
    RateLimitService::new(
        RateLimits {
            per_address: q,
            per_tenant: q,
            per_address_tenant: q,
            max_keys,
            ..RateLimits::default()
        },
        QuantaClock::default(),
    )
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

/// Never refuses at benchmark speed; a key is idle again a microsecond after its last request.
fn unlimited() -> Option<Quota> {
    quota(u32::MAX, 1)
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_check");

    let rl = service(unlimited(), 100_000);
    g.bench_function("known_key", |b| {
        b.iter(|| rl.check(black_box(v4(1)), black_box("shop")))
    });

    let rl = service(quota(1, 1), 100_000);
    rl.check(v4(1), "shop");
    g.bench_function("refused_key", |b| {
        b.iter(|| rl.check(black_box(v4(1)), black_box("shop")))
    });

    // A fresh address every call; the sweep that keeps the tables small runs outside the timed part.
    let rl = service(unlimited(), 1_000_000);
    let mut next = 0u32;
    g.bench_function("new_key", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(50_000);
                let start = Instant::now();
                for _ in 0..n {
                    next = next.wrapping_add(1);
                    black_box(rl.check(v4(next), "shop"));
                }
                timed += start.elapsed();
                left -= n;
                rl.sweep();
            }
            timed
        })
    });

    // Tables full of keys that still owe: every new address lands in the overflow cell (and is refused).
    let rl = service(quota(1, 1), 100_000);
    for i in 0..100_000 {
        rl.check(v4(i), "shop");
    }
    let mut next = 100_000u32;
    g.bench_function("new_key_tables_full", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            rl.check(black_box(v4(next)), "shop")
        })
    });
    g.finish();
}

fn sweep(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_sweep");
    g.sample_size(20);
    g.bench_function("100k_idle_keys", |b| {
        b.iter_batched(
            || {
                let rl = service(unlimited(), 100_000);
                for i in 0..100_000 {
                    rl.check(v4(i), "shop");
                }
                rl
            },
            |rl| {
                rl.sweep();
                rl
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, check, sweep);
criterion_main!(benches);
