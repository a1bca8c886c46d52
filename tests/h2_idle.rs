//! A connection that asks for nothing loses its slot, whatever else it sends: HTTP/2 PINGs are not activity.
//! Real TLS on 127.0.0.1, with hand-written HTTP/2 frames, hyper's client (keep-alive PINGs) and curl. The
//! byte-level `idle_ms` is 60 s throughout, so every close seen here is the activity watchdog's. Bounds are
//! generous; nothing asserts how fast a close happens beyond "within 10 s".

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use std::time::Duration;

use bytes::Bytes;
use common::h2::{frame, tls, ACK, PING, SETTINGS};
use common::{event, Fixture, SERVER_SECRET};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::app::Running;

/// `header_read_ms` and `keepalive_idle_ms` of 1 s; `idle_ms` 60 s.
const TIMEOUTS: &str =
    "[timeouts]\nheader_read_ms = 1000\nkeepalive_idle_ms = 1000\nidle_ms = 60000\n";
/// How long any close may take here: several times the 1 s limits plus the 1 s close grace.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

fn idle_closed(running: &Running, phase: &str) -> f64 {
    common::metric(
        running,
        "tollgate_connections_idle_closed_total",
        &[("listener", "public"), ("phase", phase)],
    )
}

/// The case: TLS with ALPN h2, the preface, an empty SETTINGS, then a PING every 200 ms and never a
/// request. The server closes it (GOAWAY, then EOF) although bytes never stop moving.
#[tokio::test]
async fn an_h2_connection_that_only_pings_is_closed() {
    let fx = Fixture::new(TIMEOUTS);
    let running = fx.start().await;
    let (reader, mut wr) = common::h2::open(&fx, running.public_addr).await;
    // The server's SETTINGS are acknowledged blindly: a well-behaved client in every way but asking.
    wr.write_all(&frame(SETTINGS, ACK, &[])).await.unwrap();
    let pinger = tokio::spawn(async move {
        for n in 0u64.. {
            if wr
                .write_all(&frame(PING, 0, &n.to_be_bytes()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let seen = tokio::time::timeout(CLOSED_WITHIN, reader)
        .await
        .expect("the server closes a connection that only sends PINGs")
        .unwrap();
    pinger.abort();
    assert!(seen.ping_acks > 0, "the server answered PINGs: {seen:?}");
    assert!(seen.goaway, "closed with a GOAWAY: {seen:?}");
    assert_eq!(idle_closed(&running, "before_first_request"), 1.0);
    running.stop().await.unwrap();
}

/// One real request over HTTP/2, then only hyper's keep-alive PINGs (every 200 ms, also while idle): the
/// connection ends after `keepalive_idle_ms` and the next request fails.
#[tokio::test]
async fn an_h2_connection_kept_alive_with_pings_after_a_request_is_closed() {
    let fx = Fixture::new(TIMEOUTS);
    let running = fx.start().await;
    let io = TokioIo::new(tls(&fx, running.public_addr, b"h2").await);
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake::<_, Full<Bytes>>(io)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let healthz = || common::request("GET", "/healthz", None, Bytes::new());
    let res = send.send_request(healthz()).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    assert!(!conn.is_finished(), "still open right after the request");

    let ended = tokio::time::timeout(CLOSED_WITHIN, conn)
        .await
        .expect("the server closes a connection kept alive only by PINGs");
    assert!(ended.unwrap().is_ok(), "a graceful close (GOAWAY)");
    assert!(send.send_request(healthz()).await.is_err());
    assert_eq!(idle_closed(&running, "keepalive"), 1.0);
    assert_eq!(idle_closed(&running, "before_first_request"), 0.0);
    running.stop().await.unwrap();
}

/// A client that completes TLS and then says nothing is closed after `header_read_ms`, not `idle_ms`, whichever
/// protocol it chose: protocol detection counts against the header timeout.
#[tokio::test]
async fn a_silent_client_after_tls_is_closed_after_header_read() {
    let fx = Fixture::new(TIMEOUTS);
    let running = fx.start().await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut conn = tls(&fx, running.public_addr, alpn).await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(CLOSED_WITHIN, conn.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "{} silent client still open",
            alpn.escape_ascii()
        );
    }
    assert_eq!(idle_closed(&running, "before_first_request"), 2.0);
    running.stop().await.unwrap();
}

/// `curl -sS --cacert <fixture CA> --http2 <args>` against the public listener, run off the runtime's thread;
/// its stdout, once it succeeded.
async fn curl(fx: &Fixture, public: SocketAddr, args: &[&str]) -> String {
    let port = public.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2", "--max-time", "30", "--cacert"])
        .arg(fx.dir.path().join("tls/ca.pem"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(args)
        .stdin(Stdio::null());
    let out: Output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("curl is installed (tests/run.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request still uploading is not idle: curl sends a body at 1 KB/s for about 3 s over HTTP/2 with
/// `keepalive_idle_ms = 1000` and gets its 204.
#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_keepalive_timer() {
    let fx = Fixture::new(&format!("{TIMEOUTS}body_read_ms = 30000\n"));
    let running = fx.start().await;
    let events: Vec<_> = (0..16).map(|i| event(&format!("slow-{i}"))).collect();
    let body = serde_json::Value::Array(events).to_string();
    assert!(body.len() > 3000, "{} bytes", body.len());
    let body_file = fx.dir.path().join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let bearer = format!("authorization: Bearer {SERVER_SECRET}");
    let data = format!("@{}", body_file.display());
    let url = format!("https://localhost:{}/v1/events", running.public_addr.port());
    let out = curl(
        &fx,
        running.public_addr,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version} %{time_total}",
            "--limit-rate",
            "1000",
            "-H",
            "content-type: application/json",
            "-H",
            &bearer,
            "--data-binary",
            &data,
            &url,
        ],
    )
    .await;
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[..2], ["204", "2"], "{out}");
    let took: f64 = fields[2].parse().unwrap();
    assert!(took > 1.5, "the upload outlasted keepalive_idle: {out}");
    assert_eq!(idle_closed(&running, "keepalive"), 0.0);
    running.stop().await.unwrap();
    assert_eq!(common::dump(&fx).len(), 16);
}

/// Two requests on one HTTP/2 connection, the second starting about 1 s after the first, with
/// `keepalive_idle_ms = 3000`: both succeed and curl connected once.
#[tokio::test]
async fn requests_within_keepalive_idle_reuse_the_connection() {
    let fx = Fixture::new("[timeouts]\nkeepalive_idle_ms = 3000\nidle_ms = 60000\n");
    let running = fx.start().await;
    let url = format!("https://localhost:{}/healthz", running.public_addr.port());
    let out = curl(
        &fx,
        running.public_addr,
        &[
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version} %{num_connects}\\n",
            "--rate",
            "1/s",
            &url,
            &url,
        ],
    )
    .await;
    assert_eq!(
        out, "200 2 1\n200 2 0\n",
        "second request reused the connection"
    );
    assert_eq!(idle_closed(&running, "keepalive"), 0.0);
    running.stop().await.unwrap();
}

/// HTTP/1.1 keep-alive lasts `keepalive_idle_ms` even when `header_read_ms` is shorter: curl sends two
/// requests 2 s apart on one connection with `header_read_ms = 1000` and `keepalive_idle_ms = 4000`.
#[tokio::test]
async fn http1_keepalive_outlasts_a_shorter_header_read() {
    let fx = Fixture::new(
        "[timeouts]\nheader_read_ms = 1000\nkeepalive_idle_ms = 4000\nidle_ms = 60000\n",
    );
    let running = fx.start().await;
    let url = format!("https://localhost:{}/healthz", running.public_addr.port());
    let out = curl(
        &fx,
        running.public_addr,
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version} %{num_connects}\\n",
            "--rate",
            "30/m",
            &url,
            &url,
        ],
    )
    .await;
    assert_eq!(
        out, "200 1.1 1\n200 1.1 0\n",
        "second request reused the connection"
    );
    running.stop().await.unwrap();
}

/// The plain redirect listener has the same watchdog: after a `308`, a kept-alive HTTP/1.1 connection that
/// sends nothing more is closed after `keepalive_idle_ms` (here well before `header_read_ms`).
#[tokio::test]
async fn the_redirect_listener_closes_a_kept_alive_connection() {
    let fx = Fixture::new(
        "[timeouts]\nheader_read_ms = 30000\nkeepalive_idle_ms = 1000\nidle_ms = 60000\n",
    );
    let running = fx.start().await;
    let mut plain = tokio::net::TcpStream::connect(running.redirect_addr.unwrap())
        .await
        .unwrap();
    plain
        .write_all(b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, plain.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(read.is_ok(), "still open after: {text}");
    assert!(text.starts_with("HTTP/1.1 308"), "{text}");
    let closed = common::metric(
        &running,
        "tollgate_connections_idle_closed_total",
        &[("listener", "redirect"), ("phase", "keepalive")],
    );
    assert_eq!(closed, 1.0);
    running.stop().await.unwrap();
}
