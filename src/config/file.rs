//! The config file as written by an operator: TOML, every struct `deny_unknown_fields` so a typo in a security
//! setting is an error, never a silent no-op. Values stay loose here (strings, integers); `validate` turns them
//! into the runtime form and reports every mistake at once.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Directory for the spool, generated development certificates and keys. Relative paths in this file
    /// resolve against the directory of the config file.
    pub data_dir: String,
    pub listen: ListenFile,
    /// Who may use the admin listener (`listen.admin`).
    #[serde(default)]
    pub admin: AdminFile,
    pub tls: TlsFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub spool: SpoolFile,
    #[serde(default)]
    pub geo: GeoFile,
    /// Policy profiles by name; `default` and `strict` exist built in and may be overridden here.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileFile>,
    #[serde(default)]
    pub tenants: Vec<TenantFile>,
    /// Where spooled events are delivered; each sink is a spool consumer with its own cursor.
    #[serde(default)]
    pub sinks: Vec<SinkFile>,
    /// Who may enter beyond tenant access: rate limits (more guards join here).
    #[serde(default)]
    pub guard: GuardFile,
    /// Reload on file change (`[reload]`).
    #[serde(default)]
    pub reload: super::operator::ReloadFile,
    /// The hash-chained audit log (`[audit]`).
    #[serde(default)]
    pub audit: super::operator::AuditFile,
    /// Log line format (`[log]`).
    #[serde(default)]
    pub log: super::operator::LogFile,
    /// Where `beacon.js` is served (`[beacon]`).
    #[serde(default)]
    pub beacon: super::beacon::BeaconFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardFile {
    #[serde(default)]
    pub ratelimit: RateLimitFile,
    #[serde(default)]
    pub lists: ListsFile,
    #[serde(default)]
    pub connections: ConnectionsFile,
    /// Networks whose `X-Forwarded-For` is believed (CIDRs or addresses); empty: the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The anomaly engine; without the table it is off.
    pub anomaly: Option<AnomalyFile>,
    /// Bans for anomaly blocks and behaviour offences; without the table nobody is banned.
    pub bans: Option<BansFile>,
    /// Per-address behaviour windows; without the table they are off.
    pub behaviour: Option<BehaviourFile>,
}

/// `[guard.bans]`: recidive bans. The n-th ban of an address lasts `ttl_s * 2^(n-1)`, at most `max_ttl_s`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BansFile {
    /// "enforce" (refuse the address before TLS) or "detect" (log and count would-be bans).
    pub mode: String,
    pub ttl_s: u64,
    pub max_ttl_s: u64,
    /// Strikes are forgotten this long after an address's last ban ends.
    pub forget_s: u64,
    /// Addresses (IPv6: /64s) the table holds; when full the ban ending soonest goes first.
    pub max_entries: u64,
    /// Networks never banned (CIDRs or addresses).
    pub exempt: Vec<String>,
}

impl Default for BansFile {
    fn default() -> Self {
        Self {
            mode: "enforce".into(),
            ttl_s: 600,
            max_ttl_s: 86_400,
            forget_s: 86_400,
            max_entries: 100_000,
            exempt: Vec::new(),
        }
    }
}

/// `[guard.behaviour]`: per-address bounds over a sliding window; crossing one is an offence (a ban).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourFile {
    /// "enforce" (an offence bans) or "detect" (count, ban nothing for it).
    pub mode: String,
    pub window_s: u64,
    /// 4xx answers (429 excluded) per window.
    pub max_client_errors: u64,
    /// Distinct unknown `site` keys per window.
    pub max_unknown_sites: u64,
    /// Accepted events per window.
    pub max_events: u64,
    /// Addresses (IPv6: /64s) tracked at once.
    pub max_keys: u64,
}

impl Default for BehaviourFile {
    fn default() -> Self {
        Self {
            mode: "enforce".into(),
            window_s: 60,
            max_client_errors: 60,
            max_unknown_sites: 5,
            max_events: 6_000,
            max_keys: 100_000,
        }
    }
}

/// `[[guard.anomaly.exclusions]]`: drops hits as a CRS rule exclusion does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionFile {
    /// Only this tenant (`site`); absent: every tenant.
    pub tenant: Option<String>,
    /// Fields at or under this JSON path (`cart.items` covers `cart.items[0].name`); absent: every field.
    #[serde(default)]
    pub field: String,
    /// Only this family (`sqli`, `xss`, ...); absent: every family.
    pub family: Option<String>,
}

/// `[guard.anomaly]`: CRS-style scoring of every decoded string value and the user agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyFile {
    /// "enforce" (403 anomaly_detected at the threshold) or "detect" (count, refuse nothing).
    pub mode: String,
    /// Inbound anomaly threshold (CRS: critical 5, error 4, warning 3, notice 2).
    pub threshold: u64,
    /// 1-4: rules above this paranoia level are off.
    pub paranoia: u64,
    /// Per-family mode overriding `mode`: family label -> "enforce" | "detect" | "off".
    pub families: BTreeMap<String, String>,
    pub exclusions: Vec<ExclusionFile>,
}

impl Default for AnomalyFile {
    fn default() -> Self {
        Self {
            mode: "enforce".into(),
            threshold: 5,
            paranoia: 1,
            families: BTreeMap::new(),
            exclusions: Vec::new(),
        }
    }
}

/// `[guard.lists]`: CIDR networks (a bare address is one host) checked on accept, before TLS, on the public
/// and redirect listeners. Deny wins; an empty `allow` lets everyone in. `public` and `redirect` add lists
/// for one listener (both its lists and these must admit a peer); `routes` guard a public route per request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListsFile {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// `[guard.lists.public]`: the TLS listener only, in addition to the lists above.
    pub public: NetListFile,
    /// `[guard.lists.redirect]`: the plain-HTTP redirect listener only, in addition to the lists above.
    pub redirect: NetListFile,
    /// `[guard.lists.routes."/healthz"]`: per public route (exact path), on each request's client address.
    pub routes: BTreeMap<String, NetListFile>,
}

/// One allow/deny pair: `[guard.lists.public]`, `[guard.lists.redirect]`, `[guard.lists.routes."<path>"]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetListFile {
    /// Empty = no narrowing.
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// `[guard.connections]`: bounds on connections beside the global `limits.max_connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsFile {
    /// Concurrent connections per client address (IPv6: per /64); excess ones are closed before TLS.
    pub max_per_address: u64,
}

impl Default for ConnectionsFile {
    fn default() -> Self {
        Self {
            max_per_address: 256,
        }
    }
}

/// `[guard.ratelimit]`: GCRA limiters per client address (IPv6 per /64), per tenant and per address x
/// tenant. A limiter without a table is off; without the section every limiter is off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitFile {
    /// "enforce" (429 + Retry-After) or "detect" (count what would be refused, refuse nothing).
    pub mode: String,
    /// Keys each limiter keeps before new keys share one overflow bucket.
    pub max_keys: u64,
    pub per_address: Option<QuotaFile>,
    pub per_tenant: Option<QuotaFile>,
    pub per_address_tenant: Option<QuotaFile>,
}

impl Default for RateLimitFile {
    fn default() -> Self {
        Self {
            mode: "enforce".into(),
            max_keys: 100_000,
            per_address: None,
            per_tenant: None,
            per_address_tenant: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    /// Sustained requests per second.
    pub rate_per_s: u64,
    /// Requests a fresh (or long idle) key may send at once.
    pub burst: u64,
}

/// One `[[sinks]]` table. Which keys apply depends on `type`; a key that does not apply is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFile {
    /// Consumer name (its cursor file is `spool/cursors/<name>`): 1-64 of A-Z a-z 0-9 _ -.
    pub name: String,
    /// "file", "clickhouse", "http" or "nats".
    #[serde(rename = "type")]
    pub kind: String,
    /// Data-residency region of the storage behind this sink (e.g. "eu"); tenants of another region may
    /// not route here.
    pub region: Option<String>,
    /// Most events, payload bytes and milliseconds of age per delivered batch.
    pub batch_events: Option<u64>,
    pub batch_bytes: Option<u64>,
    pub batch_age_ms: Option<u64>,
    /// Retry backoff: capped exponential with full jitter, from `retry_base_ms` up to `retry_cap_ms`.
    pub retry_base_ms: Option<u64>,
    pub retry_cap_ms: Option<u64>,
    /// A request (or publish acknowledgement) that takes longer than this is retried.
    pub timeout_ms: Option<u64>,
    /// file: output directory, relative to `data_dir`.
    pub dir: Option<String>,
    /// file: a new file starts past this size.
    pub max_file_bytes: Option<u64>,
    /// clickhouse, http: `http://` or `https://host:port/path`; nats: `nats://host:port`.
    pub url: Option<String>,
    /// clickhouse, http: PEM CA bundle to verify the server (default: the system's web PKI roots).
    pub ca_file: Option<String>,
    /// clickhouse, http: PEM client certificate chain and key for mutual TLS.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// clickhouse: target database and table (see docs/sinks.md for the DDL).
    pub database: Option<String>,
    pub table: Option<String>,
    /// clickhouse: user, and a password from a file or an environment variable (never in this file).
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    /// http: bearer token from a file or an environment variable.
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    /// nats: subject prefix (the site is appended: `<subject>.<site>`) and JetStream stream.
    pub subject: Option<String>,
    pub stream: Option<String>,
    /// nats: create the stream (3 replicas when `replicas` says so) if it does not exist; else only verify it.
    pub create_stream: Option<bool>,
    pub replicas: Option<u64>,
    /// nats: most publishes awaiting their acknowledgement.
    pub max_in_flight: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoFile {
    /// MaxMind-format database (GeoIP2/GeoLite2 country or the flat `country_code` layout).
    pub database: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// Field path → action, e.g. `"customer.age" = "generalize:age_band"`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Detectors that `redact` runs: any of "email", "phone", "card", "iban", "ip". Default: all.
    pub detectors: Option<Vec<String>>,
    /// Query keys `scrub_url` keeps; a trailing `*` matches a prefix. Default: ["utm_*"].
    pub url_query_allow: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    pub public: String,
    pub redirect: Option<String>,
    pub admin: Option<String>,
    /// Every public connection must start with a PROXY protocol v2 header (read before TLS); restart only.
    #[serde(default)]
    pub public_proxy_protocol: bool,
}

/// `[admin]`: access to the admin listener. On loopback everything is optional; a non-loopback
/// `listen.admin` needs both a non-empty `allow` and a token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminFile {
    /// Source networks (CIDRs or addresses) that may connect; others are closed on accept. Empty: anyone
    /// who can reach the address (only allowed on loopback).
    pub allow: Vec<String>,
    /// Bearer token every admin route but `/healthz` and `/readyz` requires: from a file or an environment
    /// variable (never in this file), at most one. At least 32 characters of a bearer token.
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    /// Host names accepted in the `Host` header besides IP literals and `localhost` (DNS rebinding).
    pub hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The default certificate: for clients without SNI, with an IP literal, or with a name no entry covers.
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub dev_self_signed: bool,
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// `[[tls.sni]]`: certificates chosen by SNI.
    #[serde(default)]
    pub sni: Vec<SniFile>,
}

/// `[[tls.sni]]`: one certificate for some names (`track.shop.example`, `*.shop.example`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniFile {
    /// DNS names, `*` only as the whole leftmost label; each must be covered by the certificate and appear in
    /// one entry only. The first one names the entry in metrics.
    pub names: Vec<String>,
    pub cert: String,
    pub key: String,
}

fn default_min_version() -> String {
    "1.2".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    pub max_body_bytes: u64,
    pub max_events: u64,
    pub max_depth: u64,
    pub max_string_bytes: u64,
    pub max_object_keys: u64,
    pub max_connections: u64,
    pub max_header_count: u64,
    pub max_header_bytes: u64,
    pub h2_max_concurrent_streams: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_events: 100,
            max_depth: 16,
            max_string_bytes: 2048,
            max_object_keys: 64,
            max_connections: 4096,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            h2_max_concurrent_streams: 100,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsFile {
    pub tls_handshake_ms: u64,
    pub header_read_ms: u64,
    pub body_read_ms: u64,
    pub idle_ms: u64,
    /// A connection with no request in flight (HTTP/2 PINGs and SETTINGS do not count) is closed after this.
    pub keepalive_idle_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        Self {
            tls_handshake_ms: 10_000,
            header_read_ms: 10_000,
            body_read_ms: 10_000,
            idle_ms: 60_000,
            keepalive_idle_ms: 30_000,
            shutdown_grace_ms: 30_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolFile {
    /// Spool directory; relative to `data_dir`.
    pub dir: String,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub commit_window_us: u64,
    pub max_batch_bytes: u64,
    pub queue_depth: u64,
    /// Expire records older than this many seconds even if a sink has not delivered them (logged and
    /// counted); 0 = never.
    pub max_age_s: u64,
    /// Id of the key that encrypts new segments.
    pub active_key: Option<String>,
    /// Spool encryption keys: every one decrypts, the active one encrypts new segments.
    pub keys: Vec<KeyFile>,
}

impl Default for SpoolFile {
    fn default() -> Self {
        Self {
            dir: "spool".into(),
            segment_bytes: 64 * 1024 * 1024,
            max_bytes: 1024 * 1024 * 1024,
            commit_window_us: 100,
            max_batch_bytes: 4 * 1024 * 1024,
            queue_depth: 1024,
            max_age_s: 0,
            active_key: None,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    pub site: String,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Server-side callers (requests without `Origin` or `Referer`) present this secret as
    /// `Authorization: Bearer`: from a file or an environment variable (never in this file), at most one.
    /// Without one the tenant accepts no server-side traffic.
    pub server_secret_file: Option<String>,
    pub server_secret_env: Option<String>,
    /// Networks server-side callers may post from ("10.0.0.0/8", "2001:db8::/32"); needed with a secret.
    #[serde(default)]
    pub server_networks: Vec<String>,
    /// Networks every caller of this tenant (browser or server) must post from; empty = anywhere.
    #[serde(default)]
    pub allow_networks: Vec<String>,
    /// Networks no caller of this tenant may post from; wins over every allow list.
    #[serde(default)]
    pub deny_networks: Vec<String>,
    pub keys: Vec<KeyFile>,
    pub active_key: String,
    #[serde(default = "default_profile")]
    pub profile: String,
    #[serde(default = "strict_profile")]
    pub strict_profile: String,
    /// Data-residency region (e.g. "eu"): events may only go to sinks of the same region.
    pub region: Option<String>,
    /// Sinks this tenant's events go to; default: every sink whose region matches.
    pub sinks: Option<Vec<String>>,
    /// "drop" (count and drop unknown event keys) or "reject" (refuse the request: strict mode).
    #[serde(default = "drop")]
    pub unknown_fields: String,
    /// File of hashed subject identifiers to drop at the edge (`tollgate suppress` prints entries).
    pub suppression_file: Option<String>,
}

fn default_profile() -> String {
    "default".into()
}

fn strict_profile() -> String {
    "strict".into()
}

fn drop() -> String {
    "drop".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub id: String,
    pub file: Option<String>,
    pub env: Option<String>,
    /// Development only: create a random key file (mode 0600) when `file` is missing.
    #[serde(default)]
    pub generate_if_missing: bool,
}
