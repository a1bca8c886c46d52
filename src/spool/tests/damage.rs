//! Damage: what a flipped byte, a bad length, a zeroed block, a torn tail or a broken header costs, as seen
//! by `verify`, recovery and `read_all`; the property "damage costs at most the damaged record"; keys that
//! do not fit the segments.

use std::fs;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};

use super::*;

/// A config whose segments hold `per_segment` test events each.
fn small(dir: &Path, per_segment: u64) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: per_segment * frame(),
        ..config(dir)
    }
}

/// Writes `events`, one append each, into segments of `per_segment` records, and closes the spool.
async fn write_spool(dir: &Path, events: &[MinimizedEvent], per_segment: u64) {
    let (spool, writer, _, _) = open(small(dir, per_segment));
    append_each(&spool, events).await;
    close(writer).await;
}

/// Opens (recovering) and closes the spool; what recovery found and the corrupt-records metric.
async fn reopen(dir: &Path) -> (Recovery, u64) {
    let (_, writer, recovery, metrics) = open(config(dir));
    close(writer).await;
    (recovery, metrics.corrupt_records.get())
}

/// Segment path and frame start of record `k` of a spool written by [`write_spool`].
fn locate(dir: &Path, k: u64, per_segment: u64) -> (PathBuf, u64) {
    let path = segment_paths(dir)[(k / per_segment) as usize].clone();
    (path, DATA_START + (k % per_segment) * frame())
}

/// Rewrites the bytes of `path` from `at` on with `f`.
fn patch(path: &Path, at: u64, f: impl FnOnce(&mut [u8])) {
    let mut data = fs::read(path).unwrap();
    f(&mut data[at as usize..]);
    fs::write(path, data).unwrap();
}

/// Names of the files in `<dir>/quarantine`, sorted (none if it does not exist).
fn quarantined(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join("quarantine")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn quarantine_name(seg_no: u64, start: u64) -> String {
    format!("seg-{seg_no:020}-at-{start}.bin")
}

/// The payloads of `events` but those at the indices in `lost`.
fn without(events: &[MinimizedEvent], lost: &[usize]) -> Vec<Vec<u8>> {
    let kept: Vec<_> = (0..events.len())
        .filter(|i| !lost.contains(i))
        .map(|i| events[i].clone())
        .collect();
    records(&kept)
}

/// Asserts that segment `idx` of `dir` has exactly one damaged region, `start..end` costing one record, and
/// that every other segment is clean.
fn assert_one_damage(dir: &Path, idx: usize, start: u64, end: u64) {
    let report = verify(dir, Some(&keys())).unwrap();
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    for (i, s) in report.segments.iter().enumerate() {
        let want = if i == idx {
            vec![Damage {
                start,
                end,
                lost: 1,
                kind: DamageKind::Frame,
            }]
        } else {
            vec![]
        };
        assert_eq!(s.damage, want, "segment {}", s.seg_no);
        assert_eq!(s.torn_tail, None, "segment {}", s.seg_no);
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_segment_costs_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let events = evs(0..9);
    write_spool(dir.path(), &events, 3).await;
    assert_eq!(segment_paths(dir.path()).len(), 3);
    let (seg, start) = locate(dir.path(), 4, 3); // the middle record of segment 2
    let pristine = fs::read(&seg).unwrap();
    patch(&seg, start + 40, |b| b[0] ^= 0x10);
    let damaged = fs::read(&seg).unwrap();
    let diff = pristine
        .iter()
        .zip(&damaged)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(diff, 1);
    assert_one_damage(dir.path(), 1, start, start + frame());

    let (recovery, metric) = reopen(dir.path()).await;
    assert_eq!(recovery.corrupt_records, 1);
    assert_eq!(metric, 1);
    assert_eq!((recovery.torn_tails, recovery.truncated_bytes), (0, 0));
    assert_eq!(recovery.records, 8);
    assert_eq!(stored(dir.path()), without(&events, &[4]));
    assert_eq!(quarantined(dir.path()), [quarantine_name(2, start)]);
    let q = fs::read(
        dir.path()
            .join("quarantine")
            .join(quarantine_name(2, start)),
    )
    .unwrap();
    assert_eq!(q, &damaged[start as usize..(start + frame()) as usize]);
    assert_eq!(
        fs::read(&seg).unwrap(),
        damaged,
        "a sealed segment is never rewritten"
    );
    // verify is read-only and recovery did not heal anything: the damage is still there.
    assert_one_damage(dir.path(), 1, start, start + frame());
}

#[tokio::test]
async fn a_damaged_length_costs_that_record_only() {
    let f = frame() as u32;
    // (record, new length): records 4 and 5 are the middle and the last record of sealed segment 2.
    let cases = [
        (4, u32::MAX),
        (4, 1 << 20), // plausible, but past the end of the segment
        (4, 5),
        (4, 0),
        (4, f - 20 + 1),
        (5, u32::MAX),
        (5, 5),
        (5, 1 << 20),
        (5, f - 20 + 1),
    ];
    for (k, len) in cases {
        let dir = tempfile::tempdir().unwrap();
        let events = evs(0..9);
        write_spool(dir.path(), &events, 3).await;
        let (seg, start) = locate(dir.path(), k, 3);
        patch(&seg, start + 4, |b| {
            b[..4].copy_from_slice(&len.to_le_bytes())
        });
        let damaged = fs::read(&seg).unwrap();
        assert!(
            !verify(dir.path(), Some(&keys())).unwrap().is_clean(),
            "record {k}, len {len}"
        );

        let (recovery, metric) = reopen(dir.path()).await;
        let case = format!("record {k}, length {len}: {recovery:?}");
        assert_eq!(
            stored(dir.path()),
            without(&events, &[k as usize]),
            "{case}"
        );
        assert_eq!((recovery.corrupt_records, metric), (1, 1), "{case}");
        assert_eq!(
            recovery.torn_tails, 0,
            "{case}: a sealed segment has no torn tail"
        );
        assert_eq!(
            quarantined(dir.path()),
            [quarantine_name(2, start)],
            "{case}"
        );
        assert_eq!(fs::read(&seg).unwrap(), damaged, "{case}");
    }
}

#[tokio::test]
async fn a_zeroed_block_costs_only_the_records_it_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let events = evs(0..100);
    write_spool(dir.path(), &events, 1000).await;
    let seg = segment_paths(dir.path())[0].clone();
    let f = frame();
    let block_start = DATA_START + 20 * f + 37;
    let block_end = block_start + 4096;
    assert!(block_end < DATA_START + 99 * f);
    let pristine = fs::read(&seg).unwrap();
    patch(&seg, block_start, |b| b[..4096].fill(0));
    let damaged = fs::read(&seg).unwrap();

    let overlapping: Vec<usize> = (0..100)
        .filter(|&k| {
            let start = DATA_START + k as u64 * f;
            start < block_end && block_start < start + f
        })
        .collect();
    let changed: Vec<usize> = (0..100)
        .filter(|&k| {
            let r =
                (DATA_START + k as u64 * f) as usize..(DATA_START + (k as u64 + 1) * f) as usize;
            pristine[r.clone()] != damaged[r]
        })
        .collect();
    assert_eq!(changed, overlapping);

    for restart in 0..2 {
        let (recovery, metric) = reopen(dir.path()).await;
        assert_eq!(
            recovery.corrupt_records,
            overlapping.len() as u64,
            "restart {restart}"
        );
        assert_eq!(metric, overlapping.len() as u64);
        assert_eq!(recovery.torn_tails, 0);
        assert_eq!(
            stored(dir.path()),
            without(&events, &overlapping),
            "restart {restart}"
        );
        let first = DATA_START + overlapping[0] as u64 * f;
        assert_eq!(quarantined(dir.path()), [quarantine_name(1, first)]);
        assert_eq!(
            fs::read(&seg).unwrap(),
            damaged,
            "damage in the middle is never cut"
        );
    }
}

#[tokio::test]
async fn a_torn_tail_of_the_last_segment_is_cut_at_its_frame() {
    let dir = tempfile::tempdir().unwrap();
    let events = evs(0..5);
    write_spool(dir.path(), &events, 1000).await;
    let seg = segment_paths(dir.path())[0].clone();
    let last = DATA_START + 4 * frame();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(last + 10)
        .unwrap();

    let (spool, writer, recovery, metrics) = open(config(dir.path()));
    assert_eq!(
        recovery,
        Recovery {
            segments: 1,
            records: 4,
            torn_tails: 1,
            truncated_bytes: 10,
            corrupt_records: 0
        }
    );
    assert_eq!(
        (metrics.torn_tails.get(), metrics.corrupt_records.get()),
        (1, 0)
    );
    assert_eq!(file_len(&seg), last);
    assert_eq!(
        quarantined(dir.path()),
        Vec::<String>::new(),
        "a torn tail is not damage"
    );
    let more = evs(10..12);
    append_each(&spool, &more).await;
    close(writer).await;
    let mut expected = records(&events[..4]);
    expected.extend(records(&more));
    assert_eq!(stored(dir.path()), expected);
    assert!(verify(dir.path(), Some(&keys())).unwrap().is_clean());
}

#[tokio::test]
async fn damaged_headers_cost_the_segment_only_when_both_copies_are_hit() {
    for copies in [&[0][..], &[1], &[0, 1]] {
        let dir = tempfile::tempdir().unwrap();
        let events = evs(0..9);
        write_spool(dir.path(), &events, 3).await;
        let seg = segment_paths(dir.path())[1].clone();
        for &c in copies {
            patch(&seg, c * 128 + 40, |b| b[0] ^= 0x01);
        }
        let (recovery, metric) = reopen(dir.path()).await;
        if copies.len() == 1 {
            assert_eq!(
                (recovery.corrupt_records, metric),
                (0, 0),
                "copy {copies:?}"
            );
            assert_eq!(stored(dir.path()), records(&events));
            assert!(quarantined(dir.path()).is_empty());
            assert!(seg.exists());
        } else {
            assert!(recovery.corrupt_records >= 1 && metric == recovery.corrupt_records);
            assert_eq!(stored(dir.path()), without(&events, &[3, 4, 5]));
            assert_eq!(
                quarantined(dir.path()),
                [format!("seg-{:020}-whole.bin", 2)]
            );
            assert!(!seg.exists());
        }
        assert!(
            verify(dir.path(), Some(&keys())).unwrap().is_clean(),
            "copy {copies:?}"
        );
    }
}

/// A closed spool whose files single-corruption cases start from.
struct Pristine {
    dir: tempfile::TempDir,
    events: Vec<MinimizedEvent>,
    per_segment: u64,
    /// (segment number, file name, length) in order.
    segments: Vec<(u64, String, u64)>,
}

impl Pristine {
    async fn new(n: usize, per_segment: u64) -> Pristine {
        let dir = tempfile::tempdir().unwrap();
        let events = evs(0..n);
        write_spool(dir.path(), &events, per_segment).await;
        let segments = segment_paths(dir.path())
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    i as u64 + 1,
                    p.file_name().unwrap().to_str().unwrap().into(),
                    file_len(p),
                )
            })
            .collect();
        Pristine {
            dir,
            events,
            per_segment,
            segments,
        }
    }

    fn total(&self) -> u64 {
        self.segments.iter().map(|s| s.2).sum()
    }

    /// Segment index and offset of byte `at` of all segments laid end to end.
    fn split(&self, mut at: u64) -> (usize, u64) {
        for (i, s) in self.segments.iter().enumerate() {
            if at < s.2 {
                return (i, at);
            }
            at -= s.2;
        }
        panic!("offset past the spool");
    }

    /// XORs byte `at` of segment `idx` with `x` in a copy of the spool, recovers it, and checks that exactly
    /// the record whose bytes changed is lost (none for a header byte), and that the loss is accounted for.
    fn check(
        &self,
        rt: &tokio::runtime::Runtime,
        idx: usize,
        at: u64,
        x: u8,
    ) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        for (_, name, _) in &self.segments {
            fs::copy(self.dir.path().join(name), dir.path().join(name)).unwrap();
        }
        let (seg_no, name, _) = &self.segments[idx];
        let path = dir.path().join(name);
        patch(&path, at, |b| b[0] ^= x);
        let damaged = fs::read(&path).unwrap();
        let clean_before = verify(dir.path(), Some(&keys())).unwrap().is_clean();
        let (recovery, metric) = rt.block_on(reopen(dir.path()));
        let case = format!("segment {seg_no} byte {at} ^ {x:#04x}: {recovery:?}");
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("{case}: {what}"))
            }
        };
        check(
            metric == recovery.corrupt_records,
            "metric differs from report",
        )?;
        if at < DATA_START {
            check(clean_before, "verify reports a single header copy")?;
            check(
                stored(dir.path()) == records(&self.events),
                "a header byte cost records",
            )?;
            check(
                recovery.corrupt_records + recovery.torn_tails == 0,
                "header damage counted",
            )?;
            return check(
                quarantined(dir.path()).is_empty(),
                "header damage quarantined",
            );
        }
        let k = idx as u64 * self.per_segment + (at - DATA_START) / frame();
        let start = DATA_START + (at - DATA_START) / frame() * frame();
        check(!clean_before, "verify missed the damage")?;
        check(
            stored(dir.path()) == without(&self.events, &[k as usize]),
            "not exactly the touched record lost",
        )?;
        let is_last = idx + 1 == self.segments.len();
        match (recovery.corrupt_records, recovery.torn_tails) {
            (1, 0) => {
                check(
                    quarantined(dir.path()) == [quarantine_name(*seg_no, start)],
                    "no quarantine copy",
                )?;
                check(
                    fs::read(&path).unwrap() == damaged || is_last,
                    "sealed segment rewritten",
                )
            }
            (0, 1) if is_last => {
                check(quarantined(dir.path()).is_empty(), "torn tail quarantined")?;
                check(file_len(&path) == start, "torn tail not cut at its frame")
            }
            _ => check(
                false,
                "the lost record is not counted as corrupt (or torn, in the last segment)",
            ),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_single_byte_corruption_of_a_small_spool_costs_at_most_its_record() {
    let rt = runtime();
    let p = rt.block_on(Pristine::new(6, 3));
    assert_eq!(p.segments.len(), 2);
    let mut failures = Vec::new();
    for at in 0..p.total() {
        let (idx, off) = p.split(at);
        if let Err(e) = p.check(&rt, idx, off, 1 << (at % 8)) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        p.total(),
        failures.join("\n")
    );
}

#[test]
fn any_single_byte_corruption_costs_at_most_its_record() {
    let rt = runtime();
    let p = rt.block_on(Pristine::new(40, 6));
    let total = p.total();
    let frames = p.events.len() as u64;
    // Anywhere, or (as often) in a frame header, where a bad byte changes how the rest is parsed.
    let cfg = PropConfig {
        cases: 64,
        failure_persistence: None,
        ..PropConfig::default()
    };
    let mut runner = TestRunner::new(cfg);
    let cases = (any::<bool>(), 0..total, 0..frames, 0..20u64, 1..=255u8);
    let result = runner.run(&cases, |(in_header, at, k, b, x)| {
        let (idx, off) = if in_header {
            (
                (k / p.per_segment) as usize,
                DATA_START + (k % p.per_segment) * frame() + b,
            )
        } else {
            p.split(at)
        };
        p.check(&rt, idx, off, x).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test]
async fn segments_under_a_missing_or_wrong_key_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let events = evs(0..4);
    write_spool(dir.path(), &events, 1000).await;
    let seg = segment_paths(dir.path())[0].clone();

    let err = try_open(config(dir.path()), Some(key_ring(&[("s2", 2)], "s2"))).unwrap_err();
    let msg = err.to_string();
    match &err {
        SpoolError::UnknownKey { key_id, segment } => {
            assert_eq!((key_id.as_str(), segment), ("s1", &seg))
        }
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    assert!(
        msg.contains("\"s1\"") && msg.contains(&seg.display().to_string()),
        "{msg}"
    );

    let err = try_open(config(dir.path()), Some(key_ring(&[("s1", 9)], "s1"))).unwrap_err();
    let msg = err.to_string();
    match &err {
        SpoolError::WrongKey { key_id, segment } => {
            assert_eq!((key_id.as_str(), segment), ("s1", &seg))
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert!(
        msg.contains("\"s1\"") && msg.contains(&seg.display().to_string()),
        "{msg}"
    );

    // Refusing changed nothing: the right key still opens everything.
    assert_eq!(segment_paths(dir.path()), [seg]);
    let (recovery, _) = reopen(dir.path()).await;
    assert_eq!((recovery.records, recovery.corrupt_records), (4, 0));
    assert_eq!(stored(dir.path()), records(&events));
}
