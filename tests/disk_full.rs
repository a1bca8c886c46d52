//! A spool on a filesystem that really fills up: the test mounts a 1 MiB tmpfs as the gateway's data
//! directory (root, or passwordless sudo, which tests/run.sh machines have), fills it with a file, and posts.
//! Every post the kernel's ENOSPC stops is answered `503` with `Retry-After` — never a `204`, never a dropped
//! event; once the file is removed the same gateway accepts again; and the spool then holds exactly the
//! acknowledged events, every record intact (`tollgate spool verify`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{event, Client, Fixture, Proto};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

fn privileged(args: &[&str]) -> std::process::ExitStatus {
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut cmd = if root {
        Command::new(args[0])
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", args[0]]);
        c
    };
    cmd.args(&args[1..]).status().unwrap()
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let opts = format!("size={size},mode=0700");
        let status = privileged(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &opts,
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        assert!(
            status.success(),
            "mounting a tmpfs needs root or passwordless sudo"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = privileged(&["umount", self.0.to_str().unwrap()]);
    }
}

/// Writes zeros into `path` until the filesystem refuses (ENOSPC).
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 16 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_loses_nothing_and_recovers() {
    let fx = Fixture::new("");
    fx.edit_config(|c| c.replacen("[spool]\n", "[spool]\nsegment_bytes = 65536\n", 1));
    let data = fx.dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "1m");
    let running = fx.start().await;
    let mut c = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    let mut acked = Vec::new();
    let post = |id: String| {
        let body = event(&id).to_string();
        (id, body)
    };
    // Room for some events first.
    for i in 0..5 {
        let (id, body) = post(format!("before-{i}"));
        assert_eq!(c.post("application/json", body).await.status, 204);
        acked.push(id);
    }
    let filler = data.join("filler");
    fill(&filler);
    let mut refused = 0;
    for i in 0..20 {
        let (id, body) = post(format!("full-{i}"));
        let reply = c.post("application/json", body).await;
        match reply.status.as_u16() {
            204 => acked.push(id),
            503 => {
                refused += 1;
                assert!(
                    reply.headers.contains_key("retry-after"),
                    "503 without Retry-After"
                );
                let reason = reply.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(reason.starts_with("spool_"), "{reason}");
            }
            other => panic!("a full disk answered {other}"),
        }
    }
    assert!(refused >= 15, "the full disk refused only {refused} of 20");
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for i in 0..20 {
        let (id, body) = post(format!("after-{i}"));
        if c.post("application/json", body).await.status == 204 {
            acked.push(id);
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "space came back but posts are still refused");
    running.stop().await.unwrap();

    let (code, report) = common::cli(&["spool", "verify"], &fx.config_path());
    assert_eq!(code, Some(0), "spool verify: {report}");
    let mut stored: Vec<String> = common::dump(&fx)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    acked.sort();
    assert_eq!(stored, acked, "exactly the acknowledged events");
}
