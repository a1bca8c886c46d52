//! jail: the stage that turns offences into bans and refuses banned addresses. Offences come from the anomaly
//! stage (a request reached the threshold) and from [`behaviour`](super::behaviour) (4xx bursts, unknown-site
//! enumeration, impossible event rates). Each one is counted in `tollgate_guard_decisions_total{guard,
//! family, mode}`; with `[guard.bans]` it bans the address ([`bans`](super::bans)).
//!
//! Addresses never reach logs or metrics: a ban is logged with `subject`, a keyed hash of the address that is
//! stable for the life of the process, and `GET /admin/bans` (loopback admin listener) lists each ban with its
//! address and subject, so an operator can match a log line to a ban. The in-memory ban table is the only
//! place an address is kept.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::anomaly::Family;
use super::bans::{BanOutcome, BanPolicy, BanReason, BanTable};
use super::behaviour::{Behaviour, BehaviourPolicy, Observation, Signal};
use super::ratelimit::{retry_after_secs, AddrKey, Which};
use crate::audit::{Audit, Event};
use crate::reject::Reject;

/// `[guard.behaviour]` with its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviourConfig {
    pub policy: BehaviourPolicy,
    /// Detect: count what crossed a bound, ban nothing for it.
    pub enforce: bool,
}

/// The guard decision counter and the ban and behaviour gauges.
pub struct GuardMetrics {
    /// `tollgate_guard_decisions_total{guard, family, mode}`: every refusal a guard made (`enforce`) or would
    /// have made (`detect`).
    pub decisions: IntCounterVec,
    bans_total: [IntCounter; BanReason::ALL.len()],
    bans_active: IntGauge,
    bans_evicted: IntCounter,
    behaviour_keys: IntGauge,
    behaviour_untracked: IntCounter,
}

impl GuardMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "tollgate_guard_decisions_total",
                "Refusals by guard (anomaly, ratelimit, behaviour, ban), family and mode (enforce, detect).",
            ),
            &["guard", "family", "mode"],
        )?;
        let bans = IntCounterVec::new(
            Opts::new("tollgate_bans_total", "Bans placed, by reason."),
            &["reason"],
        )?;
        let bans_active = IntGauge::new(
            "tollgate_bans_active",
            "Bans in force (after the last sweep or ban).",
        )?;
        let bans_evicted = IntCounter::new(
            "tollgate_bans_evicted_total",
            "Ban-table entries dropped early because the table was full.",
        )?;
        let behaviour_keys = IntGauge::new(
            "tollgate_behaviour_keys",
            "Addresses the behaviour windows track.",
        )?;
        let behaviour_untracked = IntCounter::new(
            "tollgate_behaviour_untracked_total",
            "Signals of addresses not tracked because the behaviour table was full.",
        )?;
        registry.register(Box::new(decisions.clone()))?;
        // Every (guard, family, mode) exported at 0 from the start: a rate is defined before the first refusal.
        let mut families: Vec<(&str, &str)> = Vec::new();
        families.extend(Family::ALL.iter().map(|f| ("anomaly", f.label())));
        families.extend(Which::ALL.iter().map(|w| ("ratelimit", w.label())));
        for r in BanReason::ALL {
            families.push(("ban", r.label()));
            if r != BanReason::Anomaly {
                families.push(("behaviour", r.label()));
            }
        }
        for (guard, family) in families {
            for mode in ["enforce", "detect"] {
                decisions.with_label_values(&[guard, family, mode]);
            }
        }
        registry.register(Box::new(bans.clone()))?;
        registry.register(Box::new(bans_active.clone()))?;
        registry.register(Box::new(bans_evicted.clone()))?;
        registry.register(Box::new(behaviour_keys.clone()))?;
        registry.register(Box::new(behaviour_untracked.clone()))?;
        Ok(Self {
            decisions,
            bans_total: BanReason::ALL.map(|r| bans.with_label_values(&[r.label()])),
            bans_active,
            bans_evicted,
            behaviour_keys,
            behaviour_untracked,
        })
    }

    /// Counts one decision.
    pub fn decide(&self, guard: &str, family: &str, enforce: bool) {
        let mode = if enforce { "enforce" } else { "detect" };
        self.decisions
            .with_label_values(&[guard, family, mode])
            .inc();
    }
}

/// Bans and behaviour windows: runtime state that outlives reloads (policies come from the snapshot).
pub struct Jail {
    pub bans: BanTable,
    pub behaviour: Behaviour,
    pub metrics: GuardMetrics,
    subject: RandomState,
    /// Bans and lifts are audit events (by subject, never by address).
    audit: Option<Arc<Audit>>,
}

impl Jail {
    pub fn new(metrics: GuardMetrics) -> Self {
        Self {
            bans: BanTable::default(),
            behaviour: Behaviour::default(),
            metrics,
            subject: RandomState::new(),
            audit: None,
        }
    }

    /// Writes every ban and lift to `audit` too.
    pub fn with_audit(mut self, audit: Arc<Audit>) -> Self {
        self.audit = Some(audit);
        self
    }

    fn record(&self, event: Event<'_>) {
        if let Some(a) = &self.audit {
            a.record(event);
        }
    }

    /// A log-safe name for `ip`'s ban key: 16 hex digits, stable for this process only.
    pub fn subject(&self, ip: IpAddr) -> String {
        self.subject_of(AddrKey::from(ip))
    }

    pub fn subject_of(&self, key: AddrKey) -> String {
        format!("{:016x}", self.subject.hash_one(key))
    }

    /// The per-request ban check (a connection may predate its ban): `403 banned` with the time left.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Reject> {
        match self.bans.banned(ip, now) {
            None => Ok(()),
            Some(left) => Err(Reject::Banned {
                retry_after_s: u32::try_from(retry_after_secs(left)).unwrap_or(u32::MAX),
            }),
        }
    }

    /// An offence by `ip`: bans it per `policy` (none: counted only).
    pub fn offence(&self, policy: Option<&BanPolicy>, ip: IpAddr, reason: BanReason, now: Instant) {
        let Some(policy) = policy else { return };
        let subject = self.subject(ip);
        match self.bans.ban(policy, ip, reason, now) {
            BanOutcome::Banned {
                ttl,
                strike,
                evicted,
            } => {
                self.metrics.bans_total[reason.index()].inc();
                self.metrics.decide("ban", reason.label(), true);
                self.metrics.bans_active.inc();
                if evicted {
                    self.metrics.bans_evicted.inc();
                }
                tracing::warn!(
                    subject,
                    reason = reason.label(),
                    ttl_s = ttl.as_secs(),
                    strike,
                    "ban: address banned"
                );
                self.record(Event::Ban {
                    subject: &subject,
                    reason: reason.label(),
                    ttl_s: ttl.as_secs(),
                    strike,
                });
            }
            BanOutcome::WouldBan { ttl, strike } => {
                self.metrics.decide("ban", reason.label(), false);
                tracing::info!(
                    subject,
                    reason = reason.label(),
                    ttl_s = ttl.as_secs(),
                    strike,
                    "ban (detect): address would be banned"
                );
            }
            BanOutcome::Exempt | BanOutcome::AlreadyBanned => {}
        }
    }

    /// Feeds one behaviour signal; a crossed bound is a decision and, enforced, an offence.
    pub fn observe(
        &self,
        behaviour: Option<&BehaviourConfig>,
        bans: Option<&BanPolicy>,
        ip: IpAddr,
        signal: Signal<'_>,
        now: Instant,
    ) {
        let Some(b) = behaviour else { return };
        match self.behaviour.observe(&b.policy, ip, signal, now) {
            Observation::Fine => {}
            Observation::Untracked => self.metrics.behaviour_untracked.inc(),
            Observation::Tripped(reason) => {
                self.metrics.decide("behaviour", reason.label(), b.enforce);
                if b.enforce {
                    self.offence(bans, ip, reason, now);
                }
            }
        }
    }

    /// Drops forgotten bans and silent addresses; publishes the gauges.
    pub fn sweep(
        &self,
        bans: Option<&BanPolicy>,
        behaviour: Option<&BehaviourConfig>,
        now: Instant,
    ) {
        let active = match bans {
            Some(p) => self.bans.sweep(p, now).0,
            None => {
                let p = BanPolicy::default();
                self.bans.sweep(&p, now).0
            }
        };
        self.metrics
            .bans_active
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        let keys = match behaviour {
            Some(b) => self.behaviour.sweep(&b.policy, now),
            None => self.behaviour.sweep(&BehaviourPolicy::default(), now),
        };
        self.metrics
            .behaviour_keys
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    /// Lifts `ip`'s ban for an operator; logged.
    pub fn lift(&self, ip: IpAddr) -> bool {
        let lifted = self.bans.lift(ip);
        if lifted {
            self.metrics.bans_active.dec();
            let subject = self.subject(ip);
            tracing::warn!(subject, "ban: lifted by an operator");
            self.record(Event::Unban { subject: &subject });
        }
        lifted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn behaviour_trips_into_a_ban_only_when_enforced() {
        let jail = Jail::new(GuardMetrics::register(&Registry::new()).unwrap());
        let (ip, t0) = ("192.0.2.1".parse().unwrap(), Instant::now());
        let policy = BehaviourPolicy {
            max_client_errors: 1,
            ..BehaviourPolicy::default()
        };
        let mut b = BehaviourConfig {
            policy,
            enforce: false,
        };
        let bans = BanPolicy::default();
        for _ in 0..4 {
            jail.observe(Some(&b), Some(&bans), ip, Signal::ClientError, t0);
        }
        assert!(jail.check(ip, t0).is_ok(), "detect never bans");
        let detect =
            jail.metrics
                .decisions
                .with_label_values(&["behaviour", "client_errors", "detect"]);
        assert_eq!(detect.get(), 2);
        b.enforce = true;
        jail.observe(Some(&b), Some(&bans), ip, Signal::ClientError, t0);
        jail.observe(Some(&b), Some(&bans), ip, Signal::ClientError, t0);
        assert_eq!(
            jail.check(ip, t0 + Duration::from_secs(1)),
            Err(Reject::Banned { retry_after_s: 599 })
        );
        assert!(jail.lift(ip));
        assert!(jail.check(ip, t0).is_ok());
    }
}
