//! Configuration: the operator's TOML file (`file`), validated into the runtime `Snapshot` (`validate`) that the
//! app holds in one `ArcSwap`. Validation reports every mistake at once, each with its path
//! (`tenants[0].allowed_origins[1]: ...`), like `nginx -t`.

mod admin;
mod beacon;
mod file;
mod guard;
mod operator;
mod routes;
mod sink_parts;
mod sinks;
mod sources;
mod spool_keys;
mod tenants;
mod tls;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use file::ConfigFile;
pub use operator::{log_format, LogFormat, Operator, ReloadSettings};
pub use sources::{fingerprint, sha256_hex, stat, Fingerprint, Source, Stamp};
pub use validate::validate;

use crate::event::minimize::geo::Geo;
use crate::event::minimize::policy::Profile;
use crate::event::minimize::suppress::Suppression;
use crate::guard::access::ServerAccess;
use crate::keys::KeyRing;
use crate::spool::{Route, SpoolConfig, SpoolKeys};

pub use sinks::{
    BatchLimits, ClickHouseConfig, Endpoint, HttpConfig, NatsConfig, RetryPolicy, SinkConfig,
    SinkKind, TlsClientFiles,
};

/// The running configuration. Built whole, then swapped in whole.
pub struct Snapshot {
    /// Where spool, keys, dead letters and file-sink output live by default.
    pub data_dir: PathBuf,
    pub listen: Listen,
    /// `[admin]`: who may use the admin listener (allow list, token, host names); reloadable.
    pub admin: crate::guard::admin::AdminAccess,
    /// Certificates (default and by SNI) and the rustls config choosing among them per handshake.
    pub tls: crate::tls::Tls,
    /// Where the generated development CA certificate is, when `dev_self_signed` made one.
    pub dev_ca: Option<PathBuf>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub spool: SpoolConfig,
    /// Keys that encrypt the spool: reloadable (a new active key starts a new segment).
    pub spool_keys: SpoolKeys,
    /// Sinks, in config order; each is a spool consumer.
    pub sinks: Vec<SinkConfig>,
    /// The compiled anomaly engine (`[guard.anomaly]`); `None` = off.
    pub anomaly: Option<Arc<crate::guard::anomaly::Engine>>,
    /// Rate limits: the runtime limiter service lives in the app and is reconfigured on reload.
    pub ratelimit: crate::guard::ratelimit::RateLimits,
    /// Allow/deny lists (global and per listener) and the per-address connection cap, read at each accept.
    pub connections: crate::guard::conns::ConnPolicy,
    /// `[guard.lists.routes]`: allow/deny per public route, read per request on the request's client.
    pub route_lists: crate::guard::lists::RouteLists,
    /// `[guard.bans]`: the ban table itself lives in the app (`Ctx::jail`); `None` = nobody is banned.
    pub bans: Option<crate::guard::bans::BanPolicy>,
    /// `[guard.behaviour]`: the windows live in the app; `None` = off.
    pub behaviour: Option<crate::guard::jail::BehaviourConfig>,
    /// Peers whose `X-Forwarded-For` names the client (`[guard] trusted_proxies`), canonical.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tenants: HashMap<String, Tenant>,
    /// GeoIP database for `client.country`; `None` disables country lookup.
    pub geo: Option<Arc<Geo>>,
    /// `[reload]`, `[audit]`, `[log]`.
    pub operator: Operator,
    /// `[beacon]`: where `beacon.js` is served.
    pub beacon: beacon::Beacon,
    /// Counts applied snapshots from 1 (set by the app when it applies this one; 0 before).
    pub generation: u64,
    /// The config file's hash and every file it names; set by [`load`], empty for [`validate`] alone.
    pub source: Source,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("listen", &self.listen)
            .field("limits", &self.limits)
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub public: SocketAddr,
    pub redirect: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The public listener requires a PROXY v2 header on every connection.
    pub public_proxy_protocol: bool,
}

/// Every bound on untrusted input, with the defaults from `file::LimitsFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events: usize,
    pub max_depth: usize,
    pub max_string_bytes: usize,
    pub max_object_keys: usize,
    pub max_connections: usize,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tls_handshake: Duration,
    pub header_read: Duration,
    pub body_read: Duration,
    /// A connection with no bytes moving in either direction for this long is closed.
    pub idle: Duration,
    /// A connection with no request in flight is closed this long after its last request ended; before its
    /// first request, `header_read` after the TLS handshake applies instead ([`crate::http::activity`]).
    pub keepalive_idle: Duration,
    /// How long shutdown waits for in-flight requests before closing what is left.
    pub shutdown_grace: Duration,
}

#[derive(Debug)]
pub struct Tenant {
    pub site: String,
    /// Lower-cased `scheme://host[:port]`; a browser request's `Origin` (or its `Referer`'s) must match one.
    pub allowed_origins: Vec<String>,
    /// Server-side callers (no `Origin`, no `Referer`): bearer secret and networks; `None` admits none.
    pub server: Option<ServerAccess>,
    /// `allow_networks` / `deny_networks`: every caller (browser or server) is checked against them.
    pub networks: crate::guard::lists::Lists,
    /// Every configured key; the active one hashes, all of them match suppression entries.
    pub keys: KeyRing,
    /// The profile for ordinary requests and the one for opted-out visitors (GPC, DNT, `consent: false`).
    pub profile: Arc<Profile>,
    pub strict: Arc<Profile>,
    /// Unknown event keys: refused (`true`, "strict mode") or dropped and counted.
    pub reject_unknown_fields: bool,
    pub suppression: Suppression,
    /// Data-residency region, if the tenant has one.
    pub region: Option<String>,
    /// The sinks its events go to, fixed into each record at ingest.
    pub route: Arc<Route>,
}

/// Whether loading may write: `Run` creates the data dir and development material, `Check` never writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    Check,
    Run,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// All problems found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates a config file. Relative paths resolve against the file's directory.
pub fn load(path: &Path, mode: LoadMode) -> Result<Snapshot, ConfigErrors> {
    let one = |path: &str, message: String| {
        ConfigErrors(vec![ConfigError {
            path: path.into(),
            message,
        }])
    };
    // Stamped before reading: a change after this point shows to the reload watcher.
    let before = stat(&[path.to_path_buf()]);
    let bytes = std::fs::read(path).map_err(|e| {
        one(
            &path.display().to_string(),
            format!("cannot read config: {e}"),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        one(
            &path.display().to_string(),
            "cannot read config: not UTF-8".into(),
        )
    })?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| line_of(&text, s.start))
            .unwrap_or_default();
        one(&format!("{}{at}", path.display()), e.message().to_string())
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut files = vec![path.to_path_buf()];
    files.extend(sources::referenced(&file, &base));
    let mut stamps = before;
    stamps.extend(stat(&files[1..]));
    let mut snapshot = validate(file, &base, mode)?;
    let sha256 = sha256_hex(text.as_bytes());
    snapshot.source = Source {
        stamps: sources::with_hash(stamps, &sha256),
        sha256,
        files,
    };
    Ok(snapshot)
}

fn line_of(text: &str, offset: usize) -> String {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    format!(":{line}")
}

#[cfg(test)]
impl Tenant {
    /// A tenant with the built-in profiles and two keys (`k1` active, `k2`) and no server-side access, for
    /// unit tests.
    pub(crate) fn for_test(site: &str, origins: &[&str]) -> Tenant {
        let k1 = Arc::new(crate::keys::HmacKey::new("k1", &[1u8; 32]));
        let k2 = Arc::new(crate::keys::HmacKey::new("k2", &[2u8; 32]));
        Tenant {
            site: site.into(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            server: None,
            networks: Default::default(),
            keys: KeyRing::new(vec![k1, k2], "k1").expect("k1 is among the keys"),
            profile: Arc::new(Profile::builtin_default()),
            strict: Arc::new(Profile::builtin_strict()),
            reject_unknown_fields: false,
            suppression: Suppression::default(),
            region: None,
            route: Arc::new(Route::All),
        }
    }
}
