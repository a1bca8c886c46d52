//! Any bytes as a (plaintext) spool segment: dump, verify and recovery must never panic, recovery must never
//! refuse to start over damage, and after recovery the spool holds exactly the records dump could read.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tollgate::clock::FixedClock;
use tollgate::spool::{read_all, verify, Spool, SpoolConfig, SpoolMetrics};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seg-00000000000000000001.log"), data).unwrap();
    let before = read_all(dir.path(), None);
    let _ = verify(dir.path(), None).unwrap();
    let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
    let opened = Spool::open(SpoolConfig::new(dir.path()), None, Arc::new(FixedClock::new(0)), metrics);
    let Ok((_spool, writer, recovery)) = opened else {
        assert!(before.is_err(), "recovery refused a segment dump could read");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(writer.close()).unwrap();
    let after = read_all(dir.path(), None).unwrap();
    if let Ok(before) = before {
        assert_eq!(recovery.records as usize, before.len());
        assert_eq!(before, after);
    }
});
