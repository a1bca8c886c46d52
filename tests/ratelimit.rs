//! Rate limits through the real server: a burst beyond the quota gets 429 `rate_limited` with a
//! `Retry-After` from the limiter and is counted; detect mode refuses nothing and counts; a reload that
//! tightens the limits applies to a client the limiter already knows. (Rate accuracy, key bounds and the
//! paused-clock cases are unit tests in `guard::ratelimit`.)

mod common;

use common::{event, Client, Fixture, Proto};
use serde_json::json;

fn limited(quota: &str, mode: &str) -> String {
    format!("[guard.ratelimit]\nmode = \"{mode}\"\nper_address = {quota}\n")
}

fn count(running: &tollgate::app::Running, outcome: &str) -> f64 {
    running
        .ctx
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "tollgate_ratelimit_decisions_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "outcome" && l.value() == outcome)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

async fn post_n(c: &mut Client, n: usize) -> Vec<common::Reply> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            c.post(
                "application/json",
                json!(event(&format!("r{i}"))).to_string(),
            )
            .await,
        );
    }
    out
}

#[tokio::test]
async fn a_burst_beyond_the_quota_gets_429_with_retry_after() {
    let fx = Fixture::new(&limited("{ rate_per_s = 1, burst = 3 }", "enforce"));
    let running = fx.start().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = Client::connect(running.public_addr, &fx.ca_pem, proto).await;
        let replies = post_n(&mut c, 6).await;
        let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
        if proto == Proto::H1 {
            assert_eq!(statuses[..3], [204, 204, 204], "{statuses:?}");
        }
        assert_eq!(*statuses.last().unwrap(), 429, "{proto:?}: {statuses:?}");
        let refused = replies.last().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(body["error"], "rate_limited");
        let retry: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "one request per second: {retry}");
        assert!(refused.headers.contains_key("strict-transport-security"));
    }
    assert!(count(&running, "limited") >= 3.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn detect_mode_refuses_nothing_and_counts() {
    let fx = Fixture::new(&limited("{ rate_per_s = 1, burst = 2 }", "detect"));
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    let replies = post_n(&mut c, 6).await;
    assert!(replies.iter().all(|r| r.status == 204));
    assert!(count(&running, "detected") >= 3.0);
    assert_eq!(count(&running, "limited"), 0.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_reload_that_tightens_the_limit_applies_to_a_known_client() {
    let fx = Fixture::new(&limited("{ rate_per_s = 1000, burst = 1000 }", "enforce"));
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert!(post_n(&mut c, 5).await.iter().all(|r| r.status == 204));
    fx.edit_config(|t| {
        t.replace(
            "{ rate_per_s = 1000, burst = 1000 }",
            "{ rate_per_s = 1, burst = 1 }",
        )
    });
    let ctx = running.ctx.clone();
    tokio::task::spawn_blocking(move || ctx.reload())
        .await
        .unwrap()
        .unwrap();
    let replies = post_n(&mut c, 3).await;
    assert!(
        replies.iter().any(|r| r.status == 429),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    running.stop().await.unwrap();
}
