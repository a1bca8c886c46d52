//! Encryption at rest: nothing readable in any file the spool writes (segments, cursors, quarantine), keys
//! that rotate by restart or reload, segments under a missing or wrong key refused by name, private file
//! modes, and the plaintext mode benchmarks use.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::spool::segment::segment_name;

const MARKER: &str = "PLANTED-7f3a9c-MARKER";

/// An event whose payload carries [`MARKER`].
fn marked(i: usize) -> MinimizedEvent {
    let payload = format!(r#"{{"site":"example.org","event_id":"m{i:04}","note":"{MARKER}"}}"#);
    MinimizedEvent::for_spool_tests(
        "example.org",
        &format!("m{i:04}"),
        NOW_MS,
        payload.into_bytes(),
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn holds_marker(path: &Path) -> bool {
    fs::read(path)
        .unwrap()
        .windows(MARKER.len())
        .any(|w| w == MARKER.as_bytes())
}

fn flip(path: &Path, offsets: &[usize]) {
    let mut data = fs::read(path).unwrap();
    for &at in offsets {
        data[at] ^= 0x01;
    }
    fs::write(path, data).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A spool with every kind of file from six events: segments of one append each (the first holds events 0
/// and 1), a consumer cursor inside segment 1, a quarantined region (event 3, the record of segment 3) and
/// a segment quarantined whole (segment 4, event 4: both header copies damaged).
async fn spool_with_every_file(dir: &Path, events: &[MinimizedEvent]) {
    let cfg = SpoolConfig {
        segment_bytes: 1, // every append gets a segment of its own
        consumers: vec!["file".into()],
        ..config(dir)
    };
    let (spool, writer, _, _) = open(cfg.clone());
    spool.append(&events[..2]).await.unwrap();
    append_each(&spool, &events[2..]).await;
    let mut reader = spool.reader("file").unwrap();
    let batch = reader.next_batch(1, 1 << 20).await.unwrap();
    reader.commit(&batch).unwrap();
    drop(reader);
    close(writer).await;

    assert_eq!(
        segment_paths(dir).len(),
        5,
        "the cursor holds every segment"
    );
    flip(&dir.join(segment_name(3)), &[DATA_START as usize + 30]);
    flip(&dir.join(segment_name(4)), &[40, 128 + 40]);

    let (_, writer, recovery, _) = open(cfg);
    assert_eq!(recovery.corrupt_records, 2, "{recovery:?}");
    close(writer).await;
    assert!(dir.join("cursors").join("file").exists());
    let quarantine = dir.join("quarantine");
    assert!(quarantine
        .join(format!("seg-{:020}-at-{DATA_START}.bin", 3))
        .exists());
    assert!(quarantine.join(format!("seg-{:020}-whole.bin", 4)).exists());
}

#[tokio::test]
async fn a_planted_marker_is_in_no_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<_> = (0..6).map(marked).collect();
    spool_with_every_file(dir.path(), &events).await;

    let files = files_under(dir.path());
    assert!(files.len() >= 9, "{files:?}");
    for f in &files {
        assert!(
            !holds_marker(f),
            "{} holds the plaintext marker",
            f.display()
        );
    }
    let back = stored(dir.path());
    assert_eq!(
        back.len(),
        4,
        "the damaged record and the whole segment are lost"
    );
    assert!(back
        .iter()
        .all(|p| p.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())));
    assert_eq!(back, records(&[0, 1, 2, 5].map(marked)));
}

#[tokio::test]
async fn files_and_directories_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // Directories that exist already with a wide mode are made private too.
    for d in [
        spool_dir.clone(),
        spool_dir.join("cursors"),
        spool_dir.join("quarantine"),
    ] {
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    spool_with_every_file(&spool_dir, &evs(0..6)).await;

    for d in [
        spool_dir.clone(),
        spool_dir.join("cursors"),
        spool_dir.join("quarantine"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let files = files_under(&spool_dir);
    assert!(files.iter().any(|f| f.ends_with("LOCK")), "{files:?}");
    assert!(
        files.iter().any(|f| f.ends_with("cursors/file")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with(spool_dir.join("quarantine")))
            .count()
            == 2,
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

#[tokio::test]
async fn a_new_active_key_after_a_restart_starts_segments_under_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(config(dir.path()));
    append_each(&spool, &evs(0..3)).await;
    close(writer).await;

    let ring = key_ring(&[("s1", 1), ("s2", 2)], "s2");
    let (spool, writer, recovery, _) = open_with(config(dir.path()), Some(ring.clone()));
    assert_eq!(recovery.records, 3);
    append_each(&spool, &evs(3..6)).await;
    let mut in_use = spool.key_ids_in_use().unwrap();
    in_use.sort();
    assert_eq!(in_use, ["s1", "s2"]);
    close(writer).await;

    let report = verify(dir.path(), Some(&ring)).unwrap();
    assert!(report.is_clean());
    let ids: Vec<_> = report
        .segments
        .iter()
        .map(|s| (s.key_id.as_deref(), s.records))
        .collect();
    assert_eq!(ids, [(Some("s1"), 3), (Some("s2"), 3)]);
    let back: Vec<_> = read_all(dir.path(), Some(&ring))
        .unwrap()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(back, records(&evs(0..6)));
    // The new segment really is sealed under s2: the old ring alone cannot read it.
    assert!(matches!(
        read_all(dir.path(), Some(&keys())),
        Err(SpoolError::UnknownKey { key_id, .. }) if key_id == "s2"
    ));
}

#[tokio::test]
async fn a_reloaded_active_key_takes_effect_with_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer, _, _) = open(config(dir.path()));
    append_each(&spool, &evs(0..2)).await;
    assert_eq!(segment_paths(dir.path()).len(), 1);

    let ring = key_ring(&[("s1", 1), ("s2", 2)], "s2");
    spool.set_keys(ring.clone());
    assert_eq!(
        segment_paths(dir.path()).len(),
        1,
        "nothing happens before the next append"
    );
    append_each(&spool, &evs(2..4)).await;
    close(writer).await;

    let report = verify(dir.path(), Some(&ring)).unwrap();
    assert!(report.is_clean());
    let ids: Vec<_> = report
        .segments
        .iter()
        .map(|s| (s.seg_no, s.key_id.as_deref(), s.records))
        .collect();
    assert_eq!(ids, [(1, Some("s1"), 2), (2, Some("s2"), 2)]);
    let back: Vec<_> = read_all(dir.path(), Some(&ring))
        .unwrap()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(back, records(&evs(0..4)));
}

#[tokio::test]
async fn plaintext_mode_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<_> = (0..5).map(marked).collect();
    let (spool, writer, _, _) = open_with(config(dir.path()), None);
    append_each(&spool, &events).await;
    close(writer).await;

    let payloads = |keys: Option<&SpoolKeys>| -> Vec<Vec<u8>> {
        read_all(dir.path(), keys)
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect()
    };
    assert_eq!(payloads(None), records(&events));
    assert_eq!(
        payloads(Some(&keys())),
        records(&events),
        "keys are not needed, and do not hurt"
    );
    let report = verify(dir.path(), None).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.segments[0].key_id, None);
    // The negative control of the marker test: without a key the marker is on disk for anyone to read.
    assert!(holds_marker(&segment_paths(dir.path())[0]));

    let (_, writer, recovery, _) = open_with(config(dir.path()), None);
    assert_eq!((recovery.records, recovery.corrupt_records), (5, 0));
    close(writer).await;
    assert_eq!(payloads(None), records(&events));
}

#[tokio::test]
async fn segments_under_a_missing_or_wrong_key_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let events = evs(0..4);
    let (spool, writer, _, _) = open(config(dir.path()));
    append_each(&spool, &events).await;
    close(writer).await;
    let seg = segment_paths(dir.path())[0].clone();
    let named = |msg: String| msg.contains("\"s1\"") && msg.contains(&*seg.to_string_lossy());

    let err = try_open(config(dir.path()), Some(key_ring(&[("s2", 2)], "s2"))).unwrap_err();
    assert!(named(err.to_string()), "{err}");
    let SpoolError::UnknownKey { key_id, segment } = err else {
        panic!("expected UnknownKey, got {err:?}");
    };
    assert_eq!((key_id.as_str(), &segment), ("s1", &seg));

    let err = try_open(config(dir.path()), Some(key_ring(&[("s1", 9)], "s1"))).unwrap_err();
    assert!(named(err.to_string()), "{err}");
    let SpoolError::WrongKey { key_id, segment } = err else {
        panic!("expected WrongKey, got {err:?}");
    };
    assert_eq!((key_id.as_str(), &segment), ("s1", &seg));

    // Refusing changed nothing: the right key still opens everything.
    assert_eq!(segment_paths(dir.path()), [seg]);
    let (_, writer, recovery, _) = open(config(dir.path()));
    assert_eq!((recovery.records, recovery.corrupt_records), (4, 0));
    close(writer).await;
    assert_eq!(stored(dir.path()), records(&events));
}
