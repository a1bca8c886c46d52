//! `GET /admin/status`: one JSON document for an operator — version, config identity, uptime, open
//! connections per listener, spool size and writer state, per-sink circuit and lag, active bans, readiness.
//! Everything is read from runtime state at the time of the request; nothing here changes state.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::app::Ctx;
use crate::readiness;

const LISTENERS: [&str; 3] = ["public", "redirect", "admin"];

pub fn status(ctx: &Ctx) -> Value {
    let snap = ctx.config.load();
    let m = &ctx.metrics;
    let reasons = readiness::check(&readiness::inputs(ctx));
    let connections: serde_json::Map<String, Value> = LISTENERS
        .iter()
        .map(|l| {
            (
                l.to_string(),
                json!(m.connections_open.with_label_values(&[l]).get()),
            )
        })
        .collect();
    let sinks: Vec<Value> = snap
        .sinks
        .iter()
        .map(|s| {
            let v = m.sinks.view(&s.name);
            json!({
                "name": s.name,
                "circuit": v.circuit.label(),
                "lag_seconds": v.lag_seconds,
                "lag_events": v.lag_events,
            })
        })
        .collect();
    let health = ctx.spool.health();
    let now = tokio::time::Instant::now().into_std();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": {
            "generation": snap.generation,
            "sha256": snap.source.sha256,
            "loaded": ctx.config_loaded.load(Ordering::Acquire),
        },
        "uptime_s": ctx.started.elapsed().as_secs(),
        "connections": connections,
        "spool": {
            "bytes": m.spool.bytes.get(),
            "segments": m.spool.segments.get(),
            "max_bytes": snap.spool.max_bytes,
            "writer": health.writer.label(),
            "full": health.full,
        },
        "sinks": sinks,
        "bans": { "active": ctx.jail.bans.active(now) },
        "ready": reasons.is_empty(),
        "reasons": reasons.iter().map(|r| r.label()).collect::<Vec<_>>(),
    })
}
