//! What the writer and the readers share: the committed position (published only after fsync), every
//! consumer's durable cursor, and the keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use super::cipher::SpoolKeys;
use super::SpoolMetrics;

/// A place in the spool: a segment and a byte offset in it (the next frame to read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub seg: u64,
    pub offset: u64,
}

/// Consumers known to the spool and where each one's durable cursor stands.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    pub positions: BTreeMap<String, Position>,
    /// Consumers that have a reader open (one at a time each).
    pub open: Vec<String>,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    /// The end of fsynced data: readers never read past it. Sent by the writer after every commit.
    pub committed: watch::Sender<Position>,
    pub cursors: Mutex<Cursors>,
    /// Woken by a reader after it moved its cursor, so the writer can reclaim space.
    pub reclaim: Notify,
    pub keys: ArcSwap<Option<SpoolKeys>>,
    pub metrics: Arc<SpoolMetrics>,
    /// Set by the writer thread when it ends: readers that caught up get `Closed` instead of waiting.
    pub closed: std::sync::atomic::AtomicBool,
    /// Records per live segment (synced ones only), for consumer lag.
    pub seg_records: Mutex<BTreeMap<u64, u64>>,
    /// Writer state and fullness, for readiness.
    pub health: super::health::Health,
    /// Injected I/O failures; `None` except for a spool opened with `Spool::open_with_faults`.
    pub faults: Option<Arc<super::health::Faults>>,
}

impl Shared {
    /// Whether an injected failure hits this call.
    pub(crate) fn fault(&self, fault: super::health::Fault) -> bool {
        self.faults.as_ref().is_some_and(|f| f.take(fault))
    }

    pub(crate) fn set_seg_records(&self, seg: u64, records: Option<u64>) {
        let mut m = self.seg_records.lock().expect("segment table lock");
        match records {
            Some(n) => m.insert(seg, n),
            None => m.remove(&seg),
        };
    }

    /// The cursor of the consumer furthest behind; `None` when the spool has no consumers.
    pub(crate) fn slowest(&self) -> Option<(Position, Vec<String>)> {
        let c = self.cursors.lock().expect("cursor table lock");
        let min = *c.positions.values().min()?;
        let behind = c
            .positions
            .iter()
            .filter(|(_, p)| **p == min)
            .map(|(n, _)| n.clone())
            .collect();
        Some((min, behind))
    }
}
