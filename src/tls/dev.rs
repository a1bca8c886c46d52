//! The development certificate (`dev_self_signed`): a throwaway CA and a `localhost` leaf. Guarantees: a
//! generated certificate lives at most [`DEV_VALIDITY_DAYS`]; a generated leaf that has expired or expires within
//! [`DEV_RENEW_BEFORE_S`] is generated anew at start and at reload (written in `Run` mode only). A certificate not
//! issued by the development CA is never replaced, whatever its dates.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::cert::{self, Facts, Loaded};
use super::TlsError;
use crate::config::LoadMode;

/// Lifetime of a generated CA and leaf: Mozilla's "modern" profile allows at most 90 days (intermediate 366).
pub const DEV_VALIDITY_DAYS: i64 = 90;
/// A generated leaf this close to its `notAfter` is renewed.
pub const DEV_RENEW_BEFORE_S: i64 = 7 * 86_400;
/// The development CA's common name: the mark of a certificate Tollgate generated.
pub const DEV_CA_CN: &str = "Tollgate development CA";

/// Whether `facts` describe a generated development leaf that must be made anew at `now` (Unix seconds):
/// expiring within [`DEV_RENEW_BEFORE_S`], or living past [`DEV_VALIDITY_DAYS`] from now (one that Tollgate
/// before 0.2 generated, valid until 4096, which scanners rightly flag).
pub fn needs_renewal(facts: &Facts, now: i64) -> bool {
    let left = facts.not_after - now;
    facts.issuer_cn.as_deref() == Some(DEV_CA_CN)
        && !(DEV_RENEW_BEFORE_S..=(DEV_VALIDITY_DAYS + 1) * 86_400).contains(&left)
}

/// The default certificate: the files when present (and, with `dev_self_signed`, still fresh), else a generated
/// development pair (written under the cert's directory in `Run` mode, kept in memory in `Check` mode).
/// Returns the pair and, when a development CA exists, its path.
pub fn default_pair(
    cert: &Path,
    key: &Path,
    dev_self_signed: bool,
    mode: LoadMode,
    now: i64,
) -> Result<(Loaded, Option<PathBuf>), TlsError> {
    let ca_path = cert.parent().unwrap_or(Path::new(".")).join("dev-ca.pem");
    if !dev_self_signed {
        return Ok((cert::load_pair(cert, key)?, None));
    }
    let why = if !cert.exists() && !key.exists() {
        "generated"
    } else {
        let loaded = cert::load_pair(cert, key)?;
        if !needs_renewal(&loaded.facts, now) {
            return Ok((loaded, ca_path.exists().then_some(ca_path)));
        }
        "renewed an expiring"
    };
    let pki = DevPki::generate_at(now)?;
    if mode == LoadMode::Run {
        pki.write(&ca_path, cert, key)?;
        tracing::warn!(ca = %ca_path.display(), "{why} development CA and localhost certificate; trust it with curl --cacert");
    }
    let loaded = cert::from_pem(pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes())
        .map_err(|_| TlsError::NoCert(cert.into()))?;
    Ok((loaded, Some(ca_path)))
}

/// A throwaway CA and a leaf for `localhost`, `127.0.0.1` and `::1` signed by it. The leaf is not a CA.
pub struct DevPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

impl DevPki {
    /// Valid from a day ago, [`DEV_VALIDITY_DAYS`] in all.
    pub fn generate() -> Result<Self, rcgen::Error> {
        Self::generate_at(unix_now())
    }

    /// Valid from a day before `now` (Unix seconds), [`DEV_VALIDITY_DAYS`] in all (scanners measure the
    /// lifespan from `notBefore`).
    pub fn generate_at(now: i64) -> Result<Self, rcgen::Error> {
        Self::generate_valid(now - 86_400, now + (DEV_VALIDITY_DAYS - 1) * 86_400)
    }

    /// A CA and leaf valid from `not_before` to `not_after` (Unix seconds): tests use it for expired ones.
    pub fn generate_valid(not_before: i64, not_after: i64) -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        // Out-of-range seconds (before year -9999 or after 9999) cannot come from a clock; the epoch stands in.
        let at = |s: i64| {
            time::OffsetDateTime::from_unix_timestamp(s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        };
        let validity = |p: &mut CertificateParams| {
            p.not_before = at(not_before);
            p.not_after = at(not_after);
        };
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        validity(&mut ca_params);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, DEV_CA_CN);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let mut leaf_params = CertificateParams::new(names)?;
        validity(&mut leaf_params);
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        })
    }

    pub fn leaf_chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.leaf_pem.as_bytes())
            .filter_map(Result::ok)
            .collect()
    }

    pub fn leaf_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.leaf_key_pem.as_bytes())
            .expect("rcgen writes a valid PKCS#8 key")
    }

    /// Writes the CA certificate, the leaf certificate and the leaf key (mode 0600).
    pub fn write(&self, ca: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        for p in [ca, cert, key] {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| TlsError::Write(dir.into(), e))?;
            }
        }
        std::fs::write(ca, &self.ca_pem).map_err(|e| TlsError::Write(ca.into(), e))?;
        std::fs::write(cert, &self.leaf_pem).map_err(|e| TlsError::Write(cert.into(), e))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(key)
            .map_err(|e| TlsError::Write(key.into(), e))?;
        f.write_all(self.leaf_key_pem.as_bytes())
            .map_err(|e| TlsError::Write(key.into(), e))
    }
}

/// Wall time in Unix seconds: certificate validity is a timestamp written out.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    #[test]
    fn generated_certificates_live_dev_validity_days() {
        let pki = DevPki::generate_at(NOW).unwrap();
        let f = cert::facts(&pki.leaf_chain()[0]).unwrap();
        assert_eq!(f.not_after, NOW + (DEV_VALIDITY_DAYS - 1) * 86_400);
        assert_eq!(f.issuer_cn.as_deref(), Some(DEV_CA_CN));
        assert!(!needs_renewal(&f, NOW));
        assert!(needs_renewal(&f, f.not_after - DEV_RENEW_BEFORE_S + 1));
        assert!(needs_renewal(&f, f.not_after + 1));
        // what an older Tollgate generated: valid until 4096
        let old = Facts {
            not_after: 66_850_355_200,
            ..f.clone()
        };
        assert!(needs_renewal(&old, NOW));
    }

    #[test]
    fn only_a_generated_certificate_is_renewed() {
        let f = Facts {
            not_after: NOW - 1,
            dns_names: vec![],
            issuer_cn: Some("Operator CA".into()),
        };
        assert!(!needs_renewal(&f, NOW));
    }

    #[test]
    fn an_expired_generated_pair_is_replaced_in_run_mode_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("leaf.pem"), dir.path().join("leaf.key"));
        let old = DevPki::generate_valid(NOW - 400 * 86_400, NOW - 86_400).unwrap();
        old.write(&dir.path().join("dev-ca.pem"), &cert, &key)
            .unwrap();
        let (l, _) = default_pair(&cert, &key, true, LoadMode::Check, NOW).unwrap();
        assert_eq!(l.facts.not_after, NOW + (DEV_VALIDITY_DAYS - 1) * 86_400);
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), old.leaf_pem);
        default_pair(&cert, &key, true, LoadMode::Run, NOW).unwrap();
        assert_ne!(std::fs::read_to_string(&cert).unwrap(), old.leaf_pem);
        // without dev_self_signed the files are served as they are
        let (l, ca) = default_pair(&cert, &key, false, LoadMode::Run, NOW + 400 * 86_400).unwrap();
        assert!(ca.is_none() && l.facts.not_after < NOW + 400 * 86_400);
    }

    #[test]
    fn dev_pki_loads_and_check_mode_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("tls/leaf.pem"),
            dir.path().join("tls/leaf.key"),
        );
        let (_, ca) = default_pair(&cert, &key, true, LoadMode::Check, NOW).unwrap();
        assert!(!cert.exists() && !key.exists() && !ca.unwrap().exists());
        let (_, ca) = default_pair(&cert, &key, true, LoadMode::Run, NOW).unwrap();
        assert!(cert.exists() && key.exists() && ca.unwrap().exists());
        // second start reuses the files
        let first = std::fs::read_to_string(&cert).unwrap();
        default_pair(&cert, &key, true, LoadMode::Run, NOW + 86_400).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), first);
    }

    #[test]
    fn missing_files_without_dev_mode_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = default_pair(
            &dir.path().join("c.pem"),
            &dir.path().join("k.pem"),
            false,
            LoadMode::Run,
            NOW,
        )
        .unwrap_err();
        assert!(err.to_string().contains("c.pem"), "{err}");
    }
}
