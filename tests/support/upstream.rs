//! An HTTPS upstream for the `http` sink's tests: a hyper server over rustls on 127.0.0.1:0 with a
//! throwaway CA, told how to answer, optionally requiring a client certificate; and a client PKI for mTLS.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tollgate::tls::DevPki;

/// How the upstream answers the next requests.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Ok,
    Status(u16),
    TooMany(&'static str),
    Hang,
}

/// One request as the upstream saw it, body un-gzipped.
pub struct Seen {
    pub headers: HeaderMap,
    pub body: String,
}

/// The upstream's shared state; the server task runs until the test's runtime ends.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted so far.
    accepts: Arc<AtomicUsize>,
}

impl Upstream {
    /// Serves TLS with the leaf of `pki`; with `client_ca`, only clients presenting a certificate it signed.
    pub async fn start(pki: &DevPki, client_ca: Option<&str>, keep_alive: bool) -> Upstream {
        let provider = tollgate::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut tls = builder
            .with_single_cert(pki.leaf_chain(), pki.leaf_key())
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            seen: Arc::default(),
            accepts: Arc::default(),
        };
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                state.accepts.fetch_add(1, Ordering::SeqCst);
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| state.clone().answer(req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(tls), svc);
                    let _ = conn.await;
                });
            }
        });
        up
    }

    async fn answer(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let headers = req.headers().clone();
        let gz = req.into_body().collect().await?.to_bytes();
        let mut body = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut body)
            .unwrap();
        self.seen.lock().unwrap().push(Seen { headers, body });
        let mode = *self.mode.lock().unwrap();
        let mut resp = Response::new(Full::new(Bytes::new()));
        match mode {
            Mode::Ok => {}
            Mode::Status(s) => *resp.status_mut() = StatusCode::from_u16(s).unwrap(),
            Mode::TooMany(after) => {
                *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                resp.headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            Mode::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
        }
        Ok(resp)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Upstream {
    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// A client CA (PEM) and a client certificate + key it signed, written to `dir`.
pub fn client_pki(dir: &Path) -> (String, (PathBuf, PathBuf)) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["tollgate-sink".to_string()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_pem, (cert_path, key_path))
}
