//! Sink metrics, labelled by sink name (from config) and closed reasons; resolved once per sink.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use super::outcome::{DeadReason, RetryReason};

/// `tollgate_sink_circuit_state`: 0 closed (sending), 1 open (backing off after repeated failures),
/// 2 half-open (trying again after the backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Clone)]
pub struct SinkMetrics {
    events: IntCounterVec,
    batches: IntCounterVec,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    last_success: IntGaugeVec,
    circuit: IntGaugeVec,
    lag_seconds: IntGaugeVec,
    lag_events: IntGaugeVec,
    batch_seconds: HistogramVec,
}

impl SinkMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["sink"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_sink_batch_seconds",
                "Duration of one batch attempt against the downstream, stored or not.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 15)?),
            &["sink"],
        )?;
        registry.register(Box::new(batch_seconds.clone()))?;
        Ok(Self {
            batch_seconds,
            events: counter(
                "tollgate_sink_events_total",
                "Events a sink stored.",
                &["sink"],
            )?,
            batches: counter(
                "tollgate_sink_batches_total",
                "Batches a sink stored.",
                &["sink"],
            )?,
            retries: counter(
                "tollgate_sink_retries_total",
                "Batch attempts that will be retried, by reason.",
                &["sink", "reason"],
            )?,
            dead_letters: counter(
                "tollgate_sink_dead_letters_total",
                "Batches refused for good and dead-lettered, by reason.",
                &["sink", "reason"],
            )?,
            last_success: gauge(
                "tollgate_sink_last_success_timestamp_seconds",
                "Wall time of the sink's last stored batch.",
            )?,
            circuit: gauge(
                "tollgate_sink_circuit_state",
                "0 closed, 1 open (backing off), 2 half-open.",
            )?,
            lag_seconds: gauge(
                "tollgate_sink_lag_seconds",
                "Age of the oldest event in the batch the sink is delivering.",
            )?,
            lag_events: gauge(
                "tollgate_sink_lag_events",
                "Events in the spool the sink has not delivered yet.",
            )?,
        })
    }

    /// What readiness and `/admin/status` read of one sink (changes nothing).
    pub fn view(&self, name: &str) -> SinkView {
        let circuit = match self.circuit.with_label_values(&[name]).get() {
            0 => Circuit::Closed,
            1 => Circuit::Open,
            _ => Circuit::HalfOpen,
        };
        SinkView {
            circuit,
            lag_seconds: self.lag_seconds.with_label_values(&[name]).get(),
            lag_events: self.lag_events.with_label_values(&[name]).get(),
        }
    }

    /// The metrics of one sink, every label resolved (and exported at 0) now.
    pub fn for_sink(&self, name: &str) -> OneSink {
        let one = OneSink {
            events: self.events.with_label_values(&[name]),
            batches: self.batches.with_label_values(&[name]),
            retries: RetryReason::ALL.map(|r| self.retries.with_label_values(&[name, r.label()])),
            dead_letters: DeadReason::ALL
                .map(|r| self.dead_letters.with_label_values(&[name, r.label()])),
            last_success: self.last_success.with_label_values(&[name]),
            circuit: self.circuit.with_label_values(&[name]),
            lag_seconds: self.lag_seconds.with_label_values(&[name]),
            lag_events: self.lag_events.with_label_values(&[name]),
            batch_seconds: self.batch_seconds.with_label_values(&[name]),
        };
        one.circuit(Circuit::Closed);
        one
    }
}

/// One sink's circuit and lag as last published by its delivery task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkView {
    pub circuit: Circuit,
    pub lag_seconds: i64,
    pub lag_events: i64,
}

impl Circuit {
    pub fn label(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

pub struct OneSink {
    pub events: IntCounter,
    pub batches: IntCounter,
    /// Indexed by `RetryReason as usize` / `DeadReason as usize`.
    pub retries: [IntCounter; 5],
    pub dead_letters: [IntCounter; 2],
    pub last_success: IntGauge,
    pub circuit: IntGauge,
    pub lag_seconds: IntGauge,
    pub lag_events: IntGauge,
    /// `tollgate_sink_batch_seconds{sink}`: every attempt, whatever its outcome.
    pub batch_seconds: Histogram,
}

impl OneSink {
    pub fn stored(&self, events: usize, now_ms: i64) {
        self.events.inc_by(events as u64);
        self.batches.inc();
        self.last_success.set(now_ms / 1000);
    }

    pub fn circuit(&self, state: Circuit) {
        self.circuit.set(state as i64);
    }
}
