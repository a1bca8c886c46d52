//! Certificates chosen by SNI, rotated by replacing the files and reloading, their expiry as a metric, the
//! development certificate renewed when expired, and an IP literal as SNI counted instead of logged. Real TLS on
//! 127.0.0.1: rustls clients read the certificate they were served, curl and openssl s_client check it as
//! users do.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{metric, proc::Proc, request, Fixture};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tollgate::tls::cert::facts;
use tollgate::tls::DevPki;

const SNI_ENTRIES: &str = r#"
[[tls.sni]]
names = ["track.shop.example"]
cert = "tls/track.pem"
key = "tls/track.key"
[[tls.sni]]
names = ["*.shop.example", "shop.example"]
cert = "tls/wild.pem"
key = "tls/wild.key"
"#;

/// A CA of the test's own for the SNI certificates.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "SNI test CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = p.self_signed(&key).unwrap().pem();
        Self {
            issuer: rcgen::Issuer::new(p, key),
            pem,
        }
    }

    /// Writes `tls/<stem>.pem` and `tls/<stem>.key` under `dir`: a leaf for `sans` with `serial`.
    fn leaf(&self, dir: &Path, stem: &str, sans: &[&str], serial: u64, not_after: (i32, u8, u8)) {
        let key = rcgen::KeyPair::generate().unwrap();
        let sans = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.serial_number = Some(serial.into());
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let tls = dir.join("tls");
        std::fs::write(tls.join(format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(tls.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }
}

/// A fixture serving the default dev certificate plus `track.shop.example` and `*.shop.example`.
fn sni_fixture() -> (Fixture, TestCa) {
    let fx = Fixture::new(SNI_ENTRIES);
    let ca = TestCa::new();
    ca.leaf(
        fx.dir.path(),
        "track",
        &["track.shop.example"],
        1,
        (2031, 5, 17),
    );
    let wild = &["*.shop.example", "shop.example"];
    ca.leaf(fx.dir.path(), "wild", wild, 2, (2032, 1, 1));
    (fx, ca)
}

fn file_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// Accepts any server certificate: these tests look at which one was served, curl checks validity.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(m, c, d, algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection sending `sni` (`None`: no SNI extension), ALPN `h2`.
async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = tollgate::tls::provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.enable_sni = sni.is_some();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(sni.unwrap_or("localhost").to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// The leaf certificate served for `sni`.
async fn served(addr: SocketAddr, sni: Option<&str>) -> CertificateDer<'static> {
    let tls = connect(addr, sni).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// `curl https://<host>:<port>/healthz` resolved to 127.0.0.1, trusting `cafile`: the HTTP status, or the
/// curl exit code as a negative number when TLS verification failed.
fn curl_status(addr: SocketAddr, host: &str, cafile: &Path) -> i32 {
    let port = addr.port();
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(cafile)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/healthz"))
        .output()
        .expect("curl is installed (tests/run.sh installs it)");
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout).parse().unwrap(),
        code => -code.unwrap_or(1),
    }
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default() {
    let (fx, _ca) = sni_fixture();
    let running = fx.start().await;
    let tls = fx.dir.path().join("tls");
    let (track, wild, default) = (
        file_der(&tls.join("track.pem")),
        file_der(&tls.join("wild.pem")),
        file_der(&tls.join("leaf.pem")),
    );
    let addr = running.public_addr;
    let cases: &[(Option<&str>, &CertificateDer)] = &[
        (Some("track.shop.example"), &track),
        (Some("TRACK.shop.example."), &track),
        (Some("cdn.shop.example"), &wild),
        (Some("shop.example"), &wild),
        (Some("a.b.shop.example"), &default),
        (Some("unknown.example"), &default),
        (None, &default),
    ];
    for (sni, want) in cases {
        assert_eq!(&served(addr, *sni).await, *want, "SNI {sni:?}");
    }
    let sni = |kind: &str| metric(&running, "tollgate_tls_sni_total", &[("kind", kind)]);
    // TLS 1.3: the server counts once it read the client's Finished, after the client is done.
    let all = || sni("matched") + sni("unknown") + sni("missing") + sni("ip_literal");
    common::wait_for("7 counted handshakes", Duration::from_secs(5), || {
        all() >= 7.0
    })
    .await;
    assert_eq!(
        (
            sni("matched"),
            sni("unknown"),
            sni("missing"),
            sni("ip_literal")
        ),
        (4.0, 2.0, 1.0, 0.0)
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_verifies_each_name_against_the_certificate_it_is_served() {
    let (fx, ca) = sni_fixture();
    let running = fx.start().await;
    let both = fx.dir.path().join("both-cas.pem");
    std::fs::write(&both, format!("{}{}", fx.ca_pem, ca.pem)).unwrap();
    let addr = running.public_addr;
    tokio::task::block_in_place(|| {
        for host in [
            "track.shop.example",
            "cdn.shop.example",
            "shop.example",
            "localhost",
        ] {
            assert_eq!(curl_status(addr, host, &both), 200, "{host}");
        }
        // a name nobody configured gets the default (localhost) certificate, which curl refuses for it
        assert_eq!(curl_status(addr, "unknown.example", &both), -60);
    });
    running.stop().await.unwrap();
}

#[tokio::test]
async fn replaced_files_rotate_for_new_handshakes_while_an_open_connection_keeps_working() {
    let (fx, ca) = sni_fixture();
    let running = fx.start().await;
    let addr = running.public_addr;
    let tls = fx.dir.path().join("tls");
    let old = file_der(&tls.join("track.pem"));

    // An HTTP/2 connection on the old certificate, left open across the rotation.
    let stream = connect(addr, Some("track.shop.example")).await;
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], old);
    let (mut open, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Full<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
    tokio::spawn(conn);
    let healthz = || request("GET", "/healthz", None, Bytes::new());
    assert_eq!(open.send_request(healthz()).await.unwrap().status(), 200);

    // New serial, an extra name: replace the files, reload.
    let sans = &["track.shop.example", "track2.shop.example"];
    ca.leaf(fx.dir.path(), "track", sans, 99, (2033, 3, 3));
    let new = file_der(&tls.join("track.pem"));
    assert_ne!(new, old);
    assert_eq!(
        served(addr, Some("track.shop.example")).await,
        old,
        "no reload yet"
    );
    running.ctx.reload().expect("reload");

    assert_eq!(served(addr, Some("track.shop.example")).await, new);
    let status = open.send_request(healthz()).await.unwrap().status();
    assert_eq!(status, 200, "the open connection still answers");
    assert_eq!(
        facts(&new).unwrap().dns_names,
        (*sans).map(String::from).to_vec()
    );
    running.stop().await.unwrap();
    // The audit log names the replaced certificate, and only that one.
    let audit = std::fs::read_to_string(fx.dir.path().join("data/audit.log")).unwrap();
    let changed: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "certificate")
        .collect();
    assert_eq!(changed.len(), 1, "{audit}");
    assert_eq!(changed[0]["name"], "track.shop.example");
    assert_ne!(changed[0]["old_sha256"], changed[0]["new_sha256"]);
}

#[tokio::test]
async fn expiry_metric_names_each_entry_and_follows_reload() {
    let (fx, _ca) = sni_fixture();
    let running = fx.start().await;
    let expiry = |name: &str| {
        metric(
            &running,
            "tollgate_tls_certificate_expiry_timestamp_seconds",
            &[("name", name)],
        )
    };
    assert_eq!(expiry("track.shop.example"), 1_936_742_400.0); // 2031-05-17T00:00:00Z
    assert_eq!(expiry("*.shop.example"), 1_956_528_000.0); // 2032-01-01T00:00:00Z
    let now = tollgate::tls::dev::unix_now() as f64;
    let default = expiry("default");
    assert!(
        default > now && default <= now + 90.0 * 86_400.0,
        "{default}"
    );

    fx.edit_config(|t| t.replace(SNI_ENTRIES, ""));
    running.ctx.reload().expect("reload");
    assert_eq!(
        expiry("track.shop.example"),
        0.0,
        "a removed entry's series goes"
    );
    assert_eq!(expiry("default"), default);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_development_certificate_is_regenerated_at_start() {
    let fx = Fixture::new("");
    fx.edit_config(|t| {
        t.replace(
            "key = \"tls/leaf.key\"",
            "key = \"tls/leaf.key\"\ndev_self_signed = true",
        )
    });
    let tls = fx.dir.path().join("tls");
    let now = tollgate::tls::dev::unix_now();
    let old = DevPki::generate_valid(now - 400 * 86_400, now - 86_400).unwrap();
    old.write(
        &tls.join("dev-ca.pem"),
        &tls.join("leaf.pem"),
        &tls.join("leaf.key"),
    )
    .unwrap();

    let running = fx.start().await;
    let leaf = std::fs::read_to_string(tls.join("leaf.pem")).unwrap();
    assert_ne!(leaf, old.leaf_pem, "the expired leaf was replaced");
    let not_after = facts(&file_der(&tls.join("leaf.pem"))).unwrap().not_after;
    assert!(not_after > now + 88 * 86_400 && not_after <= now + 89 * 86_400 + 60);
    let addr = running.public_addr;
    let status =
        tokio::task::block_in_place(|| curl_status(addr, "localhost", &tls.join("dev-ca.pem")));
    assert_eq!(status, 200, "curl trusts the new development CA");
    running.stop().await.unwrap();
}

/// `GET /metrics` on the admin listener, as text.
fn admin_metrics(admin: SocketAddr) -> String {
    let out = Command::new("curl")
        .args(["-sS", &format!("http://{admin}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn an_ip_literal_as_sni_is_counted_not_logged() {
    let fx = Fixture::new("");
    let p = Proc::start(&fx.config_path()); // RUST_LOG=info
    let ca = fx.dir.path().join("tls/ca.pem");
    let handshakes = 5;
    for _ in 0..handshakes {
        let out = Command::new("openssl")
            .args(["s_client", "-brief", "-connect"])
            .arg(p.public.to_string())
            .args(["-servername", "127.0.0.1", "-CAfile"])
            .arg(&ca)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is installed (tests/run.sh installs it)");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("CONNECTION ESTABLISHED"), "{text}");
    }
    // curl sends no SNI for an address: counted as missing
    let status = curl_status(p.public, "127.0.0.1", &ca);
    assert_eq!(status, 200);
    let series = |text: &str, kind: &str| {
        sample(text, &format!("tollgate_tls_sni_total{{kind=\"{kind}\"}}"))
    };
    // The server counts once it has read the client's Finished; poll until it has, at most 10 s.
    let mut text = String::new();
    for _ in 0..1000 {
        text = admin_metrics(p.admin.unwrap());
        if series(&text, "ip_literal") + series(&text, "missing") >= handshakes as f64 + 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(series(&text, "ip_literal"), handshakes as f64, "{text}");
    assert_eq!(series(&text, "missing"), 1.0);

    p.signal("TERM");
    let mut p = p;
    p.wait_exit();
    let log = p.stderr_text();
    let per_handshake: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SNI") || l.contains("presented as hostname"))
        .collect();
    assert!(per_handshake.is_empty(), "{per_handshake:#?}");
}
