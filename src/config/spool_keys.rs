//! The spool's encryption keys, validated into a key ring.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::file::SpoolFile;
use super::tenants::{is_token, key_secret};
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
    let mut ids = HashSet::new();
    let mut loaded = Vec::new();
    for (j, k) in s.keys.iter().enumerate() {
        let kat = format!("spool.keys[{j}]");
        if !is_token(&k.id) {
            errs.push(
                format!("{kat}.id"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if !ids.insert(k.id.as_str()) {
            errs.push(format!("{kat}.id"), format!("duplicate key id {:?}", k.id));
        }
        if let Some(secret) = key_secret(k, &kat, base, mode, errs) {
            loaded.push(Arc::new(SpoolKey::new(k.id.clone(), &secret)));
        }
    }
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
