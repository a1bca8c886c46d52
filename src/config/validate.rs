//! From `ConfigFile` to `Snapshot`: every check runs, every failure is collected with its path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{ConfigFile, KeyFile, LimitsFile, TenantFile, TimeoutsFile};
use super::{ConfigError, ConfigErrors, Limits, Listen, LoadMode, Snapshot, Tenant, Timeouts};
use crate::keys::{self, HmacKey, KeySource, Missing};
use crate::spool::SpoolConfig;
use crate::tls;

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Validates a parsed file into a runtime snapshot, or returns every error found.
pub fn validate(file: ConfigFile, base: &Path, mode: LoadMode) -> Result<Snapshot, ConfigErrors> {
    let mut errs = Errors::default();
    let data_dir = base.join(&file.data_dir);
    if mode == LoadMode::Run {
        if let Err(e) = std::fs::create_dir_all(&data_dir) {
            errs.push(
                "data_dir",
                format!("cannot create {}: {e}", data_dir.display()),
            );
        }
    }
    let listen = listen(&file, &mut errs);
    let limits = limits(&file.limits, &mut errs);
    let timeouts = timeouts(&file.timeouts, &mut errs);
    let spool = spool(&file, &data_dir, &mut errs);
    let tenants = tenants(&file.tenants, base, mode, &mut errs);
    let tls = tls_material(&file, base, mode, &mut errs);
    match (listen, limits, timeouts, spool, tls) {
        (Some(listen), Some(limits), Some(timeouts), Some(spool), Some((tls, dev_ca)))
            if errs.0.is_empty() =>
        {
            Ok(Snapshot {
                listen,
                tls,
                dev_ca,
                limits,
                timeouts,
                spool,
                tenants,
            })
        }
        _ => Err(ConfigErrors(errs.0)),
    }
}

fn addr(path: &str, text: &str, errs: &mut Errors) -> Option<SocketAddr> {
    text.parse()
        .map_err(|_| {
            errs.push(
                path,
                format!("{text:?} is not an address:port (e.g. 127.0.0.1:8443)"),
            )
        })
        .ok()
}

fn listen(file: &ConfigFile, errs: &mut Errors) -> Option<Listen> {
    let public = addr("listen.public", &file.listen.public, errs);
    let redirect = file
        .listen
        .redirect
        .as_deref()
        .map(|t| addr("listen.redirect", t, errs));
    let admin = file
        .listen
        .admin
        .as_deref()
        .map(|t| addr("listen.admin", t, errs));
    if let Some(Some(a)) = admin {
        if !a.ip().is_loopback() {
            errs.push(
                "listen.admin",
                "the admin listener must bind a loopback address",
            );
        }
    }
    // outer None = a parse error was recorded; Some(None) = listener not configured
    Some(Listen {
        public: public?,
        redirect: redirect.map_or(Some(None), |r| r.map(Some))?,
        admin: admin.map_or(Some(None), |a| a.map(Some))?,
    })
}

fn bounded(path: &str, v: u64, min: u64, max: u64, errs: &mut Errors) -> u64 {
    if v < min || v > max {
        errs.push(path, format!("{v} is out of range {min}..={max}"));
    }
    v
}

fn limits(l: &LimitsFile, errs: &mut Errors) -> Option<Limits> {
    let mut b = |name: &str, v: u64, min: u64, max: u64| {
        bounded(&format!("limits.{name}"), v, min, max, errs)
    };
    Some(Limits {
        max_body_bytes: b("max_body_bytes", l.max_body_bytes, 64, 16 << 20) as usize,
        max_events: b("max_events", l.max_events, 1, 10_000) as usize,
        // serde_json refuses nesting past 128 on its own; our limit must sit below it.
        max_depth: b("max_depth", l.max_depth, 2, 100) as usize,
        max_string_bytes: b("max_string_bytes", l.max_string_bytes, 16, 1 << 20) as usize,
        max_object_keys: b("max_object_keys", l.max_object_keys, 8, 10_000) as usize,
        max_connections: b("max_connections", l.max_connections, 1, 1_000_000) as usize,
        max_header_count: b("max_header_count", l.max_header_count, 8, 1000) as usize,
        max_header_bytes: b("max_header_bytes", l.max_header_bytes, 8192, 1 << 20) as usize,
        h2_max_concurrent_streams: b(
            "h2_max_concurrent_streams",
            l.h2_max_concurrent_streams,
            1,
            10_000,
        ) as u32,
    })
}

fn timeouts(t: &TimeoutsFile, errs: &mut Errors) -> Option<Timeouts> {
    let mut ms = |name: &str, v: u64| {
        Duration::from_millis(bounded(&format!("timeouts.{name}"), v, 1, 3_600_000, errs))
    };
    Some(Timeouts {
        tls_handshake: ms("tls_handshake_ms", t.tls_handshake_ms),
        header_read: ms("header_read_ms", t.header_read_ms),
        body_read: ms("body_read_ms", t.body_read_ms),
        idle: ms("idle_ms", t.idle_ms),
        shutdown_grace: ms("shutdown_grace_ms", t.shutdown_grace_ms),
    })
}

fn spool(file: &ConfigFile, data_dir: &Path, errs: &mut Errors) -> Option<SpoolConfig> {
    let s = &file.spool;
    let segment_bytes = bounded(
        "spool.segment_bytes",
        s.segment_bytes,
        64 * 1024,
        1 << 32,
        errs,
    );
    let max_bytes = bounded("spool.max_bytes", s.max_bytes, 1 << 20, u64::MAX, errs);
    if max_bytes < segment_bytes {
        errs.push("spool.max_bytes", "must be at least spool.segment_bytes");
    }
    Some(SpoolConfig {
        dir: data_dir.join(&s.dir),
        segment_bytes,
        max_bytes,
        commit_window: Duration::from_micros(bounded(
            "spool.commit_window_us",
            s.commit_window_us,
            0,
            100_000,
            errs,
        )),
        max_batch_bytes: bounded(
            "spool.max_batch_bytes",
            s.max_batch_bytes,
            64 * 1024,
            1 << 30,
            errs,
        ) as usize,
        queue_depth: bounded("spool.queue_depth", s.queue_depth, 1, 1 << 20, errs) as usize,
    })
}

fn tls_material(
    file: &ConfigFile,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<(Arc<rustls::ServerConfig>, Option<PathBuf>)> {
    let versions = match file.tls.min_version.as_str() {
        "1.2" => tls::Versions::Intermediate,
        "1.3" => tls::Versions::Modern,
        other => {
            errs.push(
                "tls.min_version",
                format!("{other:?} is not one of \"1.2\", \"1.3\""),
            );
            return None;
        }
    };
    let (cert, key) = (base.join(&file.tls.cert), base.join(&file.tls.key));
    tls::load(&cert, &key, file.tls.dev_self_signed, versions, mode)
        .map_err(|e| errs.push("tls", e.to_string()))
        .ok()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tenants(
    list: &[TenantFile],
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> HashMap<String, Tenant> {
    let mut out = HashMap::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tenants[{i}]");
        if !is_token(&t.site) {
            errs.push(
                format!("{at}.site"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if out.contains_key(&t.site) {
            errs.push(format!("{at}.site"), format!("duplicate site {:?}", t.site));
        }
        let allowed_origins = origins(&t.allowed_origins, &at, errs);
        let active_key = tenant_keys(t, &at, base, mode, errs);
        if let Some(active_key) = active_key {
            out.insert(
                t.site.clone(),
                Tenant {
                    site: t.site.clone(),
                    allowed_origins,
                    active_key,
                },
            );
        }
    }
    out
}

fn origins(list: &[String], at: &str, errs: &mut Errors) -> Vec<String> {
    let mut out = Vec::with_capacity(list.len());
    for (j, o) in list.iter().enumerate() {
        let lower = o.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => out.push(lower),
            _ => errs.push(
                format!("{at}.allowed_origins[{j}]"),
                format!("{o:?} is not an origin like \"https://shop.example\" (scheme and host, no path)"),
            ),
        }
    }
    out
}

fn tenant_keys(
    t: &TenantFile,
    at: &str,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<Arc<HmacKey>> {
    let mut ids = HashSet::new();
    let mut active = None;
    for (j, k) in t.keys.iter().enumerate() {
        let kat = format!("{at}.keys[{j}]");
        if !is_token(&k.id) {
            errs.push(
                format!("{kat}.id"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if !ids.insert(k.id.as_str()) {
            errs.push(format!("{kat}.id"), format!("duplicate key id {:?}", k.id));
        }
        let Some(secret) = key_secret(k, &kat, base, mode, errs) else {
            continue;
        };
        if k.id == t.active_key {
            active = Some(Arc::new(HmacKey::new(k.id.clone(), &secret)));
        }
    }
    if !ids.contains(t.active_key.as_str()) {
        errs.push(
            format!("{at}.active_key"),
            format!("{:?} is not one of this tenant's key ids", t.active_key),
        );
    }
    active
}

fn key_secret(
    k: &KeyFile,
    kat: &str,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<Vec<u8>> {
    let source = match (&k.file, &k.env) {
        (Some(f), None) => KeySource::File(base.join(f)),
        (None, Some(e)) => KeySource::Env(e.clone()),
        _ => {
            errs.push(kat.to_string(), "set exactly one of `file` or `env`");
            return None;
        }
    };
    let missing = match (k.generate_if_missing, mode) {
        (false, _) => Missing::Fail,
        (true, LoadMode::Check) => Missing::GenerateInMemory,
        (true, LoadMode::Run) => Missing::GenerateAndWrite,
    };
    keys::load(&source, missing)
        .map_err(|e| errs.push(kat.to_string(), e.to_string()))
        .ok()
}
