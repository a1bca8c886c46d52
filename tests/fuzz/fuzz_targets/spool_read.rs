//! Any bytes as a spool segment: dump and recovery must never panic, and after recovery the segment holds
//! exactly the records dump could read.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tollgate::spool::{read_all, Spool, SpoolConfig, SpoolMetrics};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seg-00000000000000000001.log"), data).unwrap();
    let before = read_all(dir.path()).unwrap();
    let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
    let (_spool, writer, recovery) = Spool::open(SpoolConfig::new(dir.path()), metrics).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(writer.close()).unwrap();
    assert_eq!(recovery.records as usize, before.len());
    let after = read_all(dir.path()).unwrap();
    assert_eq!(before, after);
});
