//! decode + validate + minimize of the DESIGN.md sample event, next to a bare `serde_json::Value` parse of the
//! same bytes in the same run. The ratio of the two is the number that matters (README, "Performance").
//!
//!     cargo bench --bench pipeline

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::config::Limits;
use tollgate::event::{decode, minimize, validate};
use tollgate::keys::HmacKey;

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/sample_event.json");

fn limits() -> Limits {
    Limits {
        max_body_bytes: 65536,
        max_events: 100,
        max_depth: 16,
        max_string_bytes: 2048,
        max_object_keys: 64,
        max_connections: 4096,
        max_header_count: 64,
        max_header_bytes: 16384,
        h2_max_concurrent_streams: 100,
    }
}

fn pipeline(c: &mut Criterion) {
    let limits = limits();
    let key = HmacKey::new("k1", &[7u8; 32]);
    let mut g = c.benchmark_group("sample_event");
    g.throughput(Throughput::Bytes(SAMPLE.len() as u64));
    g.bench_function("bare_serde_json_value_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(SAMPLE)).unwrap())
    });
    g.bench_function("decode_validate_minimize", |b| {
        b.iter(|| {
            let raw = decode(black_box(SAMPLE), &limits).unwrap();
            raw.into_iter()
                .map(|r| minimize(validate(r).unwrap(), &key, 0))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("decode_validate_minimize_serialize", |b| {
        b.iter(|| {
            let raw = decode(black_box(SAMPLE), &limits).unwrap();
            raw.into_iter()
                .map(|r| minimize(validate(r).unwrap(), &key, 0).to_record())
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
