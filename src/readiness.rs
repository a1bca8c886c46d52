//! readiness: whether this gateway should get traffic, and if not, every reason why. `GET /readyz` answers
//! 200 `{"ready":true}` or 503 `{"ready":false,"reasons":[...]}`; `/admin/status` shows the same list.
//!
//! The reasons form a closed set ([`NotReady`]), each computed from runtime state on every probe, so
//! readiness comes back by itself when its cause clears:
//! - `config_not_loaded`: `App::start` has not finished (sinks are being built, the public listener is not
//!   accepting yet). The admin listener answers from the start so a probe sees this rather than a refusal.
//! - `spool_writer_failed`: the last spool commit failed. A failed `write` is rolled back and the next
//!   successful commit clears it; a failed `fsync` stops the writer for good (the kernel may have dropped
//!   the pages), so only a restart clears that (see `spool::health`).
//! - `spool_full`: an append was refused for `spool.max_bytes` and no space was freed since (a sink
//!   delivering, expiry) and no later commit stored all its appends.
//! - `sinks_failing`: every configured sink's circuit is open or half-open (at least three consecutive
//!   failures of the batch in hand). One healthy sink is enough; a gateway without sinks never reports it.

use std::sync::atomic::Ordering;

use crate::app::Ctx;
use crate::sink::metrics::Circuit;
use crate::spool::{SpoolHealth, WriterState};

/// Why the gateway is not ready; the label is what `/readyz` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    ConfigNotLoaded,
    SpoolWriterFailed,
    SpoolFull,
    SinksFailing,
}

impl NotReady {
    pub const ALL: [NotReady; 4] = [
        NotReady::ConfigNotLoaded,
        NotReady::SpoolWriterFailed,
        NotReady::SpoolFull,
        NotReady::SinksFailing,
    ];

    pub fn label(self) -> &'static str {
        match self {
            NotReady::ConfigNotLoaded => "config_not_loaded",
            NotReady::SpoolWriterFailed => "spool_writer_failed",
            NotReady::SpoolFull => "spool_full",
            NotReady::SinksFailing => "sinks_failing",
        }
    }
}

/// What readiness is computed from, read once per probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub config_loaded: bool,
    pub spool: SpoolHealth,
    /// Circuit state of every configured sink.
    pub sinks: Vec<Circuit>,
}

/// Every reason the gateway is not ready, in [`NotReady::ALL`] order; empty = ready.
pub fn check(i: &Inputs) -> Vec<NotReady> {
    NotReady::ALL
        .into_iter()
        .filter(|r| match r {
            NotReady::ConfigNotLoaded => !i.config_loaded,
            NotReady::SpoolWriterFailed => i.spool.writer != WriterState::Ok,
            NotReady::SpoolFull => i.spool.full,
            NotReady::SinksFailing => {
                !i.sinks.is_empty() && i.sinks.iter().all(|c| *c != Circuit::Closed)
            }
        })
        .collect()
}

/// Reads the inputs from the running gateway.
pub fn inputs(ctx: &Ctx) -> Inputs {
    let snap = ctx.config.load();
    Inputs {
        config_loaded: ctx.config_loaded.load(Ordering::Acquire),
        spool: ctx.spool.health(),
        sinks: snap
            .sinks
            .iter()
            .map(|s| ctx.metrics.sinks.view(&s.name).circuit)
            .collect(),
    }
}

/// The `/readyz` body.
pub fn body(reasons: &[NotReady]) -> serde_json::Value {
    match reasons {
        [] => serde_json::json!({"ready": true}),
        _ => {
            let labels: Vec<&str> = reasons.iter().map(|r| r.label()).collect();
            serde_json::json!({"ready": false, "reasons": labels})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Inputs {
        Inputs {
            config_loaded: true,
            spool: SpoolHealth {
                writer: WriterState::Ok,
                full: false,
            },
            sinks: vec![Circuit::Closed, Circuit::Open],
        }
    }

    #[test]
    fn each_cause_is_its_own_reason_and_all_are_listed() {
        assert_eq!(check(&ok()), []);
        type Edit = fn(&mut Inputs);
        let cases: [(Edit, NotReady); 5] = [
            (|i| i.config_loaded = false, NotReady::ConfigNotLoaded),
            (
                |i| i.spool.writer = WriterState::Failing,
                NotReady::SpoolWriterFailed,
            ),
            (
                |i| i.spool.writer = WriterState::Stopped,
                NotReady::SpoolWriterFailed,
            ),
            (|i| i.spool.full = true, NotReady::SpoolFull),
            (
                |i| i.sinks = vec![Circuit::Open, Circuit::HalfOpen],
                NotReady::SinksFailing,
            ),
        ];
        for (edit, want) in cases {
            let mut i = ok();
            edit(&mut i);
            assert_eq!(check(&i), [want]);
        }
        let none = Inputs {
            config_loaded: false,
            spool: SpoolHealth {
                writer: WriterState::Stopped,
                full: true,
            },
            sinks: vec![Circuit::Open],
        };
        assert_eq!(check(&none), NotReady::ALL);
        let no_sinks = Inputs {
            sinks: vec![],
            ..ok()
        };
        assert_eq!(check(&no_sinks), []);
        assert_eq!(body(&[]).to_string(), r#"{"ready":true}"#);
        assert_eq!(
            body(&[NotReady::SpoolFull]).to_string(),
            r#"{"ready":false,"reasons":["spool_full"]}"#
        );
    }
}
