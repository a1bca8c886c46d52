use super::{at, files, open, read, rec, Record, WriteStats};
use crate::sink::file::MAX_OPEN_FILES;

#[test]
fn rotates_before_a_line_would_pass_max_file_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut store = open(root, 20);
    let t = at(2024, 5, 1, 10, 0);
    let line = r#"{"n":123}"#; // 10 bytes with its newline: two fill a file exactly
    let stats = store.write_batch(&[rec("s", t, line); 5]).unwrap();
    assert_eq!(
        stats,
        WriteStats {
            records: 5,
            bytes: 50,
            files_finished: 2
        }
    );
    let big = r#"{"big":"0123456789abcdef0123"}"#; // 31 bytes with its newline
    let stats = store
        .write_batch(&[rec("s", t, big), rec("s", t, line)])
        .unwrap();
    assert_eq!(stats.files_finished, 2);
    assert_eq!(
        files(root),
        [
            "s/2024-05-01/10-0.ndjson",
            "s/2024-05-01/10-1.ndjson",
            "s/2024-05-01/10-2.ndjson"
        ]
        .into_iter()
        .chain(["s/2024-05-01/10-3.ndjson", "s/2024-05-01/10-4.ndjson"])
        .collect::<Vec<_>>()
    );
    let two = format!("{line}\n{line}\n");
    assert_eq!(read(root, "s/2024-05-01/10-0.ndjson"), two);
    assert_eq!(read(root, "s/2024-05-01/10-1.ndjson"), two);
    assert_eq!(read(root, "s/2024-05-01/10-2.ndjson"), format!("{line}\n"));
    assert_eq!(read(root, "s/2024-05-01/10-3.ndjson"), format!("{big}\n"));
    assert_eq!(read(root, "s/2024-05-01/10-4.ndjson"), format!("{line}\n"));
}

#[test]
fn an_oversized_first_line_gets_a_file_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path(), 4);
    let t = at(2024, 5, 1, 10, 0);
    store
        .write_batch(&[rec("s", t, r#"{"x":1}"#), rec("s", t, "{}")])
        .unwrap();
    assert_eq!(
        files(tmp.path()),
        ["s/2024-05-01/10-0.ndjson", "s/2024-05-01/10-1.ndjson"]
    );
    assert_eq!(read(tmp.path(), "s/2024-05-01/10-0.ndjson"), "{\"x\":1}\n");
    assert_eq!(read(tmp.path(), "s/2024-05-01/10-1.ndjson"), "{}\n");
}

#[test]
fn rotates_when_the_hour_changes_and_never_reopens_the_old_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut store = open(root, 1 << 20);
    let last_ms_of_10 = at(2024, 12, 31, 11, 0) - 1;
    let stats = store
        .write_batch(&[
            rec("s", last_ms_of_10, r#"{"at":"10:59"}"#),
            rec("s", at(2024, 12, 31, 11, 0), r#"{"at":"11:00"}"#),
        ])
        .unwrap();
    assert_eq!(stats.files_finished, 1);
    // A late record for 10:xx starts a new 10 file; 11 goes on in its own.
    store
        .write_batch(&[
            rec("s", at(2024, 12, 31, 10, 30), r#"{"at":"10:30"}"#),
            rec("s", at(2024, 12, 31, 11, 1), r#"{"at":"11:01"}"#),
            rec("s", at(2024, 12, 31, 10, 31), r#"{"at":"10:31"}"#),
        ])
        .unwrap();
    store
        .write_batch(&[rec("s", at(2025, 1, 1, 0, 0), r#"{"at":"00:00"}"#)])
        .unwrap();
    assert_eq!(
        files(root),
        [
            "s/2024-12-31/10-0.ndjson",
            "s/2024-12-31/10-1.ndjson",
            "s/2024-12-31/11-0.ndjson",
            "s/2025-01-01/00-0.ndjson",
        ]
    );
    assert_eq!(
        read(root, "s/2024-12-31/10-0.ndjson"),
        "{\"at\":\"10:59\"}\n"
    );
    assert_eq!(
        read(root, "s/2024-12-31/10-1.ndjson"),
        "{\"at\":\"10:30\"}\n{\"at\":\"10:31\"}\n"
    );
    assert_eq!(
        read(root, "s/2024-12-31/11-0.ndjson"),
        "{\"at\":\"11:00\"}\n{\"at\":\"11:01\"}\n"
    );
    assert_eq!(
        read(root, "s/2025-01-01/00-0.ndjson"),
        "{\"at\":\"00:00\"}\n"
    );
}

#[test]
fn keeps_at_most_max_open_files_and_finishes_the_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut store = open(root, 1 << 20);
    let t = at(2024, 5, 1, 10, 0);
    let sites: Vec<String> = (0..=MAX_OPEN_FILES).map(|i| format!("s{i}")).collect();
    let batch: Vec<Record<'_>> = sites.iter().map(|s| rec(s, t, "{}")).collect();
    let stats = store.write_batch(&batch).unwrap();
    assert_eq!(stats.files_finished, 1); // s0 made room for the last site
    let newest = &sites[MAX_OPEN_FILES];
    let stats = store
        .write_batch(&[rec(newest, t, "{}"), rec("s0", t, "{}")])
        .unwrap();
    assert_eq!(stats.files_finished, 1); // s1 made room for s0's new file
    assert_eq!(
        read(root, &format!("{newest}/2024-05-01/10-0.ndjson")),
        "{}\n{}\n"
    );
    assert_eq!(read(root, "s0/2024-05-01/10-0.ndjson"), "{}\n");
    assert_eq!(read(root, "s0/2024-05-01/10-1.ndjson"), "{}\n");
    assert_eq!(files(root).len(), MAX_OPEN_FILES + 2);
}

#[test]
fn many_lines_of_many_sizes_come_back_in_order_within_the_size_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let max = 4096;
    let mut store = open(root, max);
    let t = at(2024, 5, 1, 10, 0);
    // Sizes from 2 to ~5000 bytes (some longer than max), 400 KiB in all: past the write buffer too.
    let payloads: Vec<String> = (0..400u64)
        .map(|i| {
            format!(
                "{{\"i\":{i},\"pad\":\"{}\"}}",
                "x".repeat(((i * 7919) % 5000) as usize)
            )
        })
        .collect();
    let batch: Vec<Record<'_>> = payloads.iter().map(|p| rec("s", t, p)).collect();
    let stats = store.write_batch(&batch).unwrap();
    let want: String = payloads.iter().map(|p| format!("{p}\n")).collect();
    assert_eq!(stats.bytes, want.len() as u64);
    let mut got = String::new();
    let count = files(root).len();
    for n in 0..count {
        let text = read(root, &format!("s/2024-05-01/10-{n}.ndjson"));
        assert!(
            text.len() as u64 <= max || text.lines().count() == 1,
            "file {n}"
        );
        got.push_str(&text);
    }
    assert_eq!(got, want);
    assert_eq!(stats.files_finished, count as u64 - 1);
}
