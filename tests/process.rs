//! The real binary: acknowledged events survive SIGKILL, SIGTERM finishes in-flight requests, `check`
//! reports every config mistake.

mod common;

use std::sync::Arc;

use common::proc::Proc;
use common::{dump, event, Client, Fixture, Proto};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let fx = Fixture::new("");
    let mut p = Proc::start(&fx.config_path());
    let mut acked = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = Client::connect(p.public, &fx.ca_pem, proto).await;
        for i in 0..10 {
            let ids = [format!("{proto:?}-{i}-a"), format!("{proto:?}-{i}-b")];
            let body = json!([event(&ids[0]), event(&ids[1])]).to_string();
            assert_eq!(c.post("application/json", body).await.status, 204);
            acked.extend(ids);
        }
    }
    p.signal("KILL");
    let status = p.wait_exit();
    assert!(!status.success(), "SIGKILL must not look like a clean exit");

    // Restart on the same spool: everything acknowledged is there, and the spool keeps working.
    let mut p = Proc::start(&fx.config_path());
    let mut c = Client::connect(p.public, &fx.ca_pem, Proto::H1).await;
    assert_eq!(
        c.post(
            "application/json",
            json!(event("after-restart")).to_string()
        )
        .await
        .status,
        204
    );
    p.signal("TERM");
    assert!(p.wait_exit().success());
    acked.push("after-restart".into());
    let stored: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, acked);
}

#[tokio::test]
async fn torn_last_record_recovers_every_earlier_record() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    for i in 0..5 {
        assert_eq!(
            c.post(
                "application/json",
                json!(event(&format!("r{i}"))).to_string()
            )
            .await
            .status,
            204
        );
    }
    running.stop().await.unwrap();

    // Tear the last record: cut the newest segment in the middle of it.
    let mut segments: Vec<_> = std::fs::read_dir(fx.spool_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 20)
        .unwrap();

    let snap = tollgate::config::load(&fx.config_path(), tollgate::config::LoadMode::Run).unwrap();
    let (app, recovery) =
        tollgate::app::App::new(snap, Arc::new(tollgate::clock::FixedClock::new(0)), None).unwrap();
    assert_eq!(recovery.torn_tails, 1);
    assert_eq!(recovery.records, 4);
    assert_eq!(app.ctx().metrics.spool.torn_tails.get(), 1);
    let running = app.start().await.unwrap();
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    assert_eq!(
        c.post("application/json", json!(event("r-new")).to_string())
            .await
            .status,
        204
    );
    running.stop().await.unwrap();
    let ids: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r-new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight() {
    let fx = Fixture::new("");
    let mut p = Proc::start(&fx.config_path());
    let mut tls = fx.raw_tls(p.public).await;
    let body = json!(event("in-flight")).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nauthorization: Bearer {}\r\nexpect: 100-continue\r\n\r\n",
        body.len(),
        common::SERVER_SECRET
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` is sent when the handler starts reading the body: the request is now in flight.
    let mut buf = vec![0u8; 256];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    tls.write_all(first.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();

    p.signal("TERM");
    assert!(tokio::task::block_in_place(
        || p.wait_for_log("shutdown requested")
    ));
    // The request in flight completes after the signal.
    tls.write_all(rest.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    let status = tokio::task::block_in_place(|| p.wait_exit());
    assert!(status.success(), "exit status {status:?}");
    let ids: Vec<String> = dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["in-flight"]);
}

#[test]
fn check_reports_every_mistake_with_its_path() {
    let fx = Fixture::new("");
    let path = fx.config_path();
    fx.edit_config(|t| {
        t.replace(
            "allowed_origins = [\"https://shop.example\"]",
            "allowed_origins = [\"shop.example\"]",
        )
        .replace("active_key = \"k1\"", "active_key = \"k9\"")
            + "[limits]\nmax_body_bytes = 0\n"
    });
    let (code, stdout) = common::check(&path);
    assert_eq!(code, Some(1), "{stdout}");
    for path in [
        "tenants[0].allowed_origins[0]:",
        "tenants[0].active_key:",
        "limits.max_body_bytes:",
    ] {
        assert!(stdout.contains(path), "{path} missing from:\n{stdout}");
    }
    assert!(stdout.contains("3 error(s)"), "{stdout}");

    // The committed default passes, and check writes nothing.
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tollgate.toml");
    let (code, out) = common::check(&default);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn unknown_keys_are_errors() {
    let fx = Fixture::new("");
    let path = fx.config_path();
    fx.edit_config(|t| t.replace("[tls]", "[tls]\ndev_self_sigend = true"));
    let (code, stdout) = common::check(&path);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("dev_self_sigend"), "{stdout}");
}

#[test]
fn a_signal_right_after_the_listening_line_is_handled() {
    // SIGHUP then SIGTERM as soon as the line is printed: the reload is handled and the stop is clean (the
    // default actions would kill the process).
    let fx = Fixture::new("");
    for _ in 0..5 {
        let mut p = Proc::start(&fx.config_path());
        p.signal("HUP");
        p.signal("TERM");
        let status = p.wait_exit();
        assert!(status.success(), "{status:?}\n{}", p.stderr_text());
    }
}
