//! Behaviour of [`FileStore`] through its public API, on real temporary directories.

mod restart;
mod rotation;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::civil::days_from_civil;
use super::{FileStore, FileStoreConfig, Record, WriteStats};

/// Milliseconds since the epoch of a UTC date and time.
pub(super) fn at(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
    (days_from_civil(year, month, day) * 24 + hour) * 3_600_000 + minute * 60_000
}

pub(super) fn rec<'a>(site: &'a str, received_ms: i64, payload: &'a str) -> Record<'a> {
    Record {
        site,
        event_id: "e",
        received_ms,
        payload: payload.as_bytes(),
    }
}

pub(super) fn open(root: &Path, max_file_bytes: u64) -> FileStore {
    FileStore::open(FileStoreConfig {
        root: root.to_owned(),
        max_file_bytes,
    })
    .unwrap()
}

/// Every file under `root`, as sorted relative paths.
pub(super) fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

pub(super) fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap()
}

pub(super) fn mode(path: PathBuf) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn lines_go_to_site_day_hour_files_exactly_as_given() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let mut store = open(&root, 1 << 20);
    let stats = store
        .write_batch(&[
            rec("shop-a", at(2024, 12, 31, 23, 5), r#"{"a":1}"#),
            rec("shop-b", at(2000, 2, 29, 0, 0), r#"{"b":"ü \" \\n"}"#),
            rec("shop-a", at(2024, 12, 31, 23, 59), r#"{"a":2}"#),
        ])
        .unwrap();
    assert_eq!(
        stats,
        WriteStats {
            records: 3,
            bytes: 8 + 18 + 8,
            files_finished: 0
        }
    );
    store
        .write_batch(&[rec("shop-a", at(2024, 12, 31, 23, 59), r#"{"a":3}"#)])
        .unwrap();
    store.close().unwrap();
    assert_eq!(
        files(&root),
        [
            "shop-a/2024-12-31/23-0.ndjson",
            "shop-b/2000-02-29/00-0.ndjson"
        ]
    );
    assert_eq!(
        read(&root, "shop-a/2024-12-31/23-0.ndjson"),
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
    );
    assert_eq!(
        read(&root, "shop-b/2000-02-29/00-0.ndjson"),
        "{\"b\":\"ü \\\" \\\\n\"}\n"
    );
}

#[test]
fn directories_are_0700_and_files_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b");
    let mut store = open(&root, 1 << 20);
    store
        .write_batch(&[rec("s", at(2024, 5, 1, 10, 0), "{}")])
        .unwrap();
    for dir in ["a", "a/b", "a/b/s", "a/b/s/2024-05-01"] {
        assert_eq!(mode(tmp.path().join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(root.join("s/2024-05-01/10-0.ndjson")), 0o600);
}

#[test]
fn refuses_unsafe_site_names_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut store = open(&root, 1 << 20);
    let t = at(2024, 5, 1, 10, 0);
    for bad in ["", ".", "..", ".hidden", "a/b", "../escape", "a\\b", "a\0b"] {
        let err = store
            .write_batch(&[rec("good", t, "{}"), rec(bad, t, "{}")])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn refuses_a_payload_with_a_newline_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path(), 1 << 20);
    let t = at(2024, 5, 1, 10, 0);
    let err = store
        .write_batch(&[rec("s", t, "{}"), rec("s", t, "{\n}")])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn refuses_a_zero_max_file_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = FileStoreConfig {
        root: tmp.path().to_owned(),
        max_file_bytes: 0,
    };
    assert_eq!(
        FileStore::open(cfg).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}
