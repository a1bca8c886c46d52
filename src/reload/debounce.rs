//! The debounce rule of the file watcher, pure: explicit instants, any comparable fingerprint.
//!
//! A reload fires once a fingerprint that differs from the last one acted on has been seen unchanged for at
//! least the debounce interval. An editor that writes a file in several steps, or a ConfigMap update that
//! swaps a symlink, therefore causes one reload of the finished state, never one of a half-written file
//! (unless the writer pauses longer than the interval). A reload that was rejected still counts as acted on:
//! a broken file is reported once, not every poll, and the next edit is picked up again.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Debounce<F> {
    interval: Duration,
    /// The fingerprint last reloaded (or loaded at start).
    acted_on: F,
    /// A different fingerprint, and when it was first seen.
    pending: Option<(F, Instant)>,
}

impl<F: PartialEq> Debounce<F> {
    pub fn new(acted_on: F, interval: Duration) -> Self {
        Self {
            interval,
            acted_on,
            pending: None,
        }
    }

    /// The files were reloaded by someone else (signal, admin): `now_seen` is the new baseline.
    pub fn rebase(&mut self, now_seen: F) {
        self.acted_on = now_seen;
        self.pending = None;
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// One poll's fingerprint at `now`; `true` = reload now (and `seen` becomes the baseline).
    pub fn observe(&mut self, seen: F, now: Instant) -> bool {
        if seen == self.acted_on {
            self.pending = None;
            return false;
        }
        match &self.pending {
            Some((p, since)) if *p == seen => {
                if now.saturating_duration_since(*since) >= self.interval {
                    self.pending = None;
                    self.acted_on = seen;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.pending = Some((seen, now));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_change_fires_once_after_holding_still_for_the_interval() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1, 500 * MS);
        assert!(!d.observe(1, t0), "unchanged");
        assert!(!d.observe(2, t0 + 100 * MS), "first sight starts the clock");
        assert!(!d.observe(2, t0 + 599 * MS), "499 ms still");
        assert!(d.observe(2, t0 + 600 * MS), "500 ms still: fire");
        assert!(!d.observe(2, t0 + 2000 * MS), "fired once");
    }

    #[test]
    fn a_file_still_being_written_restarts_the_clock() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1, 500 * MS);
        assert!(!d.observe(2, t0));
        assert!(!d.observe(3, t0 + 400 * MS));
        assert!(!d.observe(3, t0 + 800 * MS), "only 400 ms since 3 appeared");
        assert!(d.observe(3, t0 + 900 * MS));
    }

    #[test]
    fn a_change_reverted_before_the_interval_fires_nothing() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1, 500 * MS);
        assert!(!d.observe(2, t0));
        assert!(!d.observe(1, t0 + 100 * MS));
        assert!(!d.observe(1, t0 + 1000 * MS));
    }

    #[test]
    fn zero_interval_fires_on_the_second_sight_and_rebase_forgets_pending() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1, Duration::ZERO);
        assert!(!d.observe(2, t0));
        d.rebase(2);
        assert!(!d.observe(2, t0 + MS), "reloaded elsewhere: nothing to do");
        assert!(!d.observe(3, t0 + 2 * MS));
        assert!(d.observe(3, t0 + 2 * MS));
    }
}
