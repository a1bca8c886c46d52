//! Reloads: the watcher reloads a changed config file, or a changed file it names, without a signal; 100
//! reloads (half of them broken) under a continuous stream of posts lose no request, answer every broken one
//! with `409` and its error, and advance the generation by exactly the applied ones; two overlapping reloads
//! are serialised, so the one that reads the newer file stores last. (The debounce rule is a unit test in
//! `reload::debounce`.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{event, metric, wait_for, Client, Fixture, Proto};
use tollgate::config::sha256_hex;
use tollgate::reload::Trigger;

fn file_hash(fx: &Fixture) -> String {
    sha256_hex(&std::fs::read(fx.config_path()).unwrap())
}

use common::admin_call as admin;

#[tokio::test]
async fn editing_the_config_or_a_file_it_names_reloads_without_a_signal() {
    let fx = Fixture::new("[reload]\npoll_ms = 50\ndebounce_ms = 100\n");
    let running = fx.start().await;
    assert_eq!(running.ctx.generation(), (1, file_hash(&fx)));
    assert_eq!(metric(&running, "tollgate_config_generation", &[]), 1.0);

    fx.edit_config(|t| format!("{t}\n[guard.lists]\ndeny = [\"192.0.2.1\"]\n"));
    let ctx = running.ctx.clone();
    wait_for(
        "a reload of the edited file",
        Duration::from_secs(10),
        || ctx.generation().0 == 2,
    )
    .await;
    assert_eq!(ctx.generation().1, file_hash(&fx));
    assert_eq!(metric(&running, "tollgate_config_generation", &[]), 2.0);
    let stamp = metric(
        &running,
        "tollgate_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert_eq!(stamp, (common::NOW_MS / 1000) as f64);

    // a referenced file: the tenant's server secret
    std::fs::write(
        fx.dir.path().join("server.secret"),
        "another-fixture-secret-0123456789abcdef",
    )
    .unwrap();
    wait_for(
        "a reload for the secret file",
        Duration::from_secs(10),
        || ctx.generation().0 == 3,
    )
    .await;
    // nothing changed since: no further reload
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ctx.generation().0, 3);
    assert_eq!(
        metric(
            &running,
            "tollgate_config_reloads_total",
            &[("outcome", "applied")]
        ),
        2.0
    );
    running.stop().await.unwrap();
    let audit = std::fs::read_to_string(fx.dir.path().join("data/audit.log")).unwrap();
    let watch_reloads = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"reload\"") && l.contains("\"trigger\":\"watch\""))
        .count();
    assert_eq!(watch_reloads, 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_half_broken_under_load_lose_no_request() {
    let fx = Fixture::new("[reload]\nwatch = false\n");
    let running = fx.start().await;
    let admin_addr = running.admin_addr.unwrap();
    let valid = std::fs::read_to_string(fx.config_path()).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut client = Client::connect(running.public_addr, &fx.ca_pem, Proto::H2).await;
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let reply = client
                    .post("application/json", event(&format!("r{i}")).to_string())
                    .await;
                if reply.status == 204 {
                    ok += 1;
                } else {
                    failed.push((reply.status, reply.body));
                }
                i += 1;
            }
            (ok, failed)
        }
    });

    for i in 0..100 {
        let broken = i % 2 == 1;
        let text = if broken {
            format!("bogus_key = {i}\n{valid}")
        } else {
            format!("{valid}\n# variant {i}\n")
        };
        std::fs::write(fx.config_path(), &text).unwrap();
        let (status, body) = admin(admin_addr, "POST", "/admin/reload").await;
        if broken {
            assert_eq!(status, 409, "reload {i}: {body}");
            assert!(
                body.contains("unknown field `bogus_key`"),
                "reload {i}: {body}"
            );
            assert!(body.contains("reload_rejected"), "{body}");
        } else {
            assert_eq!(status, 200, "reload {i}: {body}");
            assert!(
                body.contains(&format!("\"generation\":{}", 2 + i / 2)),
                "{body}"
            );
            assert_eq!(running.ctx.generation().1, sha256_hex(text.as_bytes()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(failed.is_empty(), "failed posts: {failed:?}");
    assert!(ok > 0, "the client posted during the reloads");

    assert_eq!(running.ctx.generation().0, 1 + 50);
    let reloads = |outcome| {
        metric(
            &running,
            "tollgate_config_reloads_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!((reloads("applied"), reloads("rejected")), (50.0, 50.0));
    assert_eq!(metric(&running, "tollgate_config_generation", &[]), 51.0);
    running.stop().await.unwrap();
}

/// The config path becomes a FIFO, so a reload blocks inside its read until the test writes a file into it.
/// Two reloads start together. Serialised, one reads the first file while the other waits for the lock and
/// then reads the second: both apply, in order, and the snapshot serving last is the second file. Were they
/// not serialised, both would be reading the FIFO when the first file is written: one of them would read an
/// empty file and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_reloads_run_one_at_a_time_and_the_newer_file_is_stored_last() {
    let fx = Fixture::new("[reload]\nwatch = false\n");
    let running = fx.start().await;
    let valid = std::fs::read_to_string(fx.config_path()).unwrap();
    let path = fx.config_path();
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());

    let _release = Release(path.clone());
    let spawn = || {
        let ctx = running.ctx.clone();
        tokio::task::spawn_blocking(move || ctx.reload_from(Trigger::Admin))
    };
    let (a, b) = (spawn(), spawn());
    // Give both a chance to reach the lock or the FIFO (not a wait for a condition: the outcome must be the
    // same however far they got).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = format!("{valid}\n# first\n");
    let second = format!("{valid}\n# second\n");
    let feed = |text: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match open_for_write(&path) {
                Ok(mut f) => return std::io::Write::write_all(&mut f, text.as_bytes()).unwrap(),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("no reload is reading the config: {e}"),
            }
        }
    };
    feed(&first);
    let ctx = running.ctx.clone();
    wait_for("the first reload", Duration::from_secs(10), || {
        ctx.generation().0 == 2
    })
    .await;
    assert_eq!(ctx.generation().1, sha256_hex(first.as_bytes()));
    assert!(
        !(a.is_finished() && b.is_finished()),
        "the second reload waits for its file"
    );
    feed(&second);
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    let mut numbers = vec![ra.unwrap().number, rb.unwrap().number];
    numbers.sort();
    assert_eq!(numbers, [2, 3]);
    assert_eq!(ctx.generation(), (3, sha256_hex(second.as_bytes())));
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, valid).unwrap();
    running.stop().await.unwrap();
}

/// Opens a FIFO for writing without waiting for a reader (`O_NONBLOCK`: fails with ENXIO when none).
fn open_for_write(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000; // Linux
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
}

/// On drop (a failed test too), opens the FIFO for writing a few times so a reload blocked reading it gets
/// an empty file and ends, instead of holding the runtime's shutdown forever.
struct Release(std::path::PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        for _ in 0..4 {
            drop(open_for_write(&self.0));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
