//! Slow clients with Debian's `slowhttptest` (installed by tests/run.sh) against the public TLS listener:
//! slow headers (slowloris) and a slow body (R-U-Dead-Yet), 50 connections each. Every slow connection must
//! be closed within its timeout (`header_read_ms`, `body_read_ms`: 2 s here) plus 5 s, read from
//! slowhttptest's own per-second CSV, while a normal client — a new TLS connection per request — keeps
//! getting its 204s throughout.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{event, Client, Fixture, Proto};

const TIMEOUTS: &str = "[timeouts]\nheader_read_ms = 2000\nbody_read_ms = 2000\n";
const CONNECTIONS: u32 = 50;

/// One row of slowhttptest's CSV: (second, closed, pending, connected).
fn rows(csv: &str) -> Vec<(u32, u32, u32, u32)> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<u32> = l.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            (f.len() >= 4).then(|| (f[0], f[1], f[2], f[3]))
        })
        .collect()
}

/// Runs slowhttptest with `mode` (`-H` or `-B`) against `port`; returns its CSV and its summary.
fn slowhttptest(mode: &str, port: u16) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("report");
    let out = Command::new("slowhttptest")
        .args([
            mode,
            "-c",
            &CONNECTIONS.to_string(),
            "-r",
            "50",
            "-i",
            "1",
            "-l",
            "20",
        ])
        .args(["-s", "4096", "-f", "text/plain", "-p", "3", "-g", "-o"])
        .arg(&prefix)
        .arg("-u")
        .arg(format!("https://localhost:{port}/v1/events"))
        .output()
        .expect("slowhttptest is installed by tests/run.sh");
    assert!(out.status.code().is_some(), "slowhttptest was killed");
    let csv = std::fs::read_to_string(prefix.with_extension("csv")).unwrap();
    (csv, String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn attack_while_serving(mode: &'static str) {
    let fx = Fixture::new(TIMEOUTS);
    let running = fx.start().await;
    let addr = running.public_addr;
    let (done, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let normal = {
        let (done, ok, failed, ca) = (done.clone(), ok.clone(), failed.clone(), fx.ca_pem.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                let mut c = Client::connect(addr, &ca, Proto::H2).await;
                let status = c
                    .post("application/json", event(&format!("n{i}")).to_string())
                    .await
                    .status;
                let counter = if status == 204 { &ok } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let (csv, summary) = tokio::task::spawn_blocking(move || slowhttptest(mode, addr.port()))
        .await
        .unwrap();
    done.store(true, Ordering::SeqCst);
    normal.await.unwrap();
    running.stop().await.unwrap();

    let rows = rows(&csv);
    let peak = rows.iter().map(|r| r.3).max().unwrap_or(0);
    assert!(
        peak >= CONNECTIONS * 8 / 10,
        "the attack never held its connections: {csv}"
    );
    // Every slow connection closed within 2 s + 5 s of the second it was opened in (all open by second 2).
    let by = 2 + 2 + 5;
    let late: Vec<_> = rows.iter().filter(|r| r.0 >= by && r.3 > 0).collect();
    assert!(
        late.is_empty(),
        "{mode}: still connected after {by} s: {late:?}\n{csv}"
    );
    // slowhttptest stops once the server has closed every connection (its last CSV row is the second before).
    let last = rows.last().unwrap();
    assert!(
        summary.contains("No open connections left") && last.0 < by,
        "{mode}: slow connections outlived their timeout: {summary}\n{csv}"
    );
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("{mode}: {peak} slow connections at peak, closed by second {}; normal requests {ok} ok, {failed} failed", last.0);
    assert!(
        ok >= 5 && failed == 0,
        "{mode}: normal requests {ok} ok, {failed} failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_in_time_while_others_are_served() {
    attack_while_serving("-H").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_closed_in_time_while_others_are_served() {
    attack_while_serving("-B").await;
}
