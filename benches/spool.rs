//! What spool encryption costs. Two views, each run with and without AES-256-GCM in the same process:
//! - `ingest_path/*`: decode + validate + minimize + frame of the DESIGN.md sample event (everything the
//!   gateway does per event before the write), so the ratio is encryption's share of the ingest path's CPU;
//! - `append/*`: a real `Spool::append` of one 100-event request into a temp directory, write + fsync
//!   included (the disk dominates; this shows the end-to-end difference).
//!
//!     cargo bench --bench spool

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::clock::FixedClock;
use tollgate::config::{self, LoadMode};
use tollgate::event::{
    decode, minimize, validate, ClientMeta, Context, MinimizedEvent, Outcome, Report,
};
use tollgate::spool::{self, Spool, SpoolConfig, SpoolKey, SpoolKeys, SpoolMetrics};

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/sample_event.json");

fn minimized(snap: &config::Snapshot) -> Vec<MinimizedEvent> {
    let client = ClientMeta {
        ip: "203.0.113.77".parse().unwrap(),
        user_agent: None,
        opted_out: false,
    };
    let ctx = Context {
        tenant: &snap.tenants["demo"],
        client: &client,
        geo: snap.geo.as_deref(),
        received_ms: 0,
    };
    let mut report = Report::default();
    decode(black_box(SAMPLE), &snap.limits)
        .unwrap()
        .events
        .into_iter()
        .map(
            |r| match minimize(validate(r).unwrap(), &ctx, &mut report) {
                Outcome::Keep(m) => m,
                Outcome::Suppressed => unreachable!(),
            },
        )
        .collect()
}

fn keys() -> SpoolKeys {
    SpoolKeys::new(vec![Arc::new(SpoolKey::new("s1", &[5u8; 32]))], "s1").unwrap()
}

fn ingest_path(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
    let snap = config::load(&path, LoadMode::Check).expect("default config is valid");
    let keys = keys();
    let mut g = c.benchmark_group("ingest_path");
    g.throughput(Throughput::Elements(1));
    for (name, k) in [("plain", None), ("encrypted", Some(&keys))] {
        let mut out = Vec::with_capacity(4096);
        let mut framer = spool::BenchFramer::new(k);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                framer.frame(&minimized(&snap), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn append(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
    let snap = config::load(&path, LoadMode::Check).expect("default config is valid");
    let one = minimized(&snap).remove(0);
    let events: Vec<_> = std::iter::repeat_n(one, 100).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("append_100_events");
    g.throughput(Throughput::Elements(100));
    for (name, k) in [("plain", None), ("encrypted", Some(keys()))] {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
        let cfg = SpoolConfig {
            commit_window: std::time::Duration::ZERO,
            max_bytes: 1 << 40,
            ..SpoolConfig::new(dir.path())
        };
        let (spool, writer, _) = rt
            .block_on(async { Spool::open(cfg, k, Arc::new(FixedClock::new(0)), metrics) })
            .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(spool.append(&events)).unwrap())
        });
        rt.block_on(writer.close()).unwrap();
    }
    g.finish();
}

criterion_group!(benches, ingest_path, append);
criterion_main!(benches);
