//! Set-up the benches share: the committed default config, and the DESIGN.md sample event minimized as the
//! gateway would minimize it (tenant `demo`, a documentation address, no user agent).

use std::path::Path;

use tollgate::config::{self, LoadMode, Snapshot};
use tollgate::event::{
    decode, minimize, validate, ClientMeta, Context, MinimizedEvent, Outcome, Report,
};

pub const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/sample_event.json");

/// `config/tollgate.toml`, validated as `tollgate check` does (nothing written, dev keys in memory).
pub fn default_snapshot() -> Snapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
    config::load(&path, LoadMode::Check).expect("default config is valid")
}

/// Every event of `body`, decoded, validated and minimized for tenant `demo` of `snap`, received at
/// `received_ms`.
pub fn minimize_body(snap: &Snapshot, body: &[u8], received_ms: i64) -> Vec<MinimizedEvent> {
    let client = ClientMeta {
        ip: "203.0.113.77".parse().unwrap(),
        user_agent: None,
        opted_out: false,
    };
    let ctx = Context {
        tenant: &snap.tenants["demo"],
        client: &client,
        geo: snap.geo.as_deref(),
        received_ms,
    };
    let mut report = Report::default();
    decode(body, &snap.limits)
        .unwrap()
        .events
        .into_iter()
        .map(
            |r| match minimize(validate(r).unwrap(), &ctx, &mut report) {
                Outcome::Keep(m) => m,
                Outcome::Suppressed => unreachable!(),
            },
        )
        .collect()
}
