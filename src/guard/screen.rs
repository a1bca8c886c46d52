//! screen: the anomaly stage of a request. Every string value of every decoded event (with its JSON path,
//! `cart.items[0].name`) and the user agent go through the [`anomaly`](super::anomaly) engine, with the event's
//! `site` for per-tenant exclusions, before validation can drop anything. An event whose enforced score reaches
//! the threshold refuses the whole request (`403 anomaly_detected`); hits are counted by family either way.

use std::fmt::Write;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::{Map, Value};

use super::anomaly::{Engine, Family, Mode, Verdict};
use super::jail::GuardMetrics;
use crate::event::RawEvent;
use crate::reject::Reject;

/// `tollgate_anomaly_hits_total{family}` and `tollgate_anomaly_blocked_total`; labels resolved once.
pub struct ScreenMetrics {
    hits: [IntCounter; Family::ALL.len()],
    blocked: IntCounter,
}

impl ScreenMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let hits = IntCounterVec::new(
            Opts::new(
                "tollgate_anomaly_hits_total",
                "Anomaly rule hits, by family (enforced or detect-only).",
            ),
            &["family"],
        )?;
        let blocked = IntCounter::new(
            "tollgate_anomaly_blocked_total",
            "Requests refused by the anomaly threshold.",
        )?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(blocked.clone()))?;
        Ok(Self {
            hits: Family::ALL.map(|f| hits.with_label_values(&[f.label()])),
            blocked,
        })
    }
}

/// Scores each event of the request; refuses the request at the first blocked event.
pub fn admit(
    engine: &Engine,
    m: &ScreenMetrics,
    guard: &GuardMetrics,
    events: &[RawEvent],
    user_agent: Option<&str>,
) -> Result<(), Reject> {
    for (i, event) in events.iter().enumerate() {
        let mut values = Vec::new();
        collect(&event.object, &mut String::new(), &mut values);
        let site = event
            .object
            .get("site")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // The user agent is scored once per request, with the first event.
        let ua = if i == 0 { user_agent } else { None };
        let verdict = engine.score_strings(site, values.iter().map(|(p, v)| (p.as_str(), *v)), ua);
        for hit in &verdict.hits {
            let at = Family::ALL
                .iter()
                .position(|f| *f == hit.family)
                .expect("every family is in ALL");
            m.hits[at].inc();
        }
        if verdict.score >= engine.threshold() {
            decide(engine, guard, &verdict);
        }
        if verdict.blocked {
            m.blocked.inc();
            tracing::info!(
                score = verdict.score,
                hits = verdict.hits.len(),
                "anomaly: request refused"
            );
            return Err(Reject::AnomalyDetected);
        }
    }
    Ok(())
}

/// Counts a refusal (or, for detect-only families, a would-be refusal) once per family that scored in it.
fn decide(engine: &Engine, guard: &GuardMetrics, verdict: &Verdict) {
    let mut seen = [false; Family::ALL.len()];
    for hit in &verdict.hits {
        let at = Family::ALL
            .iter()
            .position(|f| *f == hit.family)
            .unwrap_or(0);
        if !std::mem::replace(&mut seen[at], true) {
            let enforce = verdict.blocked && engine.mode(hit.family) == Mode::Enforce;
            guard.decide("anomaly", hit.family.label(), enforce);
        }
    }
}

/// Every string value under `object` with its path; `decode` bounded depth, keys and strings already.
fn collect<'a>(
    object: &'a Map<String, Value>,
    prefix: &mut String,
    out: &mut Vec<(String, &'a str)>,
) {
    for (key, value) in object {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(key);
        walk(value, prefix, out);
        prefix.truncate(len);
    }
}

fn walk<'a>(value: &'a Value, path: &mut String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path.clone(), s)),
        Value::Object(o) => collect(o, path, out),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                walk(item, path, out);
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_every_string_value() {
        let v: Value = serde_json::json!({"site": "demo", "cart": {"items": [{"name": "Tee", "qty": 2}, {"sku": "S1"}]}});
        let mut out = Vec::new();
        collect(v.as_object().unwrap(), &mut String::new(), &mut out);
        out.sort();
        assert_eq!(
            out,
            [
                ("cart.items[0].name".to_string(), "Tee"),
                ("cart.items[1].sku".to_string(), "S1"),
                ("site".to_string(), "demo")
            ]
        );
    }
}
