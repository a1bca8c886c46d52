//! Any bytes as a PROXY protocol v2 header (the signature prepended half of the time so the parser gets
//! past it): parsing never panics, never reads past the declared length, and a v4-mapped source always comes
//! back as IPv4.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::guard::proxy::{parse_body, parse_prefix, PREFIX_BYTES, SIGNATURE};

fuzz_target!(|data: &[u8]| {
    let mut bytes = Vec::with_capacity(data.len() + SIGNATURE.len());
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(&SIGNATURE);
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let Some(prefix) = bytes.get(..PREFIX_BYTES) else { return };
    let prefix: &[u8; PREFIX_BYTES] = prefix.try_into().unwrap();
    let Ok(p) = parse_prefix(prefix) else { return };
    let Some(body) = bytes.get(PREFIX_BYTES..PREFIX_BYTES + p.len) else { return };
    if let Ok(Some(source)) = parse_body(p, body) {
        assert!(
            !matches!(source.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()),
            "a mapped source must be normalised: {source}"
        );
    }
});
