//! `deploy/` checked offline with the tools operators use: hadolint on the Dockerfile, kubernetes-validate
//! (strict schemas) on the manifests, `systemd-analyze verify` and `security --offline` on the unit,
//! `nats-server -t` on the cluster config, and the real `tollgate check` on the config inside the ConfigMap
//! (its secret files stood in for by temp files). Each check also runs once on a broken copy and must fail
//! there, so a tool that stopped checking cannot pass. The tools come from tests/run.sh (a venv under
//! target/deploy-lint, Debian packages); a missing tool fails the test, saying so.

mod common;

#[path = "support/nats.rs"]
#[allow(dead_code)]
mod nats;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::proc::Proc;
use common::Fixture;
use tollgate::config::{self, LoadMode, SinkKind};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `$var`, else `target/deploy-lint/bin/<name>` (where tests/run.sh installs it); never skips.
fn venv_tool(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let p = repo("target/deploy-lint/bin").join(name);
    assert!(
        p.is_file(),
        "{name} not found: ${var} is unset and {} does not exist; run `bash tests/run.sh` (it installs \
         {name} into target/deploy-lint)",
        p.display()
    );
    p
}

/// Runs `cmd`: (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run `bash tests/run.sh` to install it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of repository file `path` in `dir` with `from` replaced by `to` (which must occur).
fn broken(dir: &Path, path: &str, from: &str, to: &str) -> PathBuf {
    let text = read(path);
    assert!(text.contains(from), "{path} no longer contains {from:?}");
    let out = dir.join(Path::new(path).file_name().unwrap());
    std::fs::write(&out, text.replace(from, to)).unwrap();
    out
}

fn hadolint(file: &Path) -> (bool, String) {
    run(Command::new(venv_tool("TOLLGATE_HADOLINT", "hadolint"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(file))
}

#[test]
fn dockerfile_has_no_hadolint_findings() {
    let (ok, out) = hadolint(&repo("deploy/docker/Dockerfile"));
    assert!(ok && out.trim().is_empty(), "hadolint:\n{out}");
    // The same lint must object to a runtime stage that runs as root.
    let dir = tempfile::tempdir().unwrap();
    let root = broken(
        dir.path(),
        "deploy/docker/Dockerfile",
        "USER 65532:65532",
        "USER root",
    );
    let (ok, out) = hadolint(&root);
    assert!(
        !ok && out.contains("DL3002"),
        "hadolint on USER root:\n{out}"
    );
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let tool = venv_tool("TOLLGATE_KUBERNETES_VALIDATE", "kubernetes-validate");
    run(Command::new(tool)
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(files))
}

fn manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["deploy/kubernetes", "deploy/kubernetes/secrets"] {
        for e in std::fs::read_dir(repo(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_against_strict_schemas() {
    let files = manifests();
    let (ok, out) = kubernetes_validate(&files);
    // An unknown kind is only a WARN with exit 0: every document must have passed, nothing else said.
    let bad: Vec<&str> = out.lines().filter(|l| !l.starts_with("INFO")).collect();
    assert!(ok && bad.is_empty(), "kubernetes-validate:\n{out}");
    for kind in [
        "namespace/tollgate",
        "configmap/tollgate-config",
        "statefulset/tollgate",
        "service/tollgate",
        "service/tollgate-headless",
        "poddisruptionbudget/tollgate",
        "horizontalpodautoscaler/tollgate",
        "networkpolicy/tollgate",
        "secret/tollgate-secrets",
    ] {
        let line = format!("passed for resource {kind} ");
        assert!(out.contains(&line), "{kind} not validated:\n{out}");
    }
    // Strict mode refuses a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let typo = broken(
        dir.path(),
        "deploy/kubernetes/statefulset.yaml",
        "readinessProbe:",
        "readinesProbe:",
    );
    let (ok, out) = kubernetes_validate(&[typo]);
    assert!(!ok && out.contains("readinesProbe"), "on a typo:\n{out}");
}

/// `systemd-analyze verify` on the unit with its binary path pointing at the built `tollgate`: (success,
/// output lines about the unit file). Lines about the environment (no systemd as PID 1 in a container)
/// do not name the unit and are tolerated; any line naming it (unknown key, bad value, missing binary) fails.
fn verify_unit(unit: &Path) -> (bool, Vec<String>, String) {
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(unit));
    let name = unit.file_name().unwrap().to_string_lossy().into_owned();
    let about: Vec<String> = out
        .lines()
        .filter(|l| l.contains(&name))
        .map(str::to_owned)
        .collect();
    (ok, about, out)
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit_text = read("deploy/systemd/tollgate.service");
    let bin = env!("CARGO_BIN_EXE_tollgate");
    let unit = dir.path().join("tollgate.service");
    std::fs::write(&unit, unit_text.replace("/usr/local/bin/tollgate", bin)).unwrap();
    let (ok, about, out) = verify_unit(&unit);
    assert!(ok && about.is_empty(), "systemd-analyze verify:\n{out}");
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=tollgate",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "unit lacks {line}");
    }
    assert!(unit_text.lines().any(|l| l.starts_with("LimitNOFILE=")));
    // Exposure score: 0 (locked down) .. 10 (unprotected); systemd calls < 2 "OK".
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    let score = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tollgate.service: ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    eprintln!("systemd-analyze security --offline: exposure {score:?}");
    assert!(ok && score.is_some_and(|s| s < 2.0), "security:\n{out}");
    // A misspelt value is only a warning with exit 0, naming the unit: it must fail here.
    let bad = broken(
        dir.path(),
        "deploy/systemd/tollgate.service",
        "ProtectSystem=strict",
        "ProtectSystem=strickt",
    );
    let bad_text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, bad_text.replace("/usr/local/bin/tollgate", bin)).unwrap();
    let (ok, about, out) = verify_unit(&bad);
    assert!(
        ok && about.len() == 1 && about[0].contains("strickt"),
        "{out}"
    );
}

fn nats_check(conf: &Path, store: &Path) -> (bool, String) {
    run(Command::new(nats::nats_server_bin())
        .args(["-t", "-c"])
        .arg(conf)
        .env("NATS_SERVER_NAME", "nats-1")
        .env("NATS_HOST", "127.0.0.1")
        .env("NATS_STORE", store))
}

#[test]
fn nats_cluster_config_parses() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = nats_check(&repo("deploy/nats/nats.conf"), dir.path());
    assert!(ok && out.contains("is valid"), "nats-server -t:\n{out}");
    // 2.9 does not know sync_interval (the comment says so): uncommenting it must fail the check.
    let newer = broken(
        dir.path(),
        "deploy/nats/nats.conf",
        "# sync_interval: always",
        "sync_interval: always",
    );
    let (ok, out) = nats_check(&newer, dir.path());
    assert!(!ok && out.contains("sync_interval"), "{out}");
}

/// The config text inside configmap.yaml (the block scalar under `tollgate.toml: |`), de-indented.
fn configmap_toml() -> String {
    let yaml = read("deploy/kubernetes/configmap.yaml");
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim_end() != "  tollgate.toml: |");
    assert!(
        lines.next().is_some(),
        "configmap.yaml: no tollgate.toml key"
    );
    let mut out = String::new();
    for l in lines {
        match l.strip_prefix("    ") {
            Some(text) => out += text,
            None if l.trim().is_empty() => {}
            None => break,
        }
        out.push('\n');
    }
    out
}

/// Every quoted absolute path under `prefix` in `text`.
fn paths_under(text: &str, prefix: &str) -> Vec<String> {
    text.split('"')
        .filter(|s| s.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The ConfigMap's config with `/etc/tollgate` and `/var/lib/tollgate` moved into `dir`, every file it names
/// created there (a dev certificate, 32-byte hex keys and secrets); its path.
fn materialize(dir: &Path) -> PathBuf {
    let text = configmap_toml();
    let (etc, data) = (dir.join("etc"), dir.join("data"));
    for file in paths_under(&text, "/etc/tollgate/") {
        let local = etc.join(file.trim_start_matches("/etc/tollgate/"));
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, "5c".repeat(32)).unwrap();
    }
    let pki = tollgate::tls::DevPki::generate().unwrap();
    let tls = etc.join("tls");
    pki.write(
        &tls.join("ca.pem"),
        &tls.join("tls.crt"),
        &tls.join("tls.key"),
    )
    .unwrap();
    let text = text
        .replace("/etc/tollgate/", &format!("{}/", etc.display()))
        .replace("/var/lib/tollgate", &data.display().to_string());
    let path = etc.join("config/tollgate.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn configmap_config_passes_tollgate_check_and_matches_its_mounts() {
    let text = configmap_toml();
    assert!(text.contains("[[sinks]]"), "extracted:\n{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = materialize(dir.path());
    let (code, out) = common::check(&path);
    assert_eq!(
        code,
        Some(0),
        "tollgate check on the ConfigMap's config:\n{out}"
    );

    // Every file it names is on a volume the StatefulSet mounts, every secret file is a key of the
    // example Secret, and the container runs this file.
    let sts = read("deploy/kubernetes/statefulset.yaml");
    let secrets = read("deploy/kubernetes/secrets/secrets.example.yaml");
    assert!(sts.contains(r#"args: ["run", "-c", "/etc/tollgate/config/tollgate.toml"]"#));
    for file in paths_under(&text, "/etc/tollgate/") {
        let (mount, name) = file.rsplit_once('/').unwrap();
        assert!(
            sts.contains(&format!("mountPath: {mount}\n")),
            "{file}: no volume at {mount}"
        );
        assert!(
            secrets.contains(&format!("  {name}: ")),
            "{file}: not in the Secret"
        );
    }
    assert!(text.contains("data_dir = \"/var/lib/tollgate\""));
    assert!(sts.contains("mountPath: /var/lib/tollgate\n"));
    for port in ["8443", "9090"] {
        assert!(text.contains(&format!("0.0.0.0:{port}")), "listen {port}");
        assert!(sts.contains(&format!("containerPort: {port}\n")), "{port}");
    }
}

#[test]
fn stream_definition_outlasts_the_configmap_sinks_retries() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = config::load(&materialize(dir.path()), LoadMode::Check).expect("valid config");
    let file: serde_json::Value = serde_json::from_str(&read("deploy/nats/stream.json")).unwrap();
    let stream: async_nats::jetstream::stream::Config =
        serde_json::from_value(file.clone()).expect("stream.json");
    // Every key is one the JetStream API knows (serde would drop a misspelt one): it comes back unchanged.
    let back = serde_json::to_value(&stream).unwrap();
    for (key, value) in file.as_object().unwrap() {
        assert_eq!(&back[key], value, "stream.json: {key}");
    }
    let sinks: Vec<_> = snapshot
        .sinks
        .iter()
        .filter_map(|s| match &s.kind {
            SinkKind::Nats(n) => Some((s, n)),
            _ => None,
        })
        .collect();
    assert!(!sinks.is_empty(), "the ConfigMap has a nats sink");
    for (sink, nats) in sinks {
        use tollgate::sink::nats::config as js;
        assert_eq!(stream.name, nats.stream);
        assert_eq!(stream.num_replicas, nats.replicas);
        assert!(stream.subjects.iter().any(|p| js::covers(p, &nats.subject)));
        let horizon = js::duplicate_window(sink);
        assert!(
            stream.duplicate_window > horizon,
            "duplicate_window {:?} vs the sink's retry horizon {horizon:?}",
            stream.duplicate_window
        );
    }
    assert_eq!(
        stream.storage,
        async_nats::jetstream::stream::StorageType::File
    );
}

/// `tollgate health --url URL`: (exit code, output).
fn health(url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["health", "--timeout-ms", "2000", "--url", url])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn health_subcommand_probes_the_admin_listener() {
    let fx = Fixture::new("");
    let p = Proc::start(&fx.config_path());
    let admin = p.admin.expect("admin listener");
    for path in ["/healthz", "/readyz"] {
        let (code, out) = health(&format!("http://{admin}{path}"));
        assert_eq!(code, Some(0), "{path}: {out}");
        assert!(out.contains("200"), "{out}");
    }
    let (code, out) = health(&format!("http://{admin}/nope"));
    assert_eq!(code, Some(1), "404 must fail: {out}");
    let closed = format!("http://127.0.0.1:{}/healthz", nats::free_port());
    let (code, out) = health(&closed);
    assert_eq!(code, Some(1), "a closed port must fail: {out}");
    let (code, out) = health("https://127.0.0.1:1/healthz");
    assert_eq!(code, Some(1), "{out}");
}
