//! What spool encryption costs. Two views, each run with and without AES-256-GCM in the same process:
//! - `ingest_path/*`: decode + validate + minimize + frame of the DESIGN.md sample event (everything the
//!   gateway does per event before the write), so the ratio is encryption's share of the ingest path's CPU;
//! - `append/*`: a real `Spool::append` of one 100-event request into a temp directory, write + fsync
//!   included (the disk dominates; this shows the end-to-end difference).
//!
//! And what group commit buys: `group_commit/<K>_appenders` has K tasks on a multi-thread runtime each
//! appending single-event requests to one encrypted spool (shipped settings: no commit window, 4 MiB commit
//! cap), timed to the last acknowledgement, so criterion prints acknowledged appends/s; each run also prints
//! the average number of appends that shared one fsync (`tollgate_spool_records_total` over
//! `tollgate_spool_commits_total`).
//!
//!     cargo bench --bench spool
//!     cargo bench --bench spool -- group_commit

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::clock::FixedClock;
use tollgate::config;
use tollgate::event::MinimizedEvent;
use tollgate::spool::{self, Spool, SpoolConfig, SpoolKey, SpoolKeys, SpoolMetrics};

mod common;

use common::SAMPLE;

fn minimized(snap: &config::Snapshot) -> Vec<MinimizedEvent> {
    common::minimize_body(snap, black_box(SAMPLE), 0)
}

fn keys() -> SpoolKeys {
    SpoolKeys::new(vec![Arc::new(SpoolKey::new("s1", &[5u8; 32]))], "s1").unwrap()
}

fn ingest_path(c: &mut Criterion) {
    let snap = common::default_snapshot();
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
    let snap = common::default_snapshot();
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

/// Opens an encrypted spool in `dir` with the shipped group-commit settings.
fn open_encrypted(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
) -> (Spool, spool::SpoolWriter, Arc<SpoolMetrics>) {
    let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
    let cfg = SpoolConfig {
        commit_window: Duration::ZERO,
        max_batch_bytes: 4 << 20,
        max_bytes: 1 << 40,
        ..SpoolConfig::new(dir)
    };
    let (spool, writer, _) = rt
        .block_on(async {
            Spool::open(
                cfg,
                Some(keys()),
                Arc::new(FixedClock::new(0)),
                metrics.clone(),
            )
        })
        .unwrap();
    (spool, writer, metrics)
}

/// `k` tasks append single-event requests, `iters` in all (rounded up to a multiple of `k`); the time to
/// the last acknowledgement, scaled back to `iters`.
async fn appends(spool: &Spool, event: &MinimizedEvent, k: u64, iters: u64) -> Duration {
    let per_task = iters.div_ceil(k);
    let start = Instant::now();
    let tasks: Vec<_> = (0..k)
        .map(|_| {
            let (spool, events) = (spool.clone(), [event.clone()]);
            tokio::spawn(async move {
                for _ in 0..per_task {
                    spool.append(&events).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_task * k) as f64)
}

fn group_commit(c: &mut Criterion) {
    let snap = common::default_snapshot();
    let one = minimized(&snap).remove(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("group_commit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for k in [1, 16, 64] {
        // On the real disk (not tmpfs), as the spool is in production.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (spool, writer, metrics) = open_encrypted(&rt, dir.path());
        g.bench_function(format!("{k}_appenders"), |b| {
            b.iter_custom(|iters| rt.block_on(appends(&spool, &one, k, iters)))
        });
        let (records, commits) = (metrics.records.get(), metrics.commits.get());
        eprintln!(
            "group_commit/{k}_appenders: {:.1} appends per fsync ({records} appends, {commits} commits)",
            records as f64 / commits.max(1) as f64
        );
        rt.block_on(writer.close()).unwrap();
    }
    g.finish();
}

criterion_group!(benches, ingest_path, append, group_commit);
criterion_main!(benches);
