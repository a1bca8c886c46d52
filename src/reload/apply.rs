//! Applying a reload: read and validate the whole file into a new snapshot, refuse what only a restart may
//! change, then one `store` — one reload at a time, each applied snapshot numbered, every outcome logged,
//! counted and audited.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::{Generation, Trigger};
use crate::app::Ctx;
use crate::audit::Event;
use crate::config::{self, ConfigErrors, LoadMode, Snapshot};
use crate::tls::cert_changes;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no config file to reload from")]
    NoFile,
    #[error("invalid config, nothing changed:\n{0}")]
    Invalid(ConfigErrors),
    #[error("these settings only change on restart, nothing changed: {}", .0.join(", "))]
    RequiresRestart(Vec<&'static str>),
    #[error("spool.keys: segments on disk are still encrypted with {}; keep these keys listed, nothing changed", .0.join(", "))]
    SpoolKeyInUse(Vec<String>),
    #[error("cannot read the spool: {0}")]
    Spool(String),
}

impl ReloadError {
    /// A closed label for logs and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::NoFile => "no_file",
            ReloadError::Invalid(_) => "invalid",
            ReloadError::RequiresRestart(_) => "requires_restart",
            ReloadError::SpoolKeyInUse(_) => "spool_key_in_use",
            ReloadError::Spool(_) => "spool",
        }
    }

    /// What the error names — config paths, settings, key ids — without its text (which may quote a value).
    pub fn fields(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(e) => e.0.iter().map(|e| e.path.clone()).collect(),
            ReloadError::RequiresRestart(names) => names.iter().map(|n| n.to_string()).collect(),
            ReloadError::SpoolKeyInUse(ids) => ids.clone(),
            ReloadError::NoFile | ReloadError::Spool(_) => Vec::new(),
        }
    }
}

impl Ctx {
    /// Reloads as `POST /admin/reload` does; see [`Ctx::reload_from`].
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reload_from(Trigger::Admin).map(|_| ())
    }

    /// Re-reads the config file, validates all of it into a new snapshot and swaps it in with one store, as
    /// generation `old + 1` carrying the SHA-256 of the bytes it was built from. One reload at a time: a
    /// second caller waits, so the file read last is the one stored last. A failed reload leaves the running
    /// snapshot serving; either way the outcome is logged (with `trigger`), counted in
    /// `tollgate_config_reloads_total{outcome}` and written to the audit log. Listen addresses, the spool
    /// settings, sinks, `[audit]`, `[log]` and `limits.max_connections` are fixed at start: a change to them
    /// is refused with their names. Blocking (reads files): call from `spawn_blocking`.
    pub fn reload_from(&self, trigger: Trigger) -> Result<Generation, ReloadError> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.config.load_full();
        let result = self.try_reload(&old);
        self.reload_attempts.fetch_add(1, Ordering::SeqCst);
        let outcome = if result.is_ok() {
            "applied"
        } else {
            "rejected"
        };
        self.metrics
            .config_reloads
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(new) => {
                self.metrics.config_applied(new.number, self.clock.now_ms());
                tracing::info!(trigger = trigger.label(), generation = new.number, sha256 = %new.sha256,
                    old_sha256 = %old.source.sha256, "config reloaded");
                self.audit.record(Event::Reload {
                    trigger,
                    old_sha256: &old.source.sha256,
                    new_sha256: &new.sha256,
                    generation: new.number,
                });
                let current = self.config.load();
                for (name, before, after) in cert_changes(&old.tls.expiry, &current.tls.expiry) {
                    tracing::info!(certificate = %name, "certificate changed by reload");
                    self.audit.record(Event::Certificate {
                        name: &name,
                        old_sha256: before.as_deref(),
                        new_sha256: after.as_deref(),
                    });
                }
            }
            Err(e) => {
                tracing::warn!(trigger = trigger.label(), generation = old.generation, error = %e,
                    "config reload rejected");
                self.audit.record(Event::ReloadRejected {
                    trigger,
                    reason: e.reason(),
                    fields: e.fields(),
                });
            }
        }
        result
    }

    /// Reloads attempted since start, applied or rejected, by any trigger.
    pub fn reload_attempts(&self) -> u64 {
        self.reload_attempts.load(Ordering::SeqCst)
    }

    /// The generation number and config SHA-256 (hex) of the snapshot serving now.
    pub fn generation(&self) -> (u64, String) {
        let snap = self.config.load();
        (snap.generation, snap.source.sha256.clone())
    }

    fn try_reload(&self, old: &Snapshot) -> Result<Generation, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoFile)?;
        let mut new = config::load(path, LoadMode::Run).map_err(ReloadError::Invalid)?;
        let mut fixed = Vec::new();
        if old.listen != new.listen {
            fixed.push("listen");
        }
        if old.spool != new.spool {
            fixed.push("spool");
        }
        if old.sinks != new.sinks {
            fixed.push("sinks");
        }
        if old.limits.max_connections != new.limits.max_connections {
            fixed.push("limits.max_connections");
        }
        if old.operator.audit != new.operator.audit {
            fixed.push("audit");
        }
        if old.operator.log != new.operator.log {
            fixed.push("log");
        }
        if !fixed.is_empty() {
            return Err(ReloadError::RequiresRestart(fixed));
        }
        let in_use = self
            .spool
            .key_ids_in_use()
            .map_err(|e| ReloadError::Spool(e.to_string()))?;
        let missing: Vec<String> = in_use
            .into_iter()
            .filter(|id| new.spool_keys.get(id).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ReloadError::SpoolKeyInUse(missing));
        }
        self.spool.set_keys(new.spool_keys.clone());
        self.ratelimit.reconfigure(new.ratelimit.clone());
        new.generation = old.generation + 1;
        let applied = Generation {
            number: new.generation,
            sha256: new.source.sha256.clone(),
        };
        self.config.store(Arc::new(new));
        self.metrics
            .tls
            .publish_expiry(&self.config.load().tls.expiry);
        Ok(applied)
    }
}
