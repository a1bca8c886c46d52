//! The storage tier end to end over TLS with the embedded file sink: acknowledged events land in
//! `data/out/<site>/<day>/<HH>-<n>.ndjson` minimized and exactly once, and a mixed run of an EU and a US
//! tenant keeps each tenant's events on its own region's sink.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{event, sink_files, Client, Fixture, Proto};
use serde_json::json;

fn ids(files: &BTreeMap<String, Vec<serde_json::Value>>) -> Vec<String> {
    let mut ids: Vec<String> = files
        .values()
        .flatten()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Polls until `done` holds, for at most 20 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_reach_the_file_sink_minimized_and_once() {
    let fx = Fixture::new("[[sinks]]\nname = \"file\"\ntype = \"file\"\nbatch_age_ms = 20\n");
    let running = fx.start().await;
    let mut acked = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = Client::connect(running.public_addr, &fx.ca_pem, proto).await;
        for i in 0..20 {
            let ids = [format!("{proto:?}-{i}-a"), format!("{proto:?}-{i}-b")];
            let body = json!([event(&ids[0]), event(&ids[1])]).to_string();
            assert_eq!(c.post("application/json", body).await.status, 204);
            acked.extend(ids);
        }
    }
    acked.sort();
    let out = fx.dir.path().join("data/out");
    wait_until("all events in the file sink", || {
        ids(&sink_files(&out)) == acked
    });
    let files = sink_files(&out);
    // The fixture's fixed clock: 2024-11-22T08:00Z.
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["demo/2024-11-22/08-0.ndjson"]
    );
    for r in files.values().flatten() {
        let id = r["event_id"].as_str().unwrap();
        assert_eq!(r["site"], "demo");
        assert!(
            r["customer"]["email_hash"]
                .as_str()
                .unwrap()
                .starts_with("k1:"),
            "{r}"
        );
        assert_eq!(r["customer"]["age_band"], "35-44");
        assert_eq!(
            r["page_url"], "https://shop.example/cart?utm_source=mail",
            "{id}"
        );
        let text = r.to_string();
        for leak in ["@", "Ann", "127.0.0.1", "frag"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
    }
    let metrics = running.ctx.registry.gather();
    let delivered = metrics
        .iter()
        .find(|f| f.name() == "tollgate_sink_events_total")
        .map(|f| f.get_metric()[0].get_counter().get_value());
    assert_eq!(delivered, Some(acked.len() as f64));
    running.stop().await.unwrap();
}

const REGIONS: &str = r#"
[[tenants]]
site = "usshop"
region = "us"
allowed_origins = ["https://us.example"]
server_secret_file = "server.secret"
server_networks = ["127.0.0.0/8", "::1/128"]
active_key = "k1"
[[tenants.keys]]
id = "k1"
file = "demo.key"
[[sinks]]
name = "file-eu"
type = "file"
region = "eu"
dir = "out-eu"
batch_age_ms = 20
[[sinks]]
name = "file-us"
type = "file"
region = "us"
dir = "out-us"
batch_age_ms = 20
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eu_tenant_never_reaches_a_us_sink_in_a_mixed_run() {
    let fx = Fixture::new(REGIONS);
    fx.edit_config(|t| t.replacen("site = \"demo\"\n", "site = \"demo\"\nregion = \"eu\"\n", 1));
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    let (mut eu, mut us) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let (e, u) = (format!("eu-{i:02}"), format!("us-{i:02}"));
        let mut us_event = event(&u);
        us_event["site"] = json!("usshop");
        // One request with both tenants' events: the route is decided per event, by its tenant.
        let body = json!([event(&e), us_event]).to_string();
        assert_eq!(c.post("application/json", body).await.status, 204);
        eu.push(e);
        us.push(u);
    }
    let (out_eu, out_us) = (
        fx.dir.path().join("data/out-eu"),
        fx.dir.path().join("data/out-us"),
    );
    wait_until("both sinks", || {
        ids(&sink_files(&out_eu)) == eu && ids(&sink_files(&out_us)) == us
    });
    assert!(sink_files(&out_eu).keys().all(|p| p.starts_with("demo/")));
    assert!(sink_files(&out_us).keys().all(|p| p.starts_with("usshop/")));
    running.stop().await.unwrap();
}
