//! Prometheus for real (Debian's `prometheus` and `promtool`, installed by tests/run.sh): a Prometheus server on
//! a free loopback port scrapes the gateway's admin listener every second, and its HTTP API answers `up == 1`
//! and the accepted-events counter with the number of events this test posted; `promtool check metrics`
//! accepts `/metrics`; `promtool test rules` passes the alert rules' unit tests in `deploy/prometheus`.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{event, Client, Fixture, Proto};

fn promtool(args: &[&str], stdin: Option<&[u8]>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by tests/run.sh");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Prometheus server this test started; stopped by PID when dropped.
struct Prometheus {
    child: Child,
    api: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: tollgate\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed by tests/run.sh");
        Prometheus {
            child,
            api,
            _dir: dir,
        }
    }

    /// The value of `query`'s first sample, once Prometheus has one (bounded).
    fn value(&self, query: &str, want: &str) -> String {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.api,
            urlencode(query)
        );
        let t0 = Instant::now();
        let mut last = String::new();
        while t0.elapsed() < Duration::from_secs(60) {
            let body = get(&url);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
                    last = value.to_owned();
                    if last == want {
                        return last;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_admin_listener() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let admin = running.admin_addr.unwrap();
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    for i in 0..7 {
        let reply = c
            .post("application/json", event(&format!("p{i}")).to_string())
            .await;
        assert_eq!(reply.status, 204);
    }
    let prom = tokio::task::spawn_blocking(move || {
        let prom = Prometheus::start(admin);
        let up = prom.value("up{job=\"tollgate\"}", "1");
        let accepted = prom.value("tollgate_events_accepted_total{job=\"tollgate\"}", "7");
        let requests = prom.value(
            "sum(tollgate_requests_total{route=\"events\",status=\"204\"})",
            "7",
        );
        (up, accepted, requests)
    })
    .await
    .unwrap();
    assert_eq!(prom, ("1".into(), "7".into(), "7".into()));
    running.stop().await.unwrap();
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let (ok, text) = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"], None);
    assert!(ok, "{text}");
    let (ok, text) = promtool(
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
        None,
    );
    assert!(ok, "{text}");
}

/// Every metric name in `text` (`tollgate_…`, without the histogram suffixes Prometheus adds).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("tollgate_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = name.strip_suffix("_bucket").unwrap_or(&name).to_owned();
        out.insert(name);
    }
    out
}

#[tokio::test]
async fn the_metrics_page_passes_promtool_and_has_every_metric_alerts_and_dashboard_use() {
    let fx = Fixture::new(
        "[guard.anomaly]\n[guard.bans]\n[guard.behaviour]\n\
         [[sinks]]\nname = \"file\"\ntype = \"file\"\n",
    );
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H1).await;
    assert_eq!(
        c.post("application/json", event("d1").to_string())
            .await
            .status,
        204
    );
    assert_eq!(c.post("application/json", "{").await.status, 400);
    let url = format!("http://{}/metrics", running.admin_addr.unwrap());
    let page = tokio::task::spawn_blocking(move || get(&url))
        .await
        .unwrap();
    let (ok, text) = promtool(&["check", "metrics"], Some(page.as_bytes()));
    assert!(ok, "promtool check metrics: {text}");
    let exported = metric_names(&page);
    let alerts = std::fs::read_to_string("deploy/prometheus/alerts.yml").unwrap();
    let dashboard = std::fs::read_to_string("deploy/grafana/tollgate.json").unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let used = metric_names(&(alerts + &dashboard));
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    running.stop().await.unwrap();
}
