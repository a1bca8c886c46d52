//! The whole per-request guard on the DESIGN.md sample event, as `http::public` runs it for a clean browser
//! request under the committed `config/tollgate.toml`: ban check, header protocol facts, caller (Origin),
//! anomaly screen of every string value and the user agent, tenant access, the three rate limiters, and the
//! behaviour window's event count. Decoding is outside the measurement (it is `pipeline`'s).
//!
//! The limiter quotas and the behaviour event bound are raised so the one benchmark client is never refused:
//! a GCRA check costs the same whatever its quota, and a refusal is not the clean path being measured.
//!
//!     cargo bench --bench guard

use std::hint::black_box;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::QuantaClock;
use hyper::header::{HeaderMap, HeaderValue};
use prometheus::Registry;
use tollgate::config::{self, LoadMode, Snapshot};
use tollgate::event::{decode, RawEvent};
use tollgate::guard::behaviour::Signal;
use tollgate::guard::jail::{GuardMetrics, Jail};
use tollgate::guard::limit::LimitMetrics;
use tollgate::guard::ratelimit::{Quota, RateLimitService, RateLimits};
use tollgate::guard::screen::{self, RequestFacts, ScreenMetrics};
use tollgate::guard::{access, limit};
use tollgate::reject::Reject;

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/sample_event.json");
const UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/131.0.0.0 Safari/537.36";

struct Guard {
    /// The client address, as the connection established it.
    ip: IpAddr,
    snap: Snapshot,
    jail: Jail,
    limits: RateLimitService,
    limit_m: LimitMetrics,
    screen_m: ScreenMetrics,
}

impl Guard {
    fn new() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
        let mut snap = config::load(&path, LoadMode::Check).expect("default config is valid");
        assert!(
            snap.anomaly.is_some() && snap.bans.is_some(),
            "the committed config guards"
        );
        if let Some(b) = snap.behaviour.as_mut() {
            b.policy.max_events = u32::MAX;
        }
        let high = Some(Quota {
            rate_per_s: NonZeroU32::new(10_000_000).unwrap(),
            burst: NonZeroU32::new(10_000_000).unwrap(),
        });
        let limits = RateLimitService::new(
            RateLimits {
                per_address: high,
                per_tenant: high,
                per_address_tenant: high,
                ..snap.ratelimit.clone()
            },
            QuantaClock::default(),
        );
        let r = Registry::new();
        Guard {
            jail: Jail::new(GuardMetrics::register(&r).unwrap()),
            limit_m: LimitMetrics::register(&r).unwrap(),
            screen_m: ScreenMetrics::register(&r).unwrap(),
            limits,
            snap,
            ip: "203.0.113.77".parse().unwrap(),
        }
    }

    /// Every guard stage of one request, in the handler's order.
    fn admit(
        &self,
        headers: &HeaderMap,
        events: &[RawEvent<'_>],
        ua: Option<&str>,
    ) -> Result<(), Reject> {
        let ip = "203.0.113.77".parse().unwrap();
        let now = Instant::now();
        self.jail.check(ip, now)?;
        let protocol = screen::header_facts(headers);
        let caller = access::caller(headers, ip)?;
        let engine = self.snap.anomaly.as_ref().expect("anomaly on");
        let request = RequestFacts {
            user_agent: ua,
            protocol,
        };
        screen::admit(engine, &self.screen_m, &self.jail.metrics, events, &request)?;
        let m = (&self.limit_m, &self.jail.metrics);
        for e in events {
            let tenant = access::check(e.site(), &caller, &self.snap.tenants)?;
            limit::admit(&self.limits, m, ip, &tenant.site)?;
        }
        let (b, bans) = (self.snap.behaviour.as_ref(), self.snap.bans.as_ref());
        self.jail
            .observe(b, bans, ip, Signal::Events(events.len() as u32), now);
        Ok(())
    }
}

fn headers(ua: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    h.insert("origin", HeaderValue::from_static("https://shop.example"));
    h.insert("content-length", HeaderValue::from(SAMPLE.len()));
    if ua {
        h.insert("user-agent", HeaderValue::from_static(UA));
    }
    h
}

fn bench(c: &mut Criterion) {
    let guard = Guard::new();
    let limits = &guard.snap.limits;
    let events = || decode(SAMPLE, limits).unwrap().events;
    let (with_ua, without_ua) = (headers(true), headers(false));
    assert!(
        guard.admit(&with_ua, &events(), Some(UA)).is_ok(),
        "the sample is clean"
    );
    let mut g = c.benchmark_group("guard");
    // The guard reads the decoded events and never consumes them: one decoded request serves every iteration.
    let ev = events();
    g.bench_function("sample_event_chrome_ua", |b| {
        b.iter(|| black_box(guard.admit(&with_ua, black_box(&ev), Some(UA))).unwrap())
    });
    g.bench_function("sample_event_no_ua", |b| {
        b.iter(|| black_box(guard.admit(&without_ua, black_box(&ev), None)).unwrap())
    });
    // The stages apart, to see where the time goes.
    let ip = guard.ip;
    let engine = guard.snap.anomaly.as_ref().unwrap();
    let request = RequestFacts {
        user_agent: Some(UA),
        protocol: screen::header_facts(&with_ua),
    };
    g.bench_function("stage_screen_chrome_ua", |b| {
        b.iter(|| {
            screen::admit(
                engine,
                &guard.screen_m,
                &guard.jail.metrics,
                black_box(&ev),
                &request,
            )
        })
    });
    g.bench_function("stage_header_facts", |b| {
        b.iter(|| screen::header_facts(black_box(&with_ua)))
    });
    g.bench_function("stage_access", |b| {
        b.iter(|| {
            let caller = access::caller(black_box(&with_ua), ip).unwrap();
            access::check("demo", &caller, &guard.snap.tenants).is_ok()
        })
    });
    let m = (&guard.limit_m, &guard.jail.metrics);
    g.bench_function("stage_ratelimit", |b| {
        b.iter(|| limit::admit(&guard.limits, m, black_box(ip), "demo"))
    });
    let (bh, bans) = (guard.snap.behaviour.as_ref(), guard.snap.bans.as_ref());
    g.bench_function("stage_ban_check_and_behaviour", |b| {
        b.iter(|| {
            let now = Instant::now();
            guard.jail.check(black_box(ip), now).unwrap();
            guard.jail.observe(bh, bans, ip, Signal::Events(1), now);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
