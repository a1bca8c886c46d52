//! curl against a real binary ([`super::proc::Proc`]): a post from a chosen loopback address and admin calls.

use std::process::Command;

use super::proc::Proc;
use super::Fixture;

/// curl from `from` (`--interface`) posting `body` as a browser of the fixture's shop; (exit code, HTTP
/// status or "000").
pub fn post_from(fx: &Fixture, p: &Proc, from: &str, body: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", "10", "--interface", from, "--cacert"])
        .arg(fx.dir.path().join("tls/ca.pem"))
        .args(["-H", "content-type: application/json"])
        .args(["-H", "Origin: https://shop.example"])
        .args(["--data-binary", body])
        .arg(format!("https://localhost:{}/v1/events", p.public.port()))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// `method path` on the admin listener: (HTTP status, body as JSON or `Null`).
pub fn admin(p: &Proc, method: &str, path: &str) -> (String, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method])
        .arg(format!("http://{}{path}", p.admin.unwrap()))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.to_owned(),
        serde_json::from_str(body).unwrap_or_default(),
    )
}
