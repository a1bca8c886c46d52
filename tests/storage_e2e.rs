//! The storage tier end to end: beacons acknowledged over TLS (HTTP/1.1 and HTTP/2) by the in-process
//! gateway reach a real ClickHouse 18.16 (`support/clickhouse.rs`), the file sink and an HTTPS upstream
//! (`support/upstream.rs`) — each exactly once after de-duplication, through outages, timeouts and throttling.
//! Every wait polls with a deadline; servers are started per test and stopped by PID.

mod common;

#[path = "support/clickhouse.rs"]
#[allow(dead_code)]
mod server;
#[path = "support/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    event, metric, post_ids as post, sink_records, wait_for, Client, Fixture, Proto, NOW_MS,
};
use serde_json::Value;
use server::{ClickHouse, PASSWORD};
use tokio::time::Instant;
use tollgate::app::Running;
use tollgate::event::minimize::normalize;
use tollgate::tls::DevPki;
use upstream::{Mode, Upstream};

/// The table, as `docs/sinks.md` documents it.
const DDL: &str = "CREATE TABLE tollgate.events (site String, event_id String, received_ms Int64, \
    type String, record String) ENGINE = ReplacingMergeTree() \
    PARTITION BY toYYYYMM(toDate(intDiv(received_ms, 1000))) ORDER BY (site, event_id)";

/// A ClickHouse server with the documented database and table.
fn clickhouse() -> ClickHouse {
    let ch = ClickHouse::start();
    ch.query("CREATE DATABASE tollgate");
    ch.query(DDL);
    ch
}

/// A gateway config with a file sink and a `ch` sink writing as the `writer` user; `ch_extra` adds keys.
fn fixture_with_clickhouse(ch: &ClickHouse, ch_extra: &str) -> Fixture {
    let fx = Fixture::new(&format!(
        "[[sinks]]\nname = \"file\"\ntype = \"file\"\nbatch_age_ms = 20\n\
         [[sinks]]\nname = \"ch\"\ntype = \"clickhouse\"\nurl = \"http://127.0.0.1:{}/\"\n\
         user = \"writer\"\npassword_file = \"ch.password\"\nbatch_age_ms = 50\n{ch_extra}",
        ch.http_port
    ));
    std::fs::write(fx.dir.path().join("ch.password"), PASSWORD).unwrap();
    fx
}

/// A gateway config with one `http` sink named `up` posting to `up` (trusting its CA); `extra` adds keys.
fn fixture_with_upstream(up: &Upstream, pki: &DevPki, extra: &str) -> Fixture {
    let fx = Fixture::new(&format!(
        "[[sinks]]\nname = \"up\"\ntype = \"http\"\nurl = \"https://localhost:{}/ingest\"\n\
         ca_file = \"up-ca.pem\"\nbatch_age_ms = 20\nretry_base_ms = 10\n{extra}",
        up.addr.port()
    ));
    std::fs::write(fx.dir.path().join("up-ca.pem"), &pki.ca_pem).unwrap();
    fx
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

fn file_ids(fx: &Fixture) -> Vec<String> {
    sink_records(&fx.dir.path().join("data/out"))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The rows ClickHouse shows after `FINAL`, ordered by event id.
fn final_rows(ch: &ClickHouse) -> Vec<Value> {
    ch.query(
        "SELECT site, event_id, toString(received_ms) AS ms, type, record FROM tollgate.events FINAL \
         ORDER BY event_id FORMAT JSONEachRow",
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

fn final_ids(ch: &ClickHouse) -> Vec<String> {
    final_rows(ch)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks one stored event against what `common::event(id)` sent and the demo tenant's key.
fn assert_minimized(running: &Running, id: &str, record: &Value) {
    let key = running.ctx.config.load().tenants["demo"]
        .keys
        .active()
        .tag(normalize(&format!("  Shopper.{id}@Example.COM ")).as_bytes());
    assert_eq!(record["event_id"], id);
    assert_eq!(record["customer"]["email_hash"], key.as_str(), "{record}");
    assert_eq!(record["customer"]["age_band"], "35-44", "{record}");
    assert_eq!(
        record["page_url"], "https://shop.example/cart?utm_source=mail",
        "{record}"
    );
    assert_eq!(record["cart"]["value"], 12.5, "{record}");
    let text = record.to_string();
    for leak in ["@", "Ann", "Shopper", "frag", "127.0.0.1"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_reaches_clickhouse_and_the_file_sink_once() {
    let ch = clickhouse();
    let fx = fixture_with_clickhouse(&ch, "batch_events = 64\n");
    let running = fx.start().await;
    let acked = post(&running, &fx, "once", 25, 4).await;
    assert_eq!(acked.len(), 200);

    wait_for("every event in ClickHouse", Duration::from_secs(30), || {
        final_ids(&ch).len() >= acked.len()
    })
    .await;
    wait_for(
        "every event in the file sink",
        Duration::from_secs(30),
        || file_ids(&fx).len() >= acked.len(),
    )
    .await;

    let rows = final_rows(&ch);
    assert_eq!(
        final_ids(&ch),
        acked,
        "each acknowledged id exactly once, nothing else"
    );
    let files: BTreeMap<String, Value> = sink_records(&fx.dir.path().join("data/out"))
        .into_iter()
        .collect();
    assert_eq!(file_ids(&fx), acked, "the file sink has each id once");
    for row in &rows {
        let id = row["event_id"].as_str().unwrap();
        assert_eq!(row["site"], "demo");
        assert_eq!(row["type"], "cart_update");
        assert_eq!(row["ms"], NOW_MS.to_string().as_str());
        let text = row["record"].as_str().unwrap();
        assert!(text.contains("email_hash") && !text.contains('@'), "{text}");
        let record: Value = serde_json::from_str(text).unwrap();
        assert_minimized(&running, id, &record);
        assert_eq!(
            record, files[id],
            "ClickHouse and the file sink store the same event"
        );
    }
    // Nothing was sent twice on a healthy path: each sink counted each event once.
    for sink in ["ch", "file"] {
        counted(
            &running,
            "tollgate_sink_events_total",
            &[("sink", sink)],
            200,
        )
        .await;
        assert_eq!(
            metric(&running, "tollgate_sink_retries_total", &[("sink", sink)]),
            0.0,
            "{sink}"
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clickhouse_outage_delays_but_loses_nothing_and_the_file_sink_keeps_flowing() {
    let mut ch = clickhouse();
    let fx = fixture_with_clickhouse(
        &ch,
        "batch_events = 16\nretry_base_ms = 20\nretry_cap_ms = 300\ntimeout_ms = 2000\n",
    );
    let running = fx.start().await;
    let ch_label = [("sink", "ch")];

    let before = post(&running, &fx, "before", 5, 4).await;
    wait_for(
        "the first wave in ClickHouse",
        Duration::from_secs(30),
        || final_ids(&ch) == before,
    )
    .await;
    // ClickHouse can hold a batch before its answer reaches the sink: stop it only once the sink has
    // counted every batch as stored, or the last one is (rightly) retried after the restart.
    wait_for(
        "the sink to count the first wave stored",
        Duration::from_secs(30),
        || metric(&running, "tollgate_sink_events_total", &ch_label) == before.len() as f64,
    )
    .await;
    assert_eq!(
        metric(&running, "tollgate_sink_retries_total", &ch_label),
        0.0
    );

    ch.stop();
    let during = post(&running, &fx, "during", 10, 4).await;
    // The file sink keeps delivering while ClickHouse is down, and the ClickHouse sink stored none of them.
    wait_for(
        "the outage wave in the file sink",
        Duration::from_secs(30),
        || {
            let got: BTreeSet<String> = file_ids(&fx).into_iter().collect();
            during.iter().all(|id| got.contains(id))
        },
    )
    .await;
    wait_for(
        "the ClickHouse circuit to open",
        Duration::from_secs(30),
        || metric(&running, "tollgate_sink_circuit_state", &ch_label) == 1.0,
    )
    .await;
    let retries = metric(&running, "tollgate_sink_retries_total", &ch_label);
    assert!(retries >= 3.0, "{retries} retries while the server is down");
    wait_for("more retries", Duration::from_secs(10), || {
        metric(&running, "tollgate_sink_retries_total", &ch_label) > retries
    })
    .await;
    assert!(
        metric(
            &running,
            "tollgate_sink_retries_total",
            &[("sink", "ch"), ("reason", "connect")]
        ) >= 3.0,
        "a stopped server refuses connections"
    );
    assert_eq!(
        metric(&running, "tollgate_sink_events_total", &ch_label),
        before.len() as f64
    );
    assert_eq!(
        metric(&running, "tollgate_sink_retries_total", &[("sink", "file")]),
        0.0
    );
    assert_eq!(
        metric(&running, "tollgate_sink_dead_letters_total", &ch_label),
        0.0
    );

    ch.spawn(); // the same data directory and port
    let mut acked = [before, during].concat();
    acked.sort();
    wait_for(
        "every event in ClickHouse after the restart",
        Duration::from_secs(60),
        || final_ids(&ch).len() >= acked.len(),
    )
    .await;
    assert_eq!(
        final_ids(&ch),
        acked,
        "each acknowledged id exactly once after FINAL"
    );
    assert_eq!(file_ids(&fx), acked, "the file sink has each id once");
    for row in final_rows(&ch) {
        let record: Value = serde_json::from_str(row["record"].as_str().unwrap()).unwrap();
        assert_minimized(&running, row["event_id"].as_str().unwrap(), &record);
    }
    wait_for("the circuit to close", Duration::from_secs(10), || {
        metric(&running, "tollgate_sink_circuit_state", &ch_label) == 0.0
    })
    .await;
    counted(
        &running,
        "tollgate_sink_events_total",
        &ch_label,
        acked.len(),
    )
    .await;
    running.stop().await.unwrap();
}

/// One request the upstream saw: its Idempotency-Key and the event ids of its NDJSON lines.
fn batch_of(seen: &upstream::Seen) -> (String, Vec<String>) {
    let key = seen.headers["idempotency-key"].to_str().unwrap().to_owned();
    let ids = seen
        .body
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(!l.contains('@'), "{l}");
            v["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    (key, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_failing_with_500s_timeouts_and_429_loses_nothing() {
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    up.set(Mode::Status(500));
    // Retry-After (1 s) must win over a backoff that is at most 1 s and usually far less.
    let fx = fixture_with_upstream(
        &up,
        &pki,
        "batch_events = 16\nretry_cap_ms = 1000\ntimeout_ms = 500\n",
    );
    let running = fx.start().await;
    let acked = post(&running, &fx, "up", 8, 4).await;
    let retried = |reason| {
        metric(
            &running,
            "tollgate_sink_retries_total",
            &[("sink", "up"), ("reason", reason)],
        )
    };

    // The script: 500s, then a hang past timeout_ms, then 429 with Retry-After: 1, then 200.
    wait_for("two 500s", Duration::from_secs(10), || {
        retried("server") >= 2.0
    })
    .await;
    up.set(Mode::Hang);
    wait_for("a timeout", Duration::from_secs(10), || {
        retried("timeout") >= 1.0
    })
    .await;
    up.set(Mode::TooMany("1"));
    wait_for("a 429", Duration::from_secs(10), || {
        retried("throttled") >= 1.0
    })
    .await;
    // The sink now waits out Retry-After with no request in flight: every request from here gets a 200.
    up.set(Mode::Ok);
    let (ok_from, switched) = (up.seen.lock().unwrap().len(), Instant::now());
    let resent = wait_for("the attempt after the 429", Duration::from_secs(10), || {
        up.seen.lock().unwrap().len() > ok_from
    })
    .await;
    assert!(
        resent - switched >= Duration::from_millis(800),
        "Retry-After: 1 honoured, next attempt after {:?}",
        resent - switched
    );
    wait_for(
        "every acknowledged id upstream",
        Duration::from_secs(30),
        || {
            let seen = up.seen.lock().unwrap();
            let got: BTreeSet<String> =
                seen[ok_from..].iter().flat_map(|s| batch_of(s).1).collect();
            acked.iter().all(|id| got.contains(id))
        },
    )
    .await;

    // Copied out, so that no lock is held across an await.
    let seen: Vec<(String, Vec<String>, String)> = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            let (key, ids) = batch_of(s);
            (key, ids, s.body.clone())
        })
        .collect();
    let (failed, ok) = seen.split_at(ok_from);
    assert!(
        failed.len() >= 4,
        "500, 500, hang, 429: {} attempts",
        failed.len()
    );
    for attempt in failed {
        assert_eq!(
            attempt, &ok[0],
            "every attempt of the stuck batch is the same batch, under the same key"
        );
    }
    // From the 200s on: each id exactly once, each key once.
    let mut delivered: Vec<String> = Vec::new();
    let mut keys = BTreeSet::new();
    for (key, ids, _) in ok {
        assert!(keys.insert(key), "{key} delivered twice");
        delivered.extend(ids.iter().cloned());
    }
    delivered.sort();
    assert_eq!(delivered, acked, "every acknowledged id, once");
    counted(
        &running,
        "tollgate_sink_events_total",
        &[("sink", "up")],
        acked.len(),
    )
    .await;
    assert_eq!(
        metric(
            &running,
            "tollgate_sink_dead_letters_total",
            &[("sink", "up")]
        ),
        0.0
    );
    running.stop().await.unwrap();
}

/// An upstream that honours `Idempotency-Key` stores a key once: were a retried key to carry more events than
/// its first attempt (the batch re-read after a restart, grown by events acknowledged meanwhile), the upstream
/// would answer `2xx` for the extra events without storing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_retried_across_a_restart_keeps_its_idempotency_key_and_its_events() {
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    // The upstream takes the first attempt but its answer never arrives (a lost 200).
    up.set(Mode::Hang);
    let fx = fixture_with_upstream(&up, &pki, "retry_cap_ms = 100\ntimeout_ms = 300\n");
    let running = fx.start().await;
    let one = |tag: &str| -> Vec<String> { (0..3).map(|i| format!("{tag}-{i}")).collect() };
    let (first, second) = (one("first"), one("second"));
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let body = |ids: &[String]| Value::Array(ids.iter().map(|id| event(id)).collect()).to_string();
    assert_eq!(c.post("application/json", body(&first)).await.status, 204);
    wait_for("the first attempt", Duration::from_secs(10), || {
        !up.seen.lock().unwrap().is_empty()
    })
    .await;
    // More events are acknowledged while that batch is retried; then the gateway restarts (a deploy).
    assert_eq!(c.post("application/json", body(&second)).await.status, 204);
    drop(c);
    running.stop().await.unwrap();
    up.set(Mode::Ok);
    let running = fx.start().await;
    wait_for("every event upstream", Duration::from_secs(10), || {
        let seen = up.seen.lock().unwrap();
        let got: BTreeSet<String> = seen.iter().flat_map(|s| batch_of(s).1).collect();
        first.iter().chain(&second).all(|id| got.contains(id))
    })
    .await;
    let seen: Vec<_> = up.seen.lock().unwrap().iter().map(batch_of).collect();
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, ids) in seen {
        if let Some(before) = by_key.insert(key.clone(), ids.clone()) {
            // An upstream that stores a key once keeps `before` and drops the rest of `ids`.
            assert_eq!(
                before, ids,
                "Idempotency-Key {key} names two different batches"
            );
        }
    }
    running.stop().await.unwrap();
}
