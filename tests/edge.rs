//! The edge: plain HTTP only redirects, TLS below 1.2 and non-AEAD suites are refused, HSTS everywhere.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{dump, Client, Fixture, Proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    // The server closes after answering (Connection: close); reading to EOF proves it did.
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn plain_http_redirects_get_and_refuses_post_unread() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let plain = running.redirect_addr.unwrap();
    let port = running.public_addr.port();

    for method in ["GET", "HEAD"] {
        let req = format!("{method} /v1/beacon.js?v=3 HTTP/1.1\r\nhost: shop.example:8080\r\nconnection: close\r\n\r\n");
        let res = raw_exchange(plain, req.as_bytes()).await;
        assert!(res.starts_with("HTTP/1.1 308"), "{res}");
        let want = format!("location: https://shop.example:{port}/v1/beacon.js?v=3\r\n");
        assert!(res.to_ascii_lowercase().contains(&want), "{res}");
    }

    // A POST that announces 10 MB but sends a few bytes: answered 403 at once and closed, body never read.
    let post = "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n{\"site\":";
    let res = raw_exchange(plain, post.as_bytes()).await;
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    assert!(res.contains("\"error\":\"plain_http\""), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
    assert!(!res
        .to_ascii_lowercase()
        .contains("strict-transport-security"));

    let m = &running.ctx.metrics;
    assert_eq!(m.plain_requests.with_label_values(&["redirected"]).get(), 2);
    assert_eq!(m.plain_requests.with_label_values(&["refused"]).get(), 1);
    assert_eq!(m.rejections.with_label_values(&["plain_http"]).get(), 1);
    running.stop().await.unwrap();
    assert!(dump(&fx.spool_dir()).is_empty());
}

#[tokio::test]
async fn tls12_and_tls13_negotiate_with_hsts() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        for proto in [Proto::H1, Proto::H2] {
            let cfg = fx.client_config(&[version], &[]);
            let mut c = Client::connect_with(running.public_addr, cfg, proto).await;
            assert_eq!(c.tls_version, want);
            let r = c
                .send(common::request("GET", "/healthz", None, Default::default()))
                .await;
            assert_eq!(r.status, 200);
            assert_eq!(
                r.headers["strict-transport-security"],
                "max-age=63072000; includeSubDomains"
            );
        }
    }
    running.stop().await.unwrap();
}

/// `openssl s_client` with the given protocol flag and ciphers; returns its combined output.
fn s_client(addr: SocketAddr, ca: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(ca)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed by tests/run.sh");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn legacy_tls_and_cbc_suites_are_refused_by_the_server() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let addr = running.public_addr;
    let ca = fx.dir.path().join("tls/ca.pem");
    let failures_before = running
        .ctx
        .metrics
        .tls_handshake_failures
        .with_label_values(&["error"])
        .get();
    let cases = tokio::task::spawn_blocking(move || {
        // SECLEVEL=0 makes the client willing to offer old protocols, so a failure is the server's refusal.
        let legacy = "DEFAULT:@SECLEVEL=0";
        vec![
            ("tls1", s_client(addr, &ca, &["-tls1", "-cipher", legacy])),
            (
                "tls1_1",
                s_client(addr, &ca, &["-tls1_1", "-cipher", legacy]),
            ),
            (
                "tls1_2 cbc only",
                s_client(
                    addr,
                    &ca,
                    &["-tls1_2", "-cipher", "AES128-SHA:ECDHE-ECDSA-AES128-SHA"],
                ),
            ),
            ("tls1_2", s_client(addr, &ca, &["-tls1_2"])),
            ("tls1_3", s_client(addr, &ca, &["-tls1_3"])),
        ]
    })
    .await
    .unwrap();
    for (name, out) in &cases[..3] {
        // The server answered the ClientHello with a fatal alert: no cipher was agreed.
        assert!(out.contains("alert"), "{name}: {out}");
        assert!(out.contains("Cipher is (NONE)"), "{name}: {out}");
    }
    assert!(
        cases[3].1.contains("Protocol  : TLSv1.2") && cases[3].1.contains("GCM"),
        "{}",
        cases[3].1
    );
    assert!(cases[4].1.contains("New, TLSv1.3"), "{}", cases[4].1);
    assert!(cases[3].1.contains("Verify return code: 0 (ok)"));
    let failures = running
        .ctx
        .metrics
        .tls_handshake_failures
        .with_label_values(&["error"])
        .get();
    assert_eq!(failures - failures_before, 3);
    running.stop().await.unwrap();
}

#[test]
fn dev_leaf_is_not_a_ca_and_ca_is() {
    let pki = tollgate::tls::DevPki::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf) = (dir.path().join("ca.pem"), dir.path().join("leaf.pem"));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&leaf, &pki.leaf_pem).unwrap();
    let text = |p: &std::path::Path| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(text(&ca).contains("CA:TRUE"));
    let leaf_text = text(&leaf);
    assert!(leaf_text.contains("CA:FALSE"), "{leaf_text}");
    assert!(leaf_text.contains("DNS:localhost") && leaf_text.contains("IP Address:127.0.0.1"));
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
