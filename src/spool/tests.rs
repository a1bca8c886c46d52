use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::Poll;

use super::segment::list_segments;
use super::*;

fn ev(i: usize) -> MinimizedEvent {
    MinimizedEvent::for_test("example.org", &format!("e{i:04}"))
}

fn evs(range: std::ops::Range<usize>) -> Vec<MinimizedEvent> {
    range.map(ev).collect()
}

fn records(events: &[MinimizedEvent]) -> Vec<Vec<u8>> {
    events.iter().map(MinimizedEvent::to_record).collect()
}

/// Bytes of one framed test event (all test events have the same size).
fn frame() -> u64 {
    (segment::HEADER_LEN + ev(0).to_record().len()) as u64
}

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        commit_window: Duration::from_millis(1),
        ..SpoolConfig::new(dir)
    }
}

fn open(cfg: SpoolConfig) -> (Spool, SpoolWriter, Recovery, Arc<SpoolMetrics>) {
    let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
    let (spool, writer, recovery) = Spool::open(cfg, metrics.clone()).unwrap();
    (spool, writer, recovery, metrics)
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Polls `fut` once (so an append gets queued) and reports whether it finished.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx).is_ready())).await
}

/// Appends each slice as one call, in order.
async fn append_each(spool: &Spool, events: &[MinimizedEvent]) {
    for e in events {
        spool.append(std::slice::from_ref(e)).await.unwrap();
    }
}

#[tokio::test]
async fn append_then_read_all_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, recovery, metrics) = open(config(dir.path()));
    assert_eq!(
        recovery,
        Recovery {
            segments: 0,
            records: 0,
            torn_tails: 0,
            truncated_bytes: 0
        }
    );
    let events = evs(0..5);
    spool.append(&events[..3]).await.unwrap();
    spool.append(&events[3..]).await.unwrap();
    spool.append(&[]).await.unwrap();
    assert_eq!(read_all(dir.path()).unwrap(), records(&events));
    assert_eq!(metrics.records.get(), 5);
    assert_eq!(metrics.bytes.get(), (5 * frame()) as i64);
    writer.close().await.unwrap();
    assert_eq!(segment_paths(dir.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        commit_window: Duration::from_millis(50),
        queue_depth: 64,
        ..config(dir.path())
    };
    let (spool, writer, _, metrics) = open(cfg);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(&[ev(i)]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(metrics.records.get(), 200);
    let commits = metrics.commits.get();
    assert!(
        (1..200).contains(&commits),
        "{commits} commits for 200 appends"
    );
    writer.close().await.unwrap();
    let stored: BTreeSet<_> = read_all(dir.path()).unwrap().into_iter().collect();
    let expected: BTreeSet<_> = records(&evs(0..200)).into_iter().collect();
    assert_eq!(stored, expected);
    assert_eq!(read_all(dir.path()).unwrap().len(), 200, "no duplicates");
}

#[tokio::test]
async fn batches_are_capped_by_max_batch_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let f = frame() as usize;
    // A long window: batches must end because they are full, not because time passed.
    let cfg = SpoolConfig {
        commit_window: Duration::from_secs(600),
        max_batch_bytes: 2 * f + f / 2,
        ..config(dir.path())
    };
    let (spool, writer, _, metrics) = open(cfg);
    let events = evs(0..7);
    let mut appends: Vec<_> = events[..4]
        .iter()
        .map(|e| Box::pin(spool.append(std::slice::from_ref(e))))
        .collect();
    appends.push(Box::pin(spool.append(&events[4..])));
    for append in &mut appends {
        assert!(!poll_once(append).await, "resolved before its commit");
    }
    let all = async {
        for append in appends {
            append.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("full batches commit without the window");
    // [0, 1] (2 would overflow), [2, 3], [4, 5, 6] (alone: at the cap).
    assert_eq!(metrics.commits.get(), 3);
    assert_eq!(read_all(dir.path()).unwrap(), records(&events));
    writer.close().await.unwrap();
}

#[tokio::test]
async fn rotation_spreads_records_over_segments_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 2 * frame() + frame() / 2;
    let (spool, writer, _, _) = open(SpoolConfig {
        segment_bytes,
        ..config(dir.path())
    });
    let events = evs(0..11);
    append_each(&spool, &events[..7]).await;
    spool.append(&events[7..10]).await.unwrap(); // larger than a segment: one of its own
    append_each(&spool, &events[10..]).await;
    writer.close().await.unwrap();

    let paths = segment_paths(dir.path());
    let lens: Vec<u64> = paths.iter().map(|p| file_len(p)).collect();
    let f = frame();
    assert_eq!(lens, [2 * f, 2 * f, 2 * f, f, 3 * f, f]);
    assert_eq!(read_all(dir.path()).unwrap(), records(&events));

    let (_, writer, recovery, metrics) = open(SpoolConfig {
        segment_bytes,
        ..config(dir.path())
    });
    assert_eq!(
        recovery,
        Recovery {
            segments: 6,
            records: 11,
            torn_tails: 0,
            truncated_bytes: 0
        }
    );
    assert_eq!(metrics.bytes.get(), (11 * f) as i64);
    writer.close().await.unwrap();
}

#[tokio::test]
async fn full_spool_refuses_the_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, metrics) = open(SpoolConfig {
        max_bytes: 3 * frame(),
        ..config(dir.path())
    });
    let events = evs(0..6);
    spool.append(&events[..2]).await.unwrap();
    assert!(matches!(
        spool.append(&events[2..4]).await,
        Err(SpoolError::Full)
    ));
    assert_eq!(
        read_all(dir.path()).unwrap(),
        records(&events[..2]),
        "nothing of the refused append"
    );
    assert_eq!(metrics.full.get(), 1);

    spool.append(&events[4..5]).await.unwrap(); // fits exactly
    assert!(matches!(
        spool.append(&events[5..]).await,
        Err(SpoolError::Full)
    ));
    writer.close().await.unwrap();
    assert_eq!(
        read_all(dir.path()).unwrap(),
        records(&[ev(0), ev(1), ev(4)])
    );
    assert_eq!(metrics.full.get(), 2);
    assert_eq!(metrics.bytes.get(), (3 * frame()) as i64);

    // The limit counts what is already on disk after a restart.
    let (spool, writer, _, _) = open(SpoolConfig {
        max_bytes: 3 * frame(),
        ..config(dir.path())
    });
    assert!(matches!(
        spool.append(&[ev(9)]).await,
        Err(SpoolError::Full)
    ));
    writer.close().await.unwrap();
}

#[tokio::test]
async fn recovery_truncates_a_torn_tail_and_appends_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(config(dir.path()));
    let events = evs(0..6);
    append_each(&spool, &events[..5]).await;
    writer.close().await.unwrap();

    let last = segment_paths(dir.path()).pop().unwrap();
    let len = file_len(&last);
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let (spool, writer, recovery, metrics) = open(config(dir.path()));
    let torn = Recovery {
        segments: 1,
        records: 4,
        torn_tails: 1,
        truncated_bytes: frame() - 3,
    };
    assert_eq!(recovery, torn);
    assert_eq!(
        (metrics.torn_tails.get(), metrics.recovered_records.get()),
        (1, 4)
    );
    assert_eq!(metrics.truncated_bytes.get(), frame() - 3);
    assert_eq!(file_len(&last), 4 * frame());
    assert_eq!(read_all(dir.path()).unwrap(), records(&events[..4]));

    spool.append(&events[5..]).await.unwrap();
    writer.close().await.unwrap();
    let expected = records(&[ev(0), ev(1), ev(2), ev(3), ev(5)]);
    assert_eq!(read_all(dir.path()).unwrap(), expected);

    let (_, writer, recovery, _) = open(config(dir.path()));
    assert_eq!(
        recovery,
        Recovery {
            segments: 1,
            records: 5,
            torn_tails: 0,
            truncated_bytes: 0
        }
    );
    writer.close().await.unwrap();
}

/// Flips one byte at `offset` of `path`.
fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], offset).unwrap();
}

#[tokio::test]
async fn recovery_catches_a_flipped_payload_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(config(dir.path()));
    let events = evs(0..3);
    append_each(&spool, &events).await;
    writer.close().await.unwrap();

    let last = segment_paths(dir.path()).pop().unwrap();
    flip_byte(&last, file_len(&last) - 5);
    assert_eq!(
        read_all(dir.path()).unwrap(),
        records(&events[..2]),
        "read_all stops at the bad CRC"
    );

    let (_, writer, recovery, _) = open(config(dir.path()));
    assert_eq!(
        recovery,
        Recovery {
            segments: 1,
            records: 2,
            torn_tails: 1,
            truncated_bytes: frame()
        }
    );
    assert_eq!(file_len(&last), 2 * frame());
    writer.close().await.unwrap();
}

#[tokio::test]
async fn torn_tail_in_an_earlier_segment_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 2 * frame(),
        ..config(dir.path())
    };
    let (spool, writer, _, _) = open(cfg.clone());
    let events = evs(0..4);
    append_each(&spool, &events).await;
    writer.close().await.unwrap();

    let first = segment_paths(dir.path()).remove(0);
    flip_byte(&first, 2 * frame() - 5);
    let (_, writer, recovery, _) = open(cfg);
    assert_eq!(
        recovery,
        Recovery {
            segments: 2,
            records: 3,
            torn_tails: 1,
            truncated_bytes: frame()
        }
    );
    writer.close().await.unwrap();
    assert_eq!(
        read_all(dir.path()).unwrap(),
        records(&[ev(0), ev(2), ev(3)])
    );
}

#[tokio::test]
async fn close_commits_queued_appends_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // Without close cutting it short, this window would hold the batch for 10 minutes.
    let cfg = SpoolConfig {
        commit_window: Duration::from_secs(600),
        ..config(dir.path())
    };
    let (spool, writer, _, metrics) = open(cfg);
    let events = evs(0..20);
    let mut appends: Vec<_> = events
        .iter()
        .map(|e| Box::pin(spool.append(std::slice::from_ref(e))))
        .collect();
    for append in &mut appends {
        assert!(!poll_once(append).await, "resolved before its commit");
    }
    tokio::time::timeout(Duration::from_secs(30), writer.close())
        .await
        .expect("close does not wait out the window")
        .unwrap();
    for append in appends {
        append.await.unwrap();
    }
    assert_eq!(metrics.commits.get(), 1);
    assert_eq!(read_all(dir.path()).unwrap(), records(&events));
    assert!(matches!(
        spool.append(&[ev(99)]).await,
        Err(SpoolError::Closed)
    ));
    assert!(matches!(spool.append(&[]).await, Err(SpoolError::Closed)));
}

#[tokio::test]
async fn zero_queue_depth_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
    let cfg = SpoolConfig {
        queue_depth: 0,
        ..config(dir.path())
    };
    assert!(matches!(
        Spool::open(cfg, metrics),
        Err(SpoolError::InvalidConfig(_))
    ));
}
