//! PII detectors on free text ([`tollgate::event::minimize::detect::redact`]): the clean paths a product name
//! and a description take, a string with findings, and a 64 KiB input built against naive scanners.
//!
//!     cargo bench --bench detect

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::event::minimize::detect::{redact, Detectors, Hits};

/// About 2 KiB of product copy with sizes, prices and a date in it, but no personal data: every scanner runs.
fn paragraph() -> String {
    let sentence = "The Trail Runner 2 jacket weighs 320 g, packs into its own pocket and comes in sizes \
                    36 to 48. Seams are taped, the hood fits over a helmet, and at 129.90 EUR it is 20% off \
                    until 2024-11-25. ";
    sentence.repeat(2048 / sentence.len() + 1)
}

fn detect(c: &mut Criterion) {
    let detectors = Detectors::all();
    let paragraph = paragraph();
    let pathological = "1 ".repeat(32 * 1024);
    let inputs = [
        ("clean_short", "T-shirt Pro"),
        ("clean_paragraph_2k", paragraph.as_str()),
        (
            "email_and_phone",
            "Please call Ann on +31 6 1234 5678 or mail ann.lee@example.com before Friday.",
        ),
        ("pathological_64k", pathological.as_str()),
    ];
    let mut g = c.benchmark_group("redact");
    for (name, text) in inputs {
        if text.len() > 4096 {
            // About 1 ms an iteration: fewer samples keep the default 5 s measurement window.
            g.sample_size(50);
        }
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut hits = Hits::default();
                redact(black_box(text), &detectors, &mut hits).len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, detect);
criterion_main!(benches);
