//! The file watcher: reloads when the config file or a file it names changed and then held still.
//!
//! It polls instead of using inotify (the `notify` crate): the files are few (a config, a few keys and
//! certificates, a database), a stat each per second costs nothing, and polling needs no dependency, works the
//! same on every filesystem (network mounts, overlay, bind mounts of a single file where inotify events are
//! lost) and sees a Kubernetes ConfigMap update, which swaps a `..data` symlink rather than writing the file.
//! Each `[reload] poll_ms` the watcher takes a [`Fingerprint`]: size, mtime and inode (of the target, symlinks
//! followed) of every file, plus the SHA-256 of the config file itself (an edit within the same second and
//! size still shows); [`Debounce`] turns a run of fingerprints into at most one reload per finished change.
//! The baseline is the fingerprint the serving snapshot was stamped with as it was loaded
//! ([`crate::config::Source`]), so reloads made by a signal or the admin endpoint are not repeated and a
//! change made while one ran is not missed.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::debounce::Debounce;
use super::Trigger;
use crate::app::Ctx;
use crate::config::{fingerprint, Fingerprint};

async fn take(files: Vec<PathBuf>) -> Fingerprint {
    tokio::task::spawn_blocking(move || fingerprint(&files))
        .await
        .unwrap_or_default()
}

/// Polls until `stop`. `[reload]` is read again on every tick, so a reload can turn watching on or off and
/// change its pace; while it is off (or the snapshot was built in memory) no file is touched.
pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    // Reload attempts and generation the baseline belongs to, and the debounce state; `None` while off.
    let mut state: Option<(u64, u64, Debounce<Fingerprint>)> = None;
    loop {
        let attempts = ctx.reload_attempts();
        let snap = ctx.config.load_full();
        let settings = &snap.operator.reload;
        if !settings.watch || snap.source.files.is_empty() {
            state = None;
        } else {
            let seen = take(snap.source.files.clone()).await;
            let now = tokio::time::Instant::now().into_std();
            match &mut state {
                // The baseline is what the serving snapshot was built from (stamped as it was loaded), so a
                // change made before the watcher first looks, or during a reload by a signal or the admin
                // endpoint, is still seen.
                None => {
                    let mut d = Debounce::new(snap.source.stamps.clone(), settings.debounce);
                    d.observe(seen, now);
                    state = Some((attempts, snap.generation, d));
                }
                Some((tried, generation, d)) if *tried != attempts => {
                    // Someone else reloaded: applied, the new snapshot's stamps are the baseline; rejected,
                    // the files as they are now (that broken file was reported already).
                    if *generation != snap.generation {
                        d.rebase(snap.source.stamps.clone());
                        d.observe(seen, now);
                    } else {
                        d.rebase(seen);
                    }
                    (*tried, *generation) = (attempts, snap.generation);
                }
                Some((tried, generation, d)) => {
                    d.set_interval(settings.debounce);
                    if d.observe(seen, now) {
                        let c = ctx.clone();
                        let _ = tokio::task::spawn_blocking(move || c.reload_from(Trigger::Watch))
                            .await;
                        (*tried, *generation) =
                            (ctx.reload_attempts(), ctx.config.load().generation);
                    }
                }
            }
        }
        let poll = settings.poll;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stamp;

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
