//! Any bytes as the first record a TLS client sends: reading its `server_name` never panics, and bytes that
//! are not a handshake record are never taken for a hello.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::tls::hello::{hello_sni, HelloSni};

fuzz_target!(|data: &[u8]| {
    let seen = hello_sni(data);
    if data.first() != Some(&22) {
        assert_eq!(seen, HelloSni::Unparsed);
    }
});
