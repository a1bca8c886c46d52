//! Every kind of bad request gets its documented status, a JSON reason naming the field, a metric, and leaves
//! nothing in the spool.

mod common;

use bytes::Bytes;
use common::{dump, event, request, Client, Fixture, Proto};
use serde_json::json;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    origin: Option<&'static str>,
    body: Bytes,
    status: u16,
    reason: &'static str,
    field: Option<&'static str>,
}

fn case(
    name: &'static str,
    body: impl Into<Bytes>,
    status: u16,
    reason: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        method: "POST",
        path: "/v1/events",
        content_type: Some("application/json"),
        origin: None,
        body: body.into(),
        status,
        reason,
        field,
    }
}

fn deep(levels: usize) -> String {
    let mut inner = json!({"x": 1});
    for _ in 0..levels {
        inner = json!({"n": inner});
    }
    let mut ev = event("deep");
    ev["extra"] = inner;
    ev.to_string()
}

fn cases() -> Vec<Case> {
    let with = |k: &str, v: serde_json::Value| {
        let mut e = event("x");
        e[k] = v;
        e.to_string()
    };
    let mut no_id = event("x");
    no_id.as_object_mut().unwrap().remove("event_id");
    let too_many: Vec<_> = (0..101).map(|i| event(&format!("t{i}"))).collect();
    let mut bad_utf8 = br#"{"site":"demo","type":"page_view","event_id":""#.to_vec();
    bad_utf8.extend_from_slice(b"\xc3\x28\"}");
    vec![
        case("invalid json", "{\"site\": ", 400, "invalid_json", None),
        case("invalid utf-8", bad_utf8, 400, "invalid_utf8", None),
        case(
            "wrong type site",
            with("site", json!(5)),
            400,
            "wrong_type",
            Some("site"),
        ),
        case(
            "wrong type nested",
            with("customer", json!({"age": "old"})),
            400,
            "wrong_type",
            Some("customer.age"),
        ),
        case(
            "wrong type item",
            with("cart", json!({"items": [{"price": "cheap"}]})),
            400,
            "wrong_type",
            Some("cart.items[0].price"),
        ),
        case(
            "missing event_id",
            no_id.to_string(),
            400,
            "missing_field",
            Some("event_id"),
        ),
        case(
            "one bad event in a batch",
            json!([event("ok-1"), {"site": "demo", "type": "page_view"}]).to_string(),
            400,
            "missing_field",
            Some("events[1].event_id"),
        ),
        case(
            "unknown type",
            with("type", json!("teleport")),
            400,
            "invalid_value",
            Some("type"),
        ),
        case(
            "oversized body",
            vec![b' '; 70 * 1024],
            413,
            "body_too_large",
            None,
        ),
        case(
            "too many events",
            json!(too_many).to_string(),
            413,
            "too_many_events",
            None,
        ),
        case(
            "too deep",
            deep(20),
            400,
            "too_deep",
            Some("extra.n.n.n.n.n.n.n.n.n.n.n.n.n.n.n"),
        ),
        case(
            "string too long",
            with("page_url", json!("a".repeat(3000))),
            400,
            "string_too_long",
            Some("page_url"),
        ),
        case("empty batch", "[]", 400, "empty_batch", None),
        case(
            "unknown site",
            with("site", json!("nobody")),
            403,
            "unknown_site",
            Some("site"),
        ),
        Case {
            origin: Some("https://evil.example"),
            ..case(
                "foreign origin",
                json!(event("o")).to_string(),
                403,
                "origin_not_allowed",
                None,
            )
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..case(
                "form content type",
                json!(event("f")).to_string(),
                415,
                "unsupported_media_type",
                None,
            )
        },
        Case {
            content_type: None,
            ..case(
                "no content type",
                json!(event("f")).to_string(),
                415,
                "unsupported_media_type",
                None,
            )
        },
        Case {
            method: "GET",
            ..case("wrong method", "", 405, "method_not_allowed", None)
        },
        Case {
            method: "PUT",
            ..case(
                "put",
                json!(event("p")).to_string(),
                405,
                "method_not_allowed",
                None,
            )
        },
        Case {
            path: "/v1/nope",
            ..case(
                "wrong path",
                json!(event("n")).to_string(),
                404,
                "not_found",
                None,
            )
        },
    ]
}

async fn table(proto: Proto) {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let mut client = Client::connect(running.public_addr, &fx.ca_pem, proto).await;
    let metrics = running.ctx.metrics.clone();
    for c in cases() {
        let before = metrics.rejections.with_label_values(&[c.reason]).get();
        let mut req = request(c.method, c.path, c.content_type, c.body.clone());
        if let Some(o) = c.origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        // Some refusals close an HTTP/1.1 connection whose body was not read: use a fresh one each time.
        let r = client.send(req).await;
        let body = r.json();
        assert_eq!(r.status.as_u16(), c.status, "{}: {body}", c.name);
        assert_eq!(body["error"], c.reason, "{}: {body}", c.name);
        assert_eq!(body["field"].as_str(), c.field, "{}: {body}", c.name);
        assert!(
            r.headers.contains_key("strict-transport-security"),
            "{}",
            c.name
        );
        assert_eq!(
            metrics.rejections.with_label_values(&[c.reason]).get(),
            before + 1,
            "{}: metric",
            c.name
        );
        if c.status == 405 {
            assert!(r.headers.contains_key("allow"), "{}", c.name);
        }
        client = Client::connect(running.public_addr, &fx.ca_pem, proto).await;
    }
    running.stop().await.unwrap();
    assert!(dump(&fx).is_empty(), "a refused request stored something");
}

#[tokio::test]
async fn bad_inputs_over_http1() {
    table(Proto::H1).await;
}

#[tokio::test]
async fn bad_inputs_over_http2() {
    table(Proto::H2).await;
}
