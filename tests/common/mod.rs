//! Shared test harness: a real server on 127.0.0.1:0 with a throwaway CA + leaf, and a real TLS client that
//! speaks HTTP/1.1 or HTTP/2 (chosen by ALPN).
#![allow(dead_code)]

pub mod curl;
pub mod h2;
pub mod mmdb;
pub mod proc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tollgate::app::{App, Running};
use tollgate::clock::FixedClock;
use tollgate::config::{self, LoadMode};
use tollgate::tls::DevPki;

pub const NOW_MS: i64 = 1_732_262_400_000;

/// The fixture tenant's server secret (`server.secret`, good from loopback): [`request`] sends it as
/// `Authorization: Bearer`, as a merchant's backend would. Remove the header to test without it.
pub const SERVER_SECRET: &str = "fixture-server-secret-0123456789abcdef";

/// A temp dir with a config file, a written dev CA + leaf and a key file; `extra` is appended to the TOML.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Fixture {
    pub fn new(extra: &str) -> Self {
        Self::with_listen(extra, "redirect = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"")
    }

    pub fn with_listen(extra: &str, listen_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::generate().unwrap();
        let tls = dir.path().join("tls");
        pki.write(
            &tls.join("ca.pem"),
            &tls.join("leaf.pem"),
            &tls.join("leaf.key"),
        )
        .unwrap();
        std::fs::write(dir.path().join("demo.key"), "5a".repeat(32)).unwrap();
        std::fs::write(dir.path().join("spool.key"), "6b".repeat(32)).unwrap();
        std::fs::write(dir.path().join("server.secret"), SERVER_SECRET).unwrap();
        let toml = format!(
            r#"data_dir = "data"
[listen]
public = "127.0.0.1:0"
{listen_extra}
[tls]
cert = "tls/leaf.pem"
key = "tls/leaf.key"
[spool]
active_key = "s1"
[[spool.keys]]
id = "s1"
file = "spool.key"
[[tenants]]
site = "demo"
allowed_origins = ["https://shop.example"]
server_secret_file = "server.secret"
server_networks = ["127.0.0.0/8", "::1/128"]
active_key = "k1"
[[tenants.keys]]
id = "k1"
file = "demo.key"
{extra}"#
        );
        std::fs::write(dir.path().join("tollgate.toml"), toml).unwrap();
        Fixture {
            dir,
            ca_pem: pki.ca_pem,
        }
    }

    /// Rewrites the config file: `edit` gets its text and returns the new text.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tollgate.toml")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("data/spool")
    }

    /// Boots the server in-process with a fixed clock.
    pub async fn start(&self) -> Running {
        let snap = config::load(&self.config_path(), LoadMode::Run).expect("valid test config");
        let (app, _) = App::new(
            snap,
            Arc::new(FixedClock::new(NOW_MS)),
            Some(self.config_path()),
        )
        .unwrap();
        app.start().await.unwrap()
    }

    /// Boots the server in-process like [`Fixture::start`], with the spool's fault-injection seam.
    pub async fn start_with_faults(&self) -> (Running, Arc<tollgate::spool::Faults>) {
        let snap = config::load(&self.config_path(), LoadMode::Run).expect("valid test config");
        let (app, faults) = App::with_spool_faults(
            snap,
            Arc::new(FixedClock::new(NOW_MS)),
            Some(self.config_path()),
        )
        .unwrap();
        (app.start().await.unwrap(), faults)
    }

    /// A raw TLS 1.3 stream speaking HTTP/1.1 by hand, for tests that need byte-level control.
    pub async fn raw_tls(
        &self,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let cfg = self.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> rustls::ClientConfig {
        client_config(&self.ca_pem, versions, alpn)
    }
}

pub fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(tollgate::tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One TLS connection to `addr` (SNI `localhost`) speaking `proto`, usable for several requests.
pub struct Client {
    h1: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    h2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    pub tls_version: rustls::ProtocolVersion,
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca_pem: &str, proto: Proto) -> Self {
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        Self::connect_with(addr, client_config(ca_pem, versions, &[]), proto).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        mut cfg: rustls::ClientConfig,
        proto: Proto,
    ) -> Self {
        cfg.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2 => b"h2".to_vec(),
        }];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        let (_, session) = tls.get_ref();
        let tls_version = session.protocol_version().unwrap();
        let negotiated = session.alpn_protocol().map(|p| p.to_vec());
        let io = TokioIo::new(tls);
        match proto {
            Proto::H1 => {
                assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
                let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Client {
                    h1: Some(send),
                    h2: None,
                    tls_version,
                }
            }
            Proto::H2 => {
                assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Client {
                    h1: None,
                    h2: Some(send),
                    tls_version,
                }
            }
        }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        let res = match (&mut self.h1, &mut self.h2) {
            (Some(h1), _) => {
                h1.ready().await.unwrap();
                h1.send_request(req).await.unwrap()
            }
            (_, Some(h2)) => {
                h2.ready().await.unwrap();
                h2.send_request(req).await.unwrap()
            }
            _ => unreachable!(),
        };
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A handle for concurrent HTTP/2 streams on this one connection.
    pub fn h2_sender(&self) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        self.h2.clone().expect("an HTTP/2 client")
    }

    pub async fn post(&mut self, content_type: &str, body: impl Into<Bytes>) -> Reply {
        let req = request("POST", "/v1/events", Some(content_type), body.into());
        self.send(req).await
    }
}

pub fn request(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    // HTTP/1.1 needs a Host header; HTTP/2 takes the authority from the URI.
    b.header("host", "localhost")
        .header("authorization", format!("Bearer {SERVER_SECRET}"))
        .body(Full::new(body))
        .unwrap()
}

/// Every record in a fixture's spool, through the real `tollgate spool dump -c` command (which decrypts).
pub fn dump(fx: &Fixture) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["spool", "dump", "-c"])
        .arg(fx.config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spool dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn event(id: &str) -> serde_json::Value {
    serde_json::json!({
        "site": "demo", "type": "cart_update", "event_id": id,
        "customer": {"email": format!("  Shopper.{id}@Example.COM "), "first_name": "Ann", "age": 41},
        "page_url": "https://shop.example/cart?utm_source=mail&email=x@y.z#frag",
        "cart": {"value": 12.5, "currency": "EUR", "items": [{"sku": "S1", "qty": 1, "price": 12.5}]}
    })
}

/// Runs `tollgate check -c path`: exit code and stdout + stderr together.
pub fn check(path: &Path) -> (Option<i32>, String) {
    cli(&["check"], path)
}

/// Runs `tollgate <args> -c path`: exit code and stdout + stderr together.
pub fn cli(args: &[&str], path: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .arg("-c")
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

// ---- shared by the storage-tier tests -----------------------------------------------------------------

/// The sum of a metric's series whose labels include `labels` (counters and gauges alike); 0 if absent.
pub fn metric(running: &tollgate::app::Running, name: &str, labels: &[(&str, &str)]) -> f64 {
    let families = running.ctx.registry.gather();
    let Some(family) = families.iter().find(|f| f.name() == name) else {
        return 0.0;
    };
    family
        .get_metric()
        .iter()
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

/// Polls `done` every 10 ms until it holds; panics after `limit`. Returns when it first held.
pub async fn wait_for(
    what: &str,
    limit: std::time::Duration,
    mut done: impl FnMut() -> bool,
) -> tokio::time::Instant {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done() {
            return tokio::time::Instant::now();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Posts `requests` requests of `per` events on one connection of each protocol; the acknowledged ids, sorted.
pub async fn post_ids(
    running: &tollgate::app::Running,
    fx: &Fixture,
    tag: &str,
    requests: usize,
    per: usize,
) -> Vec<String> {
    let mut acked = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = Client::connect(running.public_addr, &fx.ca_pem, proto).await;
        for i in 0..requests {
            let ids: Vec<String> = (0..per)
                .map(|j| format!("{tag}-{proto:?}-{i:03}-{j}"))
                .collect();
            let body =
                serde_json::Value::Array(ids.iter().map(|id| event(id)).collect()).to_string();
            assert_eq!(c.post("application/json", body).await.status, 204);
            acked.extend(ids);
        }
    }
    acked.sort();
    acked
}

/// Every complete NDJSON line a file sink wrote under `root`, by file path relative to `root` (a torn last
/// line without its `\n` is skipped: the sink delivers that batch again).
pub fn sink_files(root: &Path) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for p in entries.map(|e| e.unwrap().path()) {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ndjson") {
                let text = std::fs::read_to_string(&p).unwrap();
                let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
                let lines = complete
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), lines);
            }
        }
    }
    out
}

/// The same lines as `(event_id, record)`, in id order.
pub fn sink_records(root: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<_> = sink_files(root)
        .into_values()
        .flatten()
        .map(|v| (v["event_id"].as_str().unwrap().to_owned(), v))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `method path` on an admin listener over plain HTTP/1.1 (`Host: localhost`): (status, whole response).
pub async fn admin_call(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    (out[9..12].parse().unwrap(), out)
}
