//! Space: segments are deleted once every consumer passed them (never without consumers, never the active
//! one), `max_bytes` holds and frees up again after a commit, and `max_age` expires loudly and counted.

use super::*;

const BIG: usize = 1 << 20;
const HOUR_MS: i64 = 3_600_000;

fn with_consumers(dir: &Path, names: &[&str]) -> SpoolConfig {
    SpoolConfig {
        consumers: names.iter().map(|n| (*n).to_owned()).collect(),
        segment_bytes: 2 * frame(),
        ..config(dir)
    }
}

/// A test event received an hour before the test clock's now (the same size as `ev(i)`).
fn old_ev(i: usize) -> MinimizedEvent {
    let e = ev(i);
    MinimizedEvent::for_spool_tests(e.site(), e.event_id(), NOW_MS - HOUR_MS, e.to_record())
}

fn seg_numbers(dir: &Path) -> Vec<u64> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Bytes of the segment files (one deleted while this runs counts 0).
fn disk_bytes(dir: &Path) -> u64 {
    let len = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    segment_paths(dir).iter().map(len).sum()
}

/// Whether the writer is done with a maintenance pass that left segments `segs`: it publishes the bytes
/// gauge after deleting (and counting) them.
fn settled_at(d: &Path, metrics: &SpoolMetrics, segs: &[u64]) -> bool {
    seg_numbers(d) == segs && metrics.bytes.get() == disk_bytes(d) as i64
}

fn ids(records: &[StoredRecord]) -> Vec<String> {
    records.iter().map(|r| r.event_id.clone()).collect()
}

fn ev_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("e{i:04}")).collect()
}

/// Reclaim and expiry run on the writer thread: waits (at most 10 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Gives the writer time to (wrongly) delete something, for checks that nothing changed.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Reads `n` records, committing every batch.
async fn read_commit(reader: &mut Reader, n: usize) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            reader.next_batch(n - out.len(), BIG),
        );
        let batch = batch.await.expect("a batch within 10 s").unwrap();
        reader.commit(&batch).unwrap();
        out.extend(batch.records);
    }
    out
}

#[tokio::test]
async fn a_segment_goes_once_every_consumer_passed_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (spool, writer, _, metrics) = open(with_consumers(d, &["a", "b"]));
    append_each(&spool, &evs(0..10)).await;
    assert_eq!(seg_numbers(d), [1, 2, 3, 4, 5], "two records a segment");
    let (mut a, mut b) = (spool.reader("a").unwrap(), spool.reader("b").unwrap());

    assert_eq!(ids(&read_commit(&mut a, 10).await), ev_ids(0..10));
    settle().await;
    assert_eq!(seg_numbers(d), [1, 2, 3, 4, 5], "b has read nothing");
    assert_eq!(metrics.segments_deleted.get(), 0);

    // b's cursor in the middle of segment 2: only segment 1 is behind it.
    read_commit(&mut b, 3).await;
    eventually("segment 1 deleted", || {
        settled_at(d, &metrics, &[2, 3, 4, 5])
    })
    .await;
    settle().await;
    assert_eq!(
        seg_numbers(d),
        [2, 3, 4, 5],
        "segment 2 is not entirely read"
    );

    // At the very end of segment 2: it is passed.
    read_commit(&mut b, 1).await;
    eventually("segment 2 deleted", || settled_at(d, &metrics, &[3, 4, 5])).await;

    // Everything read by both: every sealed segment goes, the active one stays.
    assert_eq!(ids(&read_commit(&mut b, 6).await), ev_ids(4..10));
    eventually("segments 3 and 4 deleted", || settled_at(d, &metrics, &[5])).await;
    assert_eq!(metrics.segments_deleted.get(), 4);
    assert_eq!(metrics.segments.get(), 1);
    assert_eq!(metrics.bytes.get(), (DATA_START + 2 * frame()) as i64);

    // Both go on reading what comes next.
    spool.append(&[ev(10)]).await.unwrap();
    assert_eq!(ids(&read_commit(&mut a, 1).await), ["e0010"]);
    assert_eq!(ids(&read_commit(&mut b, 1).await), ["e0010"]);
    close(writer).await;
}

#[tokio::test]
async fn without_consumers_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = SpoolConfig {
        max_bytes: 3 * DATA_START + 6 * frame(),
        ..with_consumers(d, &[])
    };
    let (spool, writer, _, metrics) = open(cfg.clone());
    assert!(matches!(spool.reader("a"), Err(SpoolError::Consumer(..))));
    append_each(&spool, &evs(0..6)).await;
    // Full: the writer looked for something to reclaim, and found nothing.
    assert!(matches!(
        spool.append(&[ev(6)]).await,
        Err(SpoolError::Full)
    ));
    settle().await;
    assert_eq!(seg_numbers(d), [1, 2, 3]);
    assert_eq!(metrics.segments_deleted.get(), 0);
    close(writer).await;
    assert_eq!(stored(d), records(&evs(0..6)));

    let (_, writer, _, metrics) = open(cfg);
    settle().await;
    assert_eq!(
        seg_numbers(d),
        [1, 2, 3, 4],
        "the sealed ones and a new one"
    );
    assert_eq!(metrics.segments_deleted.get(), 0);
    close(writer).await;
}

#[tokio::test]
async fn a_full_spool_takes_appends_again_once_a_consumer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let max_bytes = 3 * DATA_START + 6 * frame();
    let (spool, writer, _, metrics) = open(SpoolConfig {
        max_bytes,
        ..with_consumers(d, &["a"])
    });
    let mut appended = 0;
    loop {
        match spool.append(&[ev(appended)]).await {
            Ok(()) => appended += 1,
            Err(SpoolError::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(disk_bytes(d) <= max_bytes && metrics.bytes.get() <= max_bytes as i64);
        assert!(appended < 100, "never full");
    }
    assert_eq!(appended, 6, "three full segments");
    assert_eq!(metrics.full.get(), 1);

    let mut reader = spool.reader("a").unwrap();
    assert_eq!(ids(&read_commit(&mut reader, 6).await), ev_ids(0..6));
    spool.append(&[ev(6)]).await.unwrap();
    assert_eq!(metrics.full.get(), 1);
    assert!(disk_bytes(d) <= max_bytes);
    let segs = seg_numbers(d);
    assert!(!segs.contains(&1) && !segs.contains(&2), "{segs:?}");
    assert_eq!(ids(&read_commit(&mut reader, 1).await), ["e0006"]);
    eventually("segment 3 deleted", || settled_at(d, &metrics, &[4])).await;
    close(writer).await;
    assert_eq!(stored(d), records(&[ev(6)]));
}

/// Appends `events` and lets their one fsync through the gate.
async fn through_gate(spool: &Spool, gate: &SyncGate, events: &[MinimizedEvent]) {
    let mut append = Box::pin(spool.append(events));
    assert!(!poll_once(&mut append).await, "resolved before its fsync");
    gate.wait_held();
    gate.release();
    append.await.unwrap();
}

#[tokio::test]
async fn the_writer_reclaims_before_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = Arc::new(SyncGate::default());
    install_gate(gate.clone());
    let (spool, writer, _, metrics) = open(SpoolConfig {
        max_bytes: 3 * DATA_START + 6 * frame(),
        ..with_consumers(d, &["a"])
    });
    let events = evs(0..7);
    for e in &events[..5] {
        through_gate(&spool, &gate, std::slice::from_ref(e)).await;
    }
    // The consumer commits while the writer is busy with the last append that fits, and the append after
    // it is queued before the writer can hear of the commit: only the writer's own reclaim makes room.
    let mut last_fitting = Box::pin(spool.append(&events[5..6]));
    assert!(!poll_once(&mut last_fitting).await);
    gate.wait_held();
    let mut reader = spool.reader("a").unwrap();
    while let Some(batch) = reader.try_batch(10, BIG).unwrap() {
        reader.commit(&batch).unwrap();
    }
    let mut over = Box::pin(spool.append(&events[6..]));
    assert!(!poll_once(&mut over).await);
    gate.release();
    last_fitting.await.unwrap();
    gate.wait_held(); // times out if the append was refused (nothing to fsync)
    gate.release();
    over.await.unwrap();
    assert_eq!(metrics.full.get(), 0);
    assert_eq!(
        seg_numbers(d),
        [3, 4],
        "segments 1 and 2 reclaimed, 3 not entirely read"
    );
    close(writer).await;
}

#[tokio::test]
async fn max_bytes_counts_the_header_of_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Room for the records of three appends, but not for a second segment header.
    let max_bytes = 2 * DATA_START + 3 * frame() - 1;
    let (spool, writer, _, metrics) = open(SpoolConfig {
        max_bytes,
        ..with_consumers(d, &[])
    });
    for i in 0..4 {
        let result = spool.append(&[ev(i)]).await;
        assert!(
            matches!(result, Ok(()) | Err(SpoolError::Full)),
            "{result:?}"
        );
        let (disk, gauge) = (disk_bytes(d), metrics.bytes.get());
        assert!(
            disk <= max_bytes,
            "after append {i}: {disk} bytes on disk > max_bytes {max_bytes}"
        );
        assert!(
            gauge <= max_bytes as i64,
            "after append {i}: gauge {gauge} > {max_bytes}"
        );
    }
    close(writer).await;
}

#[tokio::test]
async fn max_age_expires_old_records_counted_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (spool, writer, _, metrics) = open(SpoolConfig {
        max_age: Some(Duration::from_millis(40)),
        ..with_consumers(d, &["a"])
    });
    // Three old records: one sealed segment and (until expiry seals it) the active one.
    let old: Vec<_> = (0..3).map(old_ev).collect();
    append_each(&spool, &old).await;
    eventually("3 records expired", || metrics.expired_records.get() == 3).await;
    eventually("only an empty active segment left", || {
        seg_numbers(d).len() == 1 && metrics.bytes.get() == DATA_START as i64
    })
    .await;
    assert!(metrics.segments_deleted.get() >= 2);

    // Recent records stay, sealed or not, however long the writer ticks.
    let recent = evs(3..8);
    append_each(&spool, &recent).await;
    settle().await;
    assert_eq!(seg_numbers(d).len(), 3, "two records a segment");
    assert_eq!(stored(d), records(&recent));
    let mut reader = spool.reader("a").unwrap();
    let delivered = read_commit(&mut reader, 5).await;
    assert_eq!(ids(&delivered), ev_ids(3..8));
    assert!(reader.try_batch(10, BIG).unwrap().is_none());
    // Nothing lost silently: every appended record was either delivered or counted as expired.
    assert_eq!(delivered.len() as u64 + metrics.expired_records.get(), 8);
    close(writer).await;
}

/// Old records 0..4 (segments 1 and 2), recent 4..6 (segment 3), written without `max_age`; consumer `a`
/// has read and committed the first `read` records. Returns the config to reopen with `max_age`.
async fn history_with_old_segments(d: &Path, read: usize) -> SpoolConfig {
    let cfg = with_consumers(d, &["a"]);
    let (spool, writer, _, _) = open(cfg.clone());
    let old: Vec<_> = (0..4).map(old_ev).collect();
    append_each(&spool, &old).await;
    append_each(&spool, &evs(4..6)).await;
    let mut reader = spool.reader("a").unwrap();
    assert_eq!(ids(&read_commit(&mut reader, read).await), ev_ids(0..read));
    drop(reader);
    close(writer).await;
    assert_eq!(seg_numbers(d), [1, 2, 3]);
    SpoolConfig {
        max_age: Some(Duration::from_millis(40)),
        ..cfg
    }
}

#[tokio::test]
async fn a_reader_whose_segment_expired_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = history_with_old_segments(d, 1).await;
    let (spool, writer, _, metrics) = open(cfg);
    // The cursor of `a` points into segment 1.
    eventually("segments 1 and 2 expired", || {
        settled_at(d, &metrics, &[3, 4])
    })
    .await;
    assert_eq!(metrics.segments_deleted.get(), 2);

    let mut reader = spool.reader("a").unwrap();
    assert_eq!(ids(&read_commit(&mut reader, 2).await), ev_ids(4..6));
    spool.append(&[ev(6)]).await.unwrap();
    assert_eq!(ids(&read_commit(&mut reader, 1).await), ["e0006"]);
    close(writer).await;
}

#[tokio::test]
async fn expiry_counts_only_the_records_a_consumer_had_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = history_with_old_segments(d, 1).await;
    let (spool, writer, _, metrics) = open(cfg);
    eventually("segments 1 and 2 expired", || {
        settled_at(d, &metrics, &[3, 4])
    })
    .await;
    let mut reader = spool.reader("a").unwrap();
    let delivered = 1 + read_commit(&mut reader, 2).await.len() as u64;
    // e0000 was delivered before expiry; e0001..e0003 were lost to it, and only they.
    assert_eq!(metrics.expired_records.get(), 3);
    assert_eq!(delivered + metrics.expired_records.get(), 6);
    close(writer).await;
}
