//! The `nats` sink against real nats-server processes (the Debian package, 2.9.10): each test starts its own
//! servers on free loopback ports in a temp dir and kills them by PID (a `Drop` guard).

#[path = "support/nats.rs"]
#[allow(dead_code)]
mod nats;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use nats::{free_port, read_stream, Server, Stored};
use tollgate::config::{BatchLimits, NatsConfig, RetryPolicy, SinkConfig, SinkKind};
use tollgate::sink::nats::NatsSink;
use tollgate::sink::{DeadReason, SendError, Sink, SinkBatch};
use tollgate::spool::{Route, StoredRecord};

const STREAM: &str = "TOLLGATE";
const TIMEOUT: Duration = Duration::from_secs(1);

fn sink_config(server: &str, replicas: usize, create_stream: bool) -> (SinkConfig, NatsConfig) {
    let (subject, stream) = ("tollgate.events".into(), STREAM.into());
    let server = server.into();
    let nats = NatsConfig {
        server,
        subject,
        stream,
        create_stream,
        replicas,
        max_in_flight: 16,
    };
    let batch = BatchLimits {
        events: 1000,
        bytes: 1 << 20,
        max_age: Duration::from_secs(1),
    };
    let retry = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
    };
    let kind = SinkKind::Nats(nats.clone());
    let cfg = SinkConfig {
        name: "nats".into(),
        region: None,
        kind,
        batch,
        retry,
        timeout: TIMEOUT,
    };
    (cfg, nats)
}

fn records(prefix: &str, n: usize) -> Vec<StoredRecord> {
    let record = |i: usize| StoredRecord {
        site: ["shop-a", "shop-b"][i % 2].into(),
        event_id: format!("{prefix}-{i:05}"),
        received_ms: 1_700_000_000_000 + i as i64,
        route: Route::All,
        payload: format!(r#"{{"event_id":"{prefix}-{i:05}","n":{i}}}"#).into_bytes(),
    };
    (0..n).map(record).collect()
}

async fn send(sink: &mut NatsSink, records: &[StoredRecord]) -> Result<(), SendError> {
    sink.send(SinkBatch { id: "b1", records }).await
}

/// Re-sends the same batch, as the delivery task would, until it is stored (for at most `limit`).
async fn send_until_ok(sink: &mut NatsSink, records: &[StoredRecord], limit: Duration) -> u32 {
    let start = Instant::now();
    for attempt in 1.. {
        match send(sink, records).await {
            Ok(()) => return attempt,
            Err(SendError::Retry { .. }) if start.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("attempt {attempt} after {:?}: {e}", start.elapsed()),
        }
    }
    unreachable!()
}

fn is_dead_invalid(e: &SendError) -> bool {
    matches!(e, SendError::Dead { reason, .. } if *reason == DeadReason::Invalid)
}

/// `event_id` (from `Nats-Msg-Id`) → what the stream holds for it.
async fn stored(addr: &str) -> HashMap<String, Stored> {
    read_stream(addr, STREAM).await
}

fn assert_each_once(got: &HashMap<String, Stored>, sent: &[StoredRecord]) {
    assert_eq!(got.len(), sent.len(), "distinct ids in the stream");
    for r in sent {
        let s = &got[&r.event_id];
        assert_eq!(s.subject, format!("tollgate.events.{}", r.site));
        assert_eq!((&s.payload, s.copies), (&r.payload, 1), "{}", r.event_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_with_msg_ids_and_a_resent_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "n0", None);
    let (cfg, nats) = sink_config(&server.addr(), 1, true);
    let mut sink = NatsSink::connect(&cfg, &nats).await.expect("connect");
    let batch = records("a", 100);
    send(&mut sink, &batch).await.expect("first send");
    assert_each_once(&stored(&server.addr()).await, &batch);
    // The same batch again: every PubAck says duplicate, and that counts as stored.
    send(&mut sink, &batch).await.expect("resend");
    assert_each_once(&stored(&server.addr()).await, &batch);

    // A second sink finds the stream the first created and accepts it; a mismatched one is refused.
    NatsSink::connect(&cfg, &nats).await.expect("verifies");
    let (cfg3, nats3) = sink_config(&server.addr(), 3, true);
    let err = NatsSink::connect(&cfg3, &nats3).await.unwrap_err();
    assert!(err.to_string().contains("num_replicas"), "{err}");
    Box::new(sink).close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stream_is_a_build_error_and_oversized_messages_are_dead() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "n0", None);
    let (cfg, nats) = sink_config(&server.addr(), 1, false);
    let err = NatsSink::connect(&cfg, &nats).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let js = jetstream::new(async_nats::connect(server.addr()).await.unwrap());
    let subjects = vec!["tollgate.>".into()];
    let limited = stream::Config {
        name: STREAM.into(),
        subjects,
        max_message_size: 1024,
        ..Default::default()
    };
    js.create_stream(limited).await.unwrap();
    // An operator's stream that captures the subject (and limits the message size) is accepted.
    let mut sink = NatsSink::connect(&cfg, &nats).await.unwrap();
    let mut batch = records("big", 3);
    batch[1].payload = vec![b'x'; 2000];
    let err = send(&mut sink, &batch).await.unwrap_err();
    assert!(is_dead_invalid(&err), "the stream's max_msg_size: {err}");
    batch[1].payload = vec![b'x'; 2 << 20];
    let err = send(&mut sink, &batch).await.unwrap_err();
    assert!(is_dead_invalid(&err), "the server's max_payload: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_retry_and_after_restart_every_id_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "n0", None);
    let (cfg, nats) = sink_config(&server.addr(), 1, true);
    let mut sink = NatsSink::connect(&cfg, &nats).await.expect("connect");
    let first = records("before", 50);
    send(&mut sink, &first).await.expect("send before the stop");

    server.kill();
    let batch = records("during", 50);
    let started = Instant::now();
    let err = send(&mut sink, &batch).await.expect_err("server is down");
    let took = started.elapsed();
    eprintln!("server down: {err} after {took:?}");
    assert!(
        matches!(err, SendError::Retry { .. }) && took < TIMEOUT * 2,
        "{err} after {took:?}"
    );

    server.restart();
    let attempts = send_until_ok(&mut sink, &batch, Duration::from_secs(20)).await;
    eprintln!("stored after the restart in {attempts} attempt(s)");
    // Acknowledged before the SIGKILL, so written before the PubAck: still there without a re-send.
    let all = [first.clone(), batch].concat();
    assert_each_once(&stored(&server.addr()).await, &all);
    // The duplicate window survives the restart.
    send(&mut sink, &first).await.expect("resend");
    assert_each_once(&stored(&server.addr()).await, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_cluster_loses_the_leader_during_a_send_and_every_id_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let routes = [free_port(), free_port(), free_port()];
    let start = |i: usize| {
        let peers = routes.iter().copied().filter(|p| *p != routes[i]).collect();
        Server::start(dir.path(), &format!("n{i}"), Some((routes[i], peers)))
    };
    let mut nodes: Vec<Server> = (0..3).map(start).collect();
    // The JetStream meta leader is elected a few seconds after the servers are ready.
    let (cfg, nats) = sink_config(&nodes[0].addr(), 3, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until then the sink builds without a connection (it would connect on its first batch).
    loop {
        match NatsSink::connect(&cfg, &nats).await {
            Ok(sink) if sink.client().is_some() => break,
            other => assert!(
                Instant::now() < deadline,
                "the cluster never accepted the R3 stream: {:?}",
                other.err()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Connect the sink to the stream leader, then kill that node while the batch is in flight.
    let js = jetstream::new(async_nats::connect(nodes[0].addr()).await.unwrap());
    let info = js.get_stream(STREAM).await.unwrap().cached_info().clone();
    let leader = info.cluster.and_then(|c| c.leader).expect("stream leader");
    let victim = nodes.iter().position(|n| n.name == leader).unwrap();
    let (cfg, nats) = sink_config(&nodes[victim].addr(), 3, true);
    let mut sink = NatsSink::connect(&cfg, &nats).await.unwrap();
    let witness = nodes[(victim + 1) % 3].addr();
    let js = jetstream::new(async_nats::connect(witness.clone()).await.unwrap());

    let batch = records("r3", 2000);
    let to_send = batch.clone();
    let sending = tokio::spawn(async move { (send(&mut sink, &to_send).await, sink) });
    let (mut seen, deadline) = (0, Instant::now() + Duration::from_secs(10));
    while seen == 0 && Instant::now() < deadline {
        let stream = js.get_stream(STREAM).await.unwrap();
        seen = stream.cached_info().state.messages;
    }
    nodes[victim].kill();
    assert!(
        seen > 0 && seen < batch.len() as u64,
        "killed with {seen} of {} stored",
        batch.len()
    );
    let (first, mut sink) = sending.await.unwrap();
    eprintln!("first attempt, leader killed after {seen} stored: {first:?}");
    let attempts = send_until_ok(&mut sink, &batch, Duration::from_secs(30)).await;
    eprintln!("stored after {attempts} more attempt(s)");
    assert_each_once(&stored(&witness).await, &batch);
}
