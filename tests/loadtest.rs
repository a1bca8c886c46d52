//! The side-by-side load harness of issue #12 in its CI size: `loadtest/run.sh` with `SMOKE=1` runs every
//! scenario (about a second each, one round, 200 idle connections) against this build's binary and nginx on
//! 127.0.0.1, with all its own checks (no error for either target, every 204 stored, no PII stored). The
//! generated report goes to a temp file (`PERF_DOC`), never to the committed `docs/performance.md`.
//!
//! The harness needs nginx, wrk, h2load (nghttp2-client), openssl, python3 and taskset; `tests/run.sh`
//! installs them. A missing tool fails this test with its name, it does not skip it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The rows of the harness's table, one per scenario (scenario 1 and 4 have several).
const ROWS: [&str; 10] = [
    "1 HTTP/1.1 keep-alive, 32 conns",
    "1 HTTP/1.1 keep-alive, 128 conns",
    "2 h2, 64 conns x 10 streams",
    "3 one core each, 64 conns",
    "4 new conn/request, full TLS 1.3",
    "4 new conn/request, resumed TLS 1.3",
    "4 new conn/request, resumed TLS 1.2",
    "5 idle TLS conns: memory",
    "6 fixed load (h2): p99 latency",
    "7 vs nginx proxy_pass, 128 conns",
];

fn have(tool: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    on_path || Path::new("/usr/sbin").join(tool).is_file()
}

/// A figure cell of the table: at least one number.
fn has_figure(cell: &str) -> bool {
    cell.chars().any(|c| c.is_ascii_digit())
}

#[test]
fn smoke_run_has_every_scenario_for_both_targets() {
    let missing: Vec<&str> = ["nginx", "wrk", "h2load", "openssl", "python3", "taskset"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    assert!(
        missing.is_empty(),
        "tools missing for loadtest/run.sh: {missing:?}; run tests/run.sh, or \
         apt-get install nginx wrk nghttp2-client openssl python3 util-linux"
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("performance.md");
    let root = env!("CARGO_MANIFEST_DIR");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(Path::new(root).join("loadtest/run.sh"))
        .current_dir(root)
        .env("SMOKE", "1")
        .env("TOLLGATE_BIN", env!("CARGO_BIN_EXE_tollgate"))
        .env("PERF_DOC", &doc)
        .env("TMPDIR", dir.path())
        .env_remove("SHORT")
        .env_remove("SCENARIOS")
        .env_remove("DURATION")
        .env_remove("ROUNDS_OVERRIDE")
        .env_remove("IDLE_N_OVERRIDE")
        .env_remove("TOKIO_WORKER_THREADS")
        .output()
        .expect("bash runs loadtest/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadtest/run.sh failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for row in ROWS {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no table row {row:?} in:\n{stdout}"));
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 6, "row {row:?} has not 6 cells: {line}");
        assert!(
            cells[1..].iter().all(|c| has_figure(c)),
            "row {row:?} lacks a figure for Tollgate or nginx: {line}"
        );
    }
    let text = std::fs::read_to_string(&doc).expect("PERF_DOC written");
    assert!(text.contains("<!-- loadtest:begin -->") && text.contains("<!-- loadtest:end -->"));
    assert!(ROWS.iter().all(|r| text.contains(r)), "{text}");
    // The temp dir of the run is gone (the harness cleans up on exit).
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("tollgate-loadtest.")
        })
        .collect();
    assert!(left.is_empty(), "the harness left its temp dir behind");
    eprintln!(
        "loadtest smoke run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(300));
}
