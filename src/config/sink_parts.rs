//! The pieces of a `[[sinks]]` table shared by several types: endpoints, identifiers, TLS files, secrets.

use std::path::Path;

use super::file::SinkFile;
use super::sinks::{Endpoint, TlsClientFiles, V};
use crate::keys::Secret;

pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `http(s)://host[:port][/path]`.
pub(super) fn endpoint(v: &mut V<'_>, url: Option<&str>, kind: &str) -> Option<Endpoint> {
    let url = v.required("url", &url.map(str::to_owned), kind)?.to_owned();
    let parsed = parse_endpoint(&url);
    if parsed.is_none() {
        v.errs.push(
            format!("{}.url", v.at),
            format!("{url:?} is not http(s)://host[:port][/path]"),
        );
    }
    parsed
}

pub(crate) fn parse_endpoint(url: &str) -> Option<Endpoint> {
    let (https, rest) = match url.split_once("://")? {
        ("https", r) => (true, r),
        ("http", r) => (false, r),
        _ => return None,
    };
    let (authority, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, if https { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some(Endpoint {
        https,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

pub(super) fn ident(v: &mut V<'_>, field: &str, value: &str) -> String {
    if value.is_empty()
        || value.len() > 64
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        v.errs.push(
            format!("{}.{field}", v.at),
            "must be 1-64 characters of A-Z a-z 0-9 _",
        );
    }
    value.to_owned()
}

pub(super) fn tls_files(s: &SinkFile, base: &Path, v: &mut V<'_>) -> TlsClientFiles {
    let client_cert = match (&s.client_cert, &s.client_key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        _ => {
            v.errs.push(
                format!("{}.client_cert", v.at),
                "set both client_cert and client_key, or neither",
            );
            None
        }
    };
    let files = TlsClientFiles {
        ca_file: s.ca_file.as_ref().map(|f| base.join(f)),
        client_cert,
    };
    for path in files
        .ca_file
        .iter()
        .chain(files.client_cert.iter().flat_map(|(c, k)| [c, k]))
    {
        if let Err(e) = std::fs::metadata(path) {
            v.errs.push(
                v.at.to_string(),
                format!("cannot read {}: {e}", path.display()),
            );
        }
    }
    files
}

/// A secret from a file or an environment variable (at most one of the two).
pub(super) fn secret(
    v: &mut V<'_>,
    what: &str,
    file: &Option<String>,
    env: &Option<String>,
    base: &Path,
) -> Option<Secret> {
    let loaded = match (file, env) {
        (None, None) => return None,
        (Some(f), None) => Secret::from_file(&base.join(f)),
        (None, Some(e)) => Secret::from_env(e),
        (Some(_), Some(_)) => Err(format!("set {what}_file or {what}_env, not both")),
    };
    loaded
        .map_err(|e| v.errs.push(format!("{}.{what}", v.at), e))
        .ok()
}
