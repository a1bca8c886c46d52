//! Tollgate's metrics: one struct, registered into a `Registry` the app owns and passes in (no globals).
//! Labels come only from closed enums and from config (`tenant`), never from client input.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::event::minimize::detect::DetectorKind;
use crate::event::minimize::policy::{Field, ACTION_LABELS};
use crate::event::Report;
use crate::guard::admin::AdminRefusal;
use crate::reject::Reject;
use crate::sink::metrics::SinkMetrics;
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
    /// `tollgate_tls_handshakes_total{version}`: completed handshakes, `1.2` or `1.3`.
    pub tls_handshakes: IntCounterVec,
    /// `tollgate_tls_handshake_failures_total{cause}`: `timeout` or `error` (bad version, bad hello, reset).
    pub tls_handshake_failures: IntCounterVec,
    /// `tollgate_tls_sni_total{kind}` and `tollgate_tls_certificate_expiry_timestamp_seconds{name}`.
    pub tls: crate::tls::metrics::TlsMetrics,
    /// `tollgate_redirects_total{outcome}` on the plain listener: `redirected` or `refused`.
    pub plain_requests: IntCounterVec,
    /// `tollgate_request_seconds{route}` from request head to response, and `tollgate_requests_total{route,
    /// status}`: every answer on the public listener (`status` is one of the codes Tollgate answers with, a
    /// closed set). Resolved once, not looked up per request.
    pub answered: crate::http::answered::Answered,
    /// `tollgate_cors_preflights_total{outcome}`: `granted` or `denied`.
    pub preflights: IntCounterVec,
    /// `tollgate_ready`: 1 when `/readyz` would answer ready, set at each scrape.
    pub ready: IntGauge,
    /// `tollgate_spool_max_bytes`: the spool's bound (`spool.max_bytes`), for a fill ratio.
    pub spool_max_bytes: IntGauge,
    /// `tollgate_connection_errors_total`: connections that ended in an HTTP protocol error or timeout.
    pub connection_errors: IntCounter,
    /// `tollgate_config_reloads_total{outcome}`: `applied` or `rejected` (the old snapshot keeps serving).
    pub config_reloads: IntCounterVec,
    /// `tollgate_config_generation`: the applied snapshot's generation (1 = the one loaded at start).
    pub config_generation: IntGauge,
    /// `tollgate_config_last_reload_success_timestamp_seconds`: wall time the serving snapshot was applied.
    pub config_last_success: IntGauge,
    pub pii: PiiMetrics,
    pub spool: Arc<SpoolMetrics>,
    pub sinks: SinkMetrics,
    pub limits: crate::guard::limit::LimitMetrics,
    pub screen: crate::guard::screen::ScreenMetrics,
    /// `tollgate_connections_refused_total{listener, reason}`: closed before TLS by a list or the per-address cap.
    pub connections_refused: crate::guard::conns::RefusedMetrics,
    /// `tollgate_connections_idle_closed_total{listener, phase}`: closed for asking nothing (`before_first_request`
    /// or `keepalive`), see [`crate::http::activity`].
    pub connections_idle_closed: crate::http::activity::IdleMetrics,
    /// `tollgate_admin_requests_refused_total{reason}`: admin requests refused for their `Host` or token,
    /// indexed by `AdminRefusal as usize`.
    pub admin_refused: [IntCounter; AdminRefusal::ALL.len()],
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
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
        let admin_refused = counter_vec(
            "tollgate_admin_requests_refused_total",
            "Admin requests refused, by reason (host_not_allowed, unauthorized).",
            &["reason"],
        )?;
        let admin_refused =
            AdminRefusal::ALL.map(|r| admin_refused.with_label_values(&[r.label()]));
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
            tls_handshakes: counter_vec(
                "tollgate_tls_handshakes_total",
                "TLS handshakes completed, by protocol version.",
                &["version"],
            )?,
            tls_handshake_failures: counter_vec(
                "tollgate_tls_handshake_failures_total",
                "TLS handshakes that failed, by cause.",
                &["cause"],
            )?,
            tls: crate::tls::metrics::TlsMetrics::register(registry)?,
            plain_requests: counter_vec(
                "tollgate_plain_requests_total",
                "Requests on the plain-HTTP listener, by outcome.",
                &["outcome"],
            )?,
            answered: crate::http::answered::Answered::new(
                &request_seconds,
                counter_vec(
                    "tollgate_requests_total",
                    "Requests answered on the public listener, by route and status code.",
                    &["route", "status"],
                )?,
            ),
            preflights: counter_vec(
                "tollgate_cors_preflights_total",
                "CORS preflights on the event route, by outcome (granted, denied).",
                &["outcome"],
            )?,
            ready: {
                let g = IntGauge::new(
                    "tollgate_ready",
                    "1 when GET /readyz answers ready, 0 when not (reasons in its body); set at each scrape.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            spool_max_bytes: {
                let g = IntGauge::new(
                    "tollgate_spool_max_bytes",
                    "The spool's size bound (spool.max_bytes).",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            connection_errors,
            config_reloads: {
                let c = counter_vec(
                    "tollgate_config_reloads_total",
                    "Config reloads, by outcome.",
                    &["outcome"],
                )?;
                // Exported at 0 from the start, so an alert on "rejected" has a series to watch.
                for outcome in ["applied", "rejected"] {
                    c.with_label_values(&[outcome]);
                }
                c
            },
            config_generation: gauge(
                "tollgate_config_generation",
                "Generation of the config snapshot serving now (1 = loaded at start).",
            )?,
            config_last_success: gauge(
                "tollgate_config_last_reload_success_timestamp_seconds",
                "Unix time the serving config snapshot was applied.",
            )?,
            pii: PiiMetrics::register(registry)?,
            spool: Arc::new(SpoolMetrics::register(registry)?),
            sinks: SinkMetrics::register(registry)?,
            limits: crate::guard::limit::LimitMetrics::register(registry)?,
            screen: crate::guard::screen::ScreenMetrics::register(registry)?,
            connections_refused: crate::guard::conns::RefusedMetrics::register(registry)?,
            connections_idle_closed: crate::http::activity::IdleMetrics::register(registry)?,
            admin_refused,
        })
    }

    /// Counts a preflight answer by its status (`204` granted, anything else denied).
    pub fn preflight(&self, status: hyper::StatusCode) {
        let outcome = if status.is_success() {
            "granted"
        } else {
            "denied"
        };
        self.preflights.with_label_values(&[outcome]).inc();
    }

    pub fn reject(&self, r: &Reject) {
        self.rejections.with_label_values(&[r.reason()]).inc();
    }

    /// A snapshot was applied: its generation and the wall time (ms) it happened.
    pub fn config_applied(&self, generation: u64, now_ms: i64) {
        self.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.config_last_success.set(now_ms / 1000);
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

/// Minimization metrics. Counters are resolved once per tenant, field and action, then cached, so recording a
/// request's [`Report`] costs one map lookup, not one label hash per field.
pub struct PiiMetrics {
    /// `tollgate_pii_actions_total{tenant,field,action}`.
    actions: IntCounterVec,
    /// `tollgate_pii_detections_total{tenant,kind}`: detector hits, by detector.
    detections: IntCounterVec,
    /// `tollgate_suppressed_events_total{tenant}`: events dropped because their subject asked to be forgotten.
    pub suppressed: IntCounterVec,
    /// `tollgate_strict_profile_events_total{tenant}`: events minimized with the strict profile (GPC, DNT, consent).
    pub strict: IntCounterVec,
    cache: RwLock<HashMap<String, Arc<TenantPii>>>,
}

struct TenantPii {
    actions: Vec<OnceLock<IntCounter>>,
    detections: Vec<OnceLock<IntCounter>>,
}

impl PiiMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            actions: vec(
                "tollgate_pii_actions_total",
                "Minimization actions applied, by tenant, field and action.",
                &["tenant", "field", "action"],
            )?,
            detections: vec(
                "tollgate_pii_detections_total",
                "Personal data found and redacted in free text, by tenant and detector.",
                &["tenant", "kind"],
            )?,
            suppressed: vec(
                "tollgate_suppressed_events_total",
                "Events dropped because their subject is on the suppression list, by tenant.",
                &["tenant"],
            )?,
            strict: vec(
                "tollgate_strict_profile_events_total",
                "Events minimized with the strict profile (GPC, DNT or consent false), by tenant.",
                &["tenant"],
            )?,
            cache: RwLock::new(HashMap::new()),
        })
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantPii> {
        if let Some(t) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            return t.clone();
        }
        let fresh = Arc::new(TenantPii {
            actions: (0..Field::ALL.len() * ACTION_LABELS.len())
                .map(|_| OnceLock::new())
                .collect(),
            detections: (0..DetectorKind::ALL.len())
                .map(|_| OnceLock::new())
                .collect(),
        });
        let mut w = self.cache.write().unwrap_or_else(|e| e.into_inner());
        w.entry(tenant.to_string()).or_insert(fresh).clone()
    }

    /// Adds one tenant's minimization report.
    pub fn record(&self, tenant: &str, report: &Report) {
        let t = self.tenant(tenant);
        for (fi, counts) in report.actions.iter().enumerate() {
            for (ai, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                let field = Field::ALL[fi].path();
                let c = t.actions[fi * ACTION_LABELS.len() + ai].get_or_init(|| {
                    self.actions
                        .with_label_values(&[tenant, field, ACTION_LABELS[ai]])
                });
                c.inc_by(n.into());
            }
        }
        for (ki, kind) in DetectorKind::ALL.iter().enumerate() {
            let n = report.hits.get(*kind);
            if n > 0 {
                let c = t.detections[ki]
                    .get_or_init(|| self.detections.with_label_values(&[tenant, kind.label()]));
                c.inc_by(n.into());
            }
        }
        if report.suppressed > 0 {
            self.suppressed
                .with_label_values(&[tenant])
                .inc_by(report.suppressed.into());
        }
        if report.strict > 0 {
            self.strict
                .with_label_values(&[tenant])
                .inc_by(report.strict.into());
        }
    }
}
