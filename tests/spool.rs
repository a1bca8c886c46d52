//! The spool through the real binary: damage costs only the damaged record, nothing on disk is plaintext,
//! a wrong or missing key stops startup with its name, keys rotate by reload, a full spool answers 503 until
//! a sink delivers, and `spool status` shows each sink's lag.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proc::Proc;
use common::{dump, event, Client, Fixture, Proto, Reply};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::spool::DATA_START;

const FILE_SINK: &str = "[[sinks]]\nname = \"file\"\ntype = \"file\"\ndir = \"out\"\n";

async fn post(c: &mut Client, ev: &Value) -> Reply {
    c.post("application/json", ev.to_string()).await
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// `GET /metrics` on the admin listener, in plain HTTP.
async fn metrics(admin: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of one series (`name{labels}` exactly as rendered) in Prometheus text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `tollgate spool <sub> -c FILE`: exit code, then stdout followed by stderr.
fn spool_cli(fx: &Fixture, sub: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["spool", sub, "-c"])
        .arg(fx.config_path())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout) + &text(&out.stderr))
}

/// `lag_records` of one consumer in `spool status`.
fn lag_records(fx: &Fixture, consumer: &str) -> u64 {
    let (code, out) = spool_cli(fx, "status");
    assert_eq!(code, Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("consumer {consumer} ")))
        .unwrap_or_else(|| panic!("no consumer {consumer} in:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "lag_records").unwrap();
    words[at + 1].parse().unwrap()
}

/// Segment files of the spool, oldest first.
fn segments(fx: &Fixture) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(fx.spool_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs
}

/// The key id a segment header names (length at byte 36, id from byte 37).
fn segment_key_id(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    String::from_utf8(data[37..37 + usize::from(data[36])].to_vec()).unwrap()
}

/// Start offsets and body lengths of the frames of a segment, walked by their length fields.
fn frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = DATA_START as usize;
    while pos + 20 <= data.len() {
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        out.push((pos, len));
        pos += 20 + len;
    }
    assert_eq!(pos, data.len(), "frames end exactly at the end of the file");
    out
}

/// Every file and every directory under `dir` (itself included among the directories).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files, dirs);
        } else {
            files.push(p);
        }
    }
}

/// Every NDJSON line the file sink wrote for site demo.
fn delivered(fx: &Fixture) -> Vec<Value> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let root = fx.dir.path().join("data/out/demo");
    if root.is_dir() {
        walk(&root, &mut files, &mut dirs);
    }
    files.sort();
    // Only complete lines: the sink may be writing the last one.
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .map(|t| t[..t.rfind('\n').map_or(0, |i| i + 1)].to_string())
        .collect();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `cond` every 100 ms until it holds; panics after `secs`.
async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fixture with the file sink, whose site directory is blocked by a regular file.
fn blocked_sink_fixture(spool_extra: &str) -> (Fixture, PathBuf) {
    let fx = Fixture::new(FILE_SINK);
    fx.edit_config(|t| t.replacen("[spool]\n", &format!("[spool]\n{spool_extra}"), 1));
    std::fs::create_dir_all(fx.dir.path().join("data/out")).unwrap();
    let block = fx.dir.path().join("data/out/demo");
    std::fs::write(&block, "not a directory").unwrap();
    (fx, block)
}

fn stop(mut p: Proc) -> String {
    p.signal("TERM");
    let status = tokio::task::block_in_place(|| p.wait_exit());
    let log = p.stderr_text();
    assert!(status.success(), "exit status {status:?}:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_one_record_costs_only_that_record() {
    let fx = Fixture::new("");
    let p = Proc::start(&fx.config_path());
    let mut c = Client::connect(p.public, &fx.ca_pem, Proto::H1).await;
    let sent: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
    for id in &sent {
        assert_eq!(post(&mut c, &event(id)).await.status, 204);
    }
    stop(p);

    // Flip one byte in the middle of the second record's body.
    let seg = segments(&fx)
        .into_iter()
        .find(|s| std::fs::metadata(s).unwrap().len() > DATA_START)
        .expect("a segment with records");
    let seg_name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let seg_no: u64 = seg_name[4..24].parse().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let f = frames(&data);
    assert_eq!(f.len(), 6);
    let (start, end) = (f[1].0, f[2].0);
    data[start + 20 + f[1].1 / 2] ^= 0x01;
    std::fs::write(&seg, &data).unwrap();

    let (code, out) = spool_cli(&fx, "verify");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("segment {seg_no}: damaged bytes {start}..{end}")),
        "{out}"
    );

    let p = Proc::start(&fx.config_path());
    let text = metrics(p.admin.unwrap()).await;
    assert_eq!(sample(&text, "tollgate_spool_corrupt_records_total"), 1.0);
    let log = stop(p);
    let line = log
        .lines()
        .find(|l| l.contains("skipped a damaged region"))
        .unwrap_or_else(|| panic!("no damage logged:\n{log}"));
    for part in [&seg_name, &format!("start={start}"), &format!("end={end}")] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    let mut want = sent.clone();
    want.remove(1);
    assert_eq!(ids(&dump(&fx)), want);
    let quarantine = std::fs::read_dir(fx.spool_dir().join("quarantine")).unwrap();
    assert_eq!(quarantine.count(), 1, "one quarantined region");
}

#[tokio::test]
async fn spool_files_never_contain_plaintext() {
    const MARKER: &str = "MARKER-7f3a";
    let fx = Fixture::new(FILE_SINK);
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    for i in 0..3 {
        let mut ev = event(&format!("p{i}"));
        ev["cart"]["items"][0]["sku"] = json!(MARKER);
        ev["plan"] = json!({"id": "basic", "name": MARKER});
        assert_eq!(post(&mut c, &ev).await.status, 204);
    }
    let cursor = fx.spool_dir().join("cursors/file");
    eventually(30, "the sink saves its cursor", || cursor.exists()).await;
    running.stop().await.unwrap();

    let stored = dump(&fx);
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|r| r.to_string().contains(MARKER)));

    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(&fx.spool_dir(), &mut files, &mut dirs);
    for want in ["LOCK", "cursors/file"] {
        assert!(files.contains(&fx.spool_dir().join(want)), "{want}");
    }
    assert!(!segments(&fx).is_empty());
    assert!(dirs.contains(&fx.spool_dir().join("cursors")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let found = bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes());
        assert!(!found, "plaintext in {}", f.display());
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    for d in &dirs {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}

/// `tollgate run -c`, which must exit on its own: its status and stderr.
fn run_to_exit(fx: &Fixture) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["run", "-c"])
        .arg(fx.config_path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tollgate run did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

#[tokio::test]
async fn a_missing_or_wrong_spool_key_fails_startup_naming_it() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(post(&mut c, &event("k0")).await.status, 204);
    running.stop().await.unwrap();
    let seg = segments(&fx)[0].file_name().unwrap().to_owned();
    let seg = seg.to_str().unwrap();

    // (a) Same id, different key material.
    let key = fx.dir.path().join("spool.key");
    std::fs::write(&key, "7c".repeat(32)).unwrap();
    let (status, err) = run_to_exit(&fx);
    assert!(!status.success(), "{err}");
    assert!(err.contains("\"s1\"") && err.contains(seg), "{err}");

    // (b) The right material under another id: the segment's id is not configured.
    std::fs::write(&key, "6b".repeat(32)).unwrap();
    fx.edit_config(|t| {
        t.replace("active_key = \"s1\"", "active_key = \"s9\"")
            .replace("id = \"s1\"", "id = \"s9\"")
    });
    let (status, err) = run_to_exit(&fx);
    assert!(!status.success(), "{err}");
    assert!(err.contains("\"s1\"") && err.contains(seg), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_by_reload() {
    let fx = Fixture::new("");
    std::fs::write(fx.dir.path().join("spool2.key"), "3d".repeat(32)).unwrap();
    let p = Proc::start(&fx.config_path());
    let mut c = Client::connect(p.public, &fx.ca_pem, Proto::H1).await;
    let (old, new) = (["old0", "old1", "old2"], ["new0", "new1", "new2"]);
    for id in old {
        assert_eq!(post(&mut c, &event(id)).await.status, 204);
    }
    fx.edit_config(|t| {
        t.replace("active_key = \"s1\"", "active_key = \"s2\"")
            .replace(
                "[[tenants]]",
                "[[spool.keys]]\nid = \"s2\"\nfile = \"spool2.key\"\n[[tenants]]",
            )
    });
    p.signal("HUP");
    assert!(tokio::task::block_in_place(
        || p.wait_for_log("config reloaded")
    ));
    for id in new {
        assert_eq!(post(&mut c, &event(id)).await.status, 204);
    }

    let (code, out) = spool_cli(&fx, "verify");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ids(&dump(&fx)), [old, new].concat());
    let keys: Vec<String> = segments(&fx).iter().map(|s| segment_key_id(s)).collect();
    let (newest, older) = keys.split_last().unwrap();
    assert_eq!(newest, "s2", "{keys:?}");
    assert!(
        !older.is_empty() && older.iter().all(|k| k == "s1"),
        "{keys:?}"
    );

    // Dropping s1 while segments still need it is refused, and the running config keeps serving.
    fx.edit_config(|t| t.replace("[[spool.keys]]\nid = \"s1\"\nfile = \"spool.key\"\n", ""));
    p.signal("HUP");
    assert!(tokio::task::block_in_place(
        || p.wait_for_log("config reload rejected")
    ));
    assert_eq!(post(&mut c, &event("after")).await.status, 204);
    stop(p);
}

/// An event of about 2 KB.
fn big_event(id: &str) -> Value {
    let mut ev = event(id);
    ev["cart"]["items"][0]["name"] = json!("n".repeat(1900));
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_says_503_then_204_once_the_sink_delivers() {
    let (fx, block) = blocked_sink_fixture("max_bytes = 1048576\nsegment_bytes = 65536\n");
    let p = Proc::start(&fx.config_path());
    let mut c = Client::connect(p.public, &fx.ca_pem, Proto::H1).await;
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for i in 0..2000 {
        let id = format!("f{i}");
        let r = post(&mut c, &big_event(&id)).await;
        if r.status == 503 {
            assert_eq!(r.json()["error"], "spool_full", "{:?}", r.body);
            assert!(r.headers.contains_key("retry-after"));
            refused.push(id);
            break;
        }
        assert_eq!(r.status, 204, "{:?}", r.body);
        acked.push(id);
    }
    assert_eq!(refused.len(), 1, "no 503 after {} events", acked.len());
    let text = metrics(p.admin.unwrap()).await;
    assert!(sample(&text, "tollgate_spool_full_total") >= 1.0);
    // The blocked sink retries on its own clock (`batch_age_ms`, backoff): the spool can fill before its
    // first attempt, so its retry is waited for, not expected at the same instant.
    let retries = r#"tollgate_sink_retries_total{reason="io",sink="file"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = text;
    while sample(&text, retries) < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = metrics(p.admin.unwrap()).await;
    }
    assert!(sample(&text, retries) >= 1.0);

    std::fs::remove_file(&block).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id = format!("f-after-{}", refused.len());
        let r = post(&mut c, &big_event(&id)).await;
        if r.status == 204 {
            acked.push(id);
            break;
        }
        assert_eq!(r.status, 503, "{:?}", r.body);
        refused.push(id);
        assert!(Instant::now() < deadline, "still full after 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eventually(60, "the sink delivers everything", || {
        delivered(&fx).len() >= acked.len()
    })
    .await;
    stop(p);

    let out = ids(&delivered(&fx));
    let spooled = ids(&dump(&fx));
    for id in &acked {
        let n = out.iter().filter(|o| *o == id).count();
        assert_eq!(n, 1, "{id} delivered {n} times");
    }
    for id in &refused {
        assert!(
            !out.contains(id) && !spooled.contains(id),
            "refused {id} was stored"
        );
    }
    assert_eq!(out.len(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_consumer_lag() {
    let (fx, block) = blocked_sink_fixture("");
    let p = Proc::start(&fx.config_path());
    let mut c = Client::connect(p.public, &fx.ca_pem, Proto::H1).await;
    let sent: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    for id in &sent {
        assert_eq!(post(&mut c, &event(id)).await.status, 204);
    }
    assert_eq!(lag_records(&fx, "file"), sent.len() as u64);

    std::fs::remove_file(&block).unwrap();
    eventually(60, "lag_records 0", || lag_records(&fx, "file") == 0).await;
    stop(p);
    let out = delivered(&fx);
    assert_eq!(ids(&out), sent);
    assert!(out
        .iter()
        .all(|r| r["customer"]["email_hash"].as_str().is_some()));
    let mut files = Vec::new();
    walk(
        &fx.dir.path().join("data/out/demo"),
        &mut files,
        &mut Vec::new(),
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains('@'), "{}: {text}", f.display());
    }
}
