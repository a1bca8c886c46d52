//! The `http` sink against an upstream of the test's own: a hyper server over rustls on 127.0.0.1:0 with a
//! throwaway CA, told how to answer (200, 500, 429 + Retry-After, 400, or not at all), optionally
//! requiring a client certificate.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
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
use tollgate::config::{BatchLimits, Endpoint, HttpConfig, RetryPolicy, SinkConfig, SinkKind, TlsClientFiles};
use tollgate::keys::Secret;
use tollgate::sink::http::HttpSink;
use tollgate::sink::{DeadReason, RetryReason, SendError, Sink, SinkBatch};
use tollgate::spool::{Route, StoredRecord};
use tollgate::tls::DevPki;

const TOKEN: &str = "tok-3f9a-very-secret";

/// How the upstream answers the next requests.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Ok,
    Status(u16),
    TooMany(&'static str),
    Hang,
}

/// One request as the upstream saw it, body un-gzipped.
struct Seen {
    headers: HeaderMap,
    body: String,
}

#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepts: Arc<AtomicUsize>,
}

impl Upstream {
    /// Serves TLS with the leaf of `pki`; with `client_ca`, only clients presenting a certificate it signed.
    async fn start(pki: &DevPki, client_ca: Option<&str>, keep_alive: bool) -> Upstream {
        let provider = tollgate::tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut tls = builder.with_single_cert(pki.leaf_chain(), pki.leaf_key()).unwrap();
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
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req| state.clone().answer(req));
                    let conn = hyper::server::conn::http1::Builder::new().keep_alive(keep_alive).serve_connection(TokioIo::new(tls), svc);
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
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut body).unwrap();
        self.seen.lock().unwrap().push(Seen { headers, body });
        let mode = *self.mode.lock().unwrap();
        let mut resp = Response::new(Full::new(Bytes::new()));
        match mode {
            Mode::Ok => {}
            Mode::Status(s) => *resp.status_mut() = StatusCode::from_u16(s).unwrap(),
            Mode::TooMany(after) => {
                *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                resp.headers_mut().insert("retry-after", after.parse().unwrap());
            }
            Mode::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
        }
        Ok(resp)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn sink_config(addr: SocketAddr, tls: TlsClientFiles, token: Option<Secret>) -> (SinkConfig, HttpConfig) {
    let http = HttpConfig {
        endpoint: Endpoint { https: true, host: "localhost".into(), port: addr.port(), path: "/ingest?v=1".into() },
        tls,
        token,
    };
    let cfg = SinkConfig {
        name: "up".into(),
        region: None,
        kind: SinkKind::Http(http.clone()),
        batch: BatchLimits { events: 1000, bytes: 1 << 20, max_age: Duration::from_secs(1) },
        retry: RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_secs(30) },
        timeout: Duration::from_millis(700),
    };
    (cfg, http)
}

fn records() -> Vec<StoredRecord> {
    (0..3)
        .map(|i| StoredRecord {
            site: "shop_1".into(),
            event_id: format!("e-{i}"),
            received_ms: 1_732_262_400_000 + i,
            route: Route::All,
            payload: format!(r#"{{"type":"page_view","event_id":"e-{i}","page_url":"https://shop.example/"}}"#).into_bytes(),
        })
        .collect()
}

/// The throwaway CA written to `dir`, and the trust settings naming it.
fn trust(dir: &Path, pki: &DevPki) -> TlsClientFiles {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    TlsClientFiles { ca_file: Some(ca), client_cert: None }
}

/// A client CA (PEM) and a client certificate + key it signed, written to `dir`.
fn client_pki(dir: &Path) -> (String, (std::path::PathBuf, std::path::PathBuf)) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
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

async fn send(sink: &mut HttpSink, id: &str, records: &[StoredRecord]) -> Result<(), SendError> {
    sink.send(SinkBatch { id, records }).await
}

#[tokio::test]
async fn posts_gzip_ndjson_with_key_and_token_over_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let token = Secret::from_file(&dir.path().join("token")).unwrap();
    let (cfg, http) = sink_config(up.addr, trust(dir.path(), &pki), Some(token));
    let mut sink = HttpSink::new(&cfg, &http).unwrap();
    let recs = records();
    send(&mut sink, "up-1-0", &recs).await.unwrap();
    send(&mut sink, "up-1-80", &recs[..1]).await.unwrap();

    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let h = &seen[0].headers;
    assert_eq!(h["content-type"], "application/x-ndjson");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["idempotency-key"], "up-1-0");
    assert_eq!(h["authorization"], format!("Bearer {TOKEN}").as_str());
    assert_eq!(h["host"], format!("localhost:{}", up.addr.port()).as_str());
    let want: String = recs.iter().map(|r| format!("{}\n", String::from_utf8_lossy(&r.payload))).collect();
    assert_eq!(seen[0].body, want, "gzip NDJSON, one payload per line");
    assert_eq!(seen[1].headers["idempotency-key"], "up-1-80");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1, "the connection is kept and reused");
}

#[tokio::test]
async fn failures_are_classified_and_retries_keep_the_batch_identity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    let (cfg, http) = sink_config(up.addr, trust(dir.path(), &pki), None);
    let mut sink = HttpSink::new(&cfg, &http).unwrap();
    let recs = records();
    let retry = |r: RetryReason, after: Option<u64>| {
        move |e: SendError| matches!(e, SendError::Retry { reason, after: a, .. } if reason == r && a == after.map(Duration::from_secs))
    };
    up.set(Mode::Status(500));
    assert!(retry(RetryReason::Server, None)(send(&mut sink, "b-7", &recs).await.unwrap_err()));
    up.set(Mode::Status(503));
    assert!(retry(RetryReason::Throttled, None)(send(&mut sink, "b-7", &recs).await.unwrap_err()));
    up.set(Mode::TooMany("7"));
    assert!(retry(RetryReason::Throttled, Some(7))(send(&mut sink, "b-7", &recs).await.unwrap_err()));
    up.set(Mode::TooMany("86400"));
    assert!(retry(RetryReason::Throttled, Some(30))(send(&mut sink, "b-7", &recs).await.unwrap_err()), "capped at retry_cap");
    up.set(Mode::Hang);
    let started = tokio::time::Instant::now();
    assert!(retry(RetryReason::Timeout, None)(send(&mut sink, "b-7", &recs).await.unwrap_err()));
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by timeout_ms");
    up.set(Mode::Ok);
    send(&mut sink, "b-7", &recs).await.unwrap();
    up.set(Mode::Status(400));
    let err = send(&mut sink, "b-8", &recs).await.unwrap_err();
    assert!(matches!(err, SendError::Dead { reason: DeadReason::Refused, .. }), "{err:?}");

    let seen = up.seen.lock().unwrap();
    let keys: Vec<_> = seen.iter().map(|s| s.headers["idempotency-key"].to_str().unwrap().to_owned()).collect();
    assert_eq!(keys, ["b-7", "b-7", "b-7", "b-7", "b-7", "b-7", "b-8"], "one batch, one key, every attempt");
    assert!(seen[..6].windows(2).all(|w| w[0].body == w[1].body), "a retry sends the same body");
    assert!(seen.iter().all(|s| !s.headers.contains_key("authorization")), "no token configured, none sent");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2, "reconnected once, after the timeout");
}

#[tokio::test]
async fn mtls_is_required_and_satisfied() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let (client_ca, client_cert) = client_pki(dir.path());
    let up = Upstream::start(&pki, Some(&client_ca), true).await;
    let recs = records();

    let (cfg, http) = sink_config(up.addr, trust(dir.path(), &pki), None);
    let mut anonymous = HttpSink::new(&cfg, &http).unwrap();
    let err = send(&mut anonymous, "m-1", &recs).await.unwrap_err();
    assert!(matches!(err, SendError::Retry { reason: RetryReason::Connect, .. }), "{err:?}");
    assert!(up.seen.lock().unwrap().is_empty(), "no request got through without a client certificate");

    let tls = TlsClientFiles { client_cert: Some(client_cert), ..trust(dir.path(), &pki) };
    let (cfg, http) = sink_config(up.addr, tls, None);
    let mut sink = HttpSink::new(&cfg, &http).unwrap();
    send(&mut sink, "m-1", &recs).await.unwrap();
    assert_eq!(up.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn connection_problems_are_retried_without_showing_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let token = || Some(Secret::from_file(&dir.path().join("token")).unwrap());
    let recs = records();

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (cfg, http) = sink_config(closed, trust(dir.path(), &pki), token());
    let err = send(&mut HttpSink::new(&cfg, &http).unwrap(), "c-1", &recs).await.unwrap_err();
    assert!(matches!(err, SendError::Retry { reason: RetryReason::Connect, .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));

    // A server whose certificate the sink does not trust (the web PKI roots, no CA file).
    let up = Upstream::start(&pki, None, true).await;
    let (cfg, http) = sink_config(up.addr, TlsClientFiles::default(), token());
    let err = send(&mut HttpSink::new(&cfg, &http).unwrap(), "c-1", &recs).await.unwrap_err();
    assert!(matches!(err, SendError::Retry { reason: RetryReason::Connect, .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));

    // A server that closes every connection after one answer: each batch reconnects.
    let up = Upstream::start(&pki, None, false).await;
    let (cfg, http) = sink_config(up.addr, trust(dir.path(), &pki), token());
    let mut sink = HttpSink::new(&cfg, &http).unwrap();
    for id in ["c-2", "c-3", "c-4"] {
        send(&mut sink, id, &recs).await.unwrap();
    }
    assert_eq!(up.accepts.load(Ordering::SeqCst), 3);

    // Unreadable TLS files fail the build, naming the file.
    let missing = TlsClientFiles { ca_file: Some(dir.path().join("nope.pem")), client_cert: None };
    let (cfg, http) = sink_config(up.addr, missing, token());
    let err = HttpSink::new(&cfg, &http).err().unwrap();
    assert!(err.to_string().contains("nope.pem") && err.sink == "up", "{err}");
}
