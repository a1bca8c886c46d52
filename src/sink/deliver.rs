//! The delivery loop of one sink: read a bounded batch from the spool, store it, and only then move the
//! sink's durable cursor. A failed batch is retried whole after a capped exponential backoff with full
//! jitter, so delivery is at-least-once and a batch never advances the cursor before it is stored. Each
//! sink runs as its own task with its own reader: a slow or failing sink never holds up another one (it
//! only holds the spool segments it has not delivered).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;

use super::file::{FileStore, Record};
use crate::clock::Clock;
use crate::config::SinkConfig;
use crate::spool::{Batch, Reader, SpoolError};

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Sink metrics, by sink name (from config).
#[derive(Clone)]
pub struct SinkMetrics {
    events: IntCounterVec,
    batches: IntCounterVec,
    failures: IntCounterVec,
    last_success: IntGaugeVec,
}

impl SinkMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &["sink"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let last_success = IntGaugeVec::new(
            Opts::new(
                "tollgate_sink_last_success_timestamp_seconds",
                "Wall time of the sink's last stored batch.",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(last_success.clone()))?;
        Ok(Self {
            events: counter("tollgate_sink_events_total", "Events a sink stored.")?,
            batches: counter("tollgate_sink_batches_total", "Batches a sink stored.")?,
            failures: counter(
                "tollgate_sink_failures_total",
                "Batch attempts that failed and will be retried.",
            )?,
            last_success,
        })
    }

    fn for_sink(&self, name: &str) -> OneSink {
        OneSink {
            events: self.events.with_label_values(&[name]),
            batches: self.batches.with_label_values(&[name]),
            failures: self.failures.with_label_values(&[name]),
            last_success: self.last_success.with_label_values(&[name]),
        }
    }
}

/// One sink's metrics, resolved once.
struct OneSink {
    events: IntCounter,
    batches: IntCounter,
    failures: IntCounter,
    last_success: IntGauge,
}

/// Runs the file sink until `stop` turns true (finishing the batch in hand first).
pub async fn run_file(
    cfg: SinkConfig,
    mut reader: Reader,
    store: FileStore,
    metrics: SinkMetrics,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let m = metrics.for_sink(&cfg.name);
    let mut store = Some(store);
    loop {
        let batch = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            b = reader.next_batch(cfg.batch_events, cfg.batch_bytes) => b,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(SpoolError::Closed) => break,
            Err(e) => {
                tracing::error!(sink = %cfg.name, error = %e, "sink: cannot read the spool");
                if sleep_or_stop(BACKOFF_CAP, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let mut attempt = 0u32;
        loop {
            match store_batch(&mut store, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    m.failures.inc();
                    attempt += 1;
                    let wait = backoff(attempt);
                    tracing::warn!(sink = %cfg.name, error = %e, attempt, ?wait, "sink: batch not stored, retrying");
                    if sleep_or_stop(wait, &mut stop).await {
                        return;
                    }
                }
            }
        }
        if let Err(e) = reader.commit(&batch) {
            // The batch is stored; it will be delivered again after a restart (at-least-once).
            tracing::error!(sink = %cfg.name, error = %e, "sink: cannot save the cursor");
        }
        m.events.inc_by(batch.records.len() as u64);
        m.batches.inc();
        m.last_success.set(clock.now_ms() / 1000);
    }
    if let Some(s) = store.take() {
        if let Err(e) = tokio::task::spawn_blocking(move || s.close())
            .await
            .unwrap_or(Ok(()))
        {
            tracing::warn!(sink = %cfg.name, error = %e, "sink: closing files failed");
        }
    }
}

/// Writes the batch on the blocking pool (it fsyncs) and hands the store back.
async fn store_batch(store: &mut Option<FileStore>, batch: &Batch) -> std::io::Result<()> {
    if batch.records.is_empty() {
        return Ok(());
    }
    let mut s = store.take().expect("store is returned after every write");
    let owned: Vec<_> = batch.records.clone();
    let (s, result) = tokio::task::spawn_blocking(move || {
        let records: Vec<Record<'_>> = owned
            .iter()
            .map(|r| Record {
                site: &r.site,
                event_id: &r.event_id,
                received_ms: r.received_ms,
                payload: &r.payload,
            })
            .collect();
        let result = s.write_batch(&records).map(|_| ());
        (s, result)
    })
    .await
    .map_err(|e| std::io::Error::other(format!("sink task panicked: {e}")))?;
    *store = Some(s);
    result
}

/// Capped exponential backoff with full jitter: uniform in `0..=min(cap, base * 2^attempt)`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let mut r = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut r);
    let frac = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(frac)
}

/// Sleeps for `d` unless asked to stop first; `true` if stopping.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        () = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_CAP);
            let samples: Vec<_> = (0..50).map(|_| backoff(attempt)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            assert!(
                samples.windows(2).any(|w| w[0] != w[1]),
                "jitter at attempt {attempt}"
            );
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }
}
