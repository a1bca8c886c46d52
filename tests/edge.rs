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
    assert!(dump(&fx).is_empty());
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
    let completed = |v: &str| {
        running
            .ctx
            .metrics
            .tls_handshakes
            .with_label_values(&[v])
            .get()
    };
    assert_eq!(
        (completed("1.2"), completed("1.3")),
        (1, 1),
        "one of each version completed"
    );
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

/// Slow clients are cut off by the configured timeouts, each with its own answer and metric.
#[tokio::test]
async fn slow_clients_hit_their_timeouts() {
    let fx = Fixture::new("[timeouts]\ntls_handshake_ms = 300\nheader_read_ms = 300\nbody_read_ms = 300\nidle_ms = 5000\n");
    let running = fx.start().await;
    let m = running.ctx.metrics.clone();

    // A TCP connection that never starts TLS is closed after the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(running.public_addr)
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(silent.read_to_end(&mut buf).await.unwrap(), 0);
    assert_eq!(
        m.tls_handshake_failures
            .with_label_values(&["timeout"])
            .get(),
        1
    );

    // A body that stops halfway gets 408 body_timeout.
    let mut tls = fx.raw_tls(running.public_addr).await;
    let head = "POST /v1/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"site\":";
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut res = vec![0u8; 1024];
    let n = tls.read(&mut res).await.unwrap();
    let res = String::from_utf8_lossy(&res[..n]);
    assert!(res.starts_with("HTTP/1.1 408"), "{res}");
    assert!(res.contains("\"error\":\"body_timeout\""), "{res}");
    assert_eq!(m.rejections.with_label_values(&["body_timeout"]).get(), 1);
    running.stop().await.unwrap();
    assert!(dump(&fx).is_empty());
}

/// More request headers than `limits.max_header_count`, or a head larger than `limits.max_header_bytes`, is
/// refused by the HTTP layer before any route runs.
#[tokio::test]
async fn header_bounds_are_enforced() {
    let fx = Fixture::new("[limits]\nmax_header_count = 16\nmax_header_bytes = 8192\n");
    let running = fx.start().await;
    for extra in [
        (0..20)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>(),
        format!("x-big: {}\r\n", "a".repeat(9000)),
    ] {
        let mut tls = fx.raw_tls(running.public_addr).await;
        let req = format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{extra}\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut res = Vec::new();
        let _ = tls.read_to_end(&mut res).await;
        let res = String::from_utf8_lossy(&res);
        assert!(res.starts_with("HTTP/1.1 431"), "{res}");
    }
    // the same request within bounds is fine
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(
        c.send(common::request("GET", "/healthz", None, Default::default()))
            .await
            .status,
        200
    );
    running.stop().await.unwrap();
}

/// With `max_connections = 1`, a second connection waits in the backlog until the first one ends.
#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_permit() {
    let fx = Fixture::new("[limits]\nmax_connections = 1\n");
    let running = fx.start().await;
    let mut first = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(
        first
            .send(common::request("GET", "/healthz", None, Default::default()))
            .await
            .status,
        200
    );

    let (addr, ca) = (running.public_addr, fx.ca_pem.clone());
    let mut second = tokio::spawn(async move { Client::connect(addr, &ca, Proto::H1).await });
    // While the first connection is open, the second cannot even complete its TLS handshake.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut second).await;
    assert!(
        waited.is_err(),
        "second connection was served beyond max_connections"
    );
    assert_eq!(
        running
            .ctx
            .metrics
            .connections_total
            .with_label_values(&["public"])
            .get(),
        1
    );

    drop(first);
    let mut second = second.await.unwrap();
    assert_eq!(
        second
            .send(common::request("GET", "/healthz", None, Default::default()))
            .await
            .status,
        200
    );
    running.stop().await.unwrap();
}
