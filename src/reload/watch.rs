//! The file watcher: reloads when the config file or a file it names changed and then held still.
//!
//! It polls instead of using inotify (the `notify` crate): the files are few (a config, a few keys and
//! certificates, a database), a stat each per second costs nothing, and polling needs no dependency, works the
//! same on every filesystem (network mounts, overlay, bind mounts of a single file where inotify events are
//! lost) and sees a Kubernetes ConfigMap update, which swaps a `..data` symlink rather than writing the file.
//! Each `[reload] poll_ms` the watcher takes a [`Fingerprint`]: size, mtime and inode (of the target, symlinks
//! followed) of every file, plus the SHA-256 of the config file itself (an edit within the same second and
//! size still shows); [`Debounce`] turns a run of fingerprints into at most one reload per finished change.
//! Reloads made by a signal or the admin endpoint move the baseline, so they are not repeated.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::debounce::Debounce;
use super::Trigger;
use crate::app::Ctx;
use crate::config::sha256_hex;

/// One file's state as the watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    Missing,
    File {
        len: u64,
        mtime_ns: i128,
        ino: u64,
        dev: u64,
        /// Only for the config file.
        sha256: Option<String>,
    },
}

/// The state of every watched file, in order.
pub type Fingerprint = Vec<Stamp>;

/// Stats every file in `files` (symlinks followed) and hashes the first (the config file). Blocking.
pub fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .enumerate()
        .map(|(i, path)| match std::fs::metadata(path) {
            Err(_) => Stamp::Missing,
            Ok(m) => Stamp::File {
                len: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ino: m.ino(),
                dev: m.dev(),
                sha256: (i == 0)
                    .then(|| std::fs::read(path).ok().map(|b| sha256_hex(&b)))
                    .flatten(),
            },
        })
        .collect()
}

async fn take(files: Vec<PathBuf>) -> Fingerprint {
    tokio::task::spawn_blocking(move || fingerprint(&files))
        .await
        .unwrap_or_default()
}

/// Polls until `stop`; does nothing for a snapshot built in memory. `[reload]` is read again on every tick,
/// so a reload can turn watching on or off and change its pace.
pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let snap = ctx.config.load_full();
    if snap.source.files.is_empty() {
        return;
    }
    let mut seen_generation = snap.generation;
    let mut debounce = Debounce::new(
        take(snap.source.files.clone()).await,
        snap.operator.reload.debounce,
    );
    loop {
        let settings = ctx.config.load().operator.reload.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(settings.poll) => {}
        }
        if !settings.watch {
            continue;
        }
        debounce.set_interval(settings.debounce);
        let snap = ctx.config.load_full();
        let seen = take(snap.source.files.clone()).await;
        if snap.generation != seen_generation {
            seen_generation = snap.generation;
            debounce.rebase(seen);
            continue;
        }
        if debounce.observe(seen, tokio::time::Instant::now().into_std()) {
            let c = ctx.clone();
            let _ = tokio::task::spawn_blocking(move || c.reload_from(Trigger::Watch)).await;
            seen_generation = ctx.config.load().generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_a_symlink_swap_and_a_removal_all_change_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (conf, key) = (dir.path().join("c.toml"), dir.path().join("key"));
        std::fs::write(&conf, "a = 1").unwrap();
        std::fs::write(dir.path().join("k1"), "x").unwrap();
        std::fs::write(dir.path().join("k2"), "y").unwrap();
        std::os::unix::fs::symlink("k1", &key).unwrap();
        let files = [conf.clone(), key.clone()];
        let first = fingerprint(&files);
        assert_eq!(fingerprint(&files), first, "stable");
        std::fs::write(&conf, "a = 2").unwrap();
        let edited = fingerprint(&files);
        assert_ne!(edited, first, "same size, same second: the hash sees it");
        std::fs::remove_file(&key).unwrap();
        std::os::unix::fs::symlink("k2", &key).unwrap();
        let swapped = fingerprint(&files);
        assert_ne!(swapped, edited, "symlink now points at another inode");
        std::fs::remove_file(&key).unwrap();
        assert_eq!(fingerprint(&files)[1], Stamp::Missing);
    }
}
