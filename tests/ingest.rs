//! A browser-style POST over real TLS becomes a minimized, durable record, over HTTP/1.1 and HTTP/2.

mod common;

use common::{dump, event, Client, Fixture, Proto, NOW_MS};
use serde_json::json;

async fn accepts_all_body_shapes(proto: Proto) {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, proto).await;

    let single = json!(event("single-1"));
    let array = json!([event("array-1"), event("array-2")]);
    let wrapped = json!({"events": [event("wrapped-1"), event("wrapped-2"), event("wrapped-3")]});
    for (ct, body) in [
        ("application/json", single),
        ("text/plain;charset=UTF-8", array),
        ("application/json", wrapped),
    ] {
        let r = c.post(ct, body.to_string()).await;
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.headers.get("strict-transport-security").unwrap(),
            "max-age=63072000; includeSubDomains"
        );
    }
    running.stop().await.unwrap();

    let records = dump(&fx);
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "single-1",
            "array-1",
            "array-2",
            "wrapped-1",
            "wrapped-2",
            "wrapped-3"
        ]
    );
    let key = tollgate::keys::HmacKey::new("k1", &[0x5a; 32]);
    for r in &records {
        let text = r.to_string();
        let id = r["event_id"].as_str().unwrap();
        let expected = key.tag(format!("shopper.{id}@example.com").as_bytes());
        assert_eq!(r["customer"]["email_hash"], expected);
        assert_eq!(r["received_ms"], NOW_MS);
        for leaked in [
            "@",
            "Shopper",
            "shopper",
            "Ann",
            "127.0.0.1",
            "email=",
            "frag",
        ] {
            assert!(!text.contains(leaked), "{leaked:?} stored in {text}");
        }
        assert!(r.get("ip").is_none() && r.get("client_ip").is_none());
    }
}

#[tokio::test]
async fn http1_single_array_wrapped_are_stored_minimized() {
    accepts_all_body_shapes(Proto::H1).await;
}

#[tokio::test]
async fn http2_single_array_wrapped_are_stored_minimized() {
    accepts_all_body_shapes(Proto::H2).await;
}

#[tokio::test]
async fn many_concurrent_http2_streams_all_land() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let req = common::request(
            "POST",
            "/v1/events",
            Some("application/json"),
            json!(event(&format!("c-{i}"))).to_string().into(),
        );
        let mut sender = c.h2_sender();
        tasks.push(tokio::spawn(async move {
            sender.send_request(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    running.stop().await.unwrap();
    let mut ids: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn healthz_and_metrics() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let r = c
        .send(common::request("GET", "/healthz", None, Default::default()))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains_key("strict-transport-security"));
    c.post("application/json", json!(event("m-1")).to_string())
        .await;
    c.post("application/json", "{").await;

    // the admin listener serves Prometheus text on loopback
    let admin = running.admin_addr.unwrap();
    let text = plain_get(admin, "/metrics").await;
    assert!(
        text.contains("tollgate_events_accepted_total{tenant=\"demo\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tollgate_rejections_total{reason=\"invalid_json\"} 1"),
        "{text}"
    );
    assert!(text.contains("tollgate_spool_commits_total"), "{text}");
    running.stop().await.unwrap();
}

async fn plain_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
