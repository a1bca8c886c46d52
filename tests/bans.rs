//! Bans through the real binary and curl, each client on its own loopback address (`--interface 127.0.0.N`):
//! an anomaly block bans its address, whose next connection is closed before TLS while another address is
//! served; the ban expires; a repeat bans for twice as long; `DELETE /admin/bans/{addr}` lifts it; a
//! connection opened before the ban gets `403 banned` with `Retry-After`. Behaviour windows ban a burst of
//! 4xx and an enumeration of unknown sites. (TTL arithmetic, the table bound and eviction are unit tests in
//! `guard::bans` and `guard::behaviour`.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::curl::{admin, post_from as post};
use common::proc::Proc;
use common::{event, Client, Fixture, Proto};
use serde_json::json;

const BANS: &str = "[guard.anomaly]\n\
    [guard.bans]\nttl_s = 2\nmax_ttl_s = 8\nforget_s = 120\n\
    [guard.behaviour]\nwindow_s = 60\nmax_client_errors = 5\nmax_unknown_sites = 2\n";

fn scrape(p: &Proc) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{}/metrics", p.admin.unwrap())])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels as rendered).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn clean(id: &str) -> String {
    event(id).to_string()
}

fn attack(id: &str) -> String {
    let mut e = event(id);
    e["cart"]["items"][0]["name"] = json!("x' UNION SELECT password FROM users--");
    e.to_string()
}

fn ban_of<'a>(list: &'a serde_json::Value, address: &str) -> Option<&'a serde_json::Value> {
    list["bans"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address)
}

/// Retries a clean post from `from` until it is served (bounded): the ban has expired.
fn served_again(fx: &Fixture, p: &Proc, from: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if post(fx, p, from, &clean("again")).1 == "204" {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{from} still refused after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_attack_bans_its_address_only_and_repeats_double() {
    let fx = Fixture::new(BANS);
    let mut p = Proc::start(&fx.config_path());
    let (bad, other) = ("127.0.0.2", "127.0.0.3");

    assert_eq!(post(&fx, &p, bad, &attack("a1")).1, "403");
    // refused before TLS: curl sees the connection closed during the handshake, no HTTP status
    let (exit, code) = post(&fx, &p, bad, &clean("c1"));
    assert_eq!(code, "000");
    assert!(exit == 35 || exit == 56, "curl exit {exit}");
    assert_eq!(
        post(&fx, &p, other, &clean("c2")).1,
        "204",
        "another address is served"
    );
    let (status, list) = admin(&p, "GET", "/admin/bans");
    assert_eq!(status, "200");
    let ban = ban_of(&list, bad).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(ban["strikes"], 1);
    assert_eq!(ban["reason"], "anomaly");
    assert!(ban["remaining_s"].as_u64().unwrap() <= 2);
    assert!(ban_of(&list, other).is_none());

    // the 2 s ban expires
    served_again(&fx, &p, bad, Duration::from_secs(6));
    // a repeat within forget_s: 4 s
    assert_eq!(post(&fx, &p, bad, &attack("a2")).1, "403");
    let (_, list) = admin(&p, "GET", "/admin/bans");
    let ban = ban_of(&list, bad).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(ban["strikes"], 2);
    assert!(ban["remaining_s"].as_u64().unwrap() >= 3, "{ban}");
    let waited = served_again(&fx, &p, bad, Duration::from_secs(10));
    assert!(
        waited >= Duration::from_secs(3),
        "second ban lasted {waited:?}"
    );

    // a third ban, lifted by the operator
    assert_eq!(post(&fx, &p, bad, &attack("a3")).1, "403");
    assert_eq!(post(&fx, &p, bad, &clean("c3")).1, "000");
    let (status, _) = admin(&p, "DELETE", &format!("/admin/bans/{bad}"));
    assert_eq!(status, "200");
    assert_eq!(post(&fx, &p, bad, &clean("c4")).1, "204");
    let (status, body) = admin(&p, "DELETE", &format!("/admin/bans/{bad}"));
    assert_eq!(
        (status.as_str(), &body["error"]),
        ("404", &json!("not_banned"))
    );
    let (status, _) = admin(&p, "DELETE", "/admin/bans/not-an-address");
    assert_eq!(status, "400");

    let m = scrape(&p);
    assert_eq!(sample(&m, "tollgate_bans_total{reason=\"anomaly\"}"), 3.0);
    assert!(
        sample(
            &m,
            "tollgate_connections_refused_total{listener=\"public\",reason=\"banned\"}"
        ) >= 2.0
    );
    assert_eq!(
        sample(
            &m,
            "tollgate_guard_decisions_total{family=\"sqli\",guard=\"anomaly\",mode=\"enforce\"}"
        ),
        3.0
    );
    p.signal("TERM");
    assert!(p.wait_exit().success());
    let log = p.stderr_text();
    assert!(log.contains("ban: address banned") && log.contains("ban: lifted by an operator"));
    assert!(!log.contains(bad), "addresses never reach the log");
}

#[test]
fn bursts_of_client_errors_and_unknown_sites_ban() {
    let fx = Fixture::new(BANS);
    let mut p = Proc::start(&fx.config_path());
    let (noisy, prober) = ("127.0.0.4", "127.0.0.5");
    for i in 0..5 {
        assert_eq!(post(&fx, &p, noisy, "{not json").1, "400", "error {i}");
    }
    assert_eq!(
        post(&fx, &p, noisy, "{not json").1,
        "400",
        "the sixth trips the bound"
    );
    assert_eq!(post(&fx, &p, noisy, &clean("n1")).1, "000", "then banned");
    for site in ["shop-a", "shop-b", "shop-c"] {
        let mut e = event(site);
        e["site"] = json!(site);
        assert_eq!(post(&fx, &p, prober, &e.to_string()).1, "403");
    }
    assert_eq!(post(&fx, &p, prober, &clean("p1")).1, "000");
    let (_, list) = admin(&p, "GET", "/admin/bans");
    assert_eq!(ban_of(&list, noisy).unwrap()["reason"], "client_errors");
    assert_eq!(ban_of(&list, prober).unwrap()["reason"], "unknown_sites");
    let m = scrape(&p);
    assert_eq!(
        sample(&m, "tollgate_guard_decisions_total{family=\"client_errors\",guard=\"behaviour\",mode=\"enforce\"}"),
        1.0
    );
    assert_eq!(sample(&m, "tollgate_bans_active"), 2.0);
    p.signal("TERM");
    assert!(p.wait_exit().success());
}

#[tokio::test]
async fn a_connection_open_before_the_ban_gets_403_banned() {
    let fx = Fixture::new(BANS);
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    assert_eq!(c.post("application/json", attack("x1")).await.status, 403);
    let reply = c.post("application/json", clean("x2")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "banned");
    let retry: u32 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    running.stop().await.unwrap();
}
