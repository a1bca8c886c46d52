//! The rate-limit stage of a request: asks the [`ratelimit`](super::ratelimit) service once per tenant of
//! the request, counts the decision, and turns a refusal into `429 rate_limited` with a `Retry-After` from
//! the limiter. In detect mode the request goes on and the would-be refusal is counted.

use std::net::IpAddr;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::jail::GuardMetrics;
use super::ratelimit::{Decision, RateLimitService, Which};
use crate::reject::Reject;

/// `tollgate_ratelimit_decisions_total{limiter, outcome}` (`limited`, `detected`) and
/// `tollgate_ratelimit_keys{limiter}`; labels resolved once.
pub struct LimitMetrics {
    limited: [IntCounter; 3],
    detected: [IntCounter; 3],
    keys: [IntGauge; 3],
}

impl LimitMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "tollgate_ratelimit_decisions_total",
                "Requests a rate limiter refused (limited) or would have refused (detected).",
            ),
            &["limiter", "outcome"],
        )?;
        let keys = IntGaugeVec::new(
            Opts::new("tollgate_ratelimit_keys", "Keys each rate limiter holds."),
            &["limiter"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(keys.clone()))?;
        Ok(Self {
            limited: Which::ALL.map(|w| decisions.with_label_values(&[w.label(), "limited"])),
            detected: Which::ALL.map(|w| decisions.with_label_values(&[w.label(), "detected"])),
            keys: Which::ALL.map(|w| keys.with_label_values(&[w.label()])),
        })
    }

    /// Publishes the key counts (after a sweep).
    pub fn publish_keys(&self, svc: &RateLimitService) {
        for (gauge, n) in self.keys.iter().zip(svc.key_counts()) {
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

fn index(w: Which) -> usize {
    Which::ALL
        .iter()
        .position(|x| *x == w)
        .expect("every limiter is in ALL")
}

/// Admits one request of `ip` for tenant `site`, or refuses it with 429.
pub fn admit(
    svc: &RateLimitService,
    (m, guard): (&LimitMetrics, &GuardMetrics),
    ip: IpAddr,
    site: &str,
) -> Result<(), Reject> {
    match svc.check(ip, site) {
        Decision::Allow => Ok(()),
        d @ Decision::Limited { limiter, .. } => {
            m.limited[index(limiter)].inc();
            guard.decide("ratelimit", limiter.label(), true);
            let secs = d.retry_after_secs().unwrap_or(1);
            Err(Reject::RateLimited {
                retry_after_s: u32::try_from(secs).unwrap_or(u32::MAX),
            })
        }
        Decision::Detected { limiter } => {
            m.detected[index(limiter)].inc();
            guard.decide("ratelimit", limiter.label(), false);
            Ok(())
        }
    }
}
