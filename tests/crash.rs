//! The real binary under repeated SIGKILL while clients post: every event that got a 204 is, at the end,
//! either still in the spool or in the file sink's output (at-least-once, duplicates allowed), and in the
//! JetStream stream of a real nats-server (`support/nats.rs`) exactly once (re-sends after a crash are
//! dropped by `Nats-Msg-Id`), while segments rotate and get reclaimed between the crashes. Replay a failure
//! with `TOLLGATE_CRASH_SEED=<seed>`.

mod common;
#[path = "support/nats.rs"]
#[allow(dead_code)]
mod nats;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::json;

use common::proc::Proc;
use common::{dump, event, Fixture, Proto};
use nats::{Server, StreamReader, Tap};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ROUNDS: u32 = 20;
const CLIENTS: usize = 4;
const SINK: &str =
    "[[sinks]]\nname = \"file\"\ntype = \"file\"\ndir = \"out\"\nbatch_events = 50\n";
const STREAM: &str = "TOLLGATE";

/// A `js` sink on `server` that creates its stream, with batches as small as the file sink's.
fn nats_sink(server: &Server) -> String {
    format!(
        "[[sinks]]\nname = \"js\"\ntype = \"nats\"\nurl = \"{}\"\nstream = \"{STREAM}\"\n\
         create_stream = true\nbatch_events = 50\n",
        server.url()
    )
}

/// xorshift64: small, seedable, good enough to pick delays and batch sizes.
struct Rng(u64);

impl Rng {
    fn from_env_or_time() -> (Rng, u64) {
        let seed = match std::env::var("TOLLGATE_CRASH_SEED") {
            Ok(s) => s.parse().expect("TOLLGATE_CRASH_SEED is a u64"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        };
        (Rng(seed | 1), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One TLS connection whose failures are values: requests in flight at a SIGKILL fail, and that is fine.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn open(addr: SocketAddr, ca_pem: &str, proto: Proto) -> Result<Conn, BoxError> {
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let alpn: &[u8] = if proto == Proto::H1 {
            b"http/1.1"
        } else {
            b"h2"
        };
        let cfg = common::client_config(ca_pem, versions, &[alpn]);
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let io = TokioIo::new(tls);
        Ok(match proto {
            Proto::H1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Proto::H2 => {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Conn::H2(send)
            }
        })
    }

    async fn post(&mut self, body: String) -> Result<StatusCode, BoxError> {
        let req = common::request("POST", "/v1/events", Some("application/json"), body.into());
        let res = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = res.status();
        res.into_body().collect().await?;
        Ok(status)
    }
}

/// What one client saw: ids it sent, ids acknowledged with 204, and answers that were neither.
#[derive(Default)]
struct Tally {
    sent: Vec<String>,
    acked: Vec<String>,
    refused: Vec<StatusCode>,
}

/// Posts single events and small batches of fresh ids until the connection fails (the process died).
async fn client(addr: SocketAddr, ca_pem: String, proto: Proto, tag: String, seed: u64) -> Tally {
    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    let Ok(mut conn) = Conn::open(addr, &ca_pem, proto).await else {
        return tally;
    };
    for seq in 0.. {
        let n = rng.range(1, 5);
        let ids: Vec<String> = (0..n).map(|k| format!("{tag}-{seq}-{k}")).collect();
        let body = if n == 1 {
            event(&ids[0]).to_string()
        } else {
            json!(ids.iter().map(|id| event(id)).collect::<Vec<_>>()).to_string()
        };
        tally.sent.extend(ids.iter().cloned());
        match conn.post(body).await {
            Ok(StatusCode::NO_CONTENT) => tally.acked.extend(ids),
            Ok(other) => tally.refused.push(other),
            Err(_) => break,
        }
    }
    tally
}

/// Every complete line of the sink's NDJSON files, parsed; a last line without `\n` (cut by a crash) is
/// skipped, any other line must be a JSON object.
fn output_records(fx: &Fixture) -> Vec<serde_json::Value> {
    let mut files = Vec::new();
    collect_files(&fx.dir.path().join("data/out"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        for line in complete.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", f.display()));
            out.push(v);
        }
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "ndjson") {
            out.push(path);
        }
    }
}

fn ids(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event_id"].as_str().expect("record has event_id").into())
        .collect()
}

/// Segment numbers present in the spool directory.
fn segments(fx: &Fixture) -> BTreeSet<u64> {
    std::fs::read_dir(fx.spool_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_prefix("seg-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect()
}

/// What one process's log says: WARN and ERROR lines (without timestamps), and recovery's findings.
#[derive(Default)]
struct LogSummary {
    notable: BTreeSet<String>,
    torn_tails: u64,
    corrupt_records: u64,
}

impl LogSummary {
    fn add(&mut self, log: &str) {
        for l in log.lines() {
            if l.contains(" WARN ") || l.contains(" ERROR ") {
                let rest = l.split_once(' ').map_or(l, |(_, rest)| rest);
                self.notable.insert(rest.trim().to_string());
            }
            if l.contains("spool: recovered") {
                self.torn_tails += field(l, "torn_tails=");
                self.corrupt_records += field(l, "corrupt_records=");
            }
        }
    }
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// One round: start, post from several clients, SIGKILL after a random delay; the clients' tallies and
/// the process's log.
async fn crash_round(fx: &Fixture, round: u32, rng: &mut Rng) -> (Vec<Tally>, String) {
    let mut p = tokio::task::block_in_place(|| Proc::start(&fx.config_path()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let proto = if t % 2 == 0 { Proto::H1 } else { Proto::H2 };
            let tag = format!("r{round}-c{t}");
            let fut = client(p.public, fx.ca_pem.clone(), proto, tag, rng.next());
            tokio::spawn(fut)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(rng.range(50, 400))).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "round {round}: tollgate exited before the kill:\n{}",
        p.stderr_text()
    );
    p.signal("KILL");
    let status = tokio::task::block_in_place(|| p.wait_exit());
    assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");
    let mut tallies = Vec::new();
    for t in tasks {
        let tally = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("a client hangs after the kill")
            .unwrap();
        tallies.push(tally);
    }
    let log = tokio::task::block_in_place(|| p.stderr_text());
    assert!(!log.contains("panicked"), "round {round}:\n{log}");
    (tallies, log)
}

/// Where every id ended up once the run is over.
struct Final {
    /// Lines in the sink's output, and distinct ids among them (the rest are duplicates).
    lines: usize,
    distinct: usize,
    /// Records left in the spool, and acknowledged ids found only there.
    spooled: usize,
    only_spooled: usize,
    /// Acknowledged ids found nowhere (neither output nor spool), and ids found that were never sent.
    lost: Vec<String>,
    unknown: Vec<String>,
    /// Messages in the stream (every copy), distinct ids among them, acknowledged ids not in it (yet).
    js_messages: u64,
    js_distinct: usize,
    js_missing: Vec<String>,
    /// Acknowledged ids neither in the stream nor in the spool.
    js_lost: Vec<String>,
}

impl Final {
    /// What the sink's output, the spool and `stream` (as of its last `catch_up`) hold.
    fn read(
        fx: &Fixture,
        sent: &HashSet<String>,
        acked: &[String],
        stream: &StreamReader,
    ) -> Final {
        let output = ids(&output_records(fx));
        let spooled = ids(&dump(fx));
        let delivered: HashSet<&String> = output.iter().collect();
        let in_spool: HashSet<&String> = spooled.iter().collect();
        let found: HashSet<&String> = output.iter().chain(&spooled).collect();
        let missing = |have: &dyn Fn(&String) -> bool| -> Vec<String> {
            acked.iter().filter(|id| !have(id)).cloned().collect()
        };
        let js = &stream.by_id;
        Final {
            lines: output.len(),
            distinct: delivered.len(),
            spooled: spooled.len(),
            only_spooled: acked.iter().filter(|id| !delivered.contains(id)).count(),
            lost: missing(&|id| found.contains(id)),
            unknown: found
                .into_iter()
                .chain(js.keys())
                .filter(|id| !sent.contains(*id))
                .cloned()
                .collect(),
            js_messages: stream.info().state.messages,
            js_distinct: js.len(),
            js_missing: missing(&|id| js.contains_key(id)),
            js_lost: missing(&|id| js.contains_key(id) || in_spool.contains(id)),
        }
    }
}

/// Fails with the seed and a sample if `ids` is not empty.
fn assert_none(ids: &[String], what: &str, seed: u64) {
    assert!(
        ids.is_empty(),
        "seed {seed}: {} acknowledged id(s) {what}, e.g. {:?}",
        ids.len(),
        &ids[..ids.len().min(10)]
    );
}

/// Starts once more without load, waits (at most 30 s) until every acknowledged id is in the output and
/// in the stream, and stops with SIGTERM; how long it took and the process's log.
async fn drain(fx: &Fixture, acked: &[String], stream: &mut StreamReader) -> (Duration, String) {
    let started = Instant::now();
    let mut p = tokio::task::block_in_place(|| Proc::start(&fx.config_path()));
    // A served handshake shows startup is over: `main.rs` installs its SIGTERM handler only after the
    // listening line, and a SIGTERM before that kills the process uncleanly (reported separately).
    Conn::open(p.public, &fx.ca_pem, Proto::H2).await.unwrap();
    let want: HashSet<&String> = acked.iter().collect();
    while started.elapsed() < Duration::from_secs(30) {
        let out: HashSet<String> = ids(&output_records(fx)).into_iter().collect();
        if want.iter().all(|id| out.contains(*id)) {
            stream.catch_up().await;
            if want.iter().all(|id| stream.by_id.contains_key(*id)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.signal("TERM");
    let status = tokio::task::block_in_place(|| p.wait_exit());
    let log = tokio::task::block_in_place(|| p.stderr_text());
    assert!(status.success(), "{status:?}:\n{log}");
    (started.elapsed(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_20_sigkills() {
    let started = Instant::now();
    let (mut rng, seed) = Rng::from_env_or_time();
    eprintln!("crash test seed {seed} (replay: TOLLGATE_CRASH_SEED={seed})");
    let fx = Fixture::new(SINK);
    fx.edit_config(|t| t.replacen("[spool]\n", "[spool]\nsegment_bytes = 65536\n", 1));
    // One nats-server for the whole test, its store in the test's dir; it is never killed.
    let server = Server::start(fx.dir.path(), "nats", None);
    fx.edit_config(|t| t + &nats_sink(&server));
    let tap = Tap::start(&server.addr(), "tollgate.events.>");

    let (mut sent, mut acked, mut highest_seg) = (HashSet::new(), Vec::new(), 0);
    let (mut logs, mut stream, mut js_waiting) = (LogSummary::default(), None, 0);
    for round in 0..ROUNDS {
        let (tallies, log) = crash_round(&fx, round, &mut rng).await;
        logs.add(&log);
        for t in tallies {
            assert!(t.refused.is_empty(), "round {round}: {:?}", t.refused);
            sent.extend(t.sent);
            acked.extend(t.acked);
        }
        highest_seg = highest_seg.max(segments(&fx).last().copied().unwrap_or(0));
        // The first process created the stream.
        let stream = match &mut stream {
            Some(s) => s,
            None => stream.insert(StreamReader::open(&server.addr(), STREAM).await),
        };
        stream.catch_up().await;
        let r = Final::read(&fx, &sent, &acked, stream);
        assert_none(&r.lost, &format!("lost after round {round}"), seed);
        assert_none(
            &r.js_lost,
            &format!("neither in the stream nor spooled after round {round}"),
            seed,
        );
        assert_eq!(
            r.js_messages, r.js_distinct as u64,
            "seed {seed}, round {round}: a re-sent event was stored twice in the stream"
        );
        js_waiting = js_waiting.max(r.js_missing.len());
    }
    let mut stream = stream.expect("at least one round");
    let (drain_time, log) = drain(&fx, &acked, &mut stream).await;
    logs.add(&log);

    stream.catch_up().await;
    let r = Final::read(&fx, &sent, &acked, &stream);
    let (published, _) = tap.published();
    let left = segments(&fx);
    let deleted = highest_seg.max(left.last().copied().unwrap_or(0)) - left.len() as u64;
    eprintln!(
        "crash summary: seed {seed}, rounds {ROUNDS}, sent {}, acked {}, delivered {} lines ({} distinct), \
         duplicates {}, acked only in spool {}, still spooled {}, segments deleted {deleted} (left {left:?}), \
         torn tails {}, corrupt records {}; nats stream {} messages ({} distinct ids), acked missing from it {}, \
         {published} publishes (re-sent copies dropped by Nats-Msg-Id {}), \
         most acked waiting for it in the spool after a kill {js_waiting}; drain {drain_time:?}, total {:?}",
        sent.len(),
        acked.len(),
        r.lines,
        r.distinct,
        r.lines - r.distinct,
        r.only_spooled,
        r.spooled,
        logs.torn_tails,
        logs.corrupt_records,
        r.js_messages,
        r.js_distinct,
        r.js_missing.len(),
        published.saturating_sub(r.js_messages as usize),
        started.elapsed()
    );
    for l in &logs.notable {
        eprintln!("crash log: {l}");
    }
    assert_none(&r.lost, "lost", seed);
    assert_none(&r.js_missing, "not in the stream after the drain", seed);
    assert_eq!(
        stream.messages(),
        r.js_messages,
        "every message of the stream read"
    );
    assert_eq!(
        r.js_messages, r.js_distinct as u64,
        "seed {seed}: an event was stored twice in the stream"
    );
    assert_eq!(logs.corrupt_records, 0, "SIGKILL alone damaged records");
    assert!(r.unknown.is_empty(), "ids never sent: {:?}", r.unknown);
    assert!(acked.len() >= 300, "only {} acknowledged", acked.len());
    assert!(
        !left.contains(&1) && deleted > 0,
        "no segment was reclaimed: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_output_holds_minimized_records_only() {
    let fx = Fixture::new(SINK);
    let mut p = tokio::task::block_in_place(|| Proc::start(&fx.config_path()));
    let mut acked = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = Conn::open(p.public, &fx.ca_pem, proto).await.unwrap();
        for i in 0..5 {
            let ids = [format!("{proto:?}-{i}-a"), format!("{proto:?}-{i}-b")];
            let body = json!([event(&ids[0]), event(&ids[1])]).to_string();
            assert_eq!(c.post(body).await.unwrap(), StatusCode::NO_CONTENT);
            acked.extend(ids);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while output_records(&fx).len() < acked.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.signal("TERM");
    assert!(tokio::task::block_in_place(|| p.wait_exit()).success());

    let records = output_records(&fx);
    let mut got = ids(&records);
    got.sort();
    acked.sort();
    assert_eq!(got, acked);
    for r in records.iter().chain(&dump(&fx)) {
        let line = r.to_string();
        assert!(
            !line.contains('@'),
            "an e-mail-like value was stored: {line}"
        );
        assert!(
            !line.contains("127.0.0.1"),
            "the client IP was stored: {line}"
        );
        assert!(
            r["customer"]["email_hash"].is_string(),
            "no customer.email_hash: {line}"
        );
    }
}

/// A SIGKILL between creating a segment file and writing its header (`spool/writer.rs` `create_segment`)
/// leaves an empty newest segment. Recovery removes it and keeps every record; the offline views must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_dump_reads_a_spool_killed_while_creating_a_segment() {
    let fx = Fixture::new("");
    let mut p = tokio::task::block_in_place(|| Proc::start(&fx.config_path()));
    let mut c = Conn::open(p.public, &fx.ca_pem, Proto::H1).await.unwrap();
    let sent = ["k-1", "k-2", "k-3"];
    let body = json!(sent.iter().map(|id| event(id)).collect::<Vec<_>>()).to_string();
    assert_eq!(c.post(body).await.unwrap(), StatusCode::NO_CONTENT);
    p.signal("KILL");
    tokio::task::block_in_place(|| p.wait_exit());
    let next = segments(&fx).last().unwrap() + 1;
    std::fs::write(fx.spool_dir().join(format!("seg-{next:020}.log")), b"").unwrap();

    // What `tollgate spool dump` shows right after the crash, before any restart ...
    assert_eq!(ids(&dump(&fx)), sent);
    // ... is what recovery keeps (in-process, so no signal races a restart of the binary).
    fx.start().await.stop().await.unwrap();
    assert_eq!(ids(&dump(&fx)), sent);
}
