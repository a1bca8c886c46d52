//! admin: who may use the admin listener. Three checks, each a pure function on the snapshot's
//! [`AdminAccess`]:
//! - [`source`] on accept: a peer outside `[admin] allow` is closed before any HTTP (counted as
//!   `tollgate_connections_refused_total{listener="admin",reason="not_allowed"}`). An empty list admits every
//!   peer; validation allows that only on a loopback bind.
//! - [`host`] per request, on every route and even on loopback: the `Host` must be an IP literal,
//!   `localhost`, or one of `[admin] hosts`. A web page that rebinds its own name to 127.0.0.1 sends its own
//!   name as `Host` and gets 421, so a browser cannot be turned against the admin listener (DNS rebinding).
//! - [`token`] per request, on every route but `/healthz` and `/readyz` when a token is configured:
//!   `Authorization: Bearer <token>`, compared in constant time on SHA-256 digests, else 401. The token is kept
//!   only as its digest and never printed.

use std::fmt;
use std::net::IpAddr;

use aws_lc_rs::digest::SHA256_OUTPUT_LEN;
use hyper::header::{self, HeaderMap};
use hyper::StatusCode;
use ipnet::IpNet;

use super::access;
use super::conns::Refused;
use crate::keys::Secret;

/// `[admin]` compiled: reloadable, read per connection (allow) and per request (host, token).
#[derive(Default)]
pub struct AdminAccess {
    /// Canonical networks; empty = every peer.
    allow: Vec<IpNet>,
    token: Option<[u8; SHA256_OUTPUT_LEN]>,
    /// Lower-cased, without a trailing dot.
    hosts: Vec<String>,
}

impl fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAccess")
            .field("allow", &self.allow)
            .field("token", &self.token.map(|_| "<redacted>"))
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl AdminAccess {
    pub fn new(allow: Vec<IpNet>, token: Option<&Secret>, hosts: &[String]) -> Self {
        Self {
            allow,
            token: token.map(|t| access::sha256(t.expose().as_bytes())),
            hosts: hosts
                .iter()
                .map(|h| normal_host(h).to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether routes other than the probes need a bearer token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

/// Why an admin request was refused; owns its status and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// `Host` is missing or names something other than this gateway: 421.
    HostNotAllowed,
    /// No, a malformed, or a wrong bearer token: 401.
    Unauthorized,
}

impl AdminRefusal {
    pub const ALL: [AdminRefusal; 2] = [AdminRefusal::HostNotAllowed, AdminRefusal::Unauthorized];

    /// The `reason` label of `tollgate_admin_requests_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            AdminRefusal::HostNotAllowed => "host_not_allowed",
            AdminRefusal::Unauthorized => "unauthorized",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            AdminRefusal::HostNotAllowed => StatusCode::MISDIRECTED_REQUEST,
            AdminRefusal::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            AdminRefusal::HostNotAllowed => r#"{"error":"host_not_allowed"}"#,
            AdminRefusal::Unauthorized => r#"{"error":"unauthorized"}"#,
        }
    }
}

/// On accept: the peer must be in `allow` (when the list is not empty).
pub fn source(ip: IpAddr, policy: &AdminAccess) -> Result<(), Refused> {
    let ip = ip.to_canonical();
    match policy.allow.is_empty() || policy.allow.iter().any(|n| n.contains(&ip)) {
        true => Ok(()),
        false => Err(Refused::NotAllowed),
    }
}

/// Per request: `Host` is an IP literal, `localhost` or a configured name (any port).
pub fn host(headers: &HeaderMap, policy: &AdminAccess) -> Result<(), AdminRefusal> {
    let mut values = headers.get_all(header::HOST).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AdminRefusal::HostNotAllowed);
    };
    let name = value
        .to_str()
        .ok()
        .and_then(host_name)
        .ok_or(AdminRefusal::HostNotAllowed)?;
    let name = normal_host(name).to_ascii_lowercase();
    let literal = name.parse::<IpAddr>().is_ok();
    match literal || name == "localhost" || policy.hosts.contains(&name) {
        true => Ok(()),
        false => Err(AdminRefusal::HostNotAllowed),
    }
}

/// Per request on token-protected routes: the configured bearer token, if there is one.
pub fn token(headers: &HeaderMap, policy: &AdminAccess) -> Result<(), AdminRefusal> {
    let Some(expected) = &policy.token else {
        return Ok(());
    };
    let presented = access::bearer(headers)
        .ok()
        .flatten()
        .ok_or(AdminRefusal::Unauthorized)?;
    match access::digest_matches(presented.as_bytes(), expected) {
        true => Ok(()),
        false => Err(AdminRefusal::Unauthorized),
    }
}

/// `name`, `name:port`, `[v6]`, `[v6]:port` → the name or address; `None` if malformed.
fn host_name(value: &str) -> Option<&str> {
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        return (after.is_empty() || port(after.strip_prefix(':')?)).then_some(addr);
    }
    let (name, p) = value.rsplit_once(':').unwrap_or((value, "80"));
    (!name.is_empty() && !name.contains(':') && port(p)).then_some(name)
}

fn port(p: &str) -> bool {
    p.parse::<u16>().is_ok()
}

fn normal_host(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_check_admits_literals_localhost_and_configured_names_only() {
        let p = AdminAccess::new(vec![], None, &["Ops.Example.".into()]);
        let table = [
            ("127.0.0.1", true),
            ("127.0.0.1:9090", true),
            ("[::1]:9090", true),
            ("[::1]", true),
            ("localhost:9090", true),
            ("LOCALHOST", true),
            ("ops.example:9090", true),
            ("evil.example", false),
            ("evil.example:9090", false),
            ("127.0.0.1.evil.example", false),
            ("::1", false),
            ("[::1]x", false),
            ("localhost:99999", false),
            ("", false),
        ];
        for (value, ok) in table {
            let got = host(&headers(&[("host", value)]), &p);
            assert_eq!(got.is_ok(), ok, "{value:?}");
        }
        assert!(host(&HeaderMap::new(), &p).is_err());
        let two = headers(&[("host", "localhost"), ("host", "127.0.0.1")]);
        assert!(host(&two, &p).is_err());
    }

    #[test]
    fn token_is_required_only_when_configured_and_must_match() {
        let open = AdminAccess::default();
        assert_eq!(token(&HeaderMap::new(), &open), Ok(()));
        let secret = Secret::for_test("a".repeat(40));
        let p = AdminAccess::new(vec![], Some(&secret), &[]);
        let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(token(&bearer(&"a".repeat(40)), &p), Ok(()));
        for bad in [bearer(&"a".repeat(39)), bearer("b"), HeaderMap::new()] {
            assert_eq!(token(&bad, &p), Err(AdminRefusal::Unauthorized));
        }
        assert!(!format!("{p:?}").contains("aaaa"));
    }

    #[test]
    fn allow_list_refuses_other_sources_and_maps_v4_in_v6() {
        let p = AdminAccess::new(vec!["127.0.0.1/32".parse().unwrap()], None, &[]);
        assert_eq!(source("127.0.0.1".parse().unwrap(), &p), Ok(()));
        assert_eq!(source("::ffff:127.0.0.1".parse().unwrap(), &p), Ok(()));
        assert_eq!(
            source("127.0.0.2".parse().unwrap(), &p),
            Err(Refused::NotAllowed)
        );
        assert_eq!(
            source("10.0.0.1".parse().unwrap(), &AdminAccess::default()),
            Ok(())
        );
    }
}
