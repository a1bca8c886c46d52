//! The storage tier end to end with JetStream: beacons acknowledged over TLS (HTTP/1.1 and HTTP/2) by the
//! in-process gateway reach a real nats-server 2.9.10 (`support/nats.rs`) minimized and exactly once (by
//! `Nats-Msg-Id`), next to the file sink — also across a SIGKILL and restart of the server, during which the
//! file sink keeps flowing. Every wait polls with a deadline; servers are started per test, stopped by PID.

mod common;

#[path = "support/nats.rs"]
#[allow(dead_code)]
mod nats;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event, metric, post_ids as post, sink_records, Client, Fixture, Proto};
use nats::{Server, StreamReader, Tap};
use serde_json::Value;
use tokio::time::Instant;
use tollgate::app::Running;
use tollgate::event::minimize::normalize;

const STREAM: &str = "TOLLGATE";
const SUBJECT: &str = "tollgate.events";

/// A gateway with a `file` sink and a `js` sink on `server` that creates its stream; `js_extra` adds keys.
fn fixture(server: &Server, js_extra: &str) -> Fixture {
    Fixture::new(&format!(
        "[[sinks]]\nname = \"file\"\ntype = \"file\"\nbatch_age_ms = 20\n\
         [[sinks]]\nname = \"js\"\ntype = \"nats\"\nurl = \"{}\"\nsubject = \"{SUBJECT}\"\n\
         stream = \"{STREAM}\"\ncreate_stream = true\nbatch_age_ms = 20\n{js_extra}",
        server.url()
    ))
}

/// A wait that fails the test once `limit` has passed.
struct Deadline {
    what: &'static str,
    at: Instant,
    limit: Duration,
}

impl Deadline {
    fn new(what: &'static str, limit: Duration) -> Deadline {
        let at = Instant::now() + limit;
        Deadline { what, at, limit }
    }

    /// Sleeps 10 ms; panics if the deadline passed.
    async fn tick(&self) {
        let (what, limit) = (self.what, self.limit);
        assert!(
            Instant::now() < self.at,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts two-event requests on one connection, one every ~5 ms (at most 4000), until `stop`; each id is
/// pushed to `acked` as soon as its 204 arrived. Every answer must be a 204.
async fn keep_posting(
    addr: SocketAddr,
    ca_pem: String,
    proto: Proto,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut c = Client::connect(addr, &ca_pem, proto).await;
    for i in 0..4000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let ids = [format!("{proto:?}-{i:04}-a"), format!("{proto:?}-{i:04}-b")];
        let body = Value::Array(ids.iter().map(|id| event(id)).collect()).to_string();
        assert_eq!(
            c.post("application/json", body).await.status,
            204,
            "{ids:?}"
        );
        acked.lock().unwrap().extend(ids);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("posted 4000 requests and was never stopped");
}

fn file_ids(fx: &Fixture) -> Vec<String> {
    sink_records(&fx.dir.path().join("data/out"))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Checks one stored event against what `common::event(id)` sent and the demo tenant's key.
fn assert_minimized(running: &Running, id: &str, record: &Value) {
    let key = running.ctx.config.load().tenants["demo"]
        .keys
        .active()
        .tag(normalize(&format!("  Shopper.{id}@Example.COM ")).as_bytes());
    assert_eq!(record["event_id"], id);
    assert_eq!(record["site"], "demo", "{record}");
    assert_eq!(record["customer"]["email_hash"], key.as_str(), "{record}");
    assert_eq!(record["customer"]["age_band"], "35-44", "{record}");
    assert_eq!(
        record["page_url"], "https://shop.example/cart?utm_source=mail",
        "{record}"
    );
    let text = record.to_string();
    for leak in ["@", "Ann", "Shopper", "frag", "127.0.0.1"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

/// Each id of `acked` (sorted) exactly once in the stream, nothing else, on `<subject>.demo`, minimized.
fn assert_stream_holds_each_once(running: &Running, stream: &StreamReader, acked: &[String]) {
    let ids: Vec<&String> = stream
        .by_id
        .keys()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids.len(), acked.len(), "distinct ids in the stream");
    assert!(
        ids.iter().zip(acked).all(|(a, b)| *a == b),
        "the stream holds exactly the acknowledged ids"
    );
    assert_eq!(stream.messages(), acked.len() as u64, "one message per id");
    for (id, stored) in &stream.by_id {
        assert_eq!(stored.copies, 1, "{id}");
        assert_eq!(stored.subject, format!("{SUBJECT}.demo"), "{id}");
        let text = std::str::from_utf8(&stored.payload).unwrap();
        assert!(text.contains("email_hash") && !text.contains('@'), "{text}");
        let record: Value = serde_json::from_str(text).unwrap();
        assert_minimized(running, id, &record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_reaches_jetstream_once_over_tls_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "n0", None);
    let fx = fixture(&server, "batch_events = 64\n");
    let running = fx.start().await;
    // The sink created the stream at startup, with a duplicate window that outlasts its retries.
    let mut stream = StreamReader::open(&server.addr(), STREAM).await;
    let cfg = &stream.info().config;
    assert_eq!(cfg.subjects, [format!("{SUBJECT}.>")]);
    assert!(cfg.duplicate_window >= Duration::from_secs(120), "{cfg:?}");
    let tap = Tap::start(&server.addr(), &format!("{SUBJECT}.>"));

    let acked = post(&running, &fx, "once", 25, 4).await;
    assert_eq!(acked.len(), 200);
    let d = Deadline::new("every event in the stream", Duration::from_secs(30));
    while stream.catch_up().await < acked.len() as u64 {
        d.tick().await;
    }
    let d = Deadline::new("every event in the file sink", Duration::from_secs(30));
    while file_ids(&fx).len() < acked.len() {
        d.tick().await;
    }
    assert_eq!(
        stream.catch_up().await,
        acked.len() as u64,
        "nothing more arrives"
    );
    assert_stream_holds_each_once(&running, &stream, &acked);
    let files: BTreeMap<String, Value> = sink_records(&fx.dir.path().join("data/out"))
        .into_iter()
        .collect();
    assert_eq!(file_ids(&fx), acked, "the file sink has each id once");
    for (id, stored) in &stream.by_id {
        let record: Value = serde_json::from_slice(&stored.payload).unwrap();
        assert_eq!(
            record, files[id],
            "JetStream and the file sink store the same event"
        );
    }
    // A healthy path sends each event once: one publish per id, no retries, no dead letters.
    let d = Deadline::new("the tap to see every publish", Duration::from_secs(10));
    while tap.published().0 < acked.len() {
        d.tick().await;
    }
    assert_eq!(tap.published(), (200, 200), "(publishes, distinct ids)");
    assert_eq!(js(&running, "tollgate_sink_events_total"), 200.0);
    assert_eq!(js(&running, "tollgate_sink_retries_total"), 0.0);
    assert_eq!(js(&running, "tollgate_sink_dead_letters_total"), 0.0);
    running.stop().await.unwrap();
}

/// Two clients (HTTP/1.1 and HTTP/2) posting until stopped, and the ids acknowledged so far, in order.
struct Posters {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Posters {
    fn start(running: &Running, fx: &Fixture) -> Posters {
        let (acked, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let tasks = [Proto::H1, Proto::H2]
            .into_iter()
            .map(|proto| {
                let (acked, stop, ca) = (Arc::clone(&acked), stop.clone(), fx.ca_pem.clone());
                tokio::spawn(keep_posting(running.public_addr, ca, proto, acked, stop))
            })
            .collect();
        Posters { acked, stop, tasks }
    }

    fn len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<String> {
        self.acked.lock().unwrap()[from..].to_vec()
    }

    /// Stops both clients (each must finish within 10 s); every acknowledged id, sorted.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let done = tokio::time::timeout(Duration::from_secs(10), t).await;
            done.expect("a client hangs").unwrap();
        }
        let mut all = self.acked.lock().unwrap().clone();
        all.sort();
        all
    }
}

/// A metric of the `js` sink (all reasons summed).
fn js(running: &Running, name: &str) -> f64 {
    metric(running, name, &[("sink", "js")])
}

/// With nats-server killed after `at_kill` ids were acknowledged: the js sink retries with its circuit
/// open and stores nothing, while ids acknowledged after the kill keep reaching the file sink.
async fn assert_js_stalls_and_files_flow(
    running: &Running,
    fx: &Fixture,
    posters: &Posters,
    at_kill: usize,
) {
    let d = Deadline::new("the js sink to retry", Duration::from_secs(10));
    while js(running, "tollgate_sink_retries_total") < 1.0 {
        d.tick().await;
    }
    let stalled = js(running, "tollgate_sink_events_total");
    let d = Deadline::new(
        "100 ids acknowledged after the kill in the file sink",
        Duration::from_secs(20),
    );
    loop {
        let after = posters.since(at_kill);
        let files: BTreeSet<String> = file_ids(fx).into_iter().collect();
        if after.len() >= 100 && after.iter().all(|id| files.contains(id)) {
            break;
        }
        d.tick().await;
    }
    let seen = js(running, "tollgate_sink_retries_total");
    let d = Deadline::new("more retries and an open circuit", Duration::from_secs(10));
    while js(running, "tollgate_sink_retries_total") < seen.max(3.0) + 1.0
        || js(running, "tollgate_sink_circuit_state") == 0.0
    {
        d.tick().await;
    }
    assert_eq!(
        js(running, "tollgate_sink_events_total"),
        stalled,
        "stored while the server is down"
    );
    assert_eq!(
        metric(running, "tollgate_sink_retries_total", &[("sink", "file")]),
        0.0
    );
    assert_eq!(js(running, "tollgate_sink_dead_letters_total"), 0.0);
    let by_reason: Vec<String> = ["connect", "timeout", "server", "throttled", "io"]
        .iter()
        .map(|r| {
            let labels = [("sink", "js"), ("reason", *r)];
            format!(
                "{r}={}",
                metric(running, "tollgate_sink_retries_total", &labels)
            )
        })
        .collect();
    eprintln!("retries while nats-server is down: {}", by_reason.join(" "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_outage_delays_but_loses_nothing_and_the_file_sink_keeps_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "n0", None);
    let fx = fixture(
        &server,
        "batch_events = 32\nretry_base_ms = 20\nretry_cap_ms = 300\ntimeout_ms = 500\n",
    );
    let running = fx.start().await;
    let posters = Posters::start(&running, &fx);
    let mut stream = StreamReader::open(&server.addr(), STREAM).await;
    let d = Deadline::new("the first 40 events in the stream", Duration::from_secs(20));
    while stream.catch_up().await < 40 {
        d.tick().await;
    }
    assert_eq!(js(&running, "tollgate_sink_retries_total"), 0.0);
    drop(stream);

    // SIGKILL nats-server while the clients keep posting.
    let at_kill = posters.len();
    tokio::task::block_in_place(|| server.kill());
    assert_js_stalls_and_files_flow(&running, &fx, &posters, at_kill).await;

    // The same port and store dir; the clients keep posting across the restart.
    let at_restart = posters.len();
    tokio::task::block_in_place(|| server.restart());
    // Usually connected before the sink reconnects (its client backs off): sees what the sink re-sends.
    let tap = tokio::task::block_in_place(|| Tap::start(&server.addr(), &format!("{SUBJECT}.>")));
    let d = Deadline::new(
        "40 more acknowledged ids after the restart",
        Duration::from_secs(10),
    );
    while posters.len() < at_restart + 40 {
        d.tick().await;
    }
    let all = posters.stop().await;
    eprintln!(
        "acked {} ({at_kill} before the kill, {} during the outage)",
        all.len(),
        at_restart - at_kill
    );

    let mut stream = StreamReader::open(&server.addr(), STREAM).await;
    let d = Deadline::new(
        "every acknowledged event in the stream",
        Duration::from_secs(60),
    );
    while stream.catch_up().await < all.len() as u64 {
        d.tick().await;
    }
    let d = Deadline::new(
        "every acknowledged event in the file sink",
        Duration::from_secs(20),
    );
    while file_ids(&fx).len() < all.len() {
        d.tick().await;
    }
    assert_eq!(
        stream.catch_up().await,
        all.len() as u64,
        "nothing more arrives"
    );
    assert_stream_holds_each_once(&running, &stream, &all);
    assert_eq!(file_ids(&fx), all, "the file sink has each id once");
    let d = Deadline::new("the circuit to close", Duration::from_secs(10));
    while js(&running, "tollgate_sink_circuit_state") != 0.0 {
        d.tick().await;
    }
    assert_eq!(js(&running, "tollgate_sink_events_total"), all.len() as f64);
    assert_eq!(js(&running, "tollgate_sink_dead_letters_total"), 0.0);
    let (published, distinct) = tap.published();
    eprintln!(
        "after the restart: {published} publishes of {distinct} ids ({} stored before it); copies dropped \
         by Nats-Msg-Id: {}",
        all.len() - distinct,
        published - distinct
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_starts_and_ingests_while_nats_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "n0", None);
    server.kill();
    let fx = fixture(&server, "retry_cap_ms = 200\ntimeout_ms = 1000\n");
    // A restart during a NATS outage must not take ingest (or the file sink) down with it.
    let running = fx.start().await;
    let acked = post(&running, &fx, "down", 10, 2).await;
    let files = Deadline::new("the file sink during the outage", Duration::from_secs(20));
    while file_ids(&fx) != acked {
        files.tick().await;
    }
    assert!(
        js(&running, "tollgate_sink_retries_total") >= 1.0,
        "the js sink retries"
    );
    tokio::task::block_in_place(|| server.restart());
    // The sink connects and creates its stream on its next attempt.
    let arrived = Deadline::new("the js sink after NATS came up", Duration::from_secs(30));
    while js(&running, "tollgate_sink_events_total") < acked.len() as f64 {
        arrived.tick().await;
    }
    let mut stream = StreamReader::open(&server.addr(), STREAM).await;
    stream.catch_up().await;
    assert_stream_holds_each_once(&running, &stream, &acked);
    running.stop().await.unwrap();
}
