//! The delivery loop with an in-memory sink scripted to fail: the cursor moves only after a batch is
//! stored, retries keep the batch id, `Retry-After` wins over the backoff, the circuit opens and closes, and
//! a refused batch is dead-lettered (encrypted), counted, and the loop moves on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::deadletter::{self, DeadLetters};
use super::deliver::Delivery;
use super::metrics::SinkMetrics;
use super::*;
use crate::clock::FixedClock;
use crate::config::{BatchLimits, RetryPolicy, SinkConfig, SinkKind};
use crate::event::MinimizedEvent;
use crate::spool::{Spool, SpoolConfig, SpoolKey, SpoolKeys, SpoolMetrics};

/// What the scripted sink saw and what it answers next (`Ok` once the script is empty).
#[derive(Default)]
struct Script {
    answers: VecDeque<Result<(), SendError>>,
    /// Batch id and event ids of every attempt.
    attempts: Vec<(String, Vec<String>)>,
    /// Event ids of stored batches.
    stored: Vec<String>,
}

struct MemSink(Arc<Mutex<Script>>);

impl Sink for MemSink {
    fn send<'a>(&'a mut self, batch: SinkBatch<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        let mut s = self.0.lock().unwrap();
        let ids: Vec<String> = batch.records.iter().map(|r| r.event_id.clone()).collect();
        s.attempts.push((batch.id.to_owned(), ids.clone()));
        let answer = s.answers.pop_front().unwrap_or(Ok(()));
        if answer.is_ok() {
            s.stored.extend(ids);
        }
        Box::pin(async move { answer })
    }
}

fn keys() -> SpoolKeys {
    SpoolKeys::new(vec![Arc::new(SpoolKey::new("s1", &[3u8; 32]))], "s1").unwrap()
}

fn ev(i: usize) -> MinimizedEvent {
    MinimizedEvent::for_spool_tests(
        "demo",
        &format!("e{i}"),
        0,
        format!(r#"{{"event_id":"e{i}"}}"#).into_bytes(),
    )
}

struct Rig {
    dir: tempfile::TempDir,
    spool: Spool,
    writer: Option<crate::spool::SpoolWriter>,
    script: Arc<Mutex<Script>>,
    registry: prometheus::Registry,
    sink_metrics: SinkMetrics,
}

async fn rig(events: usize) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        consumers: vec!["mem".into()],
        ..SpoolConfig::new(dir.path().join("spool"))
    };
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(SpoolMetrics::register(&registry).unwrap());
    let (spool, writer, _) =
        Spool::open(cfg, Some(keys()), Arc::new(FixedClock::new(0)), metrics).unwrap();
    let all: Vec<_> = (0..events).map(ev).collect();
    spool.append(&all).await.unwrap();
    Rig {
        dir,
        spool,
        writer: Some(writer),
        script: Arc::default(),
        sink_metrics: SinkMetrics::register(&registry).unwrap(),
        registry,
    }
}

impl Rig {
    fn delivery(&self, batch_events: usize) -> Delivery {
        let cfg = SinkConfig {
            name: "mem".into(),
            region: None,
            kind: SinkKind::File {
                dir: self.dir.path().join("unused"),
                max_file_bytes: 1,
            },
            batch: BatchLimits {
                events: batch_events,
                bytes: 1 << 20,
                max_age: Duration::ZERO,
            },
            retry: RetryPolicy {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(30),
            },
            timeout: Duration::from_secs(5),
        };
        Delivery {
            cfg,
            reader: self.spool.reader("mem").unwrap(),
            sink: Box::new(MemSink(self.script.clone())),
            dead: DeadLetters::new(self.dir.path(), "mem"),
            metrics: self.sink_metrics.for_sink("mem"),
            clock: Arc::new(FixedClock::new(0)),
            audit: Some(Arc::new(
                crate::audit::Audit::open(&self.audit_log(), Arc::new(FixedClock::new(0))).unwrap(),
            )),
        }
    }

    fn audit_log(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The `event` and `sink` of every audit line.
    fn audited(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.audit_log()).unwrap_or_default();
        assert!(crate::audit::chain::verify(&text).is_ok());
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!(
                    "{} {}",
                    v["event"].as_str().unwrap(),
                    v["sink"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// Runs the loop until `done` holds for the script (paused clock: backoffs pass instantly).
    async fn run_until(&self, batch_events: usize, done: impl Fn(&Script) -> bool) {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(self.delivery(batch_events).run(rx));
        for _ in 0..10_000 {
            if done(&self.script.lock().unwrap()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(done(&self.script.lock().unwrap()), "condition never held");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let families = self.registry.gather();
        let f = families.iter().find(|f| f.name() == name).unwrap();
        f.get_metric()
            .iter()
            .find(|m| {
                label.is_none_or(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == k && l.value() == v)
                })
            })
            .map(|m| {
                if f.get_field_type() == prometheus::proto::MetricType::GAUGE {
                    m.get_gauge().get_value()
                } else {
                    m.get_counter().get_value()
                }
            })
            .unwrap()
    }

    async fn close(mut self) {
        self.writer.take().unwrap().close().await.unwrap();
    }
}

fn retry(reason: RetryReason, after: Option<Duration>) -> Result<(), SendError> {
    Err(SendError::Retry {
        reason,
        after,
        detail: "scripted".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn retries_keep_the_batch_and_its_id_and_the_cursor_waits() {
    let rig = rig(10).await;
    {
        let mut s = rig.script.lock().unwrap();
        for _ in 0..4 {
            s.answers.push_back(retry(RetryReason::Server, None));
        }
        s.answers
            .push_back(retry(RetryReason::Throttled, Some(Duration::from_secs(7))));
    }
    rig.run_until(5, |s| s.stored.len() >= 5).await;
    {
        let s = rig.script.lock().unwrap();
        assert_eq!(
            s.attempts[..6],
            vec![s.attempts[0].clone(); 6],
            "5 failures then stored, same id and records on every retry: {:?}",
            s.attempts
        );
        assert_ne!(
            s.attempts.get(6),
            Some(&s.attempts[0]),
            "not sent again once stored"
        );
        assert_eq!(s.stored[..5], ["e0", "e1", "e2", "e3", "e4"]);
    }
    assert_eq!(
        rig.metric("tollgate_sink_retries_total", Some(("reason", "server"))),
        4.0
    );
    assert_eq!(
        rig.metric("tollgate_sink_retries_total", Some(("reason", "throttled"))),
        1.0
    );
    assert_eq!(
        rig.metric("tollgate_sink_circuit_state", None),
        0.0,
        "closed again after the success"
    );
    // A second run (a restart of the loop) starts at the durable cursor: nothing stored is sent again.
    rig.run_until(5, |s| s.stored.len() >= 10).await;
    assert_eq!(
        rig.script.lock().unwrap().stored,
        (0..10).map(|i| format!("e{i}")).collect::<Vec<_>>()
    );
    rig.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_sink_going_down_and_coming_back_is_audited_once_each() {
    let rig = rig(2).await;
    {
        let mut s = rig.script.lock().unwrap();
        for _ in 0..5 {
            s.answers.push_back(retry(RetryReason::Connect, None));
        }
    }
    rig.run_until(1, |s| s.stored.len() >= 2).await;
    assert_eq!(rig.audited(), ["sink_down mem", "sink_up mem"]);
    rig.close().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_over_the_backoff() {
    let rig = rig(1).await;
    rig.script
        .lock()
        .unwrap()
        .answers
        .push_back(retry(RetryReason::Throttled, Some(Duration::from_secs(7))));
    let started = tokio::time::Instant::now();
    rig.run_until(1, |s| s.stored.len() == 1).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    rig.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_repeated_failures() {
    let rig = rig(1).await;
    {
        let mut s = rig.script.lock().unwrap();
        for _ in 0..1000 {
            s.answers.push_back(retry(RetryReason::Connect, None));
        }
    }
    rig.run_until(1, |s| s.attempts.len() >= 5).await;
    let state = rig.metric("tollgate_sink_circuit_state", None);
    assert!(
        state == 1.0 || state == 2.0,
        "open or half-open, got {state}"
    );
    assert!(rig.script.lock().unwrap().stored.is_empty());
    rig.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_batch_is_dead_lettered_encrypted_and_replayable() {
    let rig = rig(6).await;
    rig.script
        .lock()
        .unwrap()
        .answers
        .push_back(Err(SendError::dead(DeadReason::Refused, "400 bad")));
    rig.run_until(3, |s| s.stored.len() >= 3).await;
    assert_eq!(
        rig.script.lock().unwrap().stored,
        ["e3", "e4", "e5"],
        "the loop moved on"
    );
    assert_eq!(
        rig.metric(
            "tollgate_sink_dead_letters_total",
            Some(("reason", "refused"))
        ),
        1.0
    );
    let letters = DeadLetters::new(rig.dir.path(), "mem");
    let files = letters.list().unwrap();
    assert_eq!(files.len(), 1);
    let raw = std::fs::read(&files[0]).unwrap();
    assert!(
        !raw.windows(9).any(|w| w == br#""event_id"#),
        "dead letters are encrypted"
    );
    let meta = std::fs::read_to_string(files[0].with_extension("json")).unwrap();
    assert!(
        meta.contains(r#""reason":"refused""#) && meta.contains(r#""records":3"#),
        "{meta}"
    );

    let replayed = Arc::new(Mutex::new(Script::default()));
    let mut sink = MemSink(replayed.clone());
    let done = deadletter::replay(&letters, &keys(), &mut sink)
        .await
        .unwrap();
    assert_eq!((done.batches, done.records, done.refused), (1, 3, 0));
    assert_eq!(replayed.lock().unwrap().stored, ["e0", "e1", "e2"]);
    assert!(
        letters.list().unwrap().is_empty(),
        "a replayed letter is deleted"
    );
    rig.close().await;
}
