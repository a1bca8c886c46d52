//! TLS termination: rustls with the aws-lc-rs provider, TLS 1.2 + 1.3 ("intermediate") or 1.3 only ("modern"),
//! AEAD cipher suites only (rustls implements no CBC or RC4 suite, so the provider's list is already AEAD-only),
//! ALPN `h2` and `http/1.1`.
//!
//! Certificates come from PEM files read when a snapshot is built: the default (`[tls] cert/key`) and one per
//! `[[tls.sni]]` entry, chosen per handshake by SNI ([`sni`]). Guarantees: the certificate set is part of the
//! snapshot, so a reload that re-reads replaced files rotates certificates for new handshakes while open
//! connections keep their session; every certificate's `notAfter` is published as
//! `tollgate_tls_certificate_expiry_timestamp_seconds{name}`; what a client sends as SNI is counted
//! (`tollgate_tls_sni_total{kind}`, [`hello`]), never logged per handshake. In development (`dev_self_signed`)
//! a throwaway CA and a `localhost` leaf valid for at most a year are generated when the files are missing and
//! renewed when expiring ([`dev`]).

pub mod cert;
pub mod dev;
pub mod hello;
pub mod metrics;
pub mod sni;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;

pub use dev::DevPki;
use sni::{NameTable, SniResolver};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    Intermediate,
    /// TLS 1.3 only.
    Modern,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: no PEM certificate found")]
    NoCert(PathBuf),
    #[error("{0}: no usable PEM private key found")]
    NoKey(PathBuf),
    #[error("{0}: not a readable X.509 certificate: {1}")]
    Parse(PathBuf, String),
    #[error("certificate and key are not usable together: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// The crypto provider every Tollgate TLS config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A configured certificate's expiry: `name` is `default` or the SNI entry's first name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    pub name: String,
    /// `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 (hex) of the leaf certificate's DER: what the audit log compares across reloads.
    pub sha256: String,
}

/// SHA-256 (hex) of a certified key's leaf certificate.
fn leaf_sha256(key: &rustls::sign::CertifiedKey) -> String {
    let der = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    crate::config::sha256_hex(der)
}

/// A certificate that a reload added, removed or replaced: (entry name, old leaf SHA-256, new leaf SHA-256).
pub type CertChange = (String, Option<String>, Option<String>);

/// What changed between two snapshots' certificates, by entry name, in the new order then removed ones.
pub fn cert_changes(old: &[CertExpiry], new: &[CertExpiry]) -> Vec<CertChange> {
    let find = |list: &[CertExpiry], name: &str| {
        list.iter()
            .find(|c| c.name == name)
            .map(|c| c.sha256.clone())
    };
    let mut out: Vec<CertChange> = new
        .iter()
        .filter_map(|n| {
            let before = find(old, &n.name);
            (before.as_deref() != Some(n.sha256.as_str()))
                .then(|| (n.name.clone(), before, Some(n.sha256.clone())))
        })
        .collect();
    out.extend(
        old.iter()
            .filter(|o| find(new, &o.name).is_none())
            .map(|o| (o.name.clone(), Some(o.sha256.clone()), None)),
    );
    out
}

/// A snapshot's TLS: the rustls config (certificate picked per handshake by `resolver`), the resolver itself for
/// counting what SNI picked, and each certificate's expiry.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<SniResolver>,
    pub expiry: Vec<CertExpiry>,
}

/// One `[[tls.sni]]` entry, loaded: its label (first name) and certificate.
pub struct SniEntry {
    pub label: String,
    pub loaded: cert::Loaded,
}

/// Builds the snapshot's TLS from the default certificate, the SNI entries and the table naming them.
pub fn build(
    default: cert::Loaded,
    entries: Vec<SniEntry>,
    table: NameTable,
    versions: Versions,
) -> Result<Tls, rustls::Error> {
    let mut expiry = vec![CertExpiry {
        name: "default".into(),
        not_after: default.facts.not_after,
        sha256: leaf_sha256(&default.key),
    }];
    expiry.extend(entries.iter().map(|e| CertExpiry {
        name: e.label.clone(),
        not_after: e.loaded.facts.not_after,
        sha256: leaf_sha256(&e.loaded.key),
    }));
    let keys = entries.into_iter().map(|e| e.loaded.key).collect();
    let resolver = Arc::new(SniResolver::new(table, keys, default.key));
    Ok(Tls {
        config: Arc::new(server_config(resolver.clone(), versions)?),
        resolver,
        expiry,
    })
}

/// A server config with Tollgate's protocol policy whose certificate `resolver` picks.
pub fn server_config(
    resolver: Arc<SniResolver>,
    versions: Versions,
) -> Result<ServerConfig, rustls::Error> {
    let protocols: &[&'static rustls::SupportedProtocolVersion] = match versions {
        Versions::Intermediate => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::Modern => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(protocols)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's suite order wins (every suite offered is an AEAD one; scanners such as testssl.sh flag a
    // server that lets the client choose).
    config.ignore_client_order = true;
    Ok(config)
}

#[cfg(test)]
mod change_tests {
    use super::*;

    fn c(name: &str, sha: &str) -> CertExpiry {
        CertExpiry {
            name: name.into(),
            not_after: 0,
            sha256: sha.into(),
        }
    }

    #[test]
    fn added_replaced_and_removed_certificates() {
        let old = [
            c("default", "a"),
            c("x.example", "b"),
            c("gone.example", "g"),
        ];
        let new = [
            c("default", "a"),
            c("x.example", "B"),
            c("new.example", "n"),
        ];
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            cert_changes(&old, &new),
            [
                ("x.example".to_string(), s("b"), s("B")),
                ("new.example".to_string(), None, s("n")),
                ("gone.example".to_string(), s("g"), None),
            ]
        );
        assert!(cert_changes(&old, &old).is_empty());
    }
}
