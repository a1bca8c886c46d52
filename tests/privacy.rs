//! The privacy engine through the real server: opt-out signals, suppression, key rotation on reload, GeoIP
//! from a real .mmdb file, strict unknown-field mode, and secrets that never surface.

mod common;

use std::net::IpAddr;
use std::process::Command;

use common::{dump, event, Client, Fixture, Proto};
use serde_json::{json, Value};
use tollgate::event::minimize::geo::Geo;
use tollgate::event::{validate, ClientMeta, Context, Outcome, Report};

fn purchase(id: &str, email: &str) -> Value {
    json!({
        "site": "demo", "type": "purchase", "event_id": id,
        "customer": {"email": email, "first_name": "Ann", "age": 30},
        "transaction": {"id": "order-991", "total": 10.0, "currency": "EUR"},
        "shipping": {"first_name": "Ann", "last_name": "Lee", "street": "1 Main St", "postal_code": "1012 AB"}
    })
}

/// Any key in the record that carries an identifier, hashed or not.
fn identifiers(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let id_key = k.ends_with("_hash")
                    || k == "ip_network"
                    || ["email", "first_name", "last_name", "street"].contains(&k.as_str());
                if id_key || (k == "transaction" && v.get("id").is_some()) {
                    out.push(k.clone());
                }
                identifiers(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| identifiers(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn gpc_and_dnt_requests_store_no_identifiers() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    for (id, header) in [
        ("plain", None),
        ("gpc", Some(("sec-gpc", "1"))),
        ("dnt", Some(("dnt", "1"))),
        ("gpc0", Some(("sec-gpc", "0"))),
    ] {
        let mut req = common::request(
            "POST",
            "/v1/events",
            Some("application/json"),
            purchase(id, "ann@example.com").to_string().into(),
        );
        if let Some((name, value)) = header {
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        assert_eq!(c.send(req).await.status, 204);
    }
    let mut declined = purchase("consent-false", "ann@example.com");
    declined["consent"] = json!(false);
    assert_eq!(
        c.post("application/json", declined.to_string())
            .await
            .status,
        204
    );
    let strict = running
        .ctx
        .metrics
        .pii
        .strict
        .with_label_values(&["demo"])
        .get();
    running.stop().await.unwrap();

    let records = dump(&fx);
    for r in &records {
        let mut ids = Vec::new();
        identifiers(r, &mut ids);
        match r["event_id"].as_str().unwrap() {
            "plain" | "gpc0" => assert_eq!(ids, ["email_hash", "transaction"], "{r}"),
            _ => assert!(ids.is_empty(), "opted out but stored {ids:?}: {r}"),
        }
        assert_eq!(
            r["customer"]["age_band"], "25-34",
            "non-identifying data stays: {r}"
        );
    }
    assert_eq!(records.len(), 5);
    assert_eq!(strict, 3);
}

fn suppress_cli(config: &std::path::Path, email: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["suppress", "-c"])
        .arg(config)
        .args(["--site", "demo", email])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn suppress_entries_match_a_development_key_created_on_first_use() {
    let fx = Fixture::new("");
    fx.edit_config(|t| {
        t.replace(
            "file = \"demo.key\"",
            "file = \"fresh.key\"\ngenerate_if_missing = true",
        )
    });
    let entry = suppress_cli(&fx.config_path(), "a@b.co");
    let secret =
        std::fs::read_to_string(fx.dir.path().join("fresh.key")).expect("key written by suppress");
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&secret.trim()[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        entry.trim(),
        tollgate::keys::HmacKey::new("k1", &bytes).tag(b"a@b.co")
    );
}

#[tokio::test]
async fn suppressed_subjects_are_dropped_at_the_edge() {
    let fx = Fixture::new("");
    let entry = suppress_cli(&fx.config_path(), "  Forget.Me@Example.com ");
    assert!(
        entry.starts_with("k1:") && entry.trim().len() == 67,
        "{entry}"
    );
    std::fs::write(
        fx.dir.path().join("suppress.txt"),
        format!("# erasure requests\n{entry}"),
    )
    .unwrap();
    fx.edit_config(|t| {
        t.replace(
            "active_key = \"k1\"",
            "active_key = \"k1\"\nsuppression_file = \"suppress.txt\"",
        )
    });

    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let body = json!([
        purchase("forgotten", "forget.me@example.com"),
        purchase("kept", "someone@example.com")
    ]);
    assert_eq!(
        c.post("application/json", body.to_string()).await.status,
        204
    );
    let suppressed = running
        .ctx
        .metrics
        .pii
        .suppressed
        .with_label_values(&["demo"])
        .get();
    running.stop().await.unwrap();
    let ids: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["kept"]);
    assert_eq!(suppressed, 1);
}

use common::admin_call as admin;

#[tokio::test]
async fn key_rotation_takes_effect_on_reload() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let admin_addr = running.admin_addr.unwrap();
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(
        c.post("application/json", event("before").to_string())
            .await
            .status,
        204
    );

    // A broken config is refused and the running one keeps serving.
    let good = std::fs::read_to_string(fx.config_path()).unwrap();
    std::fs::write(
        fx.config_path(),
        good.replace("active_key = \"k1\"", "active_key = \"k7\""),
    )
    .unwrap();
    let (status, body) = admin(admin_addr, "POST", "/admin/reload").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("tenants[0].active_key"), "{body}");

    // Listen addresses only change on restart.
    std::fs::write(
        fx.config_path(),
        good.replace("redirect = \"127.0.0.1:0\"", "redirect = \"127.0.0.1:1\""),
    )
    .unwrap();
    let (status, body) = admin(admin_addr, "POST", "/admin/reload").await;
    assert_eq!(status, 409);
    assert!(
        body.contains("only change on restart") && body.contains("listen"),
        "{body}"
    );

    // Rotation: a second key, made active.
    std::fs::write(fx.dir.path().join("k2.key"), "a7".repeat(32)).unwrap();
    let rotated = good.replace("active_key = \"k1\"", "active_key = \"k2\"")
        + "[[tenants.keys]]\nid = \"k2\"\nfile = \"k2.key\"\n";
    std::fs::write(fx.config_path(), rotated).unwrap();
    let (status, body) = admin(admin_addr, "POST", "/admin/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        c.post("application/json", event("after").to_string())
            .await
            .status,
        204
    );
    let reloads = &running.ctx.metrics.config_reloads;
    assert_eq!(
        (
            reloads.with_label_values(&["applied"]).get(),
            reloads.with_label_values(&["rejected"]).get()
        ),
        (1, 2)
    );
    running.stop().await.unwrap();

    let records = dump(&fx);
    let hash = |i: usize| {
        records[i]["customer"]["email_hash"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(hash(0).starts_with("k1:"), "{}", hash(0));
    assert!(hash(1).starts_with("k2:"), "{}", hash(1));
    let k2 = tollgate::keys::HmacKey::new("k2", &[0xa7; 32]);
    assert_eq!(hash(1), k2.tag(b"shopper.after@example.com"));
}

#[tokio::test]
async fn unknown_fields_are_refused_in_strict_mode() {
    let fx = Fixture::new("");
    fx.edit_config(|t| {
        t.replace(
            "active_key = \"k1\"",
            "active_key = \"k1\"\nunknown_fields = \"reject\"",
        )
    });
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let mut ev = event("x");
    ev["customer"]["phone"] = json!("+31 6 1234 5678");
    let r = c
        .post("application/json", json!([event("ok"), ev]).to_string())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unknown_field");
    assert_eq!(r.json()["field"], "events[1].customer.phone");
    running.stop().await.unwrap();
    assert!(dump(&fx).is_empty());
}

#[test]
fn geoip_country_from_a_real_mmdb_and_never_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    let db = common::mmdb::build(
        common::mmdb::Layout::Flat,
        &[("81.2.69.0/24", "GB"), ("2001:db8:100::/40", "NL")],
    );
    std::fs::write(&path, db).unwrap();
    let geo = Geo::open(&path).unwrap();
    let tenant_fx = Fixture::new("");
    let snap = tollgate::config::load(&tenant_fx.config_path(), tollgate::config::LoadMode::Check)
        .unwrap();
    let tenant = &snap.tenants["demo"];
    for (ip, country) in [
        ("81.2.69.160", Some("GB")),
        ("2001:db8:100::9", Some("NL")),
        ("192.0.2.9", None),
    ] {
        let client = ClientMeta {
            ip: ip.parse::<IpAddr>().unwrap(),
            user_agent: None,
            opted_out: false,
        };
        let ctx = Context {
            tenant,
            client: &client,
            geo: Some(&geo),
            received_ms: 0,
        };
        let Value::Object(object) = event("g") else {
            unreachable!()
        };
        let valid = validate(tollgate::event::RawEvent::for_tests(object)).unwrap();
        let Outcome::Keep(m) = tollgate::event::minimize(valid, &ctx, &mut Report::default())
        else {
            panic!()
        };
        let text = String::from_utf8(m.to_record()).unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            record["client"]["country"].as_str(),
            country,
            "{ip}: {text}"
        );
        assert!(!text.contains(ip), "{ip} stored: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_metrics() {
    let fx = Fixture::new("");
    let mut p = common::proc::Proc::start(&fx.config_path());
    let mut c = Client::connect(p.public, &fx.ca_pem, Proto::H1).await;
    assert_eq!(
        c.post("application/json", event("s").to_string())
            .await
            .status,
        204
    );
    assert_eq!(c.post("application/json", "{broken").await.status, 400);
    let (status, metrics) = admin(p.admin.unwrap(), "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("tollgate_pii_actions_total{action=\"hash\",field=\"customer.email\",tenant=\"demo\"} 1"), "{metrics}");
    let (status, _) = admin(p.admin.unwrap(), "POST", "/admin/reload").await;
    assert_eq!(status, 200);
    p.signal("TERM");
    assert!(tokio::task::block_in_place(|| p.wait_exit()).success());
    let logs = p.stderr_text();
    assert!(logs.contains("config reloaded"), "{logs}");
    for text in [&metrics, &logs] {
        assert!(!text.contains("5a5a5a"), "key material leaked: {text}");
        assert!(
            !text.contains("shopper.s@example.com") && !text.contains("Shopper"),
            "PII leaked: {text}"
        );
    }
}

#[test]
fn secrets_never_reach_check_output_or_errors() {
    let fx = Fixture::new("");
    let secret = "5a".repeat(32);
    // a config that loads the secret, plus one mistake elsewhere
    fx.edit_config(|t| t + "[limits]\nmax_events = 0\n");
    let (code, all) = common::check(&fx.config_path());
    assert_eq!(code, Some(1));
    assert!(!all.contains(&secret) && !all.contains("5a5a"), "{all}");
    // a key file with the wrong length: the error names the file, not its content
    let short = "c3".repeat(20);
    std::fs::write(fx.dir.path().join("demo.key"), &short).unwrap();
    let (_, all) = common::check(&fx.config_path());
    assert!(all.contains("demo.key") && !all.contains("c3c3"), "{all}");
}

#[test]
fn profile_mistakes_are_config_errors_with_their_paths() {
    let fx = Fixture::new("");
    fx.edit_config(|t| t
        .replace("active_key = \"k1\"", "active_key = \"k1\"\nstrict_profile = \"lax\"")
        .replace(
            "[[tenants]]",
            "[profiles.lax.fields]\n\"customer.email\" = \"hash\"\n\"customer.emial\" = \"drop\"\n\"customer.age\" = \"hash\"\n\"plan.name\" = \"hsah\"\n\n[[tenants]]",
        ));
    let (code, out) = common::check(&fx.config_path());
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "profiles.lax.fields.\"customer.emial\": unknown field",
        "profiles.lax.fields.\"customer.age\": action \"hash\" does not apply",
        "profiles.lax.fields.\"plan.name\": unknown action \"hsah\"",
        "tenants[0].strict_profile: profile \"lax\" cannot be a strict profile: customer.email",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
}

/// What Japanese and Chinese input methods type: full-width digits, letters, `＠` and the ideographic space.
/// The detectors read the NFKC form, so these are stored redacted; a full-width e-mail hashes like its ASCII
/// form, and `tollgate suppress` prints that same hash; `truncate` redacts before it cuts.
#[tokio::test]
async fn compatibility_forms_and_truncate_are_stored_redacted() {
    let fx = Fixture::new("");
    let cli = suppress_cli(&fx.config_path(), "ＡＮＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ");
    fx.edit_config(|t| {
        t.replace(
            "[[tenants]]",
            "[profiles.default.fields]\n\"plan.id\" = \"truncate:14\"\n\n[[tenants]]",
        )
    });
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let mut free_text = purchase("wide-text", "someone@example.com");
    free_text["plan"] = json!({
        "id": "mail ann@example.com",
        "name": "カード番号：４１１１　１１１１　１１１１　１１１１、ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ まで",
    });
    free_text["cart"] = json!({"value": 10.0, "currency": "EUR", "items": [
        {"sku": "ｓｋｕ－４１１１１１１１１１１１１１１１", "name": "電話 ０２０ ７９４６ ０９５８", "qty": 1, "price": 10.0}
    ]});
    let body = json!([
        free_text,
        purchase("wide-mail", "\u{3000}ＡＮＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ"),
        purchase("ascii-mail", "ann@example.com"),
    ]);
    assert_eq!(
        c.post("application/json", body.to_string()).await.status,
        204
    );
    running.stop().await.unwrap();

    let records = dump(&fx);
    assert_eq!(records.len(), 3);
    let by_id = |id: &str| records.iter().find(|r| r["event_id"] == id).unwrap();
    let text = by_id("wide-text");
    assert_eq!(
        text["plan"]["id"], "mail ",
        "truncate:14 keeps no partial address: {text}"
    );
    assert_eq!(
        text["plan"]["name"],
        "カード番号:[redacted:card]、[redacted:email] まで"
    );
    assert_eq!(text["cart"]["items"][0]["sku"], "sku-[redacted:card]");
    assert_eq!(text["cart"]["items"][0]["name"], "電話 [redacted:phone]");
    let stored = json!([text["plan"], text["cart"]["items"]]).to_string();
    let digits: String = stored.chars().filter(char::is_ascii_digit).collect();
    for leak in [
        "4111111111111111",
        "02079460958",
        "@",
        "＠",
        "ann",
        "ａｎｎ",
        "４",
        "０",
    ] {
        assert!(
            !stored.contains(leak) && !digits.contains(leak),
            "{leak} in {stored}"
        );
    }

    let hash = |id: &str| {
        by_id(id)["customer"]["email_hash"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(hash("wide-mail"), hash("ascii-mail"));
    assert_eq!(
        cli.trim(),
        hash("ascii-mail"),
        "tollgate suppress hashes the same"
    );
}
