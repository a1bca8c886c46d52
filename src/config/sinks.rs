//! Sinks, validated into their runtime form. Every key of a `[[sinks]]` table applies to some types only;
//! one that does not apply to the table's type is an error, like an unknown key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::SinkFile;
use super::sink_parts::{endpoint, ident, is_loopback, secret, tls_files};
use super::tenants::is_token;
use super::validate::Errors;
use crate::keys::Secret;

/// One configured sink. Restart-only (its name is a spool consumer), compared whole on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    pub name: String,
    pub region: Option<String>,
    pub kind: SinkKind,
    pub batch: BatchLimits,
    pub retry: RetryPolicy,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub events: usize,
    pub bytes: usize,
    /// A batch is sent once its oldest record waited this long, even if it is not full.
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// NDJSON files under `dir/<site>/<YYYY-MM-DD>/<HH>-<n>.ndjson`.
    File {
        dir: PathBuf,
        max_file_bytes: u64,
    },
    ClickHouse(ClickHouseConfig),
    Http(HttpConfig),
    Nats(NatsConfig),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File { .. } => "file",
            SinkKind::ClickHouse(_) => "clickhouse",
            SinkKind::Http(_) => "http",
            SinkKind::Nats(_) => "nats",
        }
    }
}

/// An `http://` or `https://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path (and query), starting with `/`.
    pub path: String,
}

/// Files for a TLS client: a CA bundle to trust (else the web PKI roots), and a client certificate for mTLS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsClientFiles {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    pub endpoint: Endpoint,
    pub tls: TlsClientFiles,
    pub database: String,
    pub table: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub endpoint: Endpoint,
    pub tls: TlsClientFiles,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `host:port`.
    pub server: String,
    pub subject: String,
    pub stream: String,
    pub create_stream: bool,
    pub replicas: usize,
    pub max_in_flight: usize,
}

/// Validates every `[[sinks]]` table; relative paths resolve against `base` (files) or `data_dir` (`dir`).
pub(super) fn sinks(
    files: &[SinkFile],
    base: &Path,
    data_dir: &Path,
    errs: &mut Errors,
) -> Vec<SinkConfig> {
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
        let mut v = V {
            at: &at,
            errs: &mut *errs,
        };
        let batch = BatchLimits {
            events: v.num("batch_events", s.batch_events, 1000, 1, 100_000) as usize,
            bytes: v.num("batch_bytes", s.batch_bytes, 1 << 20, 1024, 64 << 20) as usize,
            max_age: Duration::from_millis(v.num("batch_age_ms", s.batch_age_ms, 1000, 0, 600_000)),
        };
        let retry = RetryPolicy {
            base: Duration::from_millis(v.num("retry_base_ms", s.retry_base_ms, 100, 1, 60_000)),
            cap: Duration::from_millis(v.num("retry_cap_ms", s.retry_cap_ms, 30_000, 1, 3_600_000)),
        };
        let timeout =
            Duration::from_millis(v.num("timeout_ms", s.timeout_ms, 10_000, 100, 600_000));
        let region = s.region.clone();
        if let Some(r) = &region {
            if !is_token(r) {
                v.errs.push(
                    format!("{at}.region"),
                    "must be 1-64 characters of A-Z a-z 0-9 _ -",
                );
            }
        }
        let Some(kind) = kind(s, base, data_dir, &mut v) else {
            continue;
        };
        out.push(SinkConfig {
            name: s.name.clone(),
            region,
            kind,
            batch,
            retry,
            timeout,
        });
    }
    out
}

/// Validation helpers for one sink table.
pub(super) struct V<'a> {
    pub(super) at: &'a str,
    pub(super) errs: &'a mut Errors,
}

impl V<'_> {
    fn num(&mut self, field: &str, v: Option<u64>, default: u64, min: u64, max: u64) -> u64 {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            self.errs.push(
                format!("{}.{field}", self.at),
                format!("{v} is out of range {min}..={max}"),
            );
        }
        v
    }

    pub(super) fn required<'s>(
        &mut self,
        field: &str,
        v: &'s Option<String>,
        kind: &str,
    ) -> Option<&'s str> {
        if v.is_none() {
            self.errs.push(
                format!("{}.{field}", self.at),
                format!("required for type {kind:?}"),
            );
        }
        v.as_deref()
    }

    /// Keys set in the table that the type does not use.
    fn refuse_others(&mut self, s: &SinkFile, allowed: &[&str]) {
        for (field, set) in present(s) {
            if set && !allowed.contains(&field) {
                self.errs.push(
                    format!("{}.{field}", self.at),
                    format!("does not apply to type {:?}", s.kind),
                );
            }
        }
    }
}

/// The type-specific keys and whether each is set.
fn present(s: &SinkFile) -> [(&'static str, bool); 19] {
    [
        ("dir", s.dir.is_some()),
        ("max_file_bytes", s.max_file_bytes.is_some()),
        ("url", s.url.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("client_cert", s.client_cert.is_some()),
        ("client_key", s.client_key.is_some()),
        ("database", s.database.is_some()),
        ("table", s.table.is_some()),
        ("user", s.user.is_some()),
        ("password_file", s.password_file.is_some()),
        ("password_env", s.password_env.is_some()),
        ("token_file", s.token_file.is_some()),
        ("token_env", s.token_env.is_some()),
        ("subject", s.subject.is_some()),
        ("stream", s.stream.is_some()),
        ("create_stream", s.create_stream.is_some()),
        ("replicas", s.replicas.is_some()),
        ("max_in_flight", s.max_in_flight.is_some()),
        ("timeout_ms", false),
    ]
}

fn kind(s: &SinkFile, base: &Path, data_dir: &Path, v: &mut V<'_>) -> Option<SinkKind> {
    const TLS: [&str; 4] = ["url", "ca_file", "client_cert", "client_key"];
    match s.kind.as_str() {
        "file" => {
            v.refuse_others(s, &["dir", "max_file_bytes"]);
            Some(SinkKind::File {
                dir: data_dir.join(s.dir.as_deref().unwrap_or("out")),
                max_file_bytes: v.num("max_file_bytes", s.max_file_bytes, 64 << 20, 1, 1 << 40),
            })
        }
        "clickhouse" => {
            v.refuse_others(
                s,
                &[
                    &TLS[..],
                    &["database", "table", "user", "password_file", "password_env"],
                ]
                .concat(),
            );
            let endpoint = endpoint(v, s.url.as_deref(), "clickhouse")?;
            Some(SinkKind::ClickHouse(ClickHouseConfig {
                tls: tls_files(s, base, v),
                database: ident(v, "database", s.database.as_deref().unwrap_or("tollgate")),
                table: ident(v, "table", s.table.as_deref().unwrap_or("events")),
                user: s.user.clone(),
                password: secret(v, "password", &s.password_file, &s.password_env, base),
                endpoint,
            }))
        }
        "http" => {
            v.refuse_others(s, &[&TLS[..], &["token_file", "token_env"]].concat());
            let endpoint = endpoint(v, s.url.as_deref(), "http")?;
            if !endpoint.https && !is_loopback(&endpoint.host) {
                v.errs.push(
                    format!("{}.url", v.at),
                    "must be https:// (plain http only to a loopback address)",
                );
            }
            Some(SinkKind::Http(HttpConfig {
                tls: tls_files(s, base, v),
                token: secret(v, "token", &s.token_file, &s.token_env, base),
                endpoint,
            }))
        }
        "nats" => {
            v.refuse_others(
                s,
                &[
                    "url",
                    "subject",
                    "stream",
                    "create_stream",
                    "replicas",
                    "max_in_flight",
                ],
            );
            let url = v.required("url", &s.url, "nats")?;
            let Some(server) = url.strip_prefix("nats://").filter(|h| h.contains(':')) else {
                v.errs.push(
                    format!("{}.url", v.at),
                    format!("{url:?} is not nats://host:port"),
                );
                return None;
            };
            Some(SinkKind::Nats(NatsConfig {
                server: server.trim_end_matches('/').to_owned(),
                subject: s
                    .subject
                    .clone()
                    .unwrap_or_else(|| "tollgate.events".into()),
                stream: ident(v, "stream", s.stream.as_deref().unwrap_or("TOLLGATE")),
                create_stream: s.create_stream.unwrap_or(false),
                replicas: v.num("replicas", s.replicas, 1, 1, 5) as usize,
                max_in_flight: v.num("max_in_flight", s.max_in_flight, 256, 1, 10_000) as usize,
            }))
        }
        other => {
            v.errs.push(
                format!("{}.type", v.at),
                format!("{other:?} is not one of \"file\", \"clickhouse\", \"http\", \"nats\""),
            );
            None
        }
    }
}
