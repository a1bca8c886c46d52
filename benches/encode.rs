//! Batch encoding per sink: what each sink does to a batch of `N` records read back from the spool before
//! any I/O, on `N` copies of the DESIGN.md sample event minimized under the shipped default config (each
//! with its own event id, as in production). Throughput is in events, so criterion prints events/s.
//! - `clickhouse/rows` and `clickhouse/rows_gzip`: the `JSONEachRow` body, then gzip as the sink sends it;
//! - `http/ndjson` and `http/ndjson_gzip`: the NDJSON body, then gzip as the sink sends it;
//! - `file/lines`: the batch check and each record's line (what the store appends before its writes and
//!   fsyncs); `file/copy_and_lines` adds the owned copy of the batch the sink hands to the blocking pool;
//! - `nats/messages`: the batch check and one message (subject, payload, `Nats-Msg-Id`) per record.
//!
//!     cargo bench --bench encode

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::sink::client::gzip;
use tollgate::sink::{clickhouse, file, http, nats};
use tollgate::spool::StoredRecord;

mod common;

use common::SAMPLE;

/// Records per batch: the shipped `batch_events`.
const N: usize = 1000;

/// `N` minimized sample events as a sink receives them from the spool reader.
fn batch() -> Vec<StoredRecord> {
    let snap = common::default_snapshot();
    let one = common::minimize_body(&snap, SAMPLE, 1_732_262_400_000).remove(0);
    (0..N)
        .map(|i| StoredRecord {
            site: one.site().to_owned(),
            // The sample's id is 26 characters; so is each of these.
            event_id: format!("01JD3V4X7E8K9M2N5P6Q{i:06}"),
            received_ms: one.received_ms(),
            route: one.route().clone(),
            payload: one.record().to_vec(),
        })
        .collect()
}

/// The store's per-batch work before its writes: the check, then every line.
fn file_lines(records: &[file::Record<'_>], buf: &mut Vec<u8>) {
    file::check_batch(records).unwrap();
    for r in records {
        file::push_line(buf, r.payload);
    }
}

fn encode(c: &mut Criterion) {
    let records = batch();
    let payload: usize = records.iter().map(|r| r.payload.len()).sum();
    eprintln!(
        "encode: {N} records, {} payload bytes each; clickhouse body {} B -> gzip {} B, http body {} B -> gzip {} B",
        payload / N,
        clickhouse::rows(&records).unwrap().len(),
        gzip(&clickhouse::rows(&records).unwrap()).len(),
        http::ndjson(&records).len(),
        gzip(&http::ndjson(&records)).len(),
    );
    let mut g = c.benchmark_group("encode_1000");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("clickhouse/rows", |b| {
        b.iter(|| clickhouse::rows(black_box(&records)).unwrap())
    });
    g.bench_function("clickhouse/rows_gzip", |b| {
        b.iter(|| gzip(&clickhouse::rows(black_box(&records)).unwrap()))
    });
    g.bench_function("http/ndjson", |b| {
        b.iter(|| http::ndjson(black_box(&records)))
    });
    g.bench_function("http/ndjson_gzip", |b| {
        b.iter(|| gzip(&http::ndjson(black_box(&records))))
    });
    let mut buf = Vec::with_capacity(payload + N);
    g.bench_function("file/lines", |b| {
        let borrowed = file::records(&records);
        b.iter(|| {
            buf.clear();
            file_lines(black_box(&borrowed), &mut buf);
            buf.len()
        })
    });
    g.bench_function("file/copy_and_lines", |b| {
        b.iter(|| {
            buf.clear();
            let owned = black_box(&records).to_vec();
            file_lines(&file::records(&owned), &mut buf);
            buf.len()
        })
    });
    g.bench_function("nats/messages", |b| {
        b.iter(|| {
            let records = black_box(&records);
            nats::encode::check_batch(records).unwrap();
            for r in records {
                black_box(nats::encode::message("tollgate.events", r));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
