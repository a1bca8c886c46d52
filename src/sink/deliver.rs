//! The delivery loop of one sink: read a bounded batch from the spool (waiting up to `batch_age_ms` for it
//! to fill), send it, and move the sink's durable cursor only once the sink stored it — or once a batch it
//! refused for good is safely in the dead-letter directory. A batch that should be retried is retried whole,
//! with the same id, after `Retry-After` or a capped exponential backoff with full jitter. Each sink runs as
//! its own task with its own reader, so a slow or dead sink never stalls another one (it only holds the
//! spool segments it has not delivered). Its circuit state shows in `tollgate_sink_circuit_state`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::deadletter::DeadLetters;
use super::metrics::{Circuit, OneSink};
use super::{SendError, Sink, SinkBatch};
use crate::audit::{Audit, Event};
use crate::clock::Clock;
use crate::config::{RetryPolicy, SinkConfig};
use crate::spool::{Batch, Reader, SpoolError};

/// Consecutive failures after which the circuit opens (sends wait out the backoff before trying again).
const OPEN_AFTER: u32 = 3;

/// Everything one sink task owns.
pub struct Delivery {
    pub cfg: SinkConfig,
    pub reader: Reader,
    pub sink: Box<dyn Sink>,
    pub dead: DeadLetters,
    pub metrics: OneSink,
    pub clock: Arc<dyn Clock>,
    /// The sink going down (its circuit opens) and coming back are audit events.
    pub audit: Option<Arc<Audit>>,
}

impl Delivery {
    /// Runs until `stop` turns true; a batch in hand is abandoned at stop (it is still in the spool).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        while let Some(batch) = self.next(&mut stop).await {
            // Start and end in the spool: the same id always names the same records, on every retry and
            // after a restart (which may cut the batch differently: then it gets another id).
            let (start, end) = (batch.start(), batch.end());
            let id = format!(
                "{}-{:x}-{:x}-{:x}-{:x}",
                self.cfg.name, start.seg, start.offset, end.seg, end.offset
            );
            self.lag(&batch);
            if !self.deliver(&id, &batch, &mut stop).await {
                break;
            }
            if let Err(e) = self.reader.commit(&batch) {
                // Stored downstream but the cursor did not move: delivered again after a restart.
                tracing::error!(sink = %self.cfg.name, error = %e, "sink: cannot save the cursor");
            }
        }
        self.metrics.lag_seconds.set(0);
        self.sink.close().await;
    }

    /// The next batch: full, or as full as it got within `batch_age_ms` of its first record.
    async fn next(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Batch> {
        let limits = self.cfg.batch;
        let mut batch = loop {
            let read = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return None,
                b = self.reader.next_batch(limits.events, limits.bytes) => b,
            };
            match read {
                Ok(b) => break b,
                Err(SpoolError::Closed) => return None,
                Err(e) => {
                    tracing::error!(sink = %self.cfg.name, error = %e, "sink: cannot read the spool");
                    if sleep_or_stop(self.cfg.retry.cap, stop).await {
                        return None;
                    }
                }
            }
        };
        let deadline = Instant::now() + limits.max_age;
        while batch.records.len() < limits.events && payload_bytes(&batch) < limits.bytes {
            let room = (
                limits.events - batch.records.len(),
                limits.bytes - payload_bytes(&batch),
            );
            let more = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return None,
                () = tokio::time::sleep_until(deadline) => break,
                b = self.reader.next_batch(room.0, room.1) => b,
            };
            match more {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// The circuit opens at the `OPEN_AFTER`-th consecutive failure: audited once, as the sink going down.
    fn went_down(&self, failures: u32) {
        if failures >= OPEN_AFTER {
            self.metrics.circuit(Circuit::Open);
        }
        if failures == OPEN_AFTER {
            self.audit(Event::SinkDown {
                sink: &self.cfg.name,
            });
        }
    }

    /// The sink answered after its circuit had opened: audited as the sink coming back.
    fn came_back(&self, failures: u32) {
        if failures >= OPEN_AFTER {
            self.audit(Event::SinkUp {
                sink: &self.cfg.name,
            });
        }
    }

    fn audit(&self, event: Event<'_>) {
        if let Some(a) = &self.audit {
            a.record(event);
        }
    }

    /// Sends until stored or dead-lettered; `false` if asked to stop first.
    async fn deliver(&mut self, id: &str, batch: &Batch, stop: &mut watch::Receiver<bool>) -> bool {
        if batch.records.is_empty() {
            return true;
        }
        let mut failures = 0u32;
        loop {
            self.metrics.circuit(if failures >= OPEN_AFTER {
                Circuit::HalfOpen
            } else {
                Circuit::Closed
            });
            let attempt = tokio::time::Instant::now();
            let sent = tokio::time::timeout(
                self.cfg.timeout,
                self.sink.send(SinkBatch {
                    id,
                    records: &batch.records,
                }),
            )
            .await
            .unwrap_or_else(|_| {
                Err(SendError::retry(
                    super::RetryReason::Timeout,
                    "no answer within timeout_ms",
                ))
            });
            self.metrics
                .batch_seconds
                .observe(attempt.elapsed().as_secs_f64());
            match sent {
                Ok(()) => {
                    self.metrics
                        .stored(batch.records.len(), self.clock.now_ms());
                    self.metrics.circuit(Circuit::Closed);
                    self.came_back(failures);
                    return true;
                }
                Err(SendError::Dead { reason, detail }) => {
                    tracing::error!(sink = %self.cfg.name, batch = %id, reason = reason.label(),
                        detail = %truncate(&detail), "sink: batch refused for good, dead-lettered");
                    if self.dead_letter(id, batch, reason.label()) {
                        self.metrics.dead_letters[reason as usize].inc();
                        self.came_back(failures);
                        return true;
                    }
                    // The batch is kept and sent again after a backoff, like any retry: never a hot loop.
                    self.metrics.retries[super::RetryReason::Io as usize].inc();
                    failures += 1;
                    self.went_down(failures);
                    if sleep_or_stop(backoff(self.cfg.retry, failures), stop).await {
                        return false;
                    }
                }
                Err(SendError::Retry {
                    reason,
                    after,
                    detail,
                }) => {
                    self.metrics.retries[reason as usize].inc();
                    failures += 1;
                    let wait = after.unwrap_or_else(|| backoff(self.cfg.retry, failures));
                    tracing::warn!(sink = %self.cfg.name, batch = %id, reason = reason.label(),
                        detail = %truncate(&detail), attempt = failures, ?wait, "sink: batch not stored, retrying");
                    self.went_down(failures);
                    if sleep_or_stop(wait, stop).await {
                        return false;
                    }
                }
            }
        }
    }

    fn dead_letter(&self, id: &str, batch: &Batch, reason: &str) -> bool {
        let Some(keys) = self.reader.keys() else {
            tracing::error!(sink = %self.cfg.name, "sink: no spool key to seal dead letters; retrying instead");
            return false;
        };
        match self
            .dead
            .store(&keys, id, &batch.records, reason, self.clock.now_ms())
        {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(sink = %self.cfg.name, error = %e, "sink: cannot write a dead letter; retrying");
                false
            }
        }
    }

    fn lag(&self, batch: &Batch) {
        if let Some(oldest) = batch.records.iter().map(|r| r.received_ms).min() {
            let secs = (self.clock.now_ms() - oldest).max(0) / 1000;
            self.metrics.lag_seconds.set(secs);
        }
        self.metrics
            .lag_events
            .set(i64::try_from(self.reader.lag_records()).unwrap_or(i64::MAX));
    }
}

fn payload_bytes(batch: &Batch) -> usize {
    batch.records.iter().map(|r| r.payload.len()).sum()
}

fn truncate(detail: &str) -> &str {
    let mut end = detail.len().min(300);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}

/// Capped exponential backoff with full jitter: uniform in `0..=min(cap, base * 2^(attempt-1))`.
pub fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let ceiling = policy
        .base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(policy.cap);
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
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        };
        for attempt in 1..40 {
            let ceiling = policy
                .base
                .saturating_mul(1u32 << (attempt - 1).min(20))
                .min(policy.cap);
            let samples: Vec<_> = (0..50).map(|_| backoff(policy, attempt)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            assert!(
                samples.windows(2).any(|w| w[0] != w[1]),
                "jitter at attempt {attempt}"
            );
        }
    }
}
