//! TLS termination: rustls with the aws-lc-rs provider, TLS 1.2 + 1.3 ("intermediate") or 1.3 only ("modern"),
//! AEAD cipher suites only (rustls implements no CBC or RC4 suite, so the provider's list is already AEAD-only),
//! ALPN `h2` and `http/1.1`. Certificates come from PEM files; in development (`dev_self_signed`) a throwaway
//! CA and a `localhost` leaf are generated when the files are missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::LoadMode;

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

/// A server config for `chain` + `key` with Tollgate's protocol policy.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    versions: Versions,
) -> Result<ServerConfig, rustls::Error> {
    let protocols: &[&'static rustls::SupportedProtocolVersion] = match versions {
        Versions::Intermediate => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::Modern => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(protocols)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Loads the certificate chain and key; with `dev_self_signed` and both files missing, generates them
/// (written under the cert's directory in `Run` mode, kept in memory in `Check` mode).
/// Returns the config and, when a development CA exists, its path.
pub fn load(
    cert: &Path,
    key: &Path,
    dev_self_signed: bool,
    versions: Versions,
    mode: LoadMode,
) -> Result<(Arc<ServerConfig>, Option<PathBuf>), TlsError> {
    let ca_path = cert.parent().unwrap_or(Path::new(".")).join("dev-ca.pem");
    if dev_self_signed && !cert.exists() && !key.exists() {
        let pki = DevPki::generate()?;
        if mode == LoadMode::Run {
            pki.write(&ca_path, cert, key)?;
            tracing::warn!(ca = %ca_path.display(), "generated a development CA and localhost certificate; trust it with curl --cacert");
        }
        let config = server_config(pki.leaf_chain(), pki.leaf_key(), versions)?;
        return Ok((Arc::new(config), Some(ca_path)));
    }
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(cert.into(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key.into(), e))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.into()))?;
    let dev_ca = (dev_self_signed && ca_path.exists()).then_some(ca_path);
    Ok((Arc::new(server_config(chain, key_der, versions)?), dev_ca))
}

/// A throwaway CA and a leaf for `localhost`, `127.0.0.1` and `::1` signed by it. The leaf is not a CA.
pub struct DevPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

impl DevPki {
    pub fn generate() -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tollgate development CA");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_loads_and_check_mode_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("tls/leaf.pem"),
            dir.path().join("tls/leaf.key"),
        );
        let (_, ca) = load(&cert, &key, true, Versions::Intermediate, LoadMode::Check).unwrap();
        assert!(!cert.exists() && !key.exists() && !ca.unwrap().exists());
        let (_, ca) = load(&cert, &key, true, Versions::Intermediate, LoadMode::Run).unwrap();
        assert!(cert.exists() && key.exists() && ca.unwrap().exists());
        // second start reuses the files
        assert!(load(&cert, &key, false, Versions::Modern, LoadMode::Run).is_ok());
    }

    #[test]
    fn missing_files_without_dev_mode_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            &dir.path().join("c.pem"),
            &dir.path().join("k.pem"),
            false,
            Versions::Intermediate,
            LoadMode::Run,
        )
        .unwrap_err();
        assert!(err.to_string().contains("c.pem"), "{err}");
    }
}
