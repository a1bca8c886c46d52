//! Any config text: parsing and validation (in `check` mode, which writes nothing) must never panic; they
//! either build a snapshot or report errors with paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::{validate, ConfigFile, LoadMode};

fuzz_target!(|text: &str| {
    let Ok(file) = toml::from_str::<ConfigFile>(text) else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    if let Err(errors) = validate(file, base.path(), LoadMode::Check) {
        assert!(errors.0.iter().all(|e| !e.path.is_empty()));
    }
});
