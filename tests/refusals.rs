//! Refusals that arrive: a request refused before its body is read (404, 405, 415, a declared 413) gets its
//! status over HTTP/2 and HTTP/1.1, checked with curl against the real binary, 200 rounds each; an ambiguous
//! head (repeated singleton headers, `Content-Length` beside `Transfer-Encoding`, obs-fold) is refused and a
//! smuggling probe never yields a second response.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use common::proc::Proc;
use common::Fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A small limit, so that "just over it" stays a few KiB.
const LIMITS: &str = "[limits]\nmax_body_bytes = 8192\n";

/// The four refusals decided before the body is read: (path, method, content type, body bytes, status).
const CASES: [(&str, &str, &str, usize, &str); 4] = [
    ("/nowhere", "POST", "application/json", 3000, "404"),
    ("/v1/events", "GET", "application/json", 3000, "405"),
    ("/v1/events", "POST", "application/xml", 3000, "415"),
    ("/v1/events", "POST", "application/json", 9000, "413"),
];

/// One curl process, `rounds` × [`CASES`] transfers on one reused connection (`-K` config, `next` between
/// transfers): how often each (status, curl exit code) came back, by expected status.
fn curl_rounds(fx: &Fixture, p: &Proc, proto: &str, rounds: usize) -> BTreeMap<String, usize> {
    let dir = fx.dir.path();
    let ca = dir.join("tls/ca.pem");
    let mut cfg = String::new();
    for (i, case) in CASES.iter().enumerate() {
        std::fs::write(dir.join(format!("body{i}")), "x".repeat(case.3)).unwrap();
    }
    for _ in 0..rounds {
        for (i, (path, method, ctype, _, want)) in CASES.iter().enumerate() {
            let body = dir.join(format!("body{i}"));
            cfg += &format!(
                "url = \"https://localhost:{}{path}\"\n{proto}\ncacert = \"{}\"\nsilent\n\
                 max-time = 10\nrequest = \"{method}\"\nheader = \"Content-Type: {ctype}\"\n\
                 data-binary = \"@{}\"\noutput = \"/dev/null\"\n\
                 write-out = \"{want} %{{http_code}} %{{exitcode}}\\n\"\nnext\n",
                p.public.port(),
                ca.display(),
                body.display(),
            );
        }
    }
    let cfg_path = dir.join("curl.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = Command::new("curl")
        .arg("-K")
        .arg(&cfg_path)
        .output()
        .unwrap();
    let mut seen = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        *seen.entry(line.to_owned()).or_insert(0) += 1;
    }
    seen
}

fn every_refusal_arrives(proto: &str) {
    let fx = Fixture::new(LIMITS);
    let p = Proc::start(&fx.config_path());
    let started = Instant::now();
    let rounds = 200;
    let seen = curl_rounds(&fx, &p, proto, rounds);
    let want: BTreeMap<String, usize> = CASES
        .iter()
        .map(|c| (format!("{} {} 0", c.4, c.4), rounds))
        .collect();
    assert_eq!(seen, want, "{proto}: (expected, got, curl exit) → count");
    eprintln!(
        "{proto}: {} requests in {:?}",
        4 * rounds,
        started.elapsed()
    );
}

#[test]
fn curl_http2_gets_every_early_refusal() {
    every_refusal_arrives("http2");
}

#[test]
fn curl_http1_gets_every_early_refusal() {
    every_refusal_arrives("http1.1");
}

fn curl_status(fx: &Fixture, p: &Proc, proto: &str, headers: &[&str]) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", proto, "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(fx.dir.path().join("tls/ca.pem"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .args(["--data-binary", r#"{"site":"demo"}"#])
        .arg(format!("https://localhost:{}/v1/events", p.public.port()))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned())
}

#[test]
fn curl_repeated_singletons_are_ambiguous() {
    let fx = Fixture::new(LIMITS);
    let p = Proc::start(&fx.config_path());
    let repeats = [
        (
            "content-type",
            ["Content-Type: application/json", "Content-Type: text/plain"],
        ),
        (
            "origin",
            [
                "Origin: https://shop.example",
                "Origin: https://evil.example",
            ],
        ),
        (
            "authorization",
            ["Authorization: Bearer a", "Authorization: Bearer b"],
        ),
    ];
    for proto in ["--http2", "--http1.1"] {
        for (name, pair) in &repeats {
            let mut headers = vec!["Content-Type: application/json"];
            if *name == "content-type" {
                headers.clear();
            }
            headers.extend(pair);
            let (status, body) = curl_status(&fx, &p, proto, &headers);
            assert_eq!(status, "400", "{proto} {name}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], "ambiguous_request", "{proto} {name}");
            assert!(v["detail"].as_str().unwrap().contains(name), "{body}");
        }
    }
}

/// Writes `request` on a raw TLS HTTP/1.1 connection and reads until the server closes it (or 5 s pass).
async fn raw_exchange(fx: &Fixture, p: &Proc, request: &[u8]) -> String {
    let mut tls = fx.raw_tls(p.public).await;
    tls.write_all(request).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "connection not closed: {}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// The status of every response in `answer` (a response may follow the previous body on the same line).
fn statuses(answer: &str) -> Vec<&str> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|rest| rest.get(..3).unwrap_or(rest))
        .collect()
}

const SMUGGLED: &str = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn probe(head: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         {head}\r\n{body}{SMUGGLED}"
    )
    .into_bytes()
}

#[tokio::test]
async fn smuggling_probes_get_one_answer() {
    let fx = Fixture::new(LIMITS);
    let p = Proc::start(&fx.config_path());
    // (name, extra head lines, body before the smuggled request, the status that one answer carries)
    let chunk = "0\r\n\r\n";
    let probes = [
        // hyper drops Content-Length beside chunked, reads the chunked body (empty: 400 invalid_json) and
        // closes the connection after answering, so the request after it is never read.
        (
            "CL.TE",
            "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n",
            chunk,
            "400",
        ),
        (
            "TE.CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            chunk,
            "400",
        ),
        // Two different lengths: hyper's parser answers 400 itself.
        (
            "CL.CL",
            "Content-Length: 0\r\nContent-Length: 5\r\n",
            "",
            "400",
        ),
        (
            "Host.Host",
            "Host: evil.example\r\nContent-Length: 0\r\n",
            "",
            "400",
        ),
        // obs-fold: a header line starting with whitespace continues the previous one.
        (
            "obs-fold",
            "Content-Length: 0\r\nX-Fold: a\r\n b\r\n",
            "",
            "400",
        ),
        ("TE not chunked", "Transfer-Encoding: gzip\r\n", "", "400"),
        (
            "TE obfuscated",
            "Transfer-Encoding: xchunked\r\n",
            chunk,
            "400",
        ),
    ];
    for (name, head, body, want) in probes {
        // One answer, then the server closes: what follows the probe is never read as a request.
        let answer = raw_exchange(&fx, &p, &probe(head, body)).await;
        assert_eq!(statuses(&answer).len(), 1, "{name}: {answer}");
        assert!(statuses(&answer)[0].starts_with(want), "{name}: {answer}");
        if name.starts_with("Host") {
            assert!(answer.contains("ambiguous_request"), "{name}: {answer}");
        }
    }
}

/// Two equal `Content-Length` lines are one length to hyper (RFC 9112 §6.3 allows collapsing them), so every
/// parser agrees where the body ends: the request after it is a genuine pipelined one, answered as such.
#[tokio::test]
async fn equal_lengths_are_one_length() {
    let fx = Fixture::new(LIMITS);
    let p = Proc::start(&fx.config_path());
    let req = "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
               Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}\
               GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(&fx, &p, req.as_bytes()).await;
    assert_eq!(statuses(&answer).len(), 2, "{answer}");
}
