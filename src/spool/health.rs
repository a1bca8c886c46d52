//! What the spool tells readiness: whether the writer is committing and whether appends are being refused
//! for lack of space. Written by the writer thread, read by `/readyz` and `/admin/status` (lock-free).
//!
//! Guarantees:
//! - `writer` is [`WriterState::Failing`] after a commit whose `write` failed and was rolled back; the next
//!   successful commit sets it back to [`WriterState::Ok`]. It is [`WriterState::Stopped`] after a failed
//!   `fsync` (or rollback): the writer refuses every later append, so only a restart clears it.
//! - `full` is set when an append is refused with `Full`, and cleared when a later commit stores every
//!   append of its batch or when reclaiming (or expiry) frees bytes.
//!
//! [`Faults`] is the one fault-injection seam: compiled in, but only a spool opened with
//! [`Spool::open_with_faults`](super::Spool::open_with_faults) has one; production opens never do.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// The writer's state, as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterState {
    Ok = 0,
    /// The last commit failed (its write was rolled back); the writer keeps trying with the next append.
    Failing = 1,
    /// An fsync failed: the writer stopped for good (restart to recover).
    Stopped = 2,
}

impl WriterState {
    pub fn label(self) -> &'static str {
        match self {
            WriterState::Ok => "ok",
            WriterState::Failing => "failing",
            WriterState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => WriterState::Ok,
            1 => WriterState::Failing,
            _ => WriterState::Stopped,
        }
    }
}

/// A copy of the spool's health at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolHealth {
    pub writer: WriterState,
    pub full: bool,
}

/// The shared cells behind [`SpoolHealth`].
#[derive(Debug, Default)]
pub(crate) struct Health {
    writer: AtomicU8,
    full: AtomicBool,
}

impl Health {
    pub(crate) fn get(&self) -> SpoolHealth {
        SpoolHealth {
            writer: WriterState::from_u8(self.writer.load(Ordering::Acquire)),
            full: self.full.load(Ordering::Acquire),
        }
    }

    /// A `Stopped` writer stays stopped.
    pub(crate) fn set_writer(&self, state: WriterState) {
        let _ = self
            .writer
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old != WriterState::Stopped as u8).then_some(state as u8)
            });
    }

    pub(crate) fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::Release);
    }
}

/// Which I/O call the next injected failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next commit's `write` fails (and is rolled back): the writer goes on.
    Write,
    /// The next commit's `fsync` fails: the writer stops.
    Sync,
}

/// One-shot failures for tests; see the module doc.
#[derive(Debug, Default)]
pub struct Faults {
    write: AtomicBool,
    sync: AtomicBool,
}

impl Faults {
    /// Makes the next `fault` call fail once.
    pub fn inject(&self, fault: Fault) {
        self.cell(fault).store(true, Ordering::Release);
    }

    /// Whether this call must fail (consumes the injected failure).
    pub(crate) fn take(&self, fault: Fault) -> bool {
        self.cell(fault).swap(false, Ordering::AcqRel)
    }

    fn cell(&self, fault: Fault) -> &AtomicBool {
        match fault {
            Fault::Write => &self.write,
            Fault::Sync => &self.sync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_is_final_and_faults_fire_once() {
        let h = Health::default();
        h.set_writer(WriterState::Failing);
        assert_eq!(h.get().writer, WriterState::Failing);
        h.set_writer(WriterState::Ok);
        h.set_writer(WriterState::Stopped);
        h.set_writer(WriterState::Ok);
        assert_eq!(h.get().writer, WriterState::Stopped);
        let f = Faults::default();
        f.inject(Fault::Sync);
        assert!(!f.take(Fault::Write));
        assert!(f.take(Fault::Sync));
        assert!(!f.take(Fault::Sync));
    }
}
