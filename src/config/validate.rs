//! From `ConfigFile` to `Snapshot`: every check runs, every failure is collected with its path.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::file::{ConfigFile, LimitsFile, TimeoutsFile};
use super::{ConfigError, ConfigErrors, Limits, Listen, LoadMode, Snapshot, Timeouts};
use crate::event::minimize::geo::Geo;
use crate::spool::SpoolConfig;

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
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
    let admin = super::admin::admin(&file, base, &mut errs);
    let limits = limits(&file.limits, &mut errs);
    let timeouts = timeouts(&file.timeouts, &mut errs);
    let sinks = super::sinks::sinks(&file.sinks, base, &data_dir, &mut errs);
    let mut spool = spool(&file, &data_dir, &mut errs);
    if let Some(s) = spool.as_mut() {
        s.consumers = sinks.iter().map(|k| k.name.clone()).collect();
    }
    let ratelimit = super::guard::ratelimit(&file.guard.ratelimit, &mut errs);
    let anomaly = super::guard::anomaly(file.guard.anomaly.as_ref(), &mut errs);
    let connections = super::guard::connections(&file.guard, &mut errs);
    let route_lists = super::guard::route_lists(&file.guard, &mut errs);
    let bans = super::guard::bans(file.guard.bans.as_ref(), &mut errs);
    let behaviour = super::guard::behaviour(file.guard.behaviour.as_ref(), &mut errs);
    let trusted_proxies = super::guard::networks(
        &file.guard.trusted_proxies,
        "guard.trusted_proxies",
        &mut errs,
    );
    let spool_keys = super::spool_keys::spool_keys(&file.spool, base, mode, &mut errs);
    let profiles = super::tenants::profiles(&file.profiles, &mut errs);
    let tenants = super::tenants::tenants(&file.tenants, &profiles, base, mode, &mut errs);
    let tenants = super::routes::routes(&file.tenants, tenants, &sinks, &mut errs);
    let geo = geo(&file, base, &mut errs);
    let tls = super::tls::tls_material(&file.tls, base, mode, &mut errs);
    let operator =
        super::operator::operator(&file.reload, &file.audit, &file.log, &data_dir, &mut errs);
    let beacon = super::beacon::beacon(&file.beacon, &mut errs);
    match (listen, limits, timeouts, spool, spool_keys, tls) {
        (
            Some(listen),
            Some(limits),
            Some(timeouts),
            Some(spool),
            Some(spool_keys),
            Some((tls, dev_ca)),
        ) if errs.0.is_empty() => Ok(Snapshot {
            data_dir,
            listen,
            admin,
            tls,
            dev_ca,
            limits,
            timeouts,
            spool,
            spool_keys,
            sinks,
            anomaly,
            ratelimit,
            connections,
            route_lists,
            bans,
            behaviour,
            trusted_proxies,
            tenants,
            geo,
            operator,
            beacon,
            generation: 0,
            source: super::Source::default(),
        }),
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
    // outer None = a parse error was recorded; Some(None) = listener not configured
    Some(Listen {
        public: public?,
        redirect: redirect.map_or(Some(None), |r| r.map(Some))?,
        admin: admin.map_or(Some(None), |a| a.map(Some))?,
        public_proxy_protocol: file.listen.public_proxy_protocol,
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
        keepalive_idle: ms("keepalive_idle_ms", t.keepalive_idle_ms),
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
        max_age: match bounded("spool.max_age_s", s.max_age_s, 0, 10 * 365 * 86_400, errs) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
        consumers: Vec::new(),
    })
}

/// The GeoIP database: optional; a configured but missing file disables geo with a warning (a fresh install
/// has no database until `deploy/fetch-geoip.sh` ran), a present but unreadable one is an error.
fn geo(file: &ConfigFile, base: &Path, errs: &mut Errors) -> Option<Arc<Geo>> {
    let path = base.join(file.geo.database.as_deref()?);
    if !path.exists() {
        tracing::warn!(path = %path.display(), "GeoIP database not found: country lookup disabled");
        return None;
    }
    Geo::open(&path)
        .map(Arc::new)
        .map_err(|e| errs.push("geo.database", e.to_string()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_idle_defaults_to_30s_and_must_be_at_least_1ms() {
        let mut errs = Errors::default();
        let t = timeouts(&TimeoutsFile::default(), &mut errs).unwrap();
        assert!(errs.0.is_empty(), "{:?}", errs.0);
        assert_eq!(t.keepalive_idle, Duration::from_secs(30));
        let zero = TimeoutsFile {
            keepalive_idle_ms: 0,
            ..TimeoutsFile::default()
        };
        timeouts(&zero, &mut errs);
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["timeouts.keepalive_idle_ms"]);
    }
}
