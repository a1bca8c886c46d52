//! Who may write events, checked with curl against the real server: server-side callers need the tenant's
//! bearer secret and an address in its networks, browsers an allowed `Origin` (or `Referer`). Every refusal has
//! its status, JSON reason and metric, and the secret shows up in no response, metric, log line or check output.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::proc::Proc;
use common::{dump, event, Client, Fixture, Proto, SERVER_SECRET};
use serde_json::json;

/// What curl saw: status, response head (lower-cased), parsed JSON body (`Null` if none).
struct Seen {
    status: u16,
    head: String,
    json: serde_json::Value,
}

/// `curl --cacert <fixture CA> https://localhost:<port>/v1/events` with `args` (headers), posting `body`.
fn curl(fx: &Fixture, public: SocketAddr, args: &[&str], body: &str) -> Seen {
    let port = public.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(fx.dir.path().join("tls/ca.pem"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-H", "content-type: application/json", "-H", "Expect:"])
        .args(args)
        .args(["--data-binary", "@-"])
        .arg(format!("https://localhost:{port}/v1/events"));
    let out = run(cmd, body);
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    let all = text(&out.stdout);
    let (head, body) = all.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Seen {
        status,
        head: head.to_ascii_lowercase(),
        json: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    }
}

fn run(mut cmd: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed (tests/run.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn metrics(admin: SocketAddr) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("http://{admin}/metrics"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn rejections(metrics: &str, reason: &str) -> u64 {
    let name = format!("tollgate_rejections_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn assert_refused(seen: &Seen, status: u16, reason: &str, what: &str) {
    assert_eq!(seen.status, status, "{what}: {}", seen.json);
    assert_eq!(seen.json["error"], reason, "{what}");
    assert!(!seen.head.contains(&SERVER_SECRET.to_ascii_lowercase()));
}

#[test]
fn server_side_callers_need_the_bearer_secret() {
    let fx = Fixture::new("");
    let mut p = Proc::start(&fx.config_path());
    let body = json!(event("srv-1")).to_string();
    let wrong = bearer(&format!("{SERVER_SECRET}x"));
    let right = bearer(SERVER_SECRET);
    for proto in ["--http1.1", "--http2"] {
        let missing = curl(&fx, p.public, &[proto], &body);
        assert_refused(&missing, 401, "credential_missing", "no bearer");
        assert!(
            missing.head.contains("www-authenticate: bearer"),
            "{}",
            missing.head
        );
        let seen = curl(&fx, p.public, &[proto, "-H", &wrong], &body);
        assert_refused(&seen, 401, "credential_invalid", "wrong bearer");
        assert!(seen
            .head
            .contains("www-authenticate: bearer error=\"invalid_token\""));
        let short = bearer(&SERVER_SECRET[..SERVER_SECRET.len() - 1]);
        let seen = curl(&fx, p.public, &[proto, "-H", &short], &body);
        assert_refused(&seen, 401, "credential_invalid", "a prefix of the secret");
        let basic = format!("Authorization: Basic {SERVER_SECRET}");
        let seen = curl(&fx, p.public, &[proto, "-H", &basic], &body);
        assert_refused(&seen, 401, "credential_invalid", "not a bearer");
        let seen = curl(&fx, p.public, &[proto, "-H", &right, "-H", &right], &body);
        // Refused before access is asked: a repeated singleton header is ambiguous.
        assert_refused(&seen, 400, "ambiguous_request", "two Authorization headers");
        let ok = curl(&fx, p.public, &[proto, "-H", &right], &body);
        assert_eq!(ok.status, 204, "right bearer: {}", ok.json);
    }
    let m = metrics(p.admin.unwrap());
    assert_eq!(rejections(&m, "credential_missing"), 2);
    assert_eq!(rejections(&m, "credential_invalid"), 6);
    assert_eq!(rejections(&m, "ambiguous_request"), 2);
    assert_eq!(rejections(&m, "network_not_allowed"), 0);
    assert!(!m.contains(SERVER_SECRET), "the secret is in /metrics");
    p.signal("TERM");
    assert!(p.wait_exit().success());
    let log = p.stderr_text();
    assert!(!log.is_empty());
    assert!(
        !log.contains(SERVER_SECRET),
        "the secret is in the log:\n{log}"
    );
    assert_eq!(
        dump(&fx).len(),
        2,
        "only the two right-bearer requests stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_bearer_from_outside_the_networks_is_refused() {
    let fx = Fixture::new("");
    fx.edit_config(|t| t.replace(r#"["127.0.0.0/8", "::1/128"]"#, r#"["10.0.0.0/8"]"#));
    let running = fx.start().await;
    let body = json!(event("far")).to_string();
    let right = bearer(SERVER_SECRET);
    let wrong = bearer(&"f".repeat(40));
    let (outside, wrong_outside) = tokio::task::block_in_place(|| {
        (
            curl(&fx, running.public_addr, &["-H", &right], &body),
            curl(&fx, running.public_addr, &["-H", &wrong], &body),
        )
    });
    assert_refused(
        &outside,
        403,
        "network_not_allowed",
        "127.0.0.1 not in 10/8",
    );
    // Without the secret a caller learns nothing about the networks.
    assert_refused(&wrong_outside, 401, "credential_invalid", "wrong, outside");
    let m = &running.ctx.metrics.rejections;
    assert_eq!(m.with_label_values(&["network_not_allowed"]).get(), 1);
    running.stop().await.unwrap();
    assert!(dump(&fx).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_need_an_allowed_origin_or_referer() {
    let fx = Fixture::new("");
    let running = fx.start().await;
    let body = json!(event("b")).to_string();
    let cases: &[(&str, u16, &str)] = &[
        ("Origin: https://shop.example", 204, ""),
        ("Origin: HTTPS://Shop.Example", 204, ""),
        ("Origin: https://evil.example", 403, "origin_not_allowed"),
        ("Origin: null", 403, "origin_not_allowed"),
        ("Referer: https://shop.example/cart?step=2", 204, ""),
        (
            "Referer: https://shop.example.evil.example/",
            403,
            "origin_not_allowed",
        ),
        (
            "Referer: https://evil.example/?https://shop.example",
            403,
            "origin_not_allowed",
        ),
    ];
    for (header, status, reason) in cases {
        // No bearer: a browser request is judged by its origin alone.
        let seen =
            tokio::task::block_in_place(|| curl(&fx, running.public_addr, &["-H", header], &body));
        assert_eq!(seen.status, *status, "{header}: {}", seen.json);
        if *status != 204 {
            assert_refused(&seen, *status, reason, header);
        }
    }
    // An Origin decides even when a bearer comes along: a foreign page cannot borrow the server door.
    let args = [
        "-H",
        "Origin: https://evil.example",
        "-H",
        &bearer(SERVER_SECRET),
    ];
    let seen = tokio::task::block_in_place(|| curl(&fx, running.public_addr, &args, &body));
    assert_refused(
        &seen,
        403,
        "origin_not_allowed",
        "foreign origin with the bearer",
    );
    let m = &running.ctx.metrics.rejections;
    assert_eq!(m.with_label_values(&["origin_not_allowed"]).get(), 5);
    running.stop().await.unwrap();
    assert_eq!(dump(&fx).len(), 3);
}

/// A second tenant, `other`, with `server` (its server-access keys) spliced in.
fn other(server: &str) -> String {
    format!(
        "[[tenants]]\nsite = \"other\"\n{server}active_key = \"k1\"\n[[tenants.keys]]\nid = \"k1\"\nfile = \"demo.key\"\n"
    )
}

#[tokio::test]
async fn a_batch_that_mixes_tenants_satisfies_each_one() {
    let nets = "server_networks = [\"127.0.0.0/8\"]\n";
    let cases = [
        (String::new(), 401), // no server door
        (
            format!("server_secret_file = \"other.secret\"\n{nets}"),
            401,
        ), // another secret
        (
            format!("server_secret_file = \"server.secret\"\n{nets}"),
            204,
        ), // the same secret
    ];
    for (server, status) in cases {
        let fx = Fixture::new(&other(&server));
        std::fs::write(fx.dir.path().join("other.secret"), "o".repeat(40)).unwrap();
        let running = fx.start().await;
        let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
        let mut theirs = event("o-1");
        theirs["site"] = json!("other");
        let r = c
            .post(
                "application/json",
                json!([event("d-1"), theirs]).to_string(),
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{server}: {}", r.json());
        if status == 401 {
            assert_eq!(r.json()["error"], "credential_invalid");
        }
        running.stop().await.unwrap();
        let stored = dump(&fx).len();
        assert_eq!(stored, if status == 204 { 2 } else { 0 }, "{server}");
    }
}

/// `tollgate check` with the environment `env` added.
fn check_with_env(path: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "-c"])
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn check_names_every_server_access_mistake_and_never_the_secret() {
    let fx = Fixture::new(&other(""));
    let (code, out) = check_with_env(&fx.config_path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(SERVER_SECRET), "{out}");

    let weak = "short-secret-HUNTER2";
    std::fs::write(fx.dir.path().join("weak.secret"), weak).unwrap();
    fx.edit_config(|t| {
        t.replace(
            "server_networks = [\"127.0.0.0/8\", \"::1/128\"]",
            "server_secret_env = \"DEMO_SERVER_SECRET\"\nserver_networks = [\"10.0.0.0/33\", \"::ffff:0:0/64\", \"::ffff:10.0.0.0/104\", \"10.1.2.3\"]",
        )
        .replace(
            "site = \"other\"\n",
            "site = \"other\"\nserver_secret_file = \"weak.secret\"\n",
        )
        + "[[tenants]]\nsite = \"third\"\nserver_networks = [\"10.0.0.0/8\"]\nactive_key = \"k1\"\n[[tenants.keys]]\nid = \"k1\"\nfile = \"demo.key\"\n"
    });
    let (code, out) = check_with_env(&fx.config_path(), &[("DEMO_SERVER_SECRET", SERVER_SECRET)]);
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "tenants[0]: set at most one of `server_secret_file` or `server_secret_env`",
        "tenants[0].server_networks[0]: \"10.0.0.0/33\" is not a network",
        "tenants[0].server_networks[1]: \"::ffff:0:0/64\" is not a network",
        "tenants[1].server_secret_file: the secret must be at least 32 characters",
        "tenants[1].server_networks: list the networks server-side callers post from",
        "tenants[2].server_networks: has no effect without server_secret_file or server_secret_env",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    for unwanted in ["server_networks[2]", "server_networks[3]"] {
        assert!(!out.contains(unwanted), "{unwanted} is valid:\n{out}");
    }
    for secret in [SERVER_SECRET, weak, "HUNTER2"] {
        assert!(!out.contains(secret), "{secret} in:\n{out}");
    }

    // A secret from the environment: named when missing, accepted when set.
    fx.edit_config(|t| t.replace("server_secret_file = \"server.secret\"\n", ""));
    let (_, out) = check_with_env(&fx.config_path(), &[]);
    assert!(
        out.contains(
            "tenants[0].server_secret_env: environment variable DEMO_SERVER_SECRET is not set"
        ),
        "{out}"
    );
}
