//! The browser-facing routes through curl against the real binary: `beacon.js` (type, ETag and 304, gzip,
//! the 1,024-byte gzip budget, the SRI hash `tollgate snippet` prints), CORS on the event route (preflight
//! for an allowed and a foreign origin, without an origin, with a header not allowed; the grant on a POST's
//! answer) and the pixel (valid, bad base64, oversized, foreign Referer). The whole path in a real browser
//! is `tests/browser.rs`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use common::proc::Proc;
use common::{dump, event, Fixture};

const SHOP: &str = "https://shop.example";

/// curl with the fixture's CA against the public listener; returns (status, headers lower-cased, body).
fn curl(fx: &Fixture, p: &Proc, path: &str, args: &[&str]) -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-D"])
        .arg(&head)
        .arg("--cacert")
        .arg(fx.dir.path().join("tls/ca.pem"))
        .args(args)
        .arg(format!("https://localhost:{}{path}", p.public.port()))
        .output()
        .unwrap();
    let headers = std::fs::read_to_string(&head)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("000")
        .to_owned();
    (status, headers, out.stdout)
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn gzip9_len(bytes: &[u8]) -> usize {
    let mut child = Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout.len()
}

#[test]
fn beacon_js_is_served_small_cached_and_pinned_by_the_snippet() {
    let fx = Fixture::new("");
    let mut p = Proc::start(&fx.config_path());
    let (status, headers, body) = curl(&fx, &p, "/v1/beacon.js", &[]);
    assert_eq!(status, "200");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(header(&headers, "cache-control")
        .unwrap()
        .contains("max-age="));
    let js = String::from_utf8(body.clone()).unwrap();
    assert!(
        js.contains("sendBeacon") && js.contains("globalPrivacyControl"),
        "{js}"
    );
    let gz = gzip9_len(&body);
    println!(
        "beacon.js: {} bytes, {gz} bytes with gzip -9 (budget 1024)",
        body.len()
    );
    assert!(gz <= 1024, "{gz} bytes gzipped");

    let etag = header(&headers, "etag").unwrap().to_owned();
    let (status, _, body304) = curl(
        &fx,
        &p,
        "/v1/beacon.js",
        &["-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!((status.as_str(), body304.len()), ("304", 0));
    let (status, headers, gzipped) =
        curl(&fx, &p, "/v1/beacon.js", &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(status, "200");
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(gzipped.len() < body.len());

    // The snippet's integrity is the SHA-384 of exactly the bytes served.
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["snippet", "-c"])
        .arg(fx.config_path())
        .args(["--site", "demo", "--url", "https://track.shop.example"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let snippet = String::from_utf8(out.stdout).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &body);
    let want = format!(
        "integrity=\"sha384-{}\"",
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    assert!(snippet.contains(&want), "{snippet}");
    assert!(snippet.contains("src=\"https://track.shop.example/v1/beacon.js\""));
    assert!(snippet.contains(r#""endpoint":"https://track.shop.example/v1/events""#));
    let bad = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["snippet", "-c"])
        .arg(fx.config_path())
        .args(["--site", "nope"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    p.signal("TERM");
    assert!(p.wait_exit().success());
}

#[test]
fn cors_grants_allowed_origins_only() {
    let fx = Fixture::new("");
    let mut p = Proc::start(&fx.config_path());
    let preflight = |origin: Option<&str>, headers: &str| {
        let mut args = vec![
            "-X".to_owned(),
            "OPTIONS".into(),
            "-H".into(),
            "Access-Control-Request-Method: POST".into(),
            "-H".into(),
            format!("Access-Control-Request-Headers: {headers}"),
        ];
        if let Some(o) = origin {
            args.extend(["-H".into(), format!("Origin: {o}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&fx, &p, "/v1/events", &args)
    };
    let (status, h, _) = preflight(Some(SHOP), "content-type");
    assert_eq!(status, "204");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(SHOP));
    assert_eq!(header(&h, "access-control-allow-methods"), Some("post"));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("7200"));
    assert!(header(&h, "vary").unwrap().contains("origin"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);
    for (origin, asked, why) in [
        (
            Some("https://evil.example"),
            "content-type",
            "foreign origin",
        ),
        (None, "content-type", "no origin"),
        (Some(SHOP), "content-type, x-secret", "a header not allowed"),
    ] {
        let (status, h, body) = preflight(origin, asked);
        assert_eq!(status, "403", "{why}");
        assert_eq!(header(&h, "access-control-allow-origin"), None, "{why}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["error"].as_str().unwrap().starts_with("cors_"),
            "{why}: {v}"
        );
    }
    let post = |origin: &str, id: &str| {
        let body = event(id).to_string();
        curl(
            &fx,
            &p,
            "/v1/events",
            &[
                "-H",
                "content-type: text/plain",
                "-H",
                &format!("Origin: {origin}"),
                "--data-binary",
                &body,
            ],
        )
    };
    let (status, h, _) = post(SHOP, "c1");
    assert_eq!(status, "204");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(SHOP));
    let (status, h, body) = post("https://evil.example", "c2");
    assert_eq!(status, "403");
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    assert!(String::from_utf8_lossy(&body).contains("origin_not_allowed"));
    p.signal("TERM");
    assert!(p.wait_exit().success());
    let ids: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["c1"]);
}

#[test]
fn the_pixel_runs_the_same_pipeline() {
    // A small body bound, so an oversized `d` still fits in a request line (headers are bounded apart).
    let fx = Fixture::new("[limits]\nmax_body_bytes = 4096\n");
    let mut p = Proc::start(&fx.config_path());
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let get = |d: &str, referer: &str| {
        curl(
            &fx,
            &p,
            &format!("/v1/p.gif?d={d}"),
            &["-H", &format!("Referer: {referer}")],
        )
    };
    let (status, h, body) = get(&b64(&event("px1").to_string()), "https://shop.example/cart");
    assert_eq!(status, "200");
    assert_eq!(header(&h, "content-type"), Some("image/gif"));
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
    assert_eq!(&body[..6], b"GIF89a");
    let reason = |r: (String, String, Vec<u8>)| {
        let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap_or_default();
        (r.0, v["error"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        reason(get("%%%", "https://shop.example/")),
        ("400".into(), "invalid_value".into())
    );
    assert_eq!(
        reason(get(&b64("{\"site\":"), "https://shop.example/")),
        ("400".into(), "invalid_json".into())
    );
    let big = "A".repeat(8_000);
    assert_eq!(
        reason(get(&big, "https://shop.example/")),
        ("413".into(), "body_too_large".into())
    );
    assert_eq!(
        reason(get(
            &b64(&event("px2").to_string()),
            "https://evil.example/"
        )),
        ("403".into(), "origin_not_allowed".into())
    );
    p.signal("TERM");
    assert!(p.wait_exit().success());
    let stored = dump(&fx);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["event_id"], "px1");
    assert!(
        !stored[0].to_string().contains("Shopper.px1"),
        "minimized: {}",
        stored[0]
    );
}

#[test]
fn the_script_path_moves_with_the_config() {
    let fx = Fixture::new("[beacon]\nscript_path = \"/assets/t-42.js\"\n");
    let mut p = Proc::start(&fx.config_path());
    assert_eq!(curl(&fx, &p, "/assets/t-42.js", &[]).0, "200");
    assert_eq!(curl(&fx, &p, "/v1/beacon.js", &[]).0, "404");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["snippet", "-c"])
        .arg(fx.config_path())
        .args(["--site", "demo", "--url", "https://t.example"])
        .output()
        .unwrap();
    let snippet = String::from_utf8(out.stdout).unwrap();
    assert!(
        snippet.contains("src=\"https://t.example/assets/t-42.js\""),
        "{snippet}"
    );
    p.signal("TERM");
    assert!(p.wait_exit().success());
}
