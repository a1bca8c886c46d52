//! `[reload]`, `[audit]` and `[log]`: how the gateway watches its own files and records what it did. The file
//! structs here are `deny_unknown_fields` with safe defaults (watching on, audit log on, human-readable logs);
//! `operator` validates them into [`Operator`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::validate::Errors;

/// `[reload]`: reload on file change, besides `SIGHUP` and `POST /admin/reload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadFile {
    /// Poll the config file and every file it names; reload when one changed and then stayed unchanged.
    pub watch: bool,
    /// How often the files are looked at.
    pub poll_ms: u64,
    /// How long a change must hold still before it is reloaded (an editor or a ConfigMap swap writes in steps).
    pub debounce_ms: u64,
}

impl Default for ReloadFile {
    fn default() -> Self {
        Self {
            watch: true,
            poll_ms: 1000,
            debounce_ms: 500,
        }
    }
}

/// `[audit]`: the hash-chained audit log of state changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFile {
    pub enabled: bool,
    /// Relative to `data_dir`.
    pub file: String,
}

impl Default for AuditFile {
    fn default() -> Self {
        Self {
            enabled: true,
            file: "audit.log".into(),
        }
    }
}

/// `[log]`: the format of the log lines on stderr.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    /// "human" or "json" (one JSON object per line).
    pub format: String,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            format: "human".into(),
        }
    }
}

/// `[reload]` validated. Reloadable: the watcher reads it from the snapshot on every tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    pub watch: bool,
    pub poll: Duration,
    pub debounce: Duration,
}

/// The format of stderr log lines; fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "human" => Some(Self::Human),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// `[reload]`, `[audit]` and `[log]` in runtime form. `audit` and `log` change only on restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub reload: ReloadSettings,
    /// The audit log file; `None` = off.
    pub audit: Option<PathBuf>,
    pub log: LogFormat,
}

pub(super) fn operator(
    reload: &ReloadFile,
    audit: &AuditFile,
    log: &LogFile,
    data_dir: &Path,
    errs: &mut Errors,
) -> Operator {
    let mut ms = |name: &str, v: u64, min: u64, max: u64| {
        if v < min || v > max {
            errs.push(
                format!("reload.{name}"),
                format!("{v} is out of range {min}..={max}"),
            );
        }
        Duration::from_millis(v.clamp(min, max))
    };
    let reload = ReloadSettings {
        watch: reload.watch,
        poll: ms("poll_ms", reload.poll_ms, 50, 60_000),
        debounce: ms("debounce_ms", reload.debounce_ms, 0, 60_000),
    };
    if audit.enabled && audit.file.trim().is_empty() {
        errs.push(
            "audit.file",
            "must name a file (or set audit.enabled = false)",
        );
    }
    let format = LogFormat::parse(&log.format).unwrap_or_else(|| {
        errs.push(
            "log.format",
            format!("{:?} is not one of \"human\", \"json\"", log.format),
        );
        LogFormat::Human
    });
    Operator {
        reload,
        audit: audit.enabled.then(|| data_dir.join(&audit.file)),
        log: format,
    }
}

/// The log format a config file asks for, read before logging starts; `Human` when the file cannot be read
/// or parsed (the real load reports why, in that format).
pub fn log_format(path: &Path) -> LogFormat {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        log: Option<toml::Value>,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<Only>(&t).ok())
        .and_then(|o| o.log)
        .and_then(|l| l.get("format")?.as_str().and_then(LogFormat::parse))
        .unwrap_or(LogFormat::Human)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_watch_every_second_and_audit_into_the_data_dir() {
        let mut errs = Errors::default();
        let op = operator(
            &ReloadFile::default(),
            &AuditFile::default(),
            &LogFile::default(),
            Path::new("/d"),
            &mut errs,
        );
        assert!(errs.0.is_empty());
        assert_eq!(op.reload.poll, Duration::from_secs(1));
        assert_eq!(op.reload.debounce, Duration::from_millis(500));
        assert_eq!(op.audit.as_deref(), Some(Path::new("/d/audit.log")));
        assert_eq!(op.log, LogFormat::Human);
    }

    #[test]
    fn bad_values_are_errors_with_their_paths() {
        let mut errs = Errors::default();
        let reload = ReloadFile {
            poll_ms: 0,
            ..ReloadFile::default()
        };
        let log = LogFile {
            format: "xml".into(),
        };
        operator(
            &reload,
            &AuditFile::default(),
            &log,
            Path::new("/d"),
            &mut errs,
        );
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["reload.poll_ms", "log.format"]);
    }
}
