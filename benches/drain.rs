//! Drain rate of the file and ClickHouse sinks: a spool holding N minimized sample events (encrypted, as in
//! production) is delivered by the real delivery loop — spool reader, decryption, batching, then an NDJSON
//! write and fsync, or a gzip `INSERT … FORMAT JSONEachRow` into a real `clickhouse-server` (started once per
//! bench process by `tests/support/clickhouse.rs`, a fresh table per run) — durable cursor, and timed from
//! start to the last stored event. Reported as events/s next to the ingest numbers in the README (the
//! target: draining at least 3x faster than ingest, so forwarding never becomes the bottleneck).
//!
//!     cargo bench --bench drain

mod common;

#[path = "../tests/support/clickhouse.rs"]
#[allow(dead_code)]
mod server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use server::ClickHouse;
use tokio::runtime::Runtime;
use tollgate::clock::FixedClock;
use tollgate::config::{
    BatchLimits, ClickHouseConfig, Endpoint, RetryPolicy, SinkConfig, SinkKind, TlsClientFiles,
};
use tollgate::event::MinimizedEvent;
use tollgate::sink::clickhouse::ClickHouseSink;
use tollgate::sink::deadletter::DeadLetters;
use tollgate::sink::deliver::Delivery;
use tollgate::sink::file::{FileSink, FileStore, FileStoreConfig};
use tollgate::sink::metrics::SinkMetrics;
use tollgate::sink::Sink;
use tollgate::spool::{Route, Spool, SpoolConfig, SpoolKey, SpoolKeys, SpoolMetrics};

use common::SAMPLE;
const EVENTS: usize = 20_000;

/// `EVENTS` minimized sample events, each with its own id (as in production; ClickHouse's
/// `ReplacingMergeTree` would collapse equal ids).
fn samples() -> Vec<MinimizedEvent> {
    let mut snap = common::default_snapshot();
    // Every consumer of the bench's spool takes the events, whatever sinks the default config names.
    snap.tenants.get_mut("demo").unwrap().route = Arc::new(Route::All);
    snap.geo = None;
    let mut sample: serde_json::Value = serde_json::from_slice(SAMPLE).unwrap();
    (0..EVENTS)
        .map(|i| {
            // The sample's id is 26 characters; so is each of these.
            sample["event_id"] = format!("01JD3V4X7E8K9M2N5P6Q{i:06}").into();
            let body = serde_json::to_vec(&sample).unwrap();
            common::minimize_body(&snap, &body, 0).remove(0)
        })
        .collect()
}

/// Where a drain delivers.
#[derive(Clone, Copy)]
enum Target<'a> {
    File,
    /// A running server whose `tollgate.events` table exists and is empty.
    ClickHouse(&'a ClickHouse),
}

/// The sink's config and the running sink, batching as the defaults do but for a shorter `batch_age_ms`.
fn sink(target: Target<'_>, dir: &Path) -> (SinkConfig, Box<dyn Sink>) {
    let kind = match target {
        Target::File => SinkKind::File {
            dir: dir.join("out"),
            max_file_bytes: 64 << 20,
        },
        Target::ClickHouse(ch) => SinkKind::ClickHouse(ClickHouseConfig {
            endpoint: Endpoint {
                https: false,
                host: "127.0.0.1".into(),
                port: ch.http_port,
                path: "/".into(),
            },
            tls: TlsClientFiles::default(),
            database: "tollgate".into(),
            table: "events".into(),
            user: None,
            password: None,
        }),
    };
    let cfg = SinkConfig {
        name: kind.type_name().into(),
        region: None,
        kind,
        batch: BatchLimits {
            events: 1000,
            bytes: 1 << 20,
            max_age: Duration::from_millis(200),
        },
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        },
        timeout: Duration::from_secs(10),
    };
    let sink: Box<dyn Sink> = match &cfg.kind {
        SinkKind::File {
            dir,
            max_file_bytes,
        } => Box::new(FileSink::new(
            FileStore::open(FileStoreConfig {
                root: dir.clone(),
                max_file_bytes: *max_file_bytes,
            })
            .unwrap(),
        )),
        SinkKind::ClickHouse(ch) => Box::new(ClickHouseSink::new(&cfg, ch).unwrap()),
        _ => unreachable!(),
    };
    (cfg, sink)
}

/// Fills a fresh spool, then times the sink delivering all of it.
async fn drain_once(events: &[MinimizedEvent], target: Target<'_>) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (sink_cfg, sink) = sink(target, dir.path());
    let keys = SpoolKeys::new(vec![Arc::new(SpoolKey::new("s1", &[5u8; 32]))], "s1").unwrap();
    let cfg = SpoolConfig {
        consumers: vec![sink_cfg.name.clone()],
        max_bytes: 1 << 40,
        commit_window: Duration::ZERO,
        ..SpoolConfig::new(dir.path().join("spool"))
    };
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(SpoolMetrics::register(&registry).unwrap());
    let clock = Arc::new(FixedClock::new(1_732_262_400_000));
    let (spool, writer, _) = Spool::open(cfg, Some(keys), clock.clone(), metrics).unwrap();
    for request in events.chunks(100) {
        spool.append(request).await.unwrap();
    }
    let sink_metrics = SinkMetrics::register(&registry).unwrap();
    let one = sink_metrics.for_sink(&sink_cfg.name);
    let stored = one.events.clone();
    let delivery = Delivery {
        reader: spool.reader(&sink_cfg.name).unwrap(),
        cfg: sink_cfg,
        sink,
        dead: DeadLetters::new(dir.path(), "bench"),
        metrics: one,
        clock,
        audit: None,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(delivery.run(stop_rx));
    while stored.get() < events.len() as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the sink stored {} of {} events in 2 minutes",
            stored.get(),
            events.len()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = started.elapsed();
    let _ = stop.send(true);
    task.await.unwrap();
    writer.close().await.unwrap();
    took
}

/// The table `docs/sinks.md` documents.
const DDL: &str = "CREATE TABLE tollgate.events (site String, event_id String, received_ms Int64, \
    type String, record String) ENGINE = ReplacingMergeTree() \
    PARTITION BY toYYYYMM(toDate(intDiv(received_ms, 1000))) ORDER BY (site, event_id)";

/// One server for the whole bench process (criterion calls the routine for warm-up, every sample, and
/// once in `cargo test --benches`).
fn clickhouse() -> ClickHouse {
    let ch = ClickHouse::start();
    ch.query("CREATE DATABASE tollgate");
    ch
}

/// Times one ClickHouse drain into a fresh table and checks every event went in.
fn clickhouse_once(rt: &Runtime, events: &[MinimizedEvent], ch: &ClickHouse) -> Duration {
    ch.query("DROP TABLE IF EXISTS tollgate.events");
    ch.query(DDL);
    let took = rt.block_on(drain_once(events, Target::ClickHouse(ch)));
    let rows = ch.query("SELECT count() FROM tollgate.events");
    assert_eq!(rows.trim(), events.len().to_string(), "rows in ClickHouse");
    took
}

fn drain(c: &mut Criterion) {
    let events = samples();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut ch: Option<ClickHouse> = None;
    let mut g = c.benchmark_group("drain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("file_sink_20k_events", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(drain_once(&events, Target::File)))
                .sum()
        })
    });
    g.bench_function("clickhouse_sink_20k_events", |b| {
        let ch = ch.get_or_insert_with(clickhouse);
        b.iter_custom(|iters| (0..iters).map(|_| clickhouse_once(&rt, &events, ch)).sum())
    });
    g.finish();
}

criterion_group!(benches, drain);
criterion_main!(benches);
