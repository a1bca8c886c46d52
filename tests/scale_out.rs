//! Scale-out end to end: two real `tollgate run` processes (each its own data dir and spool, its own dev
//! certificate) write through the `nats` sink to a 3-node nats-server 2.9.10 JetStream cluster holding the
//! R3 stream of `deploy/nats/stream.json`. curl (HTTP/2 and HTTP/1.1) spreads events with unique ids over
//! both gateways while the stream's leader node is SIGKILLed (the stream must keep taking events on 2 of
//! 3 nodes) and then one gateway is SIGKILLed and restarted on the same data dir. Afterwards every event_id
//! that got a 204 is in the stream exactly once (by `Nats-Msg-Id`), and nothing else is. Every server is on
//! 127.0.0.1 on a free port and stopped by PID (also on panic); every wait has a deadline.

mod common;

#[path = "support/nats.rs"]
#[allow(dead_code)]
mod nats;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::Config};
use common::proc::Proc;
use common::{event, Fixture};
use nats::{free_port, Server, StreamReader, Tap};

const STREAM: &str = "TOLLGATE";
/// Requests per curl process (one connection, `--next` between them) and events per request.
const REQUESTS: usize = 5;
const PER_REQUEST: usize = 4;

/// The stream as `deploy/nats/stream.json` defines it; only `max_bytes` is lowered (50 GiB is reserved up
/// front and would not fit a test machine's disk three times over).
fn stream_definition() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nats/stream.json");
    let mut config: Config = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(config.num_replicas, 3, "stream.json: R3");
    config.max_bytes = 256 << 20;
    config
}

/// A gateway whose `nats` sink seeds on `seed` and expects the stream to exist (as in production).
fn gateway(seed: &Server) -> Fixture {
    Fixture::new(&format!(
        "[[sinks]]\nname = \"nats\"\ntype = \"nats\"\nurl = \"{}\"\nsubject = \"tollgate.events\"\n\
         stream = \"{STREAM}\"\ncreate_stream = false\nreplicas = 3\nbatch_age_ms = 20\n\
         retry_base_ms = 50\nretry_cap_ms = 1000\ntimeout_ms = 2000\n",
        seed.url()
    ))
}

/// What the clients saw: every id sent, each id answered 204 with its gateway and when, any other answer.
#[derive(Default)]
struct Ledger {
    sent: HashSet<String>,
    acked: Vec<(String, usize, Instant)>,
    /// Answers other than 204 and curl's 000 (no answer: the gateway was killed).
    unexpected: Vec<String>,
}

struct Clients {
    ports: Arc<Mutex<[u16; 2]>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    /// One thread per protocol, each alternating between the gateways, one curl process at a time.
    fn start(cas: [PathBuf; 2], ports: [u16; 2]) -> Clients {
        let ports = Arc::new(Mutex::new(ports));
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = ["--http2", "--http1.1"]
            .into_iter()
            .map(|proto| {
                let (ports, ledger, stop) = (ports.clone(), Arc::clone(&ledger), stop.clone());
                let cas = cas.clone();
                std::thread::spawn(move || {
                    for round in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let g = round % 2;
                        let port = ports.lock().unwrap()[g];
                        let tag = format!("{}-{round:05}", proto.trim_start_matches('-'));
                        for (ids, code) in curl_round(&cas[g], port, proto, &tag) {
                            let mut l = ledger.lock().unwrap();
                            l.sent.extend(ids.iter().cloned());
                            match code.as_str() {
                                "204" => {
                                    let now = Instant::now();
                                    l.acked.extend(ids.into_iter().map(|id| (id, g, now)));
                                }
                                "000" => {}
                                other => l.unexpected.push(format!("{other} {ids:?}")),
                            }
                        }
                    }
                })
            })
            .collect();
        Clients {
            ports,
            ledger,
            stop,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.ledger.lock().unwrap().acked.len()
    }

    /// Stops the threads and waits for them (each finishes its curl, bounded by --max-time).
    fn finish(&mut self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("client thread");
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One curl process posting [`REQUESTS`] requests of [`PER_REQUEST`] events as a browser of the shop:
/// each request's ids and HTTP status ("000" when there was no answer).
fn curl_round(ca: &PathBuf, port: u16, proto: &str, tag: &str) -> Vec<(Vec<String>, String)> {
    let url = format!("https://localhost:{port}/v1/events");
    let mut cmd = Command::new("curl");
    let mut batches = Vec::new();
    for r in 0..REQUESTS {
        let ids: Vec<String> = (0..PER_REQUEST).map(|j| format!("{tag}-{r}-{j}")).collect();
        let body = serde_json::Value::Array(ids.iter().map(|id| event(id)).collect());
        if r > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}\\n", proto])
            .args(["--max-time", "5", "--connect-timeout", "2", "--cacert"])
            .arg(ca)
            .args(["-H", "content-type: application/json"])
            .args(["-H", "Origin: https://shop.example"])
            .args(["--data-binary", &body.to_string(), &url]);
        batches.push(ids);
    }
    let out = cmd.output().expect("curl");
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut codes = codes.lines().map(str::to_owned);
    batches
        .into_iter()
        .map(|ids| (ids, codes.next().unwrap_or_else(|| "000".into())))
        .collect()
}

/// Messages in the stream, as a surviving node reports them; `None` while it cannot answer (a stream
/// leader election after a node was killed).
async fn stored(js: &jetstream::Context) -> Option<u64> {
    let mut stream = js.get_stream(STREAM).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// Polls [`stored`] every 100 ms until it reaches `want(count)`; panics after `limit`. Returns the count
/// first seen (when `want` is `None`) or how long it took.
async fn wait_stored(
    js: &jetstream::Context,
    want: Option<u64>,
    limit: Duration,
    what: &str,
) -> (u64, Duration) {
    let start = Instant::now();
    loop {
        let have = stored(js).await;
        match (have, want) {
            (Some(n), None) => return (n, start.elapsed()),
            (Some(n), Some(w)) if n >= w => return (n, start.elapsed()),
            _ => {}
        }
        assert!(
            start.elapsed() < limit,
            "{what}: {have:?} of {want:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three clustered nats-server processes on free loopback ports (blocks until each is ready).
fn cluster(dir: &std::path::Path) -> Vec<Server> {
    let routes = [free_port(), free_port(), free_port()];
    (0..3)
        .map(|i| {
            let peers = routes.iter().copied().filter(|p| *p != routes[i]).collect();
            Server::start(dir, &format!("n{i}"), Some((routes[i], peers)))
        })
        .collect()
}

/// Creates the stream (retried until JetStream has a meta leader); the index of the stream's leader.
async fn create_stream(nodes: &[Server]) -> usize {
    let js = jetstream::new(async_nats::connect(nodes[0].addr()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Ok(mut s) = js.create_stream(stream_definition()).await {
            if let Ok(Some(leader)) = s
                .info()
                .await
                .map(|i| i.cluster.clone().and_then(|c| c.leader))
            {
                break leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never took the R3 stream"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    nodes.iter().position(|n| n.name == leader).unwrap()
}

fn start(fx: &Fixture) -> Proc {
    tokio::task::block_in_place(|| Proc::start(&fx.config_path()))
}

/// SIGTERM and a clean exit (drained, fsynced) within 40 s.
fn stop(mut p: Proc) {
    p.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}:\n{}", p.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_survive_a_lost_nats_node_and_a_gateway_sigkill_storing_each_acked_event_once()
{
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = tokio::task::block_in_place(|| cluster(dir.path()));
    let victim = create_stream(&nodes).await;
    // The gateways seed on the two nodes that survive; the stream leader is the one killed.
    let seeds = [(victim + 1) % 3, (victim + 2) % 3];
    let fxs = [gateway(&nodes[seeds[0]]), gateway(&nodes[seeds[1]])];
    let mut procs = [start(&fxs[0]), start(&fxs[1])];
    let js = jetstream::new(async_nats::connect(nodes[seeds[0]].addr()).await.unwrap());
    let tap = Tap::start(&nodes[seeds[0]].addr(), "tollgate.events.>");
    eprintln!("cluster and gateways up after {:?}", started.elapsed());

    let cas = fxs.each_ref().map(|fx| fx.dir.path().join("tls/ca.pem"));
    let mut clients = Clients::start(cas, procs.each_ref().map(|p| p.public.port()));
    let secs = Duration::from_secs;
    wait_stored(&js, Some(300), secs(30), "events before the kill").await;

    // The stream's leader goes down for good: R3 elects a new one among the two left and keeps storing.
    let (before, _) = wait_stored(&js, None, secs(10), "count before the kill").await;
    nodes[victim].kill();
    let acked_at_kill = clients.acked();
    let (at_kill, election) = wait_stored(&js, None, secs(30), "count after the kill").await;
    eprintln!("first count after the kill, {election:?} later: {at_kill} (had {before})");
    let (_, took) = wait_stored(&js, Some(at_kill + 300), secs(40), "R3 on 2 of 3 nodes").await;
    eprintln!(
        "{} killed with {at_kill} stored; 300 more stored {took:?} later",
        nodes[victim].name
    );

    // One gateway is SIGKILLed mid-traffic and restarted on the same data dir (its spool recovers and its
    // sink re-sends what it had not seen acknowledged).
    procs[1].child.kill().unwrap();
    procs[1].child.wait().unwrap();
    let killed_at = Instant::now();
    procs[1] = start(&fxs[1]);
    clients.ports.lock().unwrap()[1] = procs[1].public.port();
    let (at_restart, _) = wait_stored(&js, None, secs(30), "count after the restart").await;
    wait_stored(&js, Some(at_restart + 300), secs(30), "after the restart").await;
    let ledger = tokio::task::block_in_place(|| clients.finish());
    let restarted_acks = ledger.acked.iter().filter(|a| a.1 == 1 && a.2 > killed_at);

    // Both gateways drain to the stream: every acknowledged id arrives.
    let acked: HashSet<&String> = ledger.acked.iter().map(|a| &a.0).collect();
    let mut reader = StreamReader::open(&nodes[seeds[0]].addr(), STREAM).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acked.iter().all(|id| reader.by_id.contains_key(*id)) {
        assert!(
            Instant::now() < deadline,
            "acknowledged ids missing after 60 s"
        );
        reader.catch_up().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in procs {
        tokio::task::block_in_place(|| stop(p));
    }
    let total = reader.catch_up().await;

    assert!(ledger.unexpected.is_empty(), "{:?}", ledger.unexpected);
    assert!(
        ledger.acked.len() > acked_at_kill,
        "acks while a node was down"
    );
    assert!(
        restarted_acks.count() > 0,
        "the restarted gateway answered 204"
    );
    for g in 0..2 {
        assert!(ledger.acked.iter().any(|a| a.1 == g), "gateway {g} acked");
    }
    assert_eq!(acked.len(), ledger.acked.len(), "ids are unique");
    for (id, s) in &reader.by_id {
        assert_eq!(s.copies, 1, "{id} stored {} times", s.copies);
        assert!(ledger.sent.contains(id), "{id} was never sent");
        assert_eq!(s.subject, "tollgate.events.demo");
        let text = String::from_utf8_lossy(&s.payload);
        assert!(text.contains("email_hash") && !text.contains('@'), "{text}");
    }
    assert_eq!(total, reader.by_id.len() as u64, "one message per id");
    let (published, distinct) = tap.published();
    eprintln!(
        "sent {} ids, {} acknowledged (204), {} stored once each; {} published, {} re-sent copies \
         dropped by the duplicate window; {:?} in all",
        ledger.sent.len(),
        acked.len(),
        total,
        published,
        published - distinct,
        started.elapsed()
    );
}
