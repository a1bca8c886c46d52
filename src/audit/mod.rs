//! The audit log: one JSON line per state change of the gateway — start, stop, each reload applied or
//! rejected, each ban and lift, each sink going down or coming back — hash-chained ([`chain`]) so that an
//! edited, removed or inserted line is found by `tollgate audit verify FILE`.
//!
//! Guarantees: a line is written with one `write` and `fsync`ed before [`Audit::record`] returns (events are
//! rare: reloads, bans, circuit changes), so a line the log shows happened, in that order. Lines never hold a
//! secret, a key or a client address: the event kinds are a closed enum ([`Event`]) whose fields are hashes,
//! generations, config paths and setting names, sink names and ban subjects (a keyed hash of the address, see
//! [`crate::guard::jail`]). A log that exists is continued: its last line's hash and `seq` are read at open.
//! A write that fails is logged and counted in nothing else; the gateway keeps serving.

pub mod chain;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{json, Map, Value};

use crate::clock::Clock;
use crate::reload::Trigger;

/// Every kind of line the audit log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    Startup {
        generation: u64,
        config_sha256: &'a str,
    },
    Shutdown,
    Reload {
        trigger: Trigger,
        old_sha256: &'a str,
        new_sha256: &'a str,
        generation: u64,
    },
    /// A reload that changed nothing: `reason` is the error kind, `fields` the config paths or settings named
    /// (never the error text, which could quote a value).
    ReloadRejected {
        trigger: Trigger,
        reason: &'static str,
        fields: Vec<String>,
    },
    Ban {
        subject: &'a str,
        reason: &'static str,
        ttl_s: u64,
        strike: u32,
    },
    Unban {
        subject: &'a str,
    },
    SinkDown {
        sink: &'a str,
    },
    SinkUp {
        sink: &'a str,
    },
    /// A reload added, replaced or removed a certificate (`name`: `default` or the SNI entry's first name).
    Certificate {
        name: &'a str,
        old_sha256: Option<&'a str>,
        new_sha256: Option<&'a str>,
    },
}

impl Event<'_> {
    /// The `event` member of the line.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Startup { .. } => "startup",
            Event::Shutdown => "shutdown",
            Event::Reload { .. } => "reload",
            Event::ReloadRejected { .. } => "reload_rejected",
            Event::Ban { .. } => "ban",
            Event::Unban { .. } => "unban",
            Event::SinkDown { .. } => "sink_down",
            Event::SinkUp { .. } => "sink_up",
            Event::Certificate { .. } => "certificate",
        }
    }

    /// The event's own members (after `ts` and `event`).
    fn fields(&self) -> Value {
        match self {
            Event::Startup {
                generation,
                config_sha256,
            } => json!({"generation": generation, "config_sha256": config_sha256}),
            Event::Shutdown => json!({}),
            Event::Reload {
                trigger,
                old_sha256,
                new_sha256,
                generation,
            } => json!({"trigger": trigger.label(), "old_sha256": old_sha256,
                "new_sha256": new_sha256, "generation": generation}),
            Event::ReloadRejected {
                trigger,
                reason,
                fields,
            } => json!({"trigger": trigger.label(), "reason": reason, "fields": fields}),
            Event::Ban {
                subject,
                reason,
                ttl_s,
                strike,
            } => json!({"subject": subject, "reason": reason, "ttl_s": ttl_s, "strike": strike}),
            Event::Unban { subject } => json!({"subject": subject}),
            Event::SinkDown { sink } | Event::SinkUp { sink } => json!({"sink": sink}),
            Event::Certificate {
                name,
                old_sha256,
                new_sha256,
            } => json!({"name": name, "old_sha256": old_sha256, "new_sha256": new_sha256}),
        }
    }
}

/// The unsealed body of line `seq`: `ts` (Unix ms), `event`, the event's members, `seq`, `prev`.
pub fn body(event: &Event<'_>, ts_ms: i64, seq: u64, prev: &str) -> String {
    let mut m = Map::new();
    m.insert("ts_ms".into(), json!(ts_ms));
    m.insert("event".into(), json!(event.kind()));
    if let Value::Object(f) = event.fields() {
        m.extend(f);
    }
    // `seq` and `prev` last, after the event's members, as `chain::check` reads them from anywhere.
    let mut text = Value::Object(m).to_string();
    text.pop();
    let sep = if text.len() > 1 { "," } else { "" };
    format!("{text}{sep}\"seq\":{seq},\"prev\":\"{prev}\"}}")
}

struct Writer {
    file: File,
    path: PathBuf,
    link: chain::Link,
}

/// The audit log of one process. Cheap to share (`Arc`); `off` records nothing.
pub struct Audit {
    writer: Option<Mutex<Writer>>,
    clock: Arc<dyn Clock>,
}

impl Audit {
    pub fn off(clock: Arc<dyn Clock>) -> Self {
        Self {
            writer: None,
            clock,
        }
    }

    /// Opens (creating, mode 0600) or continues the log at `path`. A torn last line is ended with a newline
    /// (verify will name it) and the chain continues from the last sealed line.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path)?;
        let tail = read_tail(&mut file)?;
        if !tail.is_empty() && !tail.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        let link = chain::last_link(&tail).unwrap_or(chain::Link {
            seq: 0,
            hash: chain::genesis(),
        });
        Ok(Self {
            writer: Some(Mutex::new(Writer {
                file,
                path: path.to_path_buf(),
                link,
            })),
            clock,
        })
    }

    /// Appends one sealed line and fsyncs it. Failures are logged, never returned: auditing must not stop
    /// the gateway.
    pub fn record(&self, event: Event<'_>) {
        let Some(writer) = &self.writer else { return };
        let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = w.link.seq + 1;
        let line = chain::seal(&body(&event, self.clock.now_ms(), seq, &w.link.hash));
        let written = w
            .file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| w.file.sync_data());
        match written {
            Ok(()) => {
                if let Some(link) = chain::last_link(&line) {
                    w.link = link;
                }
            }
            Err(e) => {
                tracing::error!(path = %w.path.display(), error = %e, event = event.kind(),
                    "audit: cannot write the audit log")
            }
        }
    }
}

/// The last 64 KiB of `file` (enough for its last line), lossily as text.
fn read_tail(file: &mut File) -> std::io::Result<String> {
    let len = file.metadata()?.len();
    let from = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;

    #[test]
    fn lines_chain_across_reopen_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.log");
        let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(1_000));
        let a = Audit::open(&path, clock.clone()).unwrap();
        a.record(Event::Startup {
            generation: 1,
            config_sha256: "ab",
        });
        a.record(Event::Ban {
            subject: "00ff",
            reason: "anomaly",
            ttl_s: 2,
            strike: 1,
        });
        drop(a);
        let a = Audit::open(&path, clock).unwrap();
        a.record(Event::Shutdown);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(chain::verify(&text), Ok(3), "{text}");
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["event"], "startup");
        assert_eq!(first["ts_ms"], 1_000);
        assert_eq!(first["seq"], 1);
        let last: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        assert_eq!(
            (last["event"].as_str(), last["seq"].as_u64()),
            (Some("shutdown"), Some(3))
        );
    }

    #[test]
    fn off_writes_nothing() {
        Audit::off(Arc::new(FixedClock::new(0))).record(Event::Shutdown);
    }
}
