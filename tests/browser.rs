//! The browser path end to end, in real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by tests/run.sh). The example shop (`examples/shop`) is served from its own
//! origin, `http://127.0.0.1:<port>`, with the snippet `tollgate snippet` prints pasted where a merchant pastes
//! it; the gateway is `https://localhost:<port>`, its development certificate trusted through Chromium's
//! `--ignore-certificate-errors-spki-list`. The test views the product, adds it to the cart, checks out and
//! leaves the page; the events must arrive in the spool minimized, with the right values, once per
//! `event_id`. The same run with Global Privacy Control stores strict-profile events, and the same shop on a
//! foreign origin (`http://localhost:<port>`) stores nothing and gets no CORS grant.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{dump, Fixture};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Serves `examples/shop`, the snippet pasted in place of its placeholder comment.
async fn serve_shop(listener: tokio::net::TcpListener, snippet: Arc<String>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/shop");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (root, snippet) = (root.clone(), snippet.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (root, snippet) = (root.clone(), snippet.clone());
                async move {
                    let name = req.uri().path().trim_start_matches('/');
                    let name = if name.is_empty() { "index.html" } else { name };
                    let ok = !name.contains("..") && name.ends_with(".html");
                    let page = ok
                        .then(|| std::fs::read_to_string(root.join(name)).ok())
                        .flatten();
                    let res = match page {
                        Some(html) => {
                            let html = paste(&html, &snippet);
                            Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .body(Full::new(Bytes::from(html)))
                        }
                        None => Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::new())),
                    };
                    Ok::<_, Infallible>(res.unwrap())
                }
            });
            let io = TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// The page with its `<!-- tollgate snippet ... -->` comment replaced by the snippet.
fn paste(html: &str, snippet: &str) -> String {
    match (html.find("<!-- tollgate snippet"), html.find("-->")) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &html[..a], snippet, &html[b + 3..]),
        _ => html.to_owned(),
    }
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium's SPKI allow list wants it.
fn spki_hash(cert: &std::path::Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// chromedriver on a free loopback port, stopped by PID when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = [
            "chromedriver",
            "/usr/bin/chromedriver",
            "/usr/lib/chromium/chromedriver",
        ]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("chromium-driver is installed by tests/run.sh");
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while d.call("GET", "/status", None).get("value").is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "60", "-X", method])
            .arg(format!("{}{path}", self.base));
        if let Some(b) = body {
            cmd.args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                &b.to_string(),
            ]);
        }
        let out = cmd.output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session.
struct Browser<'d> {
    driver: &'d Driver,
    session: String,
    _profile: tempfile::TempDir,
}

impl<'d> Browser<'d> {
    fn open(driver: &'d Driver, spki: &str, gpc: bool) -> Browser<'d> {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
                format!("--ignore-certificate-errors-spki-list={spki}"),
            ]}
        }}});
        let v = driver.call("POST", "/session", Some(caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        let b = Browser {
            driver,
            session,
            _profile: profile,
        };
        if gpc {
            // What a browser with Global Privacy Control on exposes (Chromium has no setting for it).
            let source =
                "Object.defineProperty(Navigator.prototype,'globalPrivacyControl',{get:()=>true})";
            b.cmd(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": source}}),
            );
        }
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let p = format!("/session/{}{path}", self.session);
        self.driver.call(method, &p, Some(body))
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn click(&self, css: &str) {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        let id = v["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned();
        self.cmd("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Waits (bounded) until `css` is on the page: the navigation a click started has landed.
    fn wait_for(&self, css: &str) {
        let t0 = Instant::now();
        loop {
            let v = self.cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            );
            if v["value"]
                .as_object()
                .is_some_and(|o| !o.contains_key("error"))
            {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{css} never appeared: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn script(&self, js: &str) -> Value {
        self.cmd("POST", "/execute/async", json!({"script": js, "args": []}))["value"].clone()
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        self.driver
            .call("DELETE", &format!("/session/{}", self.session), None);
    }
}

/// The shopping trip: product, add to cart, cart, check out, buy, leave.
fn shop(b: &Browser<'_>, origin: &str) {
    b.go(&format!("{origin}/index.html"));
    b.wait_for("#add");
    b.click("#add");
    b.wait_for("#checkout");
    b.click("#checkout");
    b.wait_for("#buy");
    b.click("#buy");
    b.wait_for("#done");
}

/// Waits (bounded) until the spool holds `n` records, then returns them.
fn records(fx: &Fixture, n: usize) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let r = dump(fx);
        if r.len() >= n || t0.elapsed() > Duration::from_secs(20) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Setup {
    fx: Fixture,
    shop: SocketAddr,
    gateway: u16,
}

/// Binds the shop, writes the gateway config allowing the shop's origin, starts the gateway, pastes the snippet.
async fn setup() -> (Setup, tollgate::app::Running) {
    let shop_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = shop_listener.local_addr().unwrap();
    let fx = Fixture::new("");
    let origin = format!("http://127.0.0.1:{}", shop.port());
    fx.edit_config(|c| {
        c.replace(
            "allowed_origins = [",
            &format!("allowed_origins = [\"{origin}\", "),
        )
    });
    let running = fx.start().await;
    let gateway = running.public_addr.port();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["snippet", "-c"])
        .arg(fx.config_path())
        .args([
            "--site",
            "demo",
            "--url",
            &format!("https://localhost:{gateway}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snippet = Arc::new(String::from_utf8(out.stdout).unwrap());
    tokio::spawn(serve_shop(shop_listener, snippet));
    (Setup { fx, shop, gateway }, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopping_trip_in_chromium_arrives_minimized_once() {
    let (s, running) = setup().await;
    let spki = spki_hash(&s.fx.dir.path().join("tls/leaf.pem"));
    let origin = format!("http://127.0.0.1:{}", s.shop.port());
    let fx = &s.fx;
    let stored = tokio::task::block_in_place(|| {
        let driver = Driver::start();
        let b = Browser::open(&driver, &spki, false);
        shop(&b, &origin);
        records(fx, 7)
    });
    running.stop().await.unwrap();
    let types: Vec<&str> = stored
        .iter()
        .map(|r| r["type"].as_str().unwrap_or("?"))
        .collect();
    let count = |t: &str| types.iter().filter(|x| **x == t).count();
    assert_eq!(
        (
            count("page_view"),
            count("cart_update"),
            count("checkout_started"),
            count("purchase")
        ),
        (3, 1, 1, 1),
        "{types:?}: {stored:#?}"
    );
    let mut ids: Vec<&str> = stored
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "each event_id once");
    let text = serde_json::to_string(&stored).unwrap();
    // No raw e-mail, no name, no client address (the page URL names the shop's host, which is not the client).
    for raw in ["ann.lee@example.com", "\"Ann\"", "\"ip\""] {
        assert!(!text.contains(raw), "{raw} stored: {text}");
    }
    let purchase = stored.iter().find(|r| r["type"] == "purchase").unwrap();
    assert_eq!(purchase["transaction"]["total"], 64.95);
    assert!(purchase["customer"]["email_hash"].is_string(), "{purchase}");
    let cart = stored.iter().find(|r| r["type"] == "cart_update").unwrap();
    assert_eq!(cart["cart"]["items"][0]["sku"], "TSHIRT-M");
    let _ = s.gateway;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_privacy_control_and_a_foreign_origin() {
    let (s, running) = setup().await;
    let spki = spki_hash(&s.fx.dir.path().join("tls/leaf.pem"));
    let fx = &s.fx;
    let allowed = format!("http://127.0.0.1:{}", s.shop.port());
    let foreign = format!("http://localhost:{}", s.shop.port());
    let endpoint = format!("https://localhost:{}/v1/events", s.gateway);
    let strict = || {
        running
            .ctx
            .metrics
            .pii
            .strict
            .with_label_values(&["demo"])
            .get()
    };
    let (stored, grant) = tokio::task::block_in_place(|| {
        let driver = Driver::start();
        {
            let b = Browser::open(&driver, &spki, false);
            b.go(&format!("{foreign}/index.html"));
            b.wait_for("#add");
            // A cross-origin JSON POST from a page the tenant does not allow: the preflight gets no grant.
            let js = format!(
                "const done = arguments[arguments.length - 1];\
                 fetch('{endpoint}', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: '{{}}'}})\
                 .then(r => done('answered ' + r.status), e => done('blocked'));"
            );
            let grant = b.script(&js);
            shop(&b, &foreign);
            drop(b);
            let gpc = Browser::open(&driver, &spki, true);
            shop(&gpc, &allowed);
            (records(fx, 6), grant)
        }
    });
    let strict_events = strict();
    running.stop().await.unwrap();
    assert_eq!(grant, "blocked", "no CORS grant for a foreign origin");
    assert_eq!(stored.len(), 6, "only the GPC trip is stored: {stored:#?}");
    assert_eq!(strict_events, 6, "every GPC event under the strict profile");
    for r in &stored {
        // The strict profile keeps no identifier: no e-mail hash, no transaction id.
        assert!(r["customer"]["email_hash"].is_null(), "{r}");
        assert!(r["transaction"]["id"].is_null(), "{r}");
    }
    assert!(stored.iter().any(|r| r["type"] == "purchase"));
}
