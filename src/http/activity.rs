//! activity: closes connections that hold a slot without asking for anything. A [`Tracker`] counts the
//! requests in flight on one connection: a request counts from the moment hyper calls the service until its
//! future completes or is dropped (a reset HTTP/2 stream, a closed connection), so a cancelled request still
//! counts down. Its [`Watchdog`] runs beside the connection and resolves when the connection has been idle too
//! long, by the pure rule in [`deadline`]:
//!
//! - before the first request, `timeouts.header_read_ms` after the TLS handshake ended: protocol detection, an
//!   HTTP/2 preface, SETTINGS and PINGs all count against it, so a client that completes TLS and then asks for
//!   nothing is closed after it;
//! - while a request is in flight, never (`body_read_ms` and the byte-level [`super::idle`] bound those);
//! - afterwards, `timeouts.keepalive_idle_ms` after the last request ended.
//!
//! Only requests are activity: HTTP/2 PING, SETTINGS and WINDOW_UPDATE frames never move the deadline. The
//! listener then asks the connection to shut down gracefully (HTTP/2 sends GOAWAY) and drops it after
//! [`CLOSE_GRACE`] at the latest. Each close is counted in
//! `tollgate_connections_idle_closed_total{listener,phase}`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::time::Instant;

use crate::config::Timeouts;

/// How long a connection closed for idleness gets to send its GOAWAY and finish before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Which rule closed an idle connection; the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No request ever arrived within `header_read` of the TLS handshake.
    BeforeFirstRequest,
    /// No request arrived within `keepalive_idle` of the last one.
    Keepalive,
}

impl Phase {
    pub const ALL: [Phase; 2] = [Phase::BeforeFirstRequest, Phase::Keepalive];

    pub fn label(self) -> &'static str {
        match self {
            Phase::BeforeFirstRequest => "before_first_request",
            Phase::Keepalive => "keepalive",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The two idle limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the end of the TLS handshake to the first request.
    pub first_request: Duration,
    /// From the end of the last request to the next one.
    pub keepalive: Duration,
}

impl From<&Timeouts> for Limits {
    fn from(t: &Timeouts) -> Self {
        Limits {
            first_request: t.header_read,
            keepalive: t.keepalive_idle,
        }
    }
}

/// What the watchdog knows about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Requests whose service future is running.
    pub in_flight: usize,
    /// Whether any request has started on this connection.
    pub served: bool,
    /// When the connection last became idle: the end of the TLS handshake, or the end of its last request.
    pub since: Instant,
}

/// When a connection in `state` must be closed, and by which rule; `None` while a request is in flight.
pub fn deadline(state: &State, limits: &Limits) -> Option<(Instant, Phase)> {
    match (state.in_flight, state.served) {
        (0, false) => Some((
            state.since + limits.first_request,
            Phase::BeforeFirstRequest,
        )),
        (0, true) => Some((state.since + limits.keepalive, Phase::Keepalive)),
        _ => None,
    }
}

/// Starts watching a connection that became ready for requests `now`: the tracker goes into the service, the
/// watchdog beside the connection.
pub fn watch(now: Instant, limits: Limits) -> (Tracker, Watchdog) {
    let state = Arc::new(Mutex::new(State {
        in_flight: 0,
        served: false,
        since: now,
    }));
    let tracker = Tracker {
        state: state.clone(),
    };
    (tracker, Watchdog { state, limits })
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one connection's requests in flight; cheap to clone into the service. A request only updates
/// the state (an uncontended lock): it neither wakes the watchdog nor touches a timer.
#[derive(Clone)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
}

impl Tracker {
    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(&self) -> InFlight {
        let mut s = lock(&self.state);
        s.in_flight += 1;
        s.served = true;
        InFlight {
            state: self.state.clone(),
        }
    }

    /// Runs `fut` as one request: in flight from this call (not from its first poll) until it completes or is
    /// dropped.
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        let guard = self.begin();
        async move {
            let _guard = guard;
            fut.await
        }
    }
}

/// One request in flight; dropping it ends the request and, if it was the last, starts the keep-alive clock.
pub struct InFlight {
    state: Arc<Mutex<State>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut s = lock(&self.state);
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.since = now;
        }
    }
}

/// Resolves when its connection has been idle past its [`deadline`].
pub struct Watchdog {
    state: Arc<Mutex<State>>,
    limits: Limits,
}

impl Watchdog {
    /// Waits until the connection's deadline passes with no request starting, and says which rule fired.
    /// Lazy: it sleeps, then reads the state again. A request that ends after `now` sets a deadline no
    /// earlier than `now + keepalive`, so sleeping until the current deadline or `now + keepalive`,
    /// whichever comes first, never closes late. Cancel-safe: dropping it loses nothing.
    pub async fn expired(&mut self) -> Phase {
        loop {
            let state = *lock(&self.state);
            let now = Instant::now();
            let look_again = now + self.limits.keepalive;
            match deadline(&state, &self.limits) {
                Some((at, phase)) if at <= now => return phase,
                Some((at, _)) => tokio::time::sleep_until(at.min(look_again)).await,
                None => tokio::time::sleep_until(look_again).await,
            }
        }
    }
}

/// `tollgate_connections_idle_closed_total{listener, phase}`.
pub struct IdleMetrics {
    closed: IntCounterVec,
}

impl IdleMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let closed = IntCounterVec::new(
            Opts::new(
                "tollgate_connections_idle_closed_total",
                "Connections closed for asking nothing: before their first request or after keep-alive idle.",
            ),
            &["listener", "phase"],
        )?;
        registry.register(Box::new(closed.clone()))?;
        Ok(Self { closed })
    }

    /// The counters of one listener, resolved once (call when its accept loop starts).
    pub fn for_listener(&self, listener: &str) -> [IntCounter; 2] {
        Phase::ALL.map(|p| self.closed.with_label_values(&[listener, p.label()]))
    }
}

/// Counts a close in counters from [`IdleMetrics::for_listener`].
pub fn count(counters: &[IntCounter; 2], phase: Phase) {
    counters[phase.index()].inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        first_request: Duration::from_secs(10),
        keepalive: Duration::from_secs(30),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn deadline_by_state() {
        let t0 = Instant::now();
        let state = |in_flight, served| State {
            in_flight,
            served,
            since: t0,
        };
        let cases = [
            (
                state(0, false),
                Some((t0 + secs(10), Phase::BeforeFirstRequest)),
            ),
            (state(0, true), Some((t0 + secs(30), Phase::Keepalive))),
            (state(1, true), None),
            (state(3, true), None),
        ];
        for (s, want) in cases {
            assert_eq!(deadline(&s, &LIMITS), want, "{s:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_first_request_fires_after_header_read() {
        let t0 = Instant::now();
        let (_tracker, mut dog) = watch(t0, LIMITS);
        assert_eq!(dog.expired().await, Phase::BeforeFirstRequest);
        assert_eq!(t0.elapsed(), secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_never_fires() {
        let (tracker, mut dog) = watch(Instant::now(), LIMITS);
        let _req = tracker.begin();
        let waited = tokio::time::timeout(secs(3600), dog.expired()).await;
        assert!(waited.is_err(), "fired with a request in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn fires_keepalive_after_the_last_request_ends() {
        let (tracker, mut dog) = watch(Instant::now(), LIMITS);
        let a = tracker.begin();
        let b = tracker.begin();
        tokio::time::sleep(secs(50)).await;
        drop(a);
        tokio::time::sleep(secs(50)).await;
        let ended = Instant::now();
        drop(b);
        assert_eq!(dog.expired().await, Phase::Keepalive);
        assert_eq!(ended.elapsed(), secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_starting_resets_the_clock() {
        let (tracker, mut dog) = watch(Instant::now(), LIMITS);
        drop(tracker.begin());
        let waited = tokio::time::timeout(secs(20), dog.expired()).await;
        assert!(waited.is_err());
        // a quick request 20 s into the keep-alive window: the next 30 s start when it ends
        drop(tracker.begin());
        let ended = Instant::now();
        assert_eq!(dog.expired().await, Phase::Keepalive);
        assert_eq!(ended.elapsed(), secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_future_counts_down() {
        let (tracker, mut dog) = watch(Instant::now(), LIMITS);
        let never = tracker.track(std::future::pending::<()>());
        let waited = tokio::time::timeout(secs(100), dog.expired()).await;
        assert!(waited.is_err(), "in flight from the call, before any poll");
        let cancelled = Instant::now();
        drop(never);
        assert_eq!(dog.expired().await, Phase::Keepalive);
        assert_eq!(cancelled.elapsed(), secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_keepalive_shorter_than_the_first_request_bound_is_kept() {
        let limits = Limits {
            first_request: secs(30),
            keepalive: secs(5),
        };
        let (tracker, mut dog) = watch(Instant::now(), limits);
        let waiting = tokio::spawn(async move { dog.expired().await });
        tokio::time::sleep(secs(1)).await;
        drop(tracker.begin());
        let ended = Instant::now();
        assert_eq!(waiting.await.unwrap(), Phase::Keepalive);
        assert_eq!(
            ended.elapsed(),
            secs(5),
            "not the 30 s the watchdog first slept towards"
        );
    }

    #[test]
    fn phase_labels_are_indexed_in_order() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(p.index(), i, "{}", p.label());
        }
    }
}
