//! The anomaly engine in the request path: an attack in a beacon field or a scanner's user agent is refused
//! with 403 `anomaly_detected`, counted by family, and nothing of the request is stored; the design's sample
//! event passes; detect mode refuses nothing and counts. (Detection and false-positive rates over the
//! corpora are `tests/anomaly_corpus.rs`.)

mod common;

use common::{dump, event, metric, Client, Fixture, Proto};
use serde_json::json;

const ENFORCE: &str = "[guard.anomaly]\nmode = \"enforce\"\n";

#[tokio::test]
async fn attacks_are_refused_and_nothing_is_stored() {
    let fx = Fixture::new(ENFORCE);
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    let mut sqli = event("attack-1");
    sqli["cart"]["items"][0]["name"] = json!("x' UNION SELECT password FROM users--");
    let mut xss = event("attack-2");
    xss["customer"]["first_name"] = json!("<script>alert(document.cookie)</script>");
    for (what, body) in [("sqli", sqli), ("xss", xss)] {
        let reply = c.post("application/json", body.to_string()).await;
        assert_eq!(reply.status, 403, "{what}");
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["error"], "anomaly_detected", "{what}");
    }
    assert!(
        metric(
            &running,
            "tollgate_anomaly_hits_total",
            &[("family", "sqli")]
        ) >= 1.0
    );
    assert!(
        metric(
            &running,
            "tollgate_anomaly_hits_total",
            &[("family", "xss")]
        ) >= 1.0
    );
    assert_eq!(metric(&running, "tollgate_anomaly_blocked_total", &[]), 2.0);
    assert_eq!(
        metric(
            &running,
            "tollgate_rejections_total",
            &[("reason", "anomaly_detected")]
        ),
        2.0
    );
    let sample = std::fs::read("tests/fixtures/sample_event.json").unwrap();
    assert_eq!(
        c.post("application/json", sample).await.status,
        204,
        "the sample event is clean"
    );
    running.stop().await.unwrap();
    let stored: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !stored.iter().any(|id| id.starts_with("attack")),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 1);
}

#[test]
fn a_scanner_user_agent_is_refused_with_curl() {
    let fx = Fixture::new(ENFORCE);
    let mut p = common::proc::Proc::start(&fx.config_path());
    let post = |ua: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(fx.dir.path().join("tls/ca.pem"))
            .args([
                "-H",
                "content-type: application/json",
                "-H",
                "Origin: https://shop.example",
                "-A",
                ua,
            ])
            .args(["--data-binary", "@tests/fixtures/sample_event.json"])
            .arg(format!("https://localhost:{}/v1/events", p.public.port()))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(post("sqlmap/1.7.2#stable (https://sqlmap.org)"), "403");
    assert_eq!(post("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"), "204");
    p.signal("TERM");
    assert!(p.wait_exit().success());
}

#[tokio::test]
async fn detect_mode_counts_and_refuses_nothing() {
    let fx = Fixture::new("[guard.anomaly]\nmode = \"detect\"\n");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let mut sqli = event("attack-1");
    sqli["cart"]["items"][0]["name"] = json!("1' OR '1'='1");
    assert_eq!(
        c.post("application/json", sqli.to_string()).await.status,
        204
    );
    assert!(
        metric(
            &running,
            "tollgate_anomaly_hits_total",
            &[("family", "sqli")]
        ) >= 1.0
    );
    assert_eq!(metric(&running, "tollgate_anomaly_blocked_total", &[]), 0.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn duplicate_keys_and_abnormal_headers_are_scored_together() {
    let fx = Fixture::new(ENFORCE);
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    // `site` twice: serde_json keeps the last, another parser the first; an error-level protocol fact (4)
    let body = event("dup-1")
        .to_string()
        .replacen("{", r#"{"site":"demo","#, 1);
    let send = |body: String, twice: bool| {
        let mut req = common::request("POST", "/v1/events", Some("application/json"), body.into());
        if twice {
            let h = req.headers_mut();
            h.append("user-agent", "a".parse().unwrap());
            h.append("user-agent", "b".parse().unwrap());
        }
        req
    };
    assert_eq!(
        c.send(send(body.clone(), false)).await.status,
        204,
        "below the threshold alone"
    );
    let protocol = || {
        metric(
            &running,
            "tollgate_anomaly_hits_total",
            &[("family", "protocol")],
        )
    };
    assert_eq!(protocol(), 1.0);
    // with a repeated singleton header (warning, 3) it reaches 7
    let reply = c.send(send(body.replace("dup-1", "dup-2"), true)).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "anomaly_detected");
    assert_eq!(protocol(), 3.0);
    assert_eq!(
        metric(
            &running,
            "tollgate_guard_decisions_total",
            &[
                ("guard", "anomaly"),
                ("family", "protocol"),
                ("mode", "enforce")
            ]
        ),
        1.0
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn family_modes_and_exclusions_from_the_config_file() {
    let fx = Fixture::new(
        "[guard.anomaly]\n[guard.anomaly.families]\nxss = \"detect\"\n\
         [[guard.anomaly.exclusions]]\ntenant = \"demo\"\nfield = \"cart.items\"\nfamily = \"sqli\"\n",
    );
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let post = |id: &str, at: &str, payload: &str| {
        let mut e = event(id);
        match at {
            "item" => e["cart"]["items"][0]["name"] = json!(payload),
            _ => e["customer"]["first_name"] = json!(payload),
        }
        e.to_string()
    };
    let sqli = "x' UNION SELECT password FROM users--";
    let xss = "<script>alert(document.cookie)</script>";
    let cases = [
        (
            "e1",
            "item",
            sqli,
            204,
            "sqli excluded under cart.items for demo",
        ),
        ("e2", "name", sqli, 403, "sqli elsewhere still blocks"),
        ("e3", "name", xss, 204, "xss only detected"),
    ];
    for (id, at, payload, want, why) in cases {
        let status = c
            .post("application/json", post(id, at, payload))
            .await
            .status;
        assert_eq!(status, want, "{why}");
    }
    let detected = metric(
        &running,
        "tollgate_guard_decisions_total",
        &[("guard", "anomaly"), ("family", "xss"), ("mode", "detect")],
    );
    assert_eq!(detected, 1.0, "the would-be refusal is counted");
    running.stop().await.unwrap();
}

#[test]
fn bad_family_settings_are_config_errors() {
    let fx = Fixture::new(
        "[guard.anomaly]\n[guard.anomaly.families]\nsqlx = \"detect\"\nxss = \"sometimes\"\n\
         [[guard.anomaly.exclusions]]\nfamily = \"nope\"\n",
    );
    let (code, out) = common::check(&fx.config_path());
    assert_eq!(code, Some(1), "{out}");
    for path in [
        "guard.anomaly.families.sqlx",
        "guard.anomaly.families.xss",
        "guard.anomaly.exclusions[0].family",
    ] {
        assert!(out.contains(path), "{path} in {out}");
    }
}
