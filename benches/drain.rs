//! Drain rate of the file sink: a spool holding N minimized sample events (encrypted, as in production) is
//! delivered by the real delivery loop — spool reader, decryption, batching, NDJSON write + fsync, durable
//! cursor — and timed from start to the last stored event. Reported as events/s next to the ingest numbers
//! in the README (the target: draining at least 3x faster than ingest, so forwarding never becomes the
//! bottleneck).
//!
//!     cargo bench --bench drain

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::clock::FixedClock;
use tollgate::config::{self, BatchLimits, LoadMode, RetryPolicy, SinkConfig, SinkKind};
use tollgate::event::{decode, minimize, validate, ClientMeta, Context, MinimizedEvent, Outcome, Report};
use tollgate::sink::deadletter::DeadLetters;
use tollgate::sink::deliver::Delivery;
use tollgate::sink::file::{FileSink, FileStore, FileStoreConfig};
use tollgate::sink::metrics::SinkMetrics;
use tollgate::spool::{Spool, SpoolConfig, SpoolKey, SpoolKeys, SpoolMetrics};

const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/sample_event.json");
const EVENTS: usize = 20_000;

fn sample() -> MinimizedEvent {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
    let snap = config::load(&path, LoadMode::Check).expect("default config is valid");
    let client = ClientMeta { ip: "203.0.113.77".parse().unwrap(), user_agent: None, opted_out: false };
    let ctx = Context { tenant: &snap.tenants["demo"], client: &client, geo: None, received_ms: 0 };
    let raw = decode(SAMPLE, &snap.limits).unwrap().remove(0);
    match minimize(validate(raw).unwrap(), &ctx, &mut Report::default()) {
        Outcome::Keep(m) => m,
        Outcome::Suppressed => unreachable!(),
    }
}

/// Fills a fresh spool, then times the file sink delivering all of it.
async fn drain_once(event: &MinimizedEvent) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let keys = SpoolKeys::new(vec![Arc::new(SpoolKey::new("s1", &[5u8; 32]))], "s1").unwrap();
    let cfg = SpoolConfig {
        consumers: vec!["file".into()],
        max_bytes: 1 << 40,
        commit_window: Duration::ZERO,
        ..SpoolConfig::new(dir.path().join("spool"))
    };
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(SpoolMetrics::register(&registry).unwrap());
    let clock = Arc::new(FixedClock::new(1_732_262_400_000));
    let (spool, writer, _) = Spool::open(cfg, Some(keys), clock.clone(), metrics).unwrap();
    let request: Vec<_> = std::iter::repeat_n(event.clone(), 100).collect();
    for _ in 0..EVENTS / 100 {
        spool.append(&request).await.unwrap();
    }
    let sink_cfg = SinkConfig {
        name: "file".into(),
        region: None,
        kind: SinkKind::File { dir: dir.path().join("out"), max_file_bytes: 64 << 20 },
        batch: BatchLimits { events: 1000, bytes: 1 << 20, max_age: Duration::from_millis(200) },
        retry: RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_secs(30) },
        timeout: Duration::from_secs(10),
    };
    let store = FileStore::open(FileStoreConfig { root: dir.path().join("out"), max_file_bytes: 64 << 20 }).unwrap();
    let sink_metrics = SinkMetrics::register(&registry).unwrap();
    let one = sink_metrics.for_sink("file");
    let stored = one.events.clone();
    let delivery = Delivery {
        cfg: sink_cfg,
        reader: spool.reader("file").unwrap(),
        sink: Box::new(FileSink::new(store)),
        dead: DeadLetters::new(dir.path(), "file"),
        metrics: one,
        clock,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(delivery.run(stop_rx));
    while stored.get() < EVENTS as u64 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = started.elapsed();
    let _ = stop.send(true);
    task.await.unwrap();
    writer.close().await.unwrap();
    took
}

fn drain(c: &mut Criterion) {
    let event = sample();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut g = c.benchmark_group("drain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("file_sink_20k_events", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(drain_once(&event))).sum())
    });
    g.finish();
}

criterion_group!(benches, drain);
criterion_main!(benches);
