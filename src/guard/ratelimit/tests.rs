use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::*;

fn quota(rate_per_s: u32, burst: u32) -> Quota {
    Quota {
        rate_per_s: NonZeroU32::new(rate_per_s).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    }
}

fn only(which: Which, q: Quota) -> RateLimits {
    let mut limits = RateLimits::default();
    match which {
        Which::Address => limits.per_address = Some(q),
        Which::Tenant => limits.per_tenant = Some(q),
        Which::AddressTenant => limits.per_address_tenant = Some(q),
    }
    limits
}

fn service(limits: RateLimits) -> (RateLimitService<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    // Start away from zero, like a process that has been up a while.
    clock.advance(Duration::from_secs(3600));
    (RateLimitService::new(limits, clock.clone()), clock)
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limited(limiter: Which, ms: u64) -> Decision {
    Decision::Limited {
        limiter,
        retry_after: Duration::from_millis(ms),
    }
}

#[test]
fn burst_beyond_quota_is_refused_until_retry_after() {
    let (rl, clock) = service(only(Which::Address, quota(2, 3)));
    for _ in 0..3 {
        assert_eq!(rl.check(v4(1), "demo"), Decision::Allow);
    }
    let refused = rl.check(v4(1), "demo");
    assert_eq!(refused, limited(Which::Address, 500));
    assert_eq!(refused.retry_after_secs(), Some(1));
    clock.advance(Duration::from_millis(499));
    assert_eq!(rl.check(v4(1), "demo"), limited(Which::Address, 1));
    clock.advance(Duration::from_millis(1));
    assert_eq!(rl.check(v4(1), "demo"), Decision::Allow);
    assert_eq!(rl.check(v4(1), "demo"), limited(Which::Address, 500));
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let cases = [
        (0, 1),
        (1, 1),
        (999, 1),
        (1000, 1),
        (1001, 2),
        (2500, 3),
        (60_000, 60),
    ];
    for (ms, secs) in cases {
        assert_eq!(retry_after_secs(Duration::from_millis(ms)), secs, "{ms} ms");
    }
    assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
    assert_eq!(Decision::Allow.retry_after_secs(), None);
}

#[test]
fn ten_seconds_admit_rate_times_ten_plus_burst() {
    let (rate, burst) = (50, 20);
    let expected = f64::from(rate * 10 + burst);
    for which in Which::ALL {
        let (rl, clock) = service(only(which, quota(rate, burst)));
        let mut allowed = 0u32;
        // 1,000 attempts a second from 100 addresses of one tenant; address limits see one of them.
        for i in 0..10_000u32 {
            let addr = if which == Which::Tenant {
                v4(i % 100)
            } else {
                v4(7)
            };
            if rl.check(addr, "demo") == Decision::Allow {
                allowed += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        let off = (f64::from(allowed) - expected).abs() / expected;
        assert!(
            off <= 0.05,
            "{which:?}: {allowed} allowed, expected {expected}"
        );
    }
}

#[test]
fn limits_are_kept_apart() {
    let (rl, _clock) = service(RateLimits {
        per_address: Some(quota(1, 2)),
        per_tenant: Some(quota(1, 4)),
        per_address_tenant: Some(quota(1, 1)),
        ..RateLimits::default()
    });
    // Address × tenant: a's "shop" is spent, a's "blog" and b's "shop" are not.
    assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
    assert_eq!(rl.check(v4(1), "shop"), limited(Which::AddressTenant, 1000));
    assert_eq!(rl.check(v4(2), "shop"), Decision::Allow);
    // Per address: a has now sent two, its limit; b is unaffected.
    assert_eq!(rl.check(v4(1), "blog"), limited(Which::Address, 1000));
    assert_eq!(rl.check(v4(2), "blog"), Decision::Allow);
    // Per tenant across addresses: "shop" has had three (one refused by address × tenant), one more fits.
    assert_eq!(rl.check(v4(3), "shop"), Decision::Allow);
    assert_eq!(rl.check(v4(4), "shop"), limited(Which::Tenant, 1000));
    assert_eq!(rl.check(v4(4), "blog"), Decision::Allow);
    assert_eq!(rl.key_counts(), [4, 2, 5]);
}

#[test]
fn a_refusal_consumes_nothing_downstream() {
    let (rl, _clock) = service(RateLimits {
        per_address: Some(quota(1, 1)),
        per_tenant: Some(quota(1, 2)),
        ..RateLimits::default()
    });
    assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
    for _ in 0..10 {
        assert_eq!(rl.check(v4(1), "shop"), limited(Which::Address, 1000));
    }
    // Had the ten refusals counted against the tenant, b would be refused.
    assert_eq!(rl.check(v4(2), "shop"), Decision::Allow);
    assert_eq!(rl.check(v4(3), "shop"), limited(Which::Tenant, 1000));
}

#[test]
fn detect_mode_flags_exactly_what_enforce_refuses() {
    let limits = RateLimits {
        per_address: Some(quota(2, 3)),
        per_tenant: Some(quota(5, 5)),
        ..RateLimits::default()
    };
    let (enforce, enforce_clock) = service(limits.clone());
    let (detect, detect_clock) = service(RateLimits {
        mode: Mode::Detect,
        ..limits
    });
    for i in 0..2_000u32 {
        let addr = v4(i % 3);
        let refused = match enforce.check(addr, "shop") {
            Decision::Limited { limiter, .. } => Some(limiter),
            _ => None,
        };
        let flagged = match detect.check(addr, "shop") {
            Decision::Detected { limiter } => Some(limiter),
            Decision::Allow => None,
            other => panic!("detect mode refused: {other:?}"),
        };
        assert_eq!(refused, flagged, "request {i}");
        enforce_clock.advance(Duration::from_millis(7));
        detect_clock.advance(Duration::from_millis(7));
    }
}

#[test]
fn addresses_normalise() {
    let cases = [
        ("192.0.2.1", "::ffff:192.0.2.1", true),
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", false),
        ("192.0.2.1", "192.0.2.2", false),
        // IPv4-compatible (deprecated) and NAT64 addresses are IPv6: their /64s.
        ("::192.0.2.1", "192.0.2.1", false),
        ("64:ff9b::192.0.2.1", "192.0.2.1", false),
    ];
    for (a, b, same) in cases {
        assert_eq!(
            AddrKey::from(ip(a)) == AddrKey::from(ip(b)),
            same,
            "{a} vs {b}"
        );
    }
    assert_eq!(
        AddrKey::from(ip("::ffff:192.0.2.1")),
        AddrKey::V4(0xc000_0201)
    );
    assert_eq!(
        AddrKey::from(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6))),
        AddrKey::V6Net64(0x2001_0db8_0001_0002)
    );
}

#[test]
fn one_ipv6_64_is_one_client() {
    let (rl, _clock) = service(only(Which::Address, quota(1, 2)));
    assert_eq!(rl.check(ip("2001:db8:0:1::1"), "shop"), Decision::Allow);
    assert_eq!(rl.check(ip("2001:db8:0:1::2"), "shop"), Decision::Allow);
    assert_eq!(
        rl.check(ip("2001:db8:0:1:abcd::9"), "shop"),
        limited(Which::Address, 1000)
    );
    assert_eq!(rl.check(ip("2001:db8:0:2::1"), "shop"), Decision::Allow);
    assert_eq!(rl.check(ip("192.0.2.7"), "shop"), Decision::Allow);
    assert_eq!(rl.check(ip("::ffff:192.0.2.7"), "shop"), Decision::Allow);
    assert_eq!(
        rl.check(ip("::ffff:192.0.2.7"), "shop"),
        limited(Which::Address, 1000)
    );
    assert_eq!(rl.key_counts(), [3, 0, 0]);
}

#[test]
fn a_flood_stays_within_max_keys_and_spares_known_clients() {
    let (rl, clock) = service(RateLimits {
        per_address: Some(quota(10, 20)),
        per_address_tenant: Some(quota(10, 20)),
        max_keys: 100,
        ..RateLimits::default()
    });
    let known = ip("198.51.100.1");
    assert_eq!(rl.check(known, "shop"), Decision::Allow);
    let mut admitted = 0;
    for i in 0..10_000 {
        if rl.check(v4(i), "shop") == Decision::Allow {
            admitted += 1;
        }
        let [address, _, address_tenant] = rl.key_counts();
        assert!(
            address <= 100 && address_tenant <= 100,
            "{:?}",
            rl.key_counts()
        );
    }
    // 99 own keys, then the overflow cell's burst for everyone else.
    assert_eq!(admitted, 99 + 20);
    assert_eq!(rl.key_counts(), [100, 0, 100]);
    // The known client keeps its own quota; a newcomer shares the spent overflow cell.
    for _ in 0..19 {
        assert_eq!(rl.check(known, "shop"), Decision::Allow);
    }
    assert_eq!(rl.check(known, "shop"), limited(Which::Address, 100));
    assert!(matches!(
        rl.check(v4(20_000), "shop"),
        Decision::Limited {
            limiter: Which::Address,
            ..
        }
    ));
    // A sweep after the burst window forgets everyone and frees the slots.
    clock.advance(Duration::from_secs(3));
    rl.sweep();
    assert_eq!(rl.key_counts(), [0, 0, 0]);
    assert_eq!(rl.check(v4(20_000), "shop"), Decision::Allow);
    assert_eq!(rl.key_counts(), [1, 0, 1]);
}

#[test]
fn sweep_keeps_keys_that_still_owe() {
    let (rl, clock) = service(only(Which::Address, quota(1, 5)));
    for _ in 0..5 {
        rl.check(v4(1), "shop");
    }
    rl.check(v4(2), "shop");
    clock.advance(Duration::from_secs(2));
    rl.sweep();
    // v4(2) owed one second and is gone; v4(1) still owes three and stays limited.
    assert_eq!(rl.key_counts(), [1, 0, 0]);
    for _ in 0..2 {
        assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
    }
    assert_eq!(rl.check(v4(1), "shop"), limited(Which::Address, 1000));
}

/// Requests `addr` gets through in `secs` seconds of one attempt a millisecond.
fn admitted(
    rl: &RateLimitService<FakeRelativeClock>,
    clock: &FakeRelativeClock,
    addr: IpAddr,
    secs: u32,
) -> u32 {
    let mut n = 0;
    for _ in 0..secs * 1000 {
        if rl.check(addr, "shop") == Decision::Allow {
            n += 1;
        }
        clock.advance(Duration::from_millis(1));
    }
    n
}

#[test]
fn reconfigure_tightening_applies_to_an_existing_key() {
    let loose = only(Which::Address, quota(100, 100));
    let (control, control_clock) = service(loose.clone());
    let (rl, clock) = service(loose);
    for _ in 0..10 {
        assert_eq!(control.check(v4(1), "shop"), Decision::Allow);
        assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
    }
    // Ten requests at 100/s are 100 ms of debt. Under one a second, burst 5, that leaves four.
    rl.reconfigure(only(Which::Address, quota(1, 5)));
    for _ in 0..4 {
        assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
    }
    assert_eq!(rl.check(v4(1), "shop"), limited(Which::Address, 100));
    assert_eq!(admitted(&rl, &clock, v4(1), 10), 10);
    // Without the reload: the 90 left of the burst, then 100 a second.
    let untouched = admitted(&control, &control_clock, v4(1), 10);
    assert!((1080..=1100).contains(&untouched), "{untouched}");
    // A new key gets the new quota too: its burst at once, then one a second.
    assert_eq!(admitted(&rl, &clock, v4(2), 10), 5 + 9);
}

#[test]
fn reconfigure_never_resets_a_limited_key() {
    let q = quota(1, 3);
    let (rl, clock) = service(only(Which::Address, q));
    for _ in 0..3 {
        rl.check(v4(1), "shop");
    }
    clock.advance(Duration::from_millis(250));
    rl.reconfigure(only(Which::Address, q));
    assert_eq!(rl.check(v4(1), "shop"), limited(Which::Address, 750));
    // Loosening: the debt is capped at one full new burst, so the key waits one new interval at most.
    rl.reconfigure(only(Which::Address, quota(100, 10)));
    assert_eq!(rl.check(v4(1), "shop"), limited(Which::Address, 10));
    clock.advance(Duration::from_millis(10));
    assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
}

#[test]
fn reconfigure_switches_limiters_and_caps() {
    let (rl, _clock) = service(RateLimits {
        per_address: Some(quota(1, 1)),
        per_tenant: Some(quota(1, 1)),
        ..RateLimits::default()
    });
    for i in 0..10 {
        rl.check(v4(i), &format!("t{i}"));
    }
    assert_eq!(rl.key_counts(), [10, 10, 0]);
    let fewer = RateLimits {
        per_address: Some(quota(1, 1)),
        max_keys: 5,
        mode: Mode::Detect,
        ..RateLimits::default()
    };
    rl.reconfigure(fewer.clone());
    assert_eq!(rl.limits(), fewer);
    assert_eq!(rl.key_counts(), [10, 0, 0]);
    // Over the lowered cap, new keys share the overflow cell; known keys keep theirs.
    assert_eq!(rl.check(v4(100), "t"), Decision::Allow);
    assert_eq!(
        rl.check(v4(101), "t"),
        Decision::Detected {
            limiter: Which::Address
        }
    );
    assert_eq!(rl.key_counts(), [10, 0, 0]);
}

#[test]
fn max_keys_zero_sends_everyone_to_overflow() {
    let (rl, _clock) = service(RateLimits {
        max_keys: 0,
        ..only(Which::Address, quota(1, 2))
    });
    assert_eq!(rl.check(v4(1), "shop"), Decision::Allow);
    assert_eq!(rl.check(v4(2), "shop"), Decision::Allow);
    assert_eq!(rl.check(v4(3), "shop"), limited(Which::Address, 1000));
    assert_eq!(rl.key_counts(), [0, 0, 0]);
}

#[test]
fn everything_off_allows_everything() {
    let (rl, _clock) = service(RateLimits::default());
    for i in 0..1000 {
        assert_eq!(rl.check(v4(i % 2), "shop"), Decision::Allow);
    }
    assert_eq!(rl.key_counts(), [0, 0, 0]);
    assert!(format!("{rl:?}").contains("key_counts"));
}
