//! Dead letters end to end: a batch the upstream refuses for good (`400`) is sealed into
//! `data/deadletter/<sink>/<batch id>.seg` (encrypted, like the spool) with a `.json` beside it, counted, and
//! the sink moves on; `tollgate deadletter replay` (the real binary) later delivers it and removes it.

mod common;

#[path = "support/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{event, metric, wait_for, Client, Fixture, Proto};
use serde_json::Value;
use tokio::time::Instant;
use tollgate::app::Running;
use tollgate::tls::DevPki;
use upstream::{Mode, Upstream};

/// Kept by minimization (it is the event id), so it reaches the upstream and the dead letter in plaintext
/// unless the dead letter is encrypted.
const MARKER: &str = "PLAINTEXT-MARKER-5e1d";

/// A gateway config with one `http` sink named `up` posting to `up` (trusting its CA); `extra` adds keys.
fn fixture(up: &Upstream, pki: &DevPki, extra: &str) -> Fixture {
    let fx = Fixture::new(&format!(
        "[[sinks]]\nname = \"up\"\ntype = \"http\"\nurl = \"https://localhost:{}/ingest\"\n\
         ca_file = \"up-ca.pem\"\nbatch_age_ms = 20\nretry_cap_ms = 1000\n{extra}",
        up.addr.port()
    ));
    std::fs::write(fx.dir.path().join("up-ca.pem"), &pki.ca_pem).unwrap();
    fx
}

async fn post(running: &Running, fx: &Fixture, proto: Proto, ids: &[String]) {
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, proto).await;
    let body = Value::Array(ids.iter().map(|id| event(id)).collect()).to_string();
    assert_eq!(c.post("application/json", body).await.status, 204);
}

/// Waits until the counter reaches `want` (a sink counts a batch only after the downstream's answer, a little
/// after the downstream shows it), then requires exactly `want`: no batch was counted twice.
async fn counted(running: &Running, name: &str, labels: &[(&str, &str)], want: usize) {
    let what = format!("{name}{labels:?} = {want}");
    wait_for(&what, Duration::from_secs(10), || {
        metric(running, name, labels) >= want as f64
    })
    .await;
    assert_eq!(metric(running, name, labels), want as f64, "{what}");
}

/// The event ids of one request the upstream saw, and its Idempotency-Key.
fn batch_of(seen: &upstream::Seen) -> (String, Vec<String>) {
    let key = seen.headers["idempotency-key"].to_str().unwrap().to_owned();
    let ids = seen
        .body
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    (key, ids)
}

/// The files in `dir` (none if it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs the real `tollgate` with `args`, stopped by PID if it has not exited within 30 s; the runtime keeps
/// serving the upstream meanwhile. Exit code, stdout, stderr.
async fn tollgate(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let (out, err) = (dir.join("cli.stdout"), dir.join("cli.stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tollgate {args:?} did not exit within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    (status.code(), read(&out), read(&err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_batch_is_dead_lettered_counted_and_replayed() {
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    up.set(Mode::Status(400));
    let fx = fixture(&up, &pki, "retry_base_ms = 10\ntimeout_ms = 2000\n");
    let running = fx.start().await;
    let refused_label = [("sink", "up"), ("reason", "refused")];

    // One request of five events while the upstream refuses everything.
    let mut refused: Vec<String> = (0..5).map(|i| format!("{MARKER}-{i}")).collect();
    post(&running, &fx, Proto::H1, &refused).await;
    wait_for("the dead letter", Duration::from_secs(10), || {
        metric(&running, "tollgate_sink_dead_letters_total", &refused_label) >= 1.0
    })
    .await;
    refused.sort();

    // Refused once, not retried; one sealed batch and its metadata.
    let dl_dir = fx.dir.path().join("data/deadletter/up");
    let letters = files(&dl_dir);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let (json, seg) = (&letters[0], &letters[1]);
    assert_eq!(json.extension().unwrap(), "json");
    assert_eq!(seg.extension().unwrap(), "seg");
    let batch_id = seg.file_stem().unwrap().to_str().unwrap().to_owned();
    assert_eq!(json.file_stem().unwrap(), batch_id.as_str());
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(meta["reason"], "refused", "{meta}");
    assert_eq!(meta["records"], 5, "{meta}");
    assert_eq!(meta["batch"], batch_id.as_str(), "{meta}");
    {
        let seen = up.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "a refused batch is not retried");
        assert!(
            seen[0].body.contains(MARKER),
            "the marker survives minimization"
        );
        let (key, mut ids) = batch_of(&seen[0]);
        ids.sort();
        assert_eq!((key.as_str(), &ids), (batch_id.as_str(), &refused));
    }
    let sealed = std::fs::read(seg).unwrap();
    assert!(
        !sealed.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "the dead letter is encrypted"
    );
    assert!(!std::fs::read_to_string(json).unwrap().contains(MARKER));
    assert_eq!(
        metric(&running, "tollgate_sink_retries_total", &[("sink", "up")]),
        0.0
    );

    // The upstream accepts again: the sink moved on, later batches are delivered, the refused one is not.
    up.set(Mode::Ok);
    let ok_from = up.seen.lock().unwrap().len();
    let mut later: Vec<String> = Vec::new();
    for (proto, tag) in [(Proto::H1, "h1"), (Proto::H2, "h2")] {
        let ids: Vec<String> = (0..3).map(|i| format!("later-{tag}-{i}")).collect();
        post(&running, &fx, proto, &ids).await;
        later.extend(ids);
    }
    later.sort();
    let delivered = || -> Vec<String> {
        let seen = up.seen.lock().unwrap();
        let mut ids: Vec<String> = seen[ok_from..].iter().flat_map(|s| batch_of(s).1).collect();
        ids.sort();
        ids
    };
    wait_for("the later events upstream", Duration::from_secs(10), || {
        delivered().len() >= later.len()
    })
    .await;
    assert_eq!(
        delivered(),
        later,
        "later events once, the dead-lettered ones not again"
    );
    counted(
        &running,
        "tollgate_sink_events_total",
        &[("sink", "up")],
        later.len(),
    )
    .await;
    assert_eq!(
        metric(&running, "tollgate_sink_dead_letters_total", &refused_label),
        1.0
    );
    assert_eq!(
        metric(
            &running,
            "tollgate_sink_dead_letters_total",
            &[("sink", "up")]
        ),
        1.0
    );
    running.stop().await.unwrap();

    // Replay with the real binary while no gateway runs.
    let replay_from = up.seen.lock().unwrap().len();
    let config = fx.config_path();
    let args = [
        "deadletter",
        "replay",
        "-c",
        config.to_str().unwrap(),
        "--sink",
        "up",
    ];
    let (code, stdout, stderr) = tollgate(fx.dir.path(), &args).await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("sink up: 1 batch(es), 5 event(s) delivered; 0 still refused"),
        "{stdout}"
    );
    assert_eq!(
        files(&dl_dir),
        Vec::<PathBuf>::new(),
        "replayed letters are removed"
    );
    let seen = up.seen.lock().unwrap();
    let replayed: Vec<_> = seen[replay_from..].iter().map(batch_of).collect();
    assert_eq!(replayed.len(), 1, "one request for the one batch");
    let (key, mut ids) = replayed[0].clone();
    ids.sort();
    assert_eq!(
        key, batch_id,
        "the replay keeps the batch's Idempotency-Key"
    );
    assert_eq!(ids, refused, "exactly the dead-lettered ids");
}

/// A dead letter that cannot be written is not a reason to drop the batch, nor to hammer the upstream: the
/// batch is tried again after the backoff, and dead-lettered once the directory is writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_that_cannot_be_written_keeps_the_batch_and_backs_off() {
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    up.set(Mode::Status(400));
    let fx = fixture(&up, &pki, "retry_base_ms = 200\n");
    // The sink's dead-letter directory cannot be created: a file is in its place.
    let blocker = fx.dir.path().join("data/deadletter/up");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a directory").unwrap();
    let running = fx.start().await;
    let ids: Vec<String> = (0..3).map(|i| format!("kept-{i}")).collect();
    post(&running, &fx, Proto::H1, &ids).await;
    let attempts = || up.seen.lock().unwrap().len();
    let first = wait_for("the first attempt", Duration::from_secs(10), || {
        attempts() >= 1
    })
    .await;
    let sixth = wait_for("five more attempts", Duration::from_secs(30), || {
        attempts() >= 6
    })
    .await;
    // Five backoffs of base 200 ms with full jitter: below 150 ms together with odds of about 1e-5.
    assert!(
        sixth - first >= Duration::from_millis(150),
        "six attempts in {:?}: no backoff after a dead letter could not be written",
        sixth - first
    );
    assert_eq!(
        metric(
            &running,
            "tollgate_sink_dead_letters_total",
            &[("sink", "up")]
        ),
        0.0
    );

    std::fs::remove_file(&blocker).unwrap();
    wait_for("the dead letter", Duration::from_secs(30), || {
        metric(
            &running,
            "tollgate_sink_dead_letters_total",
            &[("sink", "up")],
        ) >= 1.0
    })
    .await;
    let letters = files(&blocker);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(&letters[0]).unwrap()).unwrap();
    assert_eq!(meta["records"], 3, "the whole batch, kept: {meta}");
    running.stop().await.unwrap();
}
