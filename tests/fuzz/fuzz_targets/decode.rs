//! Any request body: decode, validate and minimize must never panic, and whatever minimize writes must be one
//! valid JSON object.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::{self, LoadMode, Snapshot};
use tollgate::event::{decode, minimize, validate, ClientMeta, Context, Outcome, Report};

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tollgate.toml");
        config::load(std::path::Path::new(path), LoadMode::Check).expect("default config")
    })
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    let Ok(raw) = decode(data, &snap.limits) else {
        return;
    };
    let client = ClientMeta {
        ip: "203.0.113.7".parse().unwrap(),
        user_agent: None,
        opted_out: data.len() % 2 == 0,
    };
    for r in raw {
        let Ok(valid) = validate(r) else { continue };
        let Some(tenant) = snap.tenants.get(&valid.site) else {
            continue;
        };
        let ctx = Context {
            tenant,
            client: &client,
            geo: None,
            received_ms: 0,
        };
        if let Outcome::Keep(m) = minimize(valid, &ctx, &mut Report::default()) {
            let v: serde_json::Value =
                serde_json::from_slice(m.record()).expect("minimize writes valid JSON");
            assert!(v.is_object());
            assert!(!String::from_utf8_lossy(m.record()).contains("203.0.113.7"));
        }
    }
});
