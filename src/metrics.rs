//! Tollgate's metrics: one struct, registered into a `Registry` the app owns and passes in (no globals).
//! Labels come only from closed enums and from config (`tenant`), never from client input.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::reject::Reject;
use crate::spool::SpoolMetrics;

pub struct Metrics {
    /// `tollgate_rejections_total{reason}`: every refused request, counted once, by `Reject::reason`.
    pub rejections: IntCounterVec,
    /// `tollgate_events_accepted_total{tenant}`: events acknowledged after the covering fsync.
    pub events_accepted: IntCounterVec,
    /// `tollgate_unknown_fields_dropped_total{tenant}`: unknown event keys dropped by validation.
    pub unknown_fields_dropped: IntCounterVec,
    /// `tollgate_connections_open{listener}` and `tollgate_connections_total{listener}`.
    pub connections_open: IntGaugeVec,
    pub connections_total: IntCounterVec,
    /// `tollgate_tls_handshake_failures_total{cause}`: `timeout` or `error` (bad version, bad hello, reset).
    pub tls_handshake_failures: IntCounterVec,
    /// `tollgate_redirects_total{outcome}` on the plain listener: `redirected` or `refused`.
    pub plain_requests: IntCounterVec,
    /// `tollgate_request_seconds{route}` from request head to response.
    pub request_seconds: HistogramVec,
    /// `tollgate_connection_errors_total`: connections that ended in an HTTP protocol error or timeout.
    pub connection_errors: IntCounter,
    pub spool: Arc<SpoolMetrics>,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let rejections = counter_vec(
            "tollgate_rejections_total",
            "Requests refused, by reason.",
            &["reason"],
        )?;
        for reason in Reject::ALL_REASONS {
            rejections.with_label_values(&[reason]);
        }
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "tollgate_connections_open",
                "Connections currently open, by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_seconds",
                "Time from request head to response, by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(request_seconds.clone()))?;
        let connection_errors = IntCounter::new(
            "tollgate_connection_errors_total",
            "Connections that ended with an HTTP protocol error or timeout.",
        )?;
        registry.register(Box::new(connection_errors.clone()))?;
        Ok(Self {
            rejections,
            events_accepted: counter_vec(
                "tollgate_events_accepted_total",
                "Events made durable and acknowledged, by tenant.",
                &["tenant"],
            )?,
            unknown_fields_dropped: counter_vec(
                "tollgate_unknown_fields_dropped_total",
                "Unknown event fields dropped during validation, by tenant.",
                &["tenant"],
            )?,
            connections_open,
            connections_total: counter_vec(
                "tollgate_connections_total",
                "Connections accepted, by listener.",
                &["listener"],
            )?,
            tls_handshake_failures: counter_vec(
                "tollgate_tls_handshake_failures_total",
                "TLS handshakes that failed, by cause.",
                &["cause"],
            )?,
            plain_requests: counter_vec(
                "tollgate_plain_requests_total",
                "Requests on the plain-HTTP listener, by outcome.",
                &["outcome"],
            )?,
            request_seconds,
            connection_errors,
            spool: Arc::new(SpoolMetrics::register(registry)?),
        })
    }

    pub fn reject(&self, r: &Reject) {
        self.rejections.with_label_values(&[r.reason()]).inc();
    }
}

/// Prometheus text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    // Encoding into a Vec cannot fail on I/O; a metric family error would be a programming error.
    if encoder.encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
