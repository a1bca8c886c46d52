//! The spool's encryption keys, validated into a key ring.

use std::path::Path;

use super::file::SpoolFile;
use super::tenants::load_keys;
use super::validate::Errors;
use super::LoadMode;
use crate::spool::{SpoolKey, SpoolKeys};

/// The spool is always encrypted: at least one key, and an active one among them.
pub(super) fn spool_keys(
    s: &SpoolFile,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<SpoolKeys> {
    if s.keys.is_empty() {
        errs.push(
            "spool.keys",
            "the spool is always encrypted: configure at least one key ([[spool.keys]] with id and file or env)",
        );
        return None;
    }
    let (ids, loaded) = load_keys(&s.keys, "spool.keys", base, mode, errs, SpoolKey::new);
    let Some(active) = &s.active_key else {
        errs.push(
            "spool.active_key",
            "name the key that encrypts new segments",
        );
        return None;
    };
    if !ids.contains(active.as_str()) {
        errs.push(
            "spool.active_key",
            format!("{active:?} is not one of spool.keys"),
        );
    }
    SpoolKeys::new(loaded, active)
}
