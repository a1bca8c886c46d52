//! Sinks and the spool's encryption keys, validated into their runtime form.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::{SinkFile, SpoolFile};
use super::tenants::{is_token, key_secret};
use super::validate::Errors;
use super::LoadMode;
use crate::spool::{SpoolKey, SpoolKeys};

/// One configured sink. Restart-only (its name is a spool consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub batch_events: usize,
    pub batch_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// NDJSON files under `dir/<site>/<YYYY-MM-DD>/<HH>-<n>.ndjson`.
    File { dir: PathBuf, max_file_bytes: u64 },
}

pub(super) fn sinks(files: &[SinkFile], data_dir: &Path, errs: &mut Errors) -> Vec<SinkConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in files.iter().enumerate() {
        let at = format!("sinks[{i}]");
        if !is_token(&s.name) {
            errs.push(
                format!("{at}.name"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if !names.insert(s.name.as_str()) {
            errs.push(
                format!("{at}.name"),
                format!("duplicate sink name {:?}", s.name),
            );
        }
        let batch = |field: &str, v: Option<u64>, default: u64, max: u64, errs: &mut Errors| {
            let v = v.unwrap_or(default);
            if v == 0 || v > max {
                errs.push(
                    format!("{at}.{field}"),
                    format!("{v} is out of range 1..={max}"),
                );
            }
            v as usize
        };
        let batch_events = batch("batch_events", s.batch_events, 1000, 100_000, errs);
        let batch_bytes = batch("batch_bytes", s.batch_bytes, 1 << 20, 64 << 20, errs);
        let kind = match s.kind.as_str() {
            "file" => SinkKind::File {
                dir: data_dir.join(s.dir.as_deref().unwrap_or("out")),
                max_file_bytes: batch("max_file_bytes", s.max_file_bytes, 64 << 20, 1 << 40, errs)
                    as u64,
            },
            other => {
                errs.push(
                    format!("{at}.type"),
                    format!("{other:?} is not a sink type (\"file\")"),
                );
                continue;
            }
        };
        out.push(SinkConfig {
            name: s.name.clone(),
            kind,
            batch_events,
            batch_bytes,
        });
    }
    out
}

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
