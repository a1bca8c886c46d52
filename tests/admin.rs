//! The admin listener: readiness that follows the spool and comes back, the source allow list, the bearer
//! token, the `Host` check (DNS rebinding), `/admin/status`, config validation of a non-loopback bind, and an
//! admin that answers while the public side is saturated. Token and Host cases go through curl.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::{event, Client, Fixture, Proto};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tollgate::spool::Fault;

const TOKEN: &str = "admin-token-0123456789abcdef0123456789";

/// `curl -s` against the admin listener: (status, body as JSON or Null). `args` go before the URL.
fn curl(admin: SocketAddr, path: &str, args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://{admin}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (code.parse().unwrap_or(0), body)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Polls `/readyz` until its body equals `want`; panics after 60 s.
fn wait_ready(admin: SocketAddr, want: Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = curl(admin, "/readyz", &[]);
        if body == want {
            let ready = want["ready"] == true;
            assert_eq!(code, if ready { 200 } else { 503 }, "{body}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz still {body}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn post(c: &mut Client, ev: &Value) -> common::Reply {
    c.post("application/json", ev.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_spool_writer_failures_and_recovers() {
    let fx = Fixture::new("");
    let (running, faults) = fx.start_with_faults().await;
    let admin = running.admin_addr.unwrap();
    let ready = json!({"ready": true});
    let failed = json!({"ready": false, "reasons": ["spool_writer_failed"]});
    tokio::task::block_in_place(|| wait_ready(admin, ready.clone()));
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;

    // A failed write is rolled back; the writer goes on and the next commit clears the reason.
    faults.inject(Fault::Write);
    assert_eq!(post(&mut c, &event("w1")).await.status, 503);
    tokio::task::block_in_place(|| wait_ready(admin, failed.clone()));
    assert_eq!(post(&mut c, &event("w2")).await.status, 204);
    tokio::task::block_in_place(|| wait_ready(admin, ready.clone()));

    // A failed fsync stops the writer for good: not ready until a restart.
    faults.inject(Fault::Sync);
    assert_eq!(post(&mut c, &event("s1")).await.status, 503);
    assert_eq!(post(&mut c, &event("s2")).await.status, 503);
    tokio::task::block_in_place(|| {
        wait_ready(admin, failed.clone());
        let (code, status) = curl(admin, "/admin/status", &[]);
        assert_eq!(code, 200);
        assert_eq!(status["spool"]["writer"], "stopped", "{status}");
    });
    drop(c);
    assert!(
        running.stop().await.is_err(),
        "the writer reports its failure"
    );

    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();
    tokio::task::block_in_place(|| wait_ready(admin, ready));
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(post(&mut c, &event("after")).await.status, 204);
    drop(c);
    running.stop().await.unwrap();
}

/// An event of about 2 KB.
fn big_event(id: &str) -> Value {
    let mut ev = event(id);
    ev["cart"]["items"][0]["name"] = json!("n".repeat(1900));
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_spool_full_until_a_sink_frees_space() {
    let fx = Fixture::new(
        "[[sinks]]\nname = \"file\"\ntype = \"file\"\ndir = \"out\"\nretry_cap_ms = 300\n",
    );
    fx.edit_config(|t| {
        t.replacen(
            "[spool]\n",
            "[spool]\nmax_bytes = 1048576\nsegment_bytes = 65536\n",
            1,
        )
    });
    // A file where the sink wants its directory: every delivery fails until it is removed.
    let block = fx.dir.path().join("data/out/demo");
    std::fs::create_dir_all(block.parent().unwrap()).unwrap();
    std::fs::write(&block, "not a directory").unwrap();
    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let started = Instant::now();
    let mut full = false;
    for i in 0..2000 {
        let r = post(&mut c, &big_event(&format!("f{i}"))).await;
        if r.status == 503 {
            assert_eq!(r.json()["error"], "spool_full", "{:?}", r.body);
            full = true;
            break;
        }
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
    assert!(full, "the spool never filled");
    // The only sink keeps failing too: both reasons are listed.
    let both = json!({"ready": false, "reasons": ["spool_full", "sinks_failing"]});
    tokio::task::block_in_place(|| wait_ready(admin, both));

    std::fs::remove_file(&block).unwrap();
    tokio::task::block_in_place(|| wait_ready(admin, json!({"ready": true})));
    assert_eq!(post(&mut c, &big_event("after")).await.status, 204);
    eprintln!("full and recovered in {:?}", started.elapsed());
    drop(c);
    running.stop().await.unwrap();
}

/// An `[admin]` section with an allow list of 127.0.0.1 only and a token file.
fn guarded_fixture() -> Fixture {
    let fx = Fixture::new(
        "[admin]\nallow = [\"127.0.0.1/32\"]\ntoken_file = \"admin.token\"\nhosts = [\"ops.example\"]\n",
    );
    std::fs::write(fx.dir.path().join("admin.token"), format!("{TOKEN}\n")).unwrap();
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_other_sources_missing_or_wrong_tokens_and_foreign_hosts() {
    let fx = guarded_fixture();
    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();

    // From 127.0.0.2 (outside the allow list): closed on accept, no HTTP answer, counted.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
        .unwrap();
    let mut s = sock.connect(admin).await.unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\n{}\r\n\r\n",
        bearer(TOKEN)
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    let refused = [("listener", "admin"), ("reason", "not_allowed")];
    assert!(common::metric(&running, "tollgate_connections_refused_total", &refused) >= 1.0);

    tokio::task::block_in_place(|| {
        // curl from 127.0.0.2 too: no reply at all.
        let (code, _) = curl(admin, "/healthz", &["--interface", "127.0.0.2"]);
        assert_eq!(code, 0);

        // Probes need no token; everything else does.
        assert_eq!(curl(admin, "/healthz", &[]).0, 200);
        assert_eq!(curl(admin, "/readyz", &[]).0, 200);
        for path in ["/admin/status", "/metrics", "/admin/bans", "/nothing"] {
            let (code, body) = curl(admin, path, &[]);
            assert_eq!(
                (code, body),
                (401, json!({"error": "unauthorized"})),
                "{path}"
            );
        }
        let wrong = bearer(&TOKEN.replace('0', "1"));
        let short = bearer(&TOKEN[..TOKEN.len() - 1]);
        for header in [wrong.as_str(), short.as_str(), "Authorization: Basic YTpi"] {
            let (code, _) = curl(admin, "/admin/status", &["-H", header]);
            assert_eq!(code, 401, "{header}");
        }
        let good = bearer(TOKEN);
        let (code, body) = curl(admin, "/admin/status", &["-H", &good]);
        assert_eq!(code, 200, "{body}");
        let (code, _) = curl(admin, "/admin/reload", &["-H", &good, "-X", "POST"]);
        assert_eq!(code, 200);

        // The token is reloadable: after a reload the new one works and the old one no longer does.
        let new = TOKEN.replace("admin", "fresh");
        std::fs::write(fx.dir.path().join("admin.token"), &new).unwrap();
        assert_eq!(
            curl(admin, "/admin/reload", &["-H", &good, "-X", "POST"]).0,
            200
        );
        assert_eq!(curl(admin, "/admin/status", &["-H", &good]).0, 401);
        assert_eq!(curl(admin, "/admin/status", &["-H", &bearer(&new)]).0, 200);
        std::fs::write(fx.dir.path().join("admin.token"), TOKEN).unwrap();
        assert_eq!(
            curl(admin, "/admin/reload", &["-H", &bearer(&new), "-X", "POST"]).0,
            200
        );

        // DNS rebinding: a foreign Host is refused even with the token; configured names and literals pass.
        for host in [
            "evil.example",
            "evil.example:9090",
            "127.0.0.1.evil.example",
        ] {
            let h = format!("Host: {host}");
            let (code, body) = curl(admin, "/healthz", &["-H", &h, "-H", &good]);
            assert_eq!(
                (code, body),
                (421, json!({"error": "host_not_allowed"})),
                "{host}"
            );
        }
        for host in ["localhost:1", "ops.example", "[::1]:9090"] {
            let h = format!("Host: {host}");
            assert_eq!(
                curl(admin, "/admin/status", &["-H", &h, "-H", &good]).0,
                200,
                "{host}"
            );
        }
    });
    let m = |reason| {
        common::metric(
            &running,
            "tollgate_admin_requests_refused_total",
            &[("reason", reason)],
        )
    };
    assert_eq!((m("unauthorized"), m("host_not_allowed")), (8.0, 3.0));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn host_check_applies_on_loopback_without_any_admin_section() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();
    tokio::task::spawn_blocking(move || {
        assert_eq!(curl(admin, "/admin/status", &[]).0, 200);
        let (code, _) = curl(admin, "/metrics", &["-H", "Host: rebind.attacker.example"]);
        assert_eq!(code, 421);
    })
    .await
    .unwrap();
    running.stop().await.unwrap();
}

#[test]
fn check_requires_allow_list_and_token_for_a_non_loopback_admin() {
    let fx = Fixture::with_listen("", "admin = \"0.0.0.0:0\"");
    let (code, out) = common::check(&fx.config_path());
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("listen.admin"), "{out}");
    assert!(
        out.contains("admin.allow") && out.contains("admin.token_file"),
        "{out}"
    );

    // A token too short is refused by its source, never shown.
    let weak = "weak-admin-token";
    std::fs::write(fx.dir.path().join("admin.token"), weak).unwrap();
    fx.edit_config(|t| t + "[admin]\nallow = [\"10.0.0.0/8\"]\ntoken_file = \"admin.token\"\n");
    let (code, out) = common::check(&fx.config_path());
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("admin.token_file") && !out.contains(weak),
        "{out}"
    );

    std::fs::write(fx.dir.path().join("admin.token"), TOKEN).unwrap();
    let (code, out) = common::check(&fx.config_path());
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_reports_what_an_operator_needs() {
    let fx = guarded_fixture();
    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(post(&mut c, &event("st1")).await.status, 204);
    let file = std::fs::read(fx.config_path()).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &file);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();

    let (code, s) =
        tokio::task::block_in_place(|| curl(admin, "/admin/status", &["-H", &bearer(TOKEN)]));
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["config"]["sha256"], hex.as_str(), "{s}");
    assert_eq!(s["config"]["loaded"], true);
    assert!(s["config"].get("generation").is_some(), "{s}");
    assert!(s["uptime_s"].as_u64().unwrap() < 600, "{s}");
    assert_eq!(s["connections"]["public"], 1, "{s}");
    assert_eq!(s["connections"]["admin"], 1, "{s}");
    assert!(s["spool"]["bytes"].as_i64().unwrap() > 0, "{s}");
    assert!(s["spool"]["segments"].as_i64().unwrap() >= 1, "{s}");
    assert_eq!(s["spool"]["writer"], "ok");
    assert_eq!(s["spool"]["full"], false);
    assert_eq!(s["sinks"], json!([]));
    assert_eq!(s["bans"]["active"], 0);
    assert_eq!(
        (s["ready"].clone(), s["reasons"].clone()),
        (json!(true), json!([]))
    );
    drop(c);
    running.stop().await.unwrap();
}

/// The public side saturated twice over: every connection permit held by a silent client, and then its
/// whole runtime blocked (this test's only thread runs curl synchronously). The admin, on its own thread and
/// runtime, still answers.
#[tokio::test(flavor = "current_thread")]
async fn admin_answers_while_the_public_side_is_saturated() {
    let fx = Fixture::new("[limits]\nmax_connections = 2\n");
    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(running.public_addr)
                .await
                .unwrap(),
        );
    }
    // Let the accept loop take both permits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::net::TcpStream::connect(running.public_addr)
        .await
        .unwrap();
    let handshake = tokio::time::timeout(Duration::from_millis(300), async {
        let cfg = fx.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name, third)
            .await
    })
    .await;
    assert!(handshake.is_err(), "the public listener still had a permit");

    // From here this thread (the public runtime) is blocked inside curl.
    let t0 = std::time::Instant::now();
    assert_eq!(curl(admin, "/healthz", &[]).0, 200);
    let (code, body) = curl(admin, "/readyz", &[]);
    assert_eq!((code, body), (200, json!({"ready": true})));
    assert_eq!(curl(admin, "/admin/status", &[]).0, 200);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "admin took {took:?}");
    drop(held);
    running.stop().await.unwrap();
}
