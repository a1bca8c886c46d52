//! The audit log through the real binary, with JSON logs: startup, a reload by signal, a rejected reload, a
//! ban (an SQL-injection post with curl) and its lift by `DELETE /admin/bans/{addr}`, shutdown — each one
//! hash-chained line; `tollgate audit verify` accepts the log and names the line of an edit, a removal and an
//! insertion. Neither the log nor stderr (JSON lines) holds a secret or the client's address. (The chain
//! itself is unit-tested in `audit::chain`.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::curl::{admin, post_from};
use common::proc::Proc;
use common::{event, Fixture, SERVER_SECRET};
use serde_json::{json, Value};

const SETUP: &str = "[guard.anomaly]\n[guard.bans]\nttl_s = 60\n\
    [reload]\nwatch = false\n[log]\nformat = \"json\"\n";

const CLIENT: &str = "127.0.0.2";

fn attack() -> String {
    let mut e = event("a1");
    e["cart"]["items"][0]["name"] = json!("x' UNION SELECT password FROM users--");
    e.to_string()
}

/// `tollgate audit verify FILE`: (exit code, stdout).
fn verify(file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Writes `lines` (each ended with a newline) to `name` in `dir` and verifies it.
fn verify_lines(dir: &Path, name: &str, lines: &[&str]) -> (i32, String) {
    let path = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    verify(&path)
}

#[test]
fn state_changes_are_chained_verifiable_and_free_of_secrets_and_addresses() {
    let fx = Fixture::new(SETUP);
    let mut p = Proc::start(&fx.config_path());

    // a reload by signal, then a rejected one through the admin endpoint
    fx.edit_config(|t| format!("{t}\n# edited\n"));
    p.signal("HUP");
    let log_path = fx.dir.path().join("data/audit.log");
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("\"event\":\"reload\"")) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no reload after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let valid = std::fs::read_to_string(fx.config_path()).unwrap();
    std::fs::write(fx.config_path(), format!("bogus = 1\n{valid}")).unwrap();
    let (status, body) = admin(&p, "POST", "/admin/reload");
    assert_eq!(status, "409", "{body}");
    std::fs::write(fx.config_path(), &valid).unwrap();

    // a ban and its lift
    assert_eq!(post_from(&fx, &p, CLIENT, &attack()).1, "403");
    let (status, list) = admin(&p, "GET", "/admin/bans");
    assert_eq!(status, "200");
    let subject = list["bans"][0]["subject"].as_str().unwrap().to_owned();
    let (status, _) = admin(&p, "DELETE", &format!("/admin/bans/{CLIENT}"));
    assert_eq!(status, "200");

    p.signal("TERM");
    assert!(p.wait_exit().success());
    let stderr = p.stderr_text();
    let log = std::fs::read_to_string(&log_path).unwrap();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "startup",
            "reload",
            "reload_rejected",
            "ban",
            "unban",
            "shutdown"
        ],
        "{log}"
    );
    assert_eq!(lines[0]["generation"], 1);
    assert_eq!(lines[1]["trigger"], "signal");
    assert_eq!(lines[1]["generation"], 2);
    assert_eq!(lines[1]["old_sha256"], lines[0]["config_sha256"]);
    assert_eq!(lines[2]["trigger"], "admin");
    assert_eq!(lines[2]["reason"], "invalid");
    assert_eq!(
        (&lines[3]["subject"], &lines[4]["subject"]),
        (&json!(subject), &json!(subject))
    );
    assert_eq!(lines[3]["reason"], "anomaly");

    // stderr is JSON lines, and says what happened
    for l in stderr.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
    }
    assert!(stderr.contains("\"trigger\":\"signal\""), "{stderr}");
    assert!(
        stderr.contains(&format!("\"subject\":\"{subject}\"")),
        "{stderr}"
    );

    // no secret, key or client address anywhere
    let secrets = [
        SERVER_SECRET.to_owned(),
        "6b".repeat(32),
        "5a".repeat(32),
        CLIENT.to_owned(),
    ];
    for (name, text) in [("stderr", &stderr), ("audit log", &log)] {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name} holds {s:?}:\n{text}");
        }
    }

    // intact, then edited, removed and inserted lines are named
    let (code, out) = verify(&log_path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 line(s)"), "{out}");
    let raw: Vec<&str> = log.lines().collect();
    let dir = fx.dir.path();
    let edited = raw[3].replace("\"anomaly\"", "\"behaviour\"");
    let (code, out) = verify_lines(
        dir,
        "edited.log",
        &[raw[0], raw[1], raw[2], &edited, raw[4], raw[5]],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 4: content does not match its hash"),
        "{out}"
    );
    let (code, out) = verify_lines(
        dir,
        "removed.log",
        &[raw[0], raw[1], raw[3], raw[4], raw[5]],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3: prev does not match"), "{out}");
    let (code, out) = verify_lines(
        dir,
        "inserted.log",
        &[raw[0], raw[1], raw[2], raw[2], raw[3], raw[4], raw[5]],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 4: prev does not match"), "{out}");
}
