//! Who the client is, through the real server. With `listen.public_proxy_protocol` every public connection must
//! open with a PROXY v2 header (built by hand here); its source decides `[guard.lists]` before TLS, an
//! IPv4-mapped IPv6 source counts as the IPv4 address, `LOCAL` means the TCP peer, and a missing, truncated,
//! mis-signed or over-long header closes the connection before any TLS byte, counted as `proxy_header`. With
//! `[guard] trusted_proxies`, `X-Forwarded-For` from a trusted peer names the client that tenant
//! `server_networks` see; from anyone else it is ignored. (Parser edge cases and the XFF table are unit tests in
//! `guard::proxy` and `guard::connmeta`.)

mod common;

use std::io::ErrorKind;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use common::{event, metric, Client, Fixture, Proto};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::app::Running;

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const DENIED: [u8; 4] = [203, 0, 113, 9];

/// A PROXY v2 header: command (0 LOCAL, 1 PROXY), family byte, and the address block as sent.
fn header(command: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend([0x20 | command, family]);
    h.extend((addrs.len() as u16).to_be_bytes());
    h.extend(addrs);
    h
}

/// TCP over IPv4 from `src:40000` to 192.0.2.1:443.
fn tcp4(src: [u8; 4]) -> Vec<u8> {
    let addrs = [
        &src[..],
        &[192, 0, 2, 1],
        &40000u16.to_be_bytes(),
        &443u16.to_be_bytes(),
    ];
    header(1, 0x11, &addrs.concat())
}

/// TCP over IPv6 from `src:40000` to [2001:db8::1]:443.
fn tcp6(src: Ipv6Addr) -> Vec<u8> {
    let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let ports = [40000u16.to_be_bytes(), 443u16.to_be_bytes()].concat();
    header(
        1,
        0x21,
        &[&src.octets()[..], &dst.octets(), &ports].concat(),
    )
}

fn fixture(extra: &str) -> Fixture {
    let fx = Fixture::with_listen(
        &format!("[timeouts]\ntls_handshake_ms = 300\n{extra}"),
        "admin = \"127.0.0.1:0\"\npublic_proxy_protocol = true",
    );
    // The proxied sources below post with the bearer: let the tenant's server networks include them.
    fx.edit_config(|t| t.replace("\"::1/128\"]", "\"::1/128\", \"198.51.100.0/24\"]"));
    fx
}

fn refused(running: &Running, reason: &str) -> f64 {
    let labels = [("listener", "public"), ("reason", reason)];
    metric(running, "tollgate_connections_refused_total", &labels)
}

/// Sends `prefix` on a fresh connection, then a TLS 1.3 handshake on the same connection.
async fn tls_after(
    fx: &Fixture,
    addr: SocketAddr,
    prefix: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(prefix).await?;
    let cfg = fx.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One event posted with the bearer over HTTP/1.1 on an established TLS stream; the status.
async fn post_on(tls: tokio_rustls::client::TlsStream<TcpStream>, id: &str) -> u16 {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = Bytes::from(serde_json::to_vec(&event(id)).unwrap());
    let req = common::request("POST", "/v1/events", Some("application/json"), body);
    send.send_request(req).await.unwrap().status().as_u16()
}

/// Sends `bytes` (then ends the write side if `finish`), and returns what the server sent before closing.
async fn bytes_back(addr: SocketAddr, bytes: &[u8], finish: bool) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    if finish {
        tcp.shutdown().await.unwrap();
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut got));
    match read.await.expect("the server closes the connection") {
        Ok(_) => got,
        // A close with our unread bytes still queued is a reset: nothing was sent either.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => got,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn the_proxy_source_meets_the_lists_before_tls_and_then_posts() {
    let fx = fixture(&format!("[guard.lists]\ndeny = [\"{}\"]\n", "203.0.113.9"));
    let running = fx.start().await;
    let addr = running.public_addr;
    assert!(tls_after(&fx, addr, &tcp4(DENIED)).await.is_err());
    assert_eq!(refused(&running, "denied"), 1.0);
    let mapped: Ipv6Addr = "::ffff:203.0.113.9".parse().unwrap();
    assert!(
        tls_after(&fx, addr, &tcp6(mapped)).await.is_err(),
        "mapped = v4"
    );
    assert_eq!(refused(&running, "denied"), 2.0);
    let tls = tls_after(&fx, addr, &tcp4([198, 51, 100, 20]))
        .await
        .expect("another source is served over TLS on the same connection");
    assert_eq!(post_on(tls, "via-proxy").await, 204);
    // LOCAL (a balancer's health check): the TCP peer, 127.0.0.1, is the client.
    let tls = tls_after(&fx, addr, &header(0, 0x00, &[]))
        .await
        .expect("LOCAL");
    assert_eq!(post_on(tls, "local").await, 204);
    assert_eq!(refused(&running, "proxy_header"), 0.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_or_missing_header_closes_the_connection_before_tls() {
    let fx = fixture("");
    let running = fx.start().await;
    let addr = running.public_addr;
    let good = tcp4([198, 51, 100, 20]);
    let mut wrong_signature = good.clone();
    wrong_signature[5] = b'\n';
    let mut longer = good.clone();
    longer[14..16].copy_from_slice(&40u16.to_be_bytes());
    // (what, bytes, end the write side): a held-open short header ends by the handshake timeout.
    let cases: [(&str, Vec<u8>, bool); 4] = [
        ("truncated", good[..22].to_vec(), true),
        ("wrong signature", wrong_signature, false),
        ("length larger than sent", longer, false),
        (
            "version 1 text",
            b"PROXY TCP4 198.51.100.20 192.0.2.1 1 443\r\n".to_vec(),
            false,
        ),
    ];
    for (i, (what, bytes, finish)) in cases.into_iter().enumerate() {
        let got = bytes_back(addr, &bytes, finish).await;
        assert!(got.is_empty(), "{what}: the server sent {got:?}");
        assert_eq!(refused(&running, "proxy_header"), (i + 1) as f64, "{what}");
    }
    // No header at all: a plain TLS client gets no ServerHello.
    assert!(tls_after(&fx, addr, b"").await.is_err());
    assert_eq!(refused(&running, "proxy_header"), 5.0);
    assert_eq!(
        metric(&running, "tollgate_tls_handshake_failures_total", &[]),
        0.0
    );
    running.stop().await.unwrap();
}

/// The fixture tenant takes bearer requests only from 198.51.100.0/24; the test client is on 127.0.0.1.
fn xff_fixture(extra: &str) -> Fixture {
    let fx = Fixture::new(extra);
    fx.edit_config(|t| {
        t.replace(
            "server_networks = [\"127.0.0.0/8\", \"::1/128\"]",
            "server_networks = [\"198.51.100.0/24\"]",
        )
    });
    fx
}

async fn post_forwarded(fx: &Fixture, running: &Running, xff: Option<&str>) -> (u16, String) {
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let body = Bytes::from(serde_json::to_vec(&event("xff")).unwrap());
    let mut req = common::request("POST", "/v1/events", Some("application/json"), body);
    if let Some(v) = xff {
        req.headers_mut()
            .insert("x-forwarded-for", v.parse().unwrap());
    }
    let reply = c.send(req).await;
    let reason = match reply.status.as_u16() {
        204 => String::new(),
        _ => reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    (reply.status.as_u16(), reason)
}

/// `curl` posting one event with the bearer and `extra` arguments; its status code ("000" if it got none).
async fn curl(fx: &Fixture, addr: SocketAddr, extra: &[&str]) -> String {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg("--cacert")
    .arg(fx.dir.path().join("tls/ca.pem"))
    .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())])
    .args([
        "-H",
        &format!("Authorization: Bearer {}", common::SERVER_SECRET),
    ])
    .args([
        "-H",
        "Content-Type: application/json",
        "-d",
        &event("curl").to_string(),
    ])
    .args(extra)
    .arg(format!("https://localhost:{}/v1/events", addr.port()));
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("curl on PATH"))
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn curl_with_a_v1_header_or_none_is_closed() {
    let fx = fixture("");
    let running = fx.start().await;
    assert_eq!(
        curl(&fx, running.public_addr, &["--haproxy-protocol"]).await,
        "000"
    );
    assert_eq!(curl(&fx, running.public_addr, &[]).await, "000");
    assert_eq!(refused(&running, "proxy_header"), 2.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_peer() {
    let fx = xff_fixture("[guard]\ntrusted_proxies = [\"127.0.0.0/8\"]\n");
    let running = fx.start().await;
    let refused_403 = (403, "network_not_allowed".to_owned());
    assert_eq!(
        post_forwarded(&fx, &running, Some("198.51.100.7")).await,
        (204, String::new())
    );
    let chain = Some("198.51.100.7, 127.0.0.5");
    assert_eq!(
        post_forwarded(&fx, &running, chain).await.0,
        204,
        "trusted hops skipped"
    );
    let spoofed = Some("198.51.100.7, 192.0.2.66");
    assert_eq!(
        post_forwarded(&fx, &running, spoofed).await,
        refused_403,
        "right-most untrusted"
    );
    assert_eq!(
        post_forwarded(&fx, &running, Some("not-an-ip")).await,
        refused_403
    );
    assert_eq!(post_forwarded(&fx, &running, None).await, refused_403);
    for proto in ["--http1.1", "--http2"] {
        let xff = ["-H", "X-Forwarded-For: 198.51.100.7", proto];
        assert_eq!(
            curl(&fx, running.public_addr, &xff).await,
            "204",
            "curl {proto}"
        );
    }
    running.stop().await.unwrap();

    let fx = xff_fixture("");
    let running = fx.start().await;
    let got = post_forwarded(&fx, &running, Some("198.51.100.7")).await;
    assert_eq!(
        got, refused_403,
        "without trusted_proxies the header is ignored"
    );
    running.stop().await.unwrap();
}

#[test]
fn bad_trusted_proxies_are_reported_with_their_paths() {
    let fx = Fixture::new("[guard]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n");
    let (code, text) = common::check(&fx.config_path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("guard.trusted_proxies[1]"), "{text}");
    assert!(!text.contains("guard.trusted_proxies[0]"), "{text}");
}
