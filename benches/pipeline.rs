//! decode + validate + minimize of the DESIGN.md sample event under the shipped default config, next to a
//! bare `serde_json::Value` parse of the same bytes in the same run. The ratio of the two is the number that
//! matters (README, "Performance").
//!
//!     cargo bench --bench pipeline

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::config::{self, LoadMode};
use tollgate::event::minimize::useragent;
use tollgate::event::{decode, minimize, validate, ClientMeta, Context, Outcome, Report};

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/sample_event.json");
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn pipeline(c: &mut Criterion) {
    // The committed default, validated as `tollgate check` does (nothing written, dev key in memory).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
    let snap = config::load(&path, LoadMode::Check).expect("default config is valid");
    let tenant = &snap.tenants["demo"];
    // The handler reduces the user agent through a bounded cache before minimization; measured separately below.
    let client = ClientMeta {
        ip: "203.0.113.77".parse().unwrap(),
        user_agent: Some(useragent::reduce(UA)),
        opted_out: false,
    };
    let no_ua = ClientMeta {
        user_agent: None,
        ..client.clone()
    };
    let run = |client: &ClientMeta| {
        let ctx = Context {
            tenant,
            client,
            geo: snap.geo.as_deref(),
            received_ms: 0,
        };
        let mut report = Report::default();
        let raw = decode(black_box(SAMPLE), &snap.limits).unwrap().events;
        raw.into_iter()
            .map(
                |r| match minimize(validate(r).unwrap(), &ctx, &mut report) {
                    Outcome::Keep(m) => m,
                    Outcome::Suppressed => unreachable!(),
                },
            )
            .collect::<Vec<_>>()
    };
    let mut g = c.benchmark_group("sample_event");
    g.throughput(Throughput::Bytes(SAMPLE.len() as u64));
    g.bench_function("bare_serde_json_value_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(SAMPLE)).unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| decode(black_box(SAMPLE), &snap.limits).unwrap())
    });
    g.bench_function("decode_validate", |b| {
        b.iter(|| {
            decode(black_box(SAMPLE), &snap.limits)
                .unwrap()
                .events
                .into_iter()
                .map(|r| validate(r).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("decode_validate_minimize", |b| b.iter(|| run(&client)));
    g.bench_function("decode_validate_minimize_no_user_agent", |b| {
        b.iter(|| run(&no_ua))
    });
    let cache = useragent::UaCache::new(1024);
    g.bench_function("user_agent_reduce_cached", |b| {
        b.iter(|| cache.reduce(black_box(UA)))
    });
    g.bench_function("user_agent_reduce_uncached", |b| {
        b.iter(|| useragent::reduce(black_box(UA)))
    });
    g.bench_function("decode_validate_minimize_serialize", |b| {
        b.iter(|| {
            run(&client)
                .into_iter()
                .map(|m| m.to_record())
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
