//! One certificate + key pair read from PEM files, with the facts Tollgate needs from the leaf: its DNS names
//! (to check that an SNI entry's certificate covers its names), its `notAfter` (for the expiry metric and for
//! renewing the development certificate) and its issuer's common name. Reads files; writes nothing.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::sni::Name;
use super::TlsError;

/// A usable certificate: chain + key checked to belong together, and the leaf's facts.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub facts: Facts,
}

/// What the leaf certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
    /// dNSName SANs, lower case (`*.shop.example` as written).
    pub dns_names: Vec<String>,
    /// The issuer's first common name, if any.
    pub issuer_cn: Option<String>,
}

/// Parses the leaf's facts from DER.
pub fn facts(der: &[u8]) -> Result<Facts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let dns_names = match cert.subject_alternative_name().map_err(|e| e.to_string())? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let issuer_cn = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Ok(Facts {
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        issuer_cn,
    })
}

/// Whether a certificate with these dNSName SANs is valid for `name` (RFC 6125: a SAN wildcard covers one
/// leftmost label; a configured wildcard needs the same wildcard SAN).
pub fn covers(dns_names: &[String], name: &Name) -> bool {
    match name {
        Name::Exact(n) => dns_names.iter().any(|san| {
            san == n
                || san.strip_prefix("*.").is_some_and(|suffix| {
                    n.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
                })
        }),
        Name::Wildcard(suffix) => dns_names
            .iter()
            .any(|san| san.strip_prefix("*.") == Some(suffix)),
    }
}

/// Reads a PEM chain (leaf first) and a PEM private key, and checks that the key belongs to the leaf.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(cert.into(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key.into(), e))?;
    from_pem(&cert_pem, &key_pem).map_err(|e| match e {
        PemError::NoCert => TlsError::NoCert(cert.into()),
        PemError::NoKey => TlsError::NoKey(key.into()),
        PemError::Parse(m) => TlsError::Parse(cert.into(), m),
        PemError::Rustls(e) => TlsError::Rustls(e),
    })
}

pub(super) enum PemError {
    NoCert,
    NoKey,
    Parse(String),
    Rustls(rustls::Error),
}

/// [`load_pair`] on bytes already read.
pub(super) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, PemError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    let leaf = chain.first().ok_or(PemError::NoCert)?;
    let facts = facts(leaf).map_err(PemError::Parse)?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| PemError::NoKey)?;
    let key =
        CertifiedKey::from_der(chain, key_der, &super::provider()).map_err(PemError::Rustls)?;
    Ok(Loaded {
        key: Arc::new(key),
        facts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn coverage_follows_rfc_6125() {
        let n = |s: &str| Name::parse(s).unwrap();
        let wild = sans(&["*.shop.example", "shop.example"]);
        assert!(covers(&wild, &n("track.shop.example")));
        assert!(covers(&wild, &n("shop.example")));
        assert!(covers(&wild, &n("*.shop.example")));
        assert!(!covers(&wild, &n("a.b.shop.example")));
        assert!(!covers(&wild, &n("other.example")));
        let exact = sans(&["track.shop.example"]);
        assert!(covers(&exact, &n("track.shop.example")));
        assert!(!covers(&exact, &n("*.shop.example")));
    }

    #[test]
    fn facts_of_an_rcgen_certificate() {
        let mut params = rcgen::CertificateParams::new(vec![
            "Track.Shop.Example".into(),
            "*.shop.example".into(),
        ])
        .unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let f = facts(cert.der()).unwrap();
        assert_eq!(f.not_after, 1_936_742_400); // 2031-05-17T00:00:00Z
        assert_eq!(f.dns_names, sans(&["track.shop.example", "*.shop.example"]));
        assert!(from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).is_ok());
        let other = rcgen::KeyPair::generate().unwrap();
        assert!(matches!(
            from_pem(cert.pem().as_bytes(), other.serialize_pem().as_bytes()),
            Err(PemError::Rustls(_))
        ));
    }
}
