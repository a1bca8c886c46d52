//! Readers: only fsynced records are visible, waiting without polling, bounded batches, durable cursors
//! (at-least-once without a commit, exactly once with one per batch across restarts), one reader per name.

use super::*;

const BIG: usize = 1 << 20;

fn with_consumers(dir: &Path, names: &[&str]) -> SpoolConfig {
    SpoolConfig {
        consumers: names.iter().map(|n| (*n).to_owned()).collect(),
        ..config(dir)
    }
}

fn ids(records: &[StoredRecord]) -> Vec<String> {
    records.iter().map(|r| r.event_id.clone()).collect()
}

fn ev_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("e{i:04}")).collect()
}

/// The next batch, failing instead of hanging if none comes.
async fn next(reader: &mut Reader, max_records: usize, max_bytes: usize) -> Batch {
    let waiting = tokio::time::timeout(
        Duration::from_secs(10),
        reader.next_batch(max_records, max_bytes),
    );
    waiting.await.expect("a batch within 10 s").unwrap()
}

/// Reads (and, if `commit`, commits) batches of at most `per_batch` records until `n` records came.
async fn take(reader: &mut Reader, n: usize, per_batch: usize, commit: bool) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = next(reader, per_batch.min(n - out.len()), BIG).await;
        if commit {
            reader.commit(&batch).unwrap();
        }
        out.extend(batch.records);
    }
    out
}

#[tokio::test]
async fn a_reader_never_sees_a_record_before_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(SyncGate::default());
    install_gate(gate.clone());
    let (spool, writer, _, _) = open(with_consumers(dir.path(), &["a", "b"]));
    let mut a = spool.reader("a").unwrap();
    let seg = segment_paths(dir.path()).pop().unwrap();
    let events = evs(0..2);

    // A first record through the gate, read by `a`, so that `a` has the segment open already.
    let mut first = Box::pin(spool.append(&events[..1]));
    assert!(!poll_once(&mut first).await, "resolved before its fsync");
    gate.wait_held();
    gate.release();
    first.await.unwrap();
    assert_eq!(ids(&next(&mut a, 10, BIG).await.records), ["e0000"]);
    let synced_len = file_len(&seg);
    let synced = spool.committed();
    assert_eq!(synced.offset, synced_len);

    // The second one is written but held before its fsync.
    let mut second = Box::pin(spool.append(&events[1..]));
    assert!(!poll_once(&mut second).await, "resolved before its fsync");
    gate.wait_held();
    assert_eq!(
        file_len(&seg),
        synced_len + frame(),
        "the bytes are in the file"
    );
    assert_eq!(spool.committed(), synced, "but not published");
    assert!(
        a.try_batch(10, BIG).unwrap().is_none(),
        "a reader with the segment open"
    );
    let mut b = spool.reader("b").unwrap();
    let seen = b.try_batch(10, BIG).unwrap().expect("the synced record");
    assert_eq!(ids(&seen.records), ["e0000"]);
    assert!(
        b.try_batch(10, BIG).unwrap().is_none(),
        "a reader that just opened it"
    );

    gate.release();
    second.await.unwrap();
    assert_eq!(spool.committed().offset, file_len(&seg));
    assert_eq!(ids(&next(&mut a, 10, BIG).await.records), ["e0001"]);
    assert_eq!(ids(&next(&mut b, 10, BIG).await.records), ["e0001"]);
    close(writer).await;
}

#[tokio::test]
async fn next_batch_wakes_on_a_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        segment_bytes: frame(),
        ..with_consumers(dir.path(), &["a"])
    };
    let (spool, writer, _, _) = open(cfg);
    let mut reader = spool.reader("a").unwrap();
    let waiting = tokio::spawn(async move {
        let batch = reader.next_batch(10, BIG).await;
        (reader, batch)
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "nothing to read yet");

    spool.append(&[ev(0)]).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting);
    let (mut reader, batch) = woken.await.expect("woken by the commit").unwrap();
    assert_eq!(ids(&batch.unwrap().records), ["e0000"]);

    // Again, across a rotation to a new segment.
    let waiting = tokio::spawn(async move { reader.next_batch(10, BIG).await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "nothing new to read");
    spool.append(&evs(1..3)).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting);
    let batch = woken.await.expect("woken by the commit").unwrap().unwrap();
    assert_eq!(ids(&batch.records), ev_ids(1..3));
    close(writer).await;
}

#[tokio::test]
async fn next_batch_ends_with_closed_once_the_writer_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(with_consumers(dir.path(), &["a"]));
    let mut reader = spool.reader("a").unwrap();
    spool.append(&[ev(0)]).await.unwrap();
    drop(spool);
    close(writer).await;
    assert_eq!(ids(&next(&mut reader, 10, BIG).await.records), ["e0000"]);
    let ended = tokio::time::timeout(Duration::from_secs(5), reader.next_batch(10, BIG)).await;
    let ended = ended.expect("next_batch must not wait forever on a closed spool");
    assert!(matches!(ended, Err(SpoolError::Closed)), "{ended:?}");
}

#[tokio::test]
async fn batches_are_bounded_by_records_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(with_consumers(dir.path(), &["a"]));
    let mut reader = spool.reader("a").unwrap();
    spool.append(&evs(0..10)).await.unwrap();
    let payload = records(&[ev(0)])[0].len();

    assert_eq!(ids(&next(&mut reader, 3, BIG).await.records), ev_ids(0..3));
    // max_bytes counts payloads; a batch stops once it reached them.
    assert_eq!(
        ids(&next(&mut reader, 100, 2 * payload).await.records),
        ev_ids(3..5)
    );
    assert_eq!(
        ids(&next(&mut reader, 100, 2 * payload + 1).await.records),
        ev_ids(5..8)
    );
    // A record larger than max_bytes still comes, alone.
    assert_eq!(ids(&next(&mut reader, 100, 1).await.records), ev_ids(8..9));
    assert_eq!(
        ids(&next(&mut reader, 100, BIG).await.records),
        ev_ids(9..10)
    );
    assert!(reader.try_batch(100, BIG).unwrap().is_none());

    // A record larger than the reader's first read chunk (64 KiB) is read whole, after a small one.
    let big = MinimizedEvent::for_spool_tests("example.org", "big", NOW_MS, vec![b'x'; 200 << 10]);
    spool.append(&[ev(10), big]).await.unwrap();
    let batch = next(&mut reader, 100, BIG).await;
    assert_eq!(ids(&batch.records), ["e0010", "big"]);
    assert_eq!(batch.records[1].payload.len(), 200 << 10);
    close(writer).await;
}

#[tokio::test]
async fn zero_max_bytes_still_delivers_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(with_consumers(dir.path(), &["a"]));
    let mut reader = spool.reader("a").unwrap();
    spool.append(&evs(0..2)).await.unwrap();
    // try_batch does not wait: run it on a thread of its own, so that a spinning reader fails the test
    // instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(reader.try_batch(10, 0).map(|b| b.map(|b| ids(&b.records))));
    });
    let got = rx.recv_timeout(Duration::from_secs(5));
    let got = got.expect("try_batch(10, 0) returns").unwrap();
    assert_eq!(
        got,
        Some(ev_ids(0..1)),
        "at least one record, like max_records = 0"
    );
    close(writer).await;
}

#[tokio::test]
async fn cursors_resume_after_the_last_commit_and_redeliver_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 4 * frame(),
        ..with_consumers(dir.path(), &["a"])
    };
    let (spool, writer, _, _) = open(cfg.clone());
    append_each(&spool, &evs(0..10)).await;
    let mut reader = spool.reader("a").unwrap();
    let committed = next(&mut reader, 3, BIG).await;
    reader.commit(&committed).unwrap();
    let read = next(&mut reader, 3, BIG).await; // read, never committed
    assert_eq!(ids(&committed.records), ev_ids(0..3));
    assert_eq!(
        ids(&read.records),
        ev_ids(3..4),
        "the rest of the first segment"
    );
    let more = next(&mut reader, 3, BIG).await;
    assert_eq!(ids(&more.records), ev_ids(4..7));
    drop(reader);
    drop(spool);
    close(writer).await;

    let (spool, writer, _, _) = open(cfg);
    let mut reader = spool.reader("a").unwrap();
    let again = take(&mut reader, 6, 4, false).await;
    assert_eq!(
        ids(&again),
        ev_ids(3..9),
        "from right after the committed batch"
    );
    spool.append(&[ev(10)]).await.unwrap();
    let rest = take(&mut reader, 2, 10, false).await;
    assert_eq!(ids(&rest), ["e0009", "e0010"]);
    assert!(reader.try_batch(10, BIG).unwrap().is_none());
    close(writer).await;
}

#[tokio::test]
async fn committing_every_batch_delivers_exactly_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 2 * frame() + frame() / 2,
        ..with_consumers(dir.path(), &["a"])
    };
    let mut appended = Vec::new();
    let mut delivered = Vec::new();
    let mut next_id = 0;
    for cycle in 0..6 {
        let (spool, writer, _, _) = open(cfg.clone());
        let mut reader = spool.reader("a").unwrap();
        // Some appends one by one, some together (an append larger than a segment gets one of its own).
        let events = evs(next_id..next_id + 7);
        next_id += 7;
        append_each(&spool, &events[..4]).await;
        spool.append(&events[4..]).await.unwrap();
        appended.extend(ids_of(&events));
        // Read only part of what is there (all of it in the last cycle), committing each batch.
        let batches = if cycle == 5 {
            usize::MAX
        } else {
            2 + cycle % 2
        };
        for _ in 0..batches {
            let Some(batch) = reader.try_batch(3, BIG).unwrap() else {
                break;
            };
            reader.commit(&batch).unwrap();
            delivered.extend(ids(&batch.records));
        }
        drop(reader);
        drop(spool);
        close(writer).await;
    }
    assert_eq!(delivered, appended, "every record once, in order");
}

fn ids_of(events: &[MinimizedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id().to_owned()).collect()
}

#[tokio::test]
async fn one_reader_per_configured_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(with_consumers(dir.path(), &["a"]));
    let unknown = spool.reader("b").err();
    assert!(
        matches!(unknown, Some(SpoolError::Consumer(ref n, _)) if n == "b"),
        "{unknown:?}"
    );
    let first = spool.reader("a").unwrap();
    assert_eq!(first.name(), "a");
    let second = spool.clone().reader("a").err();
    assert!(
        matches!(second, Some(SpoolError::Consumer(ref n, _)) if n == "a"),
        "{second:?}"
    );
    drop(first);
    let again = spool.reader("a").unwrap();
    assert_eq!(again.name(), "a");
    close(writer).await;
}
