//! The anomaly engine ([`tollgate::guard::anomaly`]) at its defaults (threshold 5, paranoia 1, every family
//! enforced) over the string values of `tests/fixtures/sample_event.json` (a clean event), with and without
//! a browser user agent, and over one attack value.
//!
//!     cargo bench --bench guard_anomaly

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use tollgate::guard::anomaly::{AnomalyConfig, Engine};

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/131.0.0.0 Safari/537.36";

/// (field path, value) for every string in `v`.
fn strings(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path, s.clone())),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| strings(x, format!("{path}[{i}]"), out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            strings(x, p, out)
        }),
        _ => {}
    }
}

fn bench(c: &mut Criterion) {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sample_event.json"
    ))
    .expect("sample event");
    let mut values = Vec::new();
    strings(
        &serde_json::from_str(&raw).unwrap(),
        String::new(),
        &mut values,
    );
    let engine = Engine::new(&AnomalyConfig::default()).unwrap();
    let mut g = c.benchmark_group("anomaly");

    g.bench_function("sample_event_no_ua", |b| {
        b.iter(|| {
            let it = values.iter().map(|(f, v)| (f.as_str(), v.as_str()));
            black_box(engine.score_strings(black_box("demo"), it, None))
        })
    });
    g.bench_function("sample_event_chrome_ua", |b| {
        b.iter(|| {
            let it = values.iter().map(|(f, v)| (f.as_str(), v.as_str()));
            black_box(engine.score_strings(black_box("demo"), it, Some(CHROME)))
        })
    });
    let attack = [(
        "cart.items[0].name",
        "x' UNION SELECT username, password FROM users--",
    )];
    g.bench_function("one_attack_value", |b| {
        b.iter(|| black_box(engine.score_strings("demo", black_box(attack).into_iter(), None)))
    });
    g.finish();
    assert!(
        !engine
            .score_strings(
                "demo",
                values.iter().map(|(f, v)| (f.as_str(), v.as_str())),
                Some(CHROME)
            )
            .blocked
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
