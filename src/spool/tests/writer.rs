//! The group-commit writer: durability of appends, batching, rotation, `Full`, close, the lock.

use std::collections::BTreeSet;
use std::future::Future;

use super::*;

#[tokio::test]
async fn append_then_read_all_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, recovery, metrics) = open(config(dir.path()));
    assert_eq!(
        recovery,
        Recovery {
            segments: 0,
            records: 0,
            ..Recovery::default()
        }
    );
    let events = evs(0..5);
    spool.append(&events[..3]).await.unwrap();
    spool.append(&events[3..]).await.unwrap();
    spool.append(&[]).await.unwrap();
    assert_eq!(stored(dir.path()), records(&events));
    assert_eq!(metrics.records.get(), 5);
    assert_eq!(metrics.bytes.get(), (DATA_START + 5 * frame()) as i64);
    close(writer).await;
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
    close(writer).await;
    let on_disk: BTreeSet<_> = stored(dir.path()).into_iter().collect();
    let expected: BTreeSet<_> = records(&evs(0..200)).into_iter().collect();
    assert_eq!(on_disk, expected);
    assert_eq!(stored(dir.path()).len(), 200, "no duplicates");
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
    assert_eq!(stored(dir.path()), records(&events));
    close(writer).await;
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
    close(writer).await;

    let paths = segment_paths(dir.path());
    let lens: Vec<u64> = paths.iter().map(|p| file_len(p) - DATA_START).collect();
    let f = frame();
    assert_eq!(lens, [2 * f, 2 * f, 2 * f, f, 3 * f, f]);
    assert_eq!(stored(dir.path()), records(&events));

    let (_, writer, recovery, metrics) = open(SpoolConfig {
        segment_bytes,
        ..config(dir.path())
    });
    assert_eq!(
        recovery,
        Recovery {
            segments: 6,
            records: 11,
            ..Recovery::default()
        }
    );
    // Six sealed segments and the new, empty one the writer starts after a restart.
    assert_eq!(metrics.bytes.get(), (7 * DATA_START + 11 * f) as i64);
    assert_eq!(segment_paths(dir.path()).len(), 7);
    close(writer).await;
}

#[tokio::test]
async fn full_spool_refuses_the_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, metrics) = open(SpoolConfig {
        max_bytes: DATA_START + 3 * frame(),
        ..config(dir.path())
    });
    let events = evs(0..6);
    spool.append(&events[..2]).await.unwrap();
    assert!(matches!(
        spool.append(&events[2..4]).await,
        Err(SpoolError::Full)
    ));
    assert_eq!(
        stored(dir.path()),
        records(&events[..2]),
        "nothing of the refused append"
    );
    assert_eq!(metrics.full.get(), 1);

    spool.append(&events[4..5]).await.unwrap(); // fits exactly
    assert!(matches!(
        spool.append(&events[5..]).await,
        Err(SpoolError::Full)
    ));
    close(writer).await;
    assert_eq!(stored(dir.path()), records(&[ev(0), ev(1), ev(4)]));
    assert_eq!(metrics.full.get(), 2);
    assert_eq!(metrics.bytes.get(), (DATA_START + 3 * frame()) as i64);

    // The limit counts what is already on disk after a restart.
    let (spool, writer, _, _) = open(SpoolConfig {
        max_bytes: DATA_START + 3 * frame(),
        ..config(dir.path())
    });
    assert!(matches!(
        spool.append(&[ev(9)]).await,
        Err(SpoolError::Full)
    ));
    close(writer).await;
}

#[tokio::test]
async fn full_is_checked_against_the_rest_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        max_bytes: DATA_START + 3 * frame(),
        commit_window: Duration::from_secs(600),
        ..config(dir.path())
    };
    let (spool, writer, _, metrics) = open(cfg);
    let events = evs(0..4);
    let mut appends: Vec<_> = events
        .iter()
        .map(|e| Box::pin(spool.append(std::slice::from_ref(e))))
        .collect();
    for append in &mut appends {
        assert!(!poll_once(append).await, "resolved before its commit");
    }
    close(writer).await; // commits the one queued batch
    let results: Vec<_> = futures_in_order(appends).await;
    assert!(results[..3].iter().all(Result::is_ok), "{results:?}");
    assert!(matches!(results[3], Err(SpoolError::Full)), "{results:?}");
    assert_eq!(metrics.commits.get(), 1);
    assert_eq!(stored(dir.path()), records(&events[..3]));
}

async fn futures_in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
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
    assert_eq!(stored(dir.path()), records(&events));
    assert!(matches!(
        spool.append(&[ev(99)]).await,
        Err(SpoolError::Closed)
    ));
    assert!(matches!(spool.append(&[]).await, Err(SpoolError::Closed)));
}

#[tokio::test]
async fn zero_queue_depth_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        queue_depth: 0,
        ..config(dir.path())
    };
    assert!(matches!(
        try_open(cfg, Some(keys())),
        Err(SpoolError::InvalidConfig(_))
    ));
}

#[tokio::test]
async fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_spool, writer, _, _) = open(SpoolConfig::new(dir.path()));
    let second = try_open(SpoolConfig::new(dir.path()), Some(keys()));
    assert!(
        matches!(second, Err(SpoolError::Locked(_))),
        "{:?}",
        second.err()
    );
    writer.close().await.unwrap();
    // once the first writer is closed, the directory can be opened again
    assert!(try_open(SpoolConfig::new(dir.path()), Some(keys())).is_ok());
}
