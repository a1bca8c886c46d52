//! A flood of 1,000,000 distinct client addresses (half IPv4, half IPv6 /64s, each naming its own tenant)
//! against the rate limiters, all in one instant so nothing expires: no limiter ever holds more than
//! `max_keys` keys, a client known before the flood keeps its quota, and memory stays within the bound the
//! module docs state. A counting global allocator measures it, which is why this is a binary of its own.
//!
//!     cargo test --release --test ratelimit_flood -- --nocapture

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use tollgate::guard::ratelimit::{Decision, Quota, RateLimitService, RateLimits};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only the byte counts are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

const FLOOD: u32 = 1_000_000;
const MAX_KEYS: usize = 100_000;

fn quota(rate_per_s: u32, burst: u32) -> Option<Quota> {
    Some(Quota {
        rate_per_s: NonZeroU32::new(rate_per_s).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    })
}

/// Flood address `i`: even ones IPv4, odd ones a distinct IPv6 /64.
fn address(i: u32) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_0000_0000_u128 + u128::from(i)) << 64 | 1,
        ))
    }
}

/// A tenant name without allocating: `i` in hex.
fn tenant(i: u32, buf: &mut [u8; 8]) -> &str {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[(i >> (28 - 4 * k) & 0xf) as usize];
    }
    std::str::from_utf8(buf).unwrap()
}

struct Measured {
    counts: [usize; 3],
    admitted: u32,
    /// Bytes held by the service: built, after the flood, at the flood's peak, after a sweep.
    empty: usize,
    full: usize,
    peak: usize,
    swept: usize,
}

/// Builds a service with `limits`, lets the `known` client in, floods the service, checks that the known
/// client kept its quota (burst 20), sweeps.
fn flood(limits: RateLimits, known: Option<IpAddr>) -> Measured {
    let clock = FakeRelativeClock::default();
    let before = LIVE.load(Ordering::Relaxed);
    let rl = RateLimitService::new(limits, clock.clone());
    if let Some(known) = known {
        assert_eq!(rl.check(known, "shop"), Decision::Allow);
    }
    let empty = LIVE.load(Ordering::Relaxed) - before;
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let mut buf = [0u8; 8];
    let mut admitted = 0u32;
    for i in 0..FLOOD {
        if rl.check(address(i), tenant(i, &mut buf)) == Decision::Allow {
            admitted += 1;
        }
        if i.is_multiple_of(1024) {
            let counts = rl.key_counts();
            assert!(
                counts.iter().all(|&n| n <= MAX_KEYS),
                "after {i}: {counts:?}"
            );
        }
    }
    let counts = rl.key_counts();
    let full = LIVE.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    if let Some(known) = known {
        for _ in 0..19 {
            assert_eq!(rl.check(known, "shop"), Decision::Allow);
        }
        assert!(matches!(rl.check(known, "shop"), Decision::Limited { .. }));
    }
    clock.advance(Duration::from_secs(60));
    rl.sweep();
    assert_eq!(rl.key_counts(), [0; 3]);
    let swept = LIVE.load(Ordering::Relaxed) - before;
    Measured {
        counts,
        admitted,
        empty,
        full,
        peak,
        swept,
    }
}

#[test]
fn a_flood_of_distinct_addresses_is_bounded() {
    let known = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let all = RateLimits {
        per_address: quota(10, 20),
        per_tenant: quota(1_000_000_000, 1_000_000),
        per_address_tenant: quota(10, 20),
        max_keys: MAX_KEYS,
        ..RateLimits::default()
    };
    // All three limiters, with a client known before the flood.
    let m = flood(all.clone(), Some(known));
    assert_eq!(m.counts, [MAX_KEYS; 3]);
    // The flood got the keys left free and one overflow burst, nothing more.
    assert_eq!(m.admitted, (MAX_KEYS - 1) as u32 + 20);
    report("all three", &m, 3);

    // Each limiter alone, for its bytes per key. Worst case (a table just past doubling) is the stored
    // entry plus one control byte, over hashbrown's lowest load factor after growth, 7/16.
    let alone = [
        (
            "address",
            RateLimits {
                per_tenant: None,
                per_address_tenant: None,
                ..all.clone()
            },
            16,
        ),
        (
            "tenant",
            RateLimits {
                per_address: None,
                per_address_tenant: None,
                ..all.clone()
            },
            8,
        ),
        (
            "address_tenant",
            RateLimits {
                per_address: None,
                per_tenant: None,
                ..all.clone()
            },
            24,
        ),
    ];
    for (name, limits, key_bytes) in alone {
        let m = flood(limits, None);
        let worst = (key_bytes + 8 + 1) as f64 * 16.0 / 7.0;
        let per_key = report(name, &m, 1);
        println!("  {name}: worst case {worst:.0} B/key");
        assert!(per_key <= worst, "{name}: {per_key:.1} B/key");
        assert!(
            m.peak - m.empty <= (worst * MAX_KEYS as f64) as usize + 64 * 1024,
            "{name}: peak {}",
            m.peak
        );
    }
}

/// Prints what `m` measured and returns the bytes per key when full.
fn report(name: &str, m: &Measured, limiters: usize) -> f64 {
    let keys: usize = m.counts.iter().sum();
    let per_key = (m.full - m.empty) as f64 / keys as f64;
    println!(
        "{name}: flood {FLOOD} -> keys {:?}; built {} B, full {} B ({per_key:.1} B/key), peak {} B ({:.1} B/key), \
         after sweep {} B",
        m.counts,
        m.empty,
        m.full,
        m.peak,
        (m.peak - m.empty) as f64 / keys as f64,
        m.swept,
    );
    assert_eq!(keys, limiters * MAX_KEYS);
    assert!(
        m.swept < m.empty + 64 * 1024,
        "{name}: sweep left {} B",
        m.swept
    );
    per_key
}
