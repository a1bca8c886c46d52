//! The connection guard through the real server: `[guard.lists]` deny and allow close a connection right
//! after accept, before the TLS handshake (the client sees no ServerHello), and count it in
//! `tollgate_connections_refused_total{listener, reason}`; `[guard.connections] max_per_address` caps the
//! connections one address holds open, other addresses unaffected, a closed connection freeing its place; a
//! reload that adds a deny applies to the next connection. A listener's own table (`[guard.lists.redirect]`,
//! `[guard.lists.public]`) refuses or narrows on that listener only; a route table refuses `/healthz` to one
//! address with `403 route_network_not_allowed` while another gets 200; a tenant's `deny_networks` refuses its
//! events from one address with `403 network_not_allowed` (browser and server callers) while another gets 204
//! — those through curl (`--interface 127.0.0.N`); bad entries are config errors with their paths. (The tables
//! of list decisions, IPv6 and IPv4-mapped IPv6 cases are unit tests in `guard::lists`, `guard::conns` and
//! `guard::access`.)

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{event, Client, Fixture, Proto};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tollgate::app::Running;

const HOME: [u8; 4] = [127, 0, 0, 1];
const NEIGHBOUR: [u8; 4] = [127, 0, 0, 2];

/// A TLS 1.3 handshake from a client socket bound to `from`.
async fn handshake(
    fx: &Fixture,
    addr: SocketAddr,
    from: [u8; 4],
) -> std::io::Result<TlsStream<TcpStream>> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::from(from), 0))?;
    let tcp = sock.connect(addr).await?;
    let cfg = fx.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

use common::metric;

fn refused(running: &Running, listener: &str, reason: &str) -> f64 {
    metric(
        running,
        "tollgate_connections_refused_total",
        &[("listener", listener), ("reason", reason)],
    )
}

/// Waits (bounded) until the public listener reports `n` open connections: the server frees a connection's
/// per-address place before its gauge drops, so this is the signal a closed connection's place is free.
async fn open_connections_reach(running: &Running, n: f64) {
    let gauge = || {
        metric(
            running,
            "tollgate_connections_open",
            &[("listener", "public")],
        )
    };
    for _ in 0..500 {
        if gauge() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("open connections stayed at {} (wanted {n})", gauge());
}

/// `openssl s_client` against `addr`: whether it saw a server certificate.
async fn openssl_sees_a_certificate(addr: SocketAddr) -> bool {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string()])
            .args(["-servername", "localhost", "-tls1_3"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl on PATH")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    !text.contains("no peer certificate available") && text.contains("Server certificate")
}

#[tokio::test]
async fn a_denied_address_gets_no_server_hello() {
    let fx = Fixture::new("[guard.lists]\ndeny = [\"127.0.0.1/32\"]\n");
    let running = fx.start().await;
    let addr = running.public_addr;
    assert!(handshake(&fx, addr, HOME).await.is_err());
    assert!(!openssl_sees_a_certificate(addr).await);
    assert_eq!(refused(&running, "public", "denied"), 2.0);
    // A /32 denies one host: its neighbour connects and is served.
    assert!(handshake(&fx, addr, NEIGHBOUR).await.is_ok());
    assert_eq!(refused(&running, "public", "not_allowed"), 0.0);
    // The plain redirect listener is guarded too: closed without a response.
    let redirect = running.redirect_addr.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(redirect).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(
        got.is_empty(),
        "no response: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(refused(&running, "redirect", "denied"), 1.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_address_outside_the_allow_list_is_not_allowed() {
    let fx = Fixture::new("[guard.lists]\nallow = [\"10.0.0.0/8\"]\n");
    let running = fx.start().await;
    assert!(handshake(&fx, running.public_addr, HOME).await.is_err());
    assert!(handshake(&fx, running.public_addr, NEIGHBOUR)
        .await
        .is_err());
    assert_eq!(refused(&running, "public", "not_allowed"), 2.0);
    assert_eq!(refused(&running, "public", "denied"), 0.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_third_connection_only() {
    let fx = Fixture::new("[guard.connections]\nmax_per_address = 2\n");
    let running = fx.start().await;
    let addr = running.public_addr;
    let first = handshake(&fx, addr, HOME).await.expect("first");
    let _second = handshake(&fx, addr, HOME).await.expect("second");
    assert!(handshake(&fx, addr, HOME).await.is_err(), "third refused");
    assert_eq!(refused(&running, "public", "per_address_cap"), 1.0);
    let _neighbour = handshake(&fx, addr, NEIGHBOUR)
        .await
        .expect("another address has its own places");
    open_connections_reach(&running, 3.0).await;
    drop(first);
    open_connections_reach(&running, 2.0).await;
    let mut c = Client::connect(addr, &fx.ca_pem, Proto::H1).await;
    let reply = c
        .post(
            "application/json",
            serde_json::to_vec(&event("cap")).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(refused(&running, "public", "per_address_cap"), 1.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_reload_that_adds_a_deny_applies_to_the_next_connection() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let addr = running.public_addr;
    let mut before = Client::connect(addr, &fx.ca_pem, Proto::H1).await;
    assert!(openssl_sees_a_certificate(addr).await, "served before");
    fx.edit_config(|t| format!("{t}\n[guard.lists]\ndeny = [\"127.0.0.1\"]\n"));
    let ctx = running.ctx.clone();
    tokio::task::spawn_blocking(move || ctx.reload())
        .await
        .unwrap()
        .expect("reload applied");
    assert!(handshake(&fx, addr, HOME).await.is_err());
    assert!(!openssl_sees_a_certificate(addr).await, "refused after");
    assert_eq!(refused(&running, "public", "denied"), 2.0);
    // Lists are checked on accept: a connection opened before the reload goes on.
    let reply = before
        .post(
            "application/json",
            serde_json::to_vec(&event("old")).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 204);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn bad_entries_are_reported_with_their_paths() {
    let fx = Fixture::new(
        "[guard.lists]\nallow = [\"10.0.0.0/8\", \"x\"]\ndeny = [\"::1\", \"1.2.3.4\", \"300.1.1.1\"]\n\
         [guard.connections]\nmax_per_address = 0\n",
    );
    let (code, text) = common::check(&fx.config_path());
    assert_ne!(code, Some(0), "{text}");
    for path in [
        "guard.lists.allow[1]",
        "guard.lists.deny[2]",
        "guard.connections.max_per_address",
    ] {
        assert!(text.contains(path), "{path} missing in:\n{text}");
    }
    assert!(!text.contains("guard.lists.deny[0]"), "{text}");
}

/// What curl saw: its exit code, the HTTP status ("000" without a response) and the body.
struct Curl {
    exit: i32,
    status: String,
    body: String,
}

impl Curl {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

/// curl from `from` (`--interface`) to `url`, trusting the fixture's CA; `args` go before the URL. Runs on
/// the blocking pool so the in-process server keeps serving.
async fn curl(fx: &Fixture, from: &str, url: String, args: &[&str]) -> Curl {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(["--interface", from, "--cacert"])
        .arg(fx.dir.path().join("tls/ca.pem"))
        .args(args)
        .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("curl on PATH"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: status.to_owned(),
        body: body.to_owned(),
    }
}

fn public_url(running: &Running, path: &str) -> String {
    format!("https://localhost:{}{path}", running.public_addr.port())
}

/// A browser beacon (with `Origin`) posting one event.
async fn post_event(fx: &Fixture, running: &Running, from: &str, id: &str) -> Curl {
    let body = serde_json::to_string(&event(id)).unwrap();
    let args = [
        "-H",
        "content-type: application/json",
        "-H",
        "Origin: https://shop.example",
        "--data-binary",
        &body,
    ];
    curl(fx, from, public_url(running, "/v1/events"), &args).await
}

#[tokio::test]
async fn a_deny_on_the_redirect_listener_refuses_there_only() {
    let fx = Fixture::new("[guard.lists.redirect]\ndeny = [\"127.0.0.2\"]\n");
    let running = fx.start().await;
    let redirect = format!(
        "http://127.0.0.1:{}/",
        running.redirect_addr.unwrap().port()
    );
    // Refused on the redirect listener: closed before any HTTP, curl gets an empty reply.
    let got = curl(&fx, "127.0.0.2", redirect.clone(), &[]).await;
    assert_eq!(got.status, "000", "exit {} body {:?}", got.exit, got.body);
    assert_eq!(refused(&running, "redirect", "denied"), 1.0);
    // Another address on the same listener is redirected.
    let home = curl(&fx, "127.0.0.1", redirect, &[]).await;
    assert_eq!(home.status, "308");
    // The public listener serves the address the redirect listener refuses: TLS and a request.
    assert!(handshake(&fx, running.public_addr, NEIGHBOUR).await.is_ok());
    let health = curl(&fx, "127.0.0.2", public_url(&running, "/healthz"), &[]).await;
    assert_eq!(health.status, "200", "{}", health.body);
    assert_eq!(
        post_event(&fx, &running, "127.0.0.2", "r1").await.status,
        "204"
    );
    assert_eq!(refused(&running, "public", "denied"), 0.0);
    assert_eq!(refused(&running, "redirect", "denied"), 1.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_allow_on_the_public_listener_narrows_it_only() {
    let fx = Fixture::new("[guard.lists.public]\nallow = [\"127.0.0.1/32\"]\n");
    let running = fx.start().await;
    assert!(handshake(&fx, running.public_addr, NEIGHBOUR)
        .await
        .is_err());
    assert!(handshake(&fx, running.public_addr, HOME).await.is_ok());
    assert_eq!(refused(&running, "public", "not_allowed"), 1.0);
    let redirect = format!(
        "http://127.0.0.1:{}/",
        running.redirect_addr.unwrap().port()
    );
    assert_eq!(curl(&fx, "127.0.0.2", redirect, &[]).await.status, "308");
    assert_eq!(refused(&running, "redirect", "not_allowed"), 0.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_route_list_refuses_healthz_to_one_address() {
    let fx = Fixture::new("[guard.lists.routes.\"/healthz\"]\nallow = [\"127.0.0.1\"]\n");
    let running = fx.start().await;
    let home = curl(&fx, "127.0.0.1", public_url(&running, "/healthz"), &[]).await;
    assert_eq!(home.status, "200", "{}", home.body);
    let other = curl(&fx, "127.0.0.2", public_url(&running, "/healthz"), &[]).await;
    assert_eq!(other.status, "403", "{}", other.body);
    assert_eq!(other.json()["error"], "route_network_not_allowed");
    // HTTP/2 and HTTP/1.1 HEAD alike; the connection was accepted (the list is per request, not per
    // connection).
    let h2 = curl(
        &fx,
        "127.0.0.2",
        public_url(&running, "/healthz"),
        &["--http2"],
    )
    .await;
    assert_eq!(h2.status, "403", "curl exit {} {}", h2.exit, h2.body);
    assert_eq!(h2.json()["error"], "route_network_not_allowed");
    let head = curl(
        &fx,
        "127.0.0.2",
        public_url(&running, "/healthz"),
        &["--http1.1", "-I"],
    )
    .await;
    assert_eq!(head.status, "403", "{}", head.body);
    // The other route has no list: the same address posts events.
    assert_eq!(
        post_event(&fx, &running, "127.0.0.2", "e1").await.status,
        "204"
    );
    assert_eq!(refused(&running, "public", "not_allowed"), 0.0);
    let reason = [("reason", "route_network_not_allowed")];
    assert_eq!(
        common::metric(&running, "tollgate_rejections_total", &reason),
        3.0
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_tenant_deny_refuses_its_events_from_one_address() {
    let fx = Fixture::new("");
    fx.edit_config(|t| {
        t.replacen(
            "active_key = \"k1\"\n",
            "active_key = \"k1\"\ndeny_networks = [\"127.0.0.3\"]\n",
            1,
        )
    });
    let running = fx.start().await;
    let home = post_event(&fx, &running, "127.0.0.1", "t1").await;
    assert_eq!(home.status, "204", "{}", home.body);
    let denied = post_event(&fx, &running, "127.0.0.3", "t2").await;
    assert_eq!(denied.status, "403", "{}", denied.body);
    assert_eq!(denied.json()["error"], "network_not_allowed");
    // A server-side caller with the secret is refused from there too, though 127.0.0.0/8 is in its
    // server_networks: the tenant's deny wins.
    let bearer = format!("Authorization: Bearer {}", common::SERVER_SECRET);
    let body = serde_json::to_string(&event("t3")).unwrap();
    let args = [
        "-H",
        "content-type: application/json",
        "-H",
        &bearer,
        "--data-binary",
        &body,
    ];
    let server = curl(&fx, "127.0.0.3", public_url(&running, "/v1/events"), &args).await;
    assert_eq!(server.status, "403", "{}", server.body);
    assert_eq!(server.json()["error"], "network_not_allowed");
    // The connection guard is not involved: nothing was refused on accept.
    assert_eq!(refused(&running, "public", "denied"), 0.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn bad_listener_route_and_tenant_lists_are_reported_with_their_paths() {
    let fx = Fixture::new(
        "[guard.lists.redirect]\ndeny = [\"x\"]\n\
         [guard.lists.public]\nallow = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n\
         [guard.lists.routes.\"/nope\"]\nallow = []\n\
         [guard.lists.routes.\"/healthz\"]\ndeny = [\"127.0.0.1\", \"y\"]\n",
    );
    fx.edit_config(|t| {
        t.replacen(
            "active_key = \"k1\"\n",
            "active_key = \"k1\"\nallow_networks = [\"z\"]\ndeny_networks = [\"10.0.0.0/8\", \"bad\"]\n",
            1,
        )
    });
    let (code, text) = common::check(&fx.config_path());
    assert_ne!(code, Some(0), "{text}");
    for path in [
        "guard.lists.redirect.deny[0]",
        "guard.lists.public.allow[1]",
        "guard.lists.routes.\"/nope\"",
        "guard.lists.routes.\"/healthz\".deny[1]",
        "tenants[0].allow_networks[0]",
        "tenants[0].deny_networks[1]",
    ] {
        assert!(text.contains(path), "{path} missing in:\n{text}");
    }
    assert!(!text.contains("tenants[0].deny_networks[0]"), "{text}");
    // A typo in a listener table is an error, never a no-op.
    let typo = Fixture::new("[guard.lists.public]\ndenny = [\"10.0.0.0/8\"]\n");
    let (code, text) = common::check(&typo.config_path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("denny"), "{text}");
}
