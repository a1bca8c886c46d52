//! answered: the two per-request metrics of the public listener, `tollgate_request_seconds{route}` and
//! `tollgate_requests_total{route,status}`, resolved once instead of looked up by label on every request.
//! The histogram of each route is resolved at start; a (route, status) counter the first time that status
//! is answered on that route.

use std::sync::OnceLock;

use hyper::StatusCode;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// The public listener's routes, as the `route` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    Events,
    Pixel,
    Healthz,
    Script,
    Other,
}

impl RouteLabel {
    pub const ALL: [RouteLabel; 5] = [
        RouteLabel::Events,
        RouteLabel::Pixel,
        RouteLabel::Healthz,
        RouteLabel::Script,
        RouteLabel::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RouteLabel::Events => "events",
            RouteLabel::Pixel => "pixel",
            RouteLabel::Healthz => "healthz",
            RouteLabel::Script => "script",
            RouteLabel::Other => "other",
        }
    }
}

/// Status codes 100..=599, one slot each.
const STATUSES: usize = 500;

pub struct Answered {
    seconds: [Histogram; RouteLabel::ALL.len()],
    requests: IntCounterVec,
    counters: Box<[OnceLock<IntCounter>]>,
}

impl Answered {
    pub fn new(seconds: &HistogramVec, requests: IntCounterVec) -> Answered {
        Answered {
            seconds: RouteLabel::ALL.map(|r| seconds.with_label_values(&[r.label()])),
            requests,
            counters: (0..RouteLabel::ALL.len() * STATUSES)
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// One answer on `route` with `status`, `seconds` after its head arrived.
    pub fn record(&self, route: RouteLabel, status: StatusCode, seconds: f64) {
        self.seconds[route as usize].observe(seconds);
        let slot = usize::from(status.as_u16()).saturating_sub(100);
        let counter = || {
            self.requests
                .with_label_values(&[route.label(), status.as_str()])
        };
        match self.counters.get(route as usize * STATUSES + slot) {
            Some(c) if slot < STATUSES => c.get_or_init(counter).inc(),
            _ => counter().inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, Opts};

    #[test]
    fn counts_by_route_and_status_as_the_label_lookup_would() {
        let seconds = HistogramVec::new(HistogramOpts::new("s", "s"), &["route"]).unwrap();
        let requests = IntCounterVec::new(Opts::new("r", "r"), &["route", "status"]).unwrap();
        let a = Answered::new(&seconds, requests.clone());
        a.record(RouteLabel::Events, StatusCode::NO_CONTENT, 0.001);
        a.record(RouteLabel::Events, StatusCode::NO_CONTENT, 0.002);
        a.record(RouteLabel::Other, StatusCode::NOT_FOUND, 0.0);
        let n = |r: &str, s: &str| requests.with_label_values(&[r, s]).get();
        assert_eq!(n("events", "204"), 2);
        assert_eq!(n("other", "404"), 1);
        assert_eq!(n("events", "404"), 0);
        assert_eq!(seconds.with_label_values(&["events"]).get_sample_count(), 2);
        assert_eq!(seconds.with_label_values(&["pixel"]).get_sample_count(), 0);
    }
}
