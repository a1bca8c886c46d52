//! The `http` sink against an upstream of the test's own (`support/upstream.rs`): a hyper server over
//! rustls on 127.0.0.1:0 with a throwaway CA, told how to answer, optionally requiring a client certificate.

#[path = "support/upstream.rs"]
mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tollgate::config::{
    BatchLimits, Endpoint, HttpConfig, RetryPolicy, SinkConfig, SinkKind, TlsClientFiles,
};
use tollgate::keys::Secret;
use tollgate::sink::http::HttpSink;
use tollgate::sink::{SendError, Sink, SinkBatch};
use tollgate::spool::{Route, StoredRecord};
use tollgate::tls::DevPki;
use upstream::{client_pki, Mode, Upstream};

const TOKEN: &str = "tok-3f9a-very-secret";

fn http_sink(
    addr: SocketAddr,
    tls: TlsClientFiles,
    token: Option<Secret>,
) -> Result<HttpSink, String> {
    let endpoint = Endpoint {
        https: true,
        host: "localhost".into(),
        port: addr.port(),
        path: "/ingest?v=1".into(),
    };
    let http = HttpConfig {
        endpoint,
        tls,
        token,
    };
    let cfg = SinkConfig {
        name: "up".into(),
        region: None,
        kind: SinkKind::Http(http.clone()),
        batch: BatchLimits {
            events: 1000,
            bytes: 1 << 20,
            max_age: Duration::from_secs(1),
        },
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        },
        timeout: Duration::from_millis(700),
    };
    HttpSink::new(&cfg, &http).map_err(|e| e.to_string())
}

fn records() -> Vec<StoredRecord> {
    (0..3)
        .map(|i| StoredRecord {
            site: "shop_1".into(),
            event_id: format!("e-{i}"),
            received_ms: 1_732_262_400_000 + i,
            route: Route::All,
            payload: format!(r#"{{"type":"page_view","event_id":"e-{i}","note":"é \"q\""}}"#)
                .into_bytes(),
        })
        .collect()
}

/// The throwaway CA written to `dir`, and the trust settings naming it.
fn trust(dir: &Path, pki: &DevPki) -> TlsClientFiles {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    TlsClientFiles {
        ca_file: Some(ca),
        client_cert: None,
    }
}

fn token(dir: &Path) -> Option<Secret> {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    Some(Secret::from_file(&dir.join("token")).unwrap())
}

/// Sends and describes the outcome as `ok`, `retry <reason> <Retry-After secs>` or `dead <reason>`; the
/// error text is checked for the token on the way.
async fn send(sink: &mut HttpSink, id: &str, records: &[StoredRecord]) -> String {
    match sink.send(SinkBatch { id, records }).await {
        Ok(()) => "ok".into(),
        Err(e) => {
            assert!(
                !format!("{e} {e:?}").contains(TOKEN),
                "the token shows in {e:?}"
            );
            match e {
                SendError::Retry { reason, after, .. } => {
                    format!("retry {} {:?}", reason.label(), after.map(|d| d.as_secs()))
                }
                SendError::Dead { reason, .. } => format!("dead {}", reason.label()),
            }
        }
    }
}

#[tokio::test]
async fn posts_gzip_ndjson_with_key_and_token_over_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    let mut sink = http_sink(up.addr, trust(dir.path(), &pki), token(dir.path())).unwrap();
    let recs = records();
    assert_eq!(send(&mut sink, "up-1-0", &recs).await, "ok");
    assert_eq!(send(&mut sink, "up-1-80", &recs[..1]).await, "ok");

    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let h = &seen[0].headers;
    assert_eq!(h["content-type"], "application/x-ndjson");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["idempotency-key"], "up-1-0");
    assert_eq!(h["authorization"], format!("Bearer {TOKEN}").as_str());
    assert_eq!(h["host"], format!("localhost:{}", up.addr.port()).as_str());
    let want: String = recs
        .iter()
        .map(|r| format!("{}\n", String::from_utf8_lossy(&r.payload)))
        .collect();
    assert_eq!(seen[0].body, want, "gzip NDJSON, one payload per line");
    assert_eq!(seen[1].headers["idempotency-key"], "up-1-80");
    assert_eq!(up.accepted(), 1, "the connection is kept and reused");
}

#[tokio::test]
async fn answers_are_classified_and_retries_keep_the_batch_identity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    let mut sink = http_sink(up.addr, trust(dir.path(), &pki), None).unwrap();
    let recs = records();
    for (mode, want) in [
        (Mode::Status(500), "retry server None"),
        (Mode::Status(503), "retry throttled None"),
        (Mode::TooMany("7"), "retry throttled Some(7)"),
        (Mode::TooMany("86400"), "retry throttled Some(30)"), // capped at retry_cap_ms
        (Mode::Status(408), "retry timeout None"),
        (Mode::Ok, "ok"),
    ] {
        up.set(mode);
        assert_eq!(send(&mut sink, "b-7", &recs).await, want, "{mode:?}");
    }
    up.set(Mode::Status(400));
    assert_eq!(send(&mut sink, "b-8", &recs).await, "dead refused");

    let seen = up.seen.lock().unwrap();
    let keys: Vec<_> = seen
        .iter()
        .map(|s| s.headers["idempotency-key"].to_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["b-7", "b-7", "b-7", "b-7", "b-7", "b-7", "b-8"],
        "one batch, one key"
    );
    assert!(
        seen.windows(2).all(|w| w[0].body == w[1].body),
        "a retry sends the same body"
    );
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization")),
        "no token, no header"
    );
    assert_eq!(up.accepted(), 1, "error answers keep the connection");
}

#[tokio::test]
async fn a_hung_upstream_times_out_and_the_next_attempt_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let up = Upstream::start(&pki, None, true).await;
    let mut sink = http_sink(up.addr, trust(dir.path(), &pki), None).unwrap();
    let recs = records();
    up.set(Mode::Hang);
    let started = tokio::time::Instant::now();
    assert_eq!(send(&mut sink, "h-1", &recs).await, "retry timeout None");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by timeout_ms"
    );
    up.set(Mode::Ok);
    assert_eq!(send(&mut sink, "h-1", &recs).await, "ok");
    assert_eq!(up.accepted(), 2, "the hung connection was dropped");
    let seen = up.seen.lock().unwrap();
    assert!(seen.iter().all(|s| s.headers["idempotency-key"] == "h-1"));
}

#[tokio::test]
async fn mtls_is_required_and_satisfied() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let (client_ca, client_cert) = client_pki(dir.path());
    let up = Upstream::start(&pki, Some(&client_ca), true).await;
    let recs = records();

    let mut anonymous = http_sink(up.addr, trust(dir.path(), &pki), None).unwrap();
    assert_eq!(
        send(&mut anonymous, "m-1", &recs).await,
        "retry connect None"
    );
    assert!(
        up.seen.lock().unwrap().is_empty(),
        "nothing got through without a client certificate"
    );

    let tls = TlsClientFiles {
        client_cert: Some(client_cert),
        ..trust(dir.path(), &pki)
    };
    let mut sink = http_sink(up.addr, tls, None).unwrap();
    assert_eq!(send(&mut sink, "m-1", &recs).await, "ok");
    assert_eq!(up.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn connection_problems_are_retried_and_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    let recs = records();

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut nobody = http_sink(closed, trust(dir.path(), &pki), token(dir.path())).unwrap();
    assert_eq!(send(&mut nobody, "c-1", &recs).await, "retry connect None");

    // The web PKI roots (no CA file) do not trust the throwaway CA.
    let up = Upstream::start(&pki, None, true).await;
    let mut untrusting = http_sink(up.addr, TlsClientFiles::default(), token(dir.path())).unwrap();
    assert_eq!(
        send(&mut untrusting, "c-1", &recs).await,
        "retry connect None"
    );
    assert!(up.seen.lock().unwrap().is_empty());

    // A server that closes every connection after one answer: each batch reconnects.
    let up = Upstream::start(&pki, None, false).await;
    let mut closing = http_sink(up.addr, trust(dir.path(), &pki), token(dir.path())).unwrap();
    for id in ["c-2", "c-3", "c-4"] {
        assert_eq!(send(&mut closing, id, &recs).await, "ok");
    }
    assert_eq!(up.accepted(), 3);

    // Unreadable TLS files fail the build, naming the sink and the file.
    let missing = TlsClientFiles {
        ca_file: Some(dir.path().join("nope.pem")),
        client_cert: None,
    };
    let err = http_sink(up.addr, missing, token(dir.path()))
        .err()
        .unwrap();
    assert!(err.contains("sink up") && err.contains("nope.pem"), "{err}");
}
