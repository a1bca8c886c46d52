//! Any text as the pixel's query string (`GET /v1/p.gif?<query>`): extracting and decoding `d` never panics,
//! the decoded body never exceeds the configured bound by more than a base64 group, and whatever it decodes
//! to goes through `decode` like a POST body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::{self, LoadMode, Snapshot};
use tollgate::http::pixel::body_of;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tollgate.toml");
        config::load(std::path::Path::new(path), LoadMode::Check).expect("default config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let limits = &snapshot().limits;
    if let Ok(body) = body_of(Some(query), limits.max_body_bytes) {
        assert!(body.len() <= limits.max_body_bytes + 3, "decoded {} bytes", body.len());
        let _ = tollgate::event::decode(&body, limits);
    }
});
