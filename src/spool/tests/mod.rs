//! Spool tests: shared helpers here; `writer` (group commit, rotation, full), `damage` (recovery, verify,
//! property), `reader` (fsync visibility, cursors, exactly-once across restarts), `space` (reclaim, expiry),
//! `crypto` (nothing readable on disk, keys).

mod crypto;
mod damage;
mod reader;
mod space;
mod writer;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::record::{self, Route};
use super::segment::{list_segments, FRAME_HEADER_LEN};
use super::*;
use crate::clock::FixedClock;

pub(crate) const NOW_MS: i64 = 1_732_262_400_000;

pub(super) fn ev(i: usize) -> MinimizedEvent {
    MinimizedEvent::for_spool_tests(
        "example.org",
        &format!("e{i:04}"),
        NOW_MS,
        format!(r#"{{"site":"example.org","event_id":"e{i:04}"}}"#).into_bytes(),
    )
}

pub(super) fn evs(range: std::ops::Range<usize>) -> Vec<MinimizedEvent> {
    range.map(ev).collect()
}

/// The payloads `read_all` should give back for `events`.
pub(super) fn records(events: &[MinimizedEvent]) -> Vec<Vec<u8>> {
    events.iter().map(MinimizedEvent::to_record).collect()
}

pub(super) fn keys() -> SpoolKeys {
    key_ring(&[("s1", 1)], "s1")
}

pub(super) fn key_ring(keys: &[(&str, u8)], active: &str) -> SpoolKeys {
    let keys = keys
        .iter()
        .map(|(id, b)| Arc::new(SpoolKey::new(*id, &[*b; 32])))
        .collect();
    SpoolKeys::new(keys, active).unwrap()
}

/// Payloads of every record in `dir`, read with the test key.
pub(super) fn stored(dir: &Path) -> Vec<Vec<u8>> {
    read_all(dir, Some(&keys()))
        .unwrap()
        .into_iter()
        .map(|r| r.payload)
        .collect()
}

/// Bytes of one framed, encrypted test event (all test events have the same size).
pub(super) fn frame() -> u64 {
    let e = ev(0);
    let mut plain = Vec::new();
    record::encode_into(
        &mut plain,
        e.site(),
        e.event_id(),
        e.received_ms(),
        &Route::All,
        e.record(),
    );
    (FRAME_HEADER_LEN + plain.len() + cipher::TAG_LEN) as u64
}

pub(super) fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        commit_window: Duration::from_millis(1),
        ..SpoolConfig::new(dir)
    }
}

pub(super) type Opened = (Spool, SpoolWriter, Recovery, Arc<SpoolMetrics>);

pub(super) fn open(cfg: SpoolConfig) -> Opened {
    open_with(cfg, Some(keys()))
}

pub(super) fn open_with(cfg: SpoolConfig, keys: Option<SpoolKeys>) -> Opened {
    try_open(cfg, keys).unwrap()
}

pub(super) fn try_open(cfg: SpoolConfig, keys: Option<SpoolKeys>) -> Result<Opened, SpoolError> {
    let metrics = Arc::new(SpoolMetrics::register(&prometheus::Registry::new()).unwrap());
    let clock = Arc::new(FixedClock::new(NOW_MS));
    let (spool, writer, recovery) = Spool::open(cfg, keys, clock, metrics.clone())?;
    Ok((spool, writer, recovery, metrics))
}

pub(super) fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Polls `fut` once (so an append gets queued) and reports whether it finished.
pub(super) async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> bool {
    use std::pin::Pin;
    use std::task::Poll;
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx).is_ready())).await
}

/// Closes the writer, failing (instead of hanging) if it does not finish.
pub(super) async fn close(writer: SpoolWriter) {
    let closing = tokio::time::timeout(Duration::from_secs(30), writer.close());
    closing.await.expect("close finishes").unwrap();
}

/// Appends each event as one call, in order.
pub(super) async fn append_each(spool: &Spool, events: &[MinimizedEvent]) {
    for e in events {
        spool.append(std::slice::from_ref(e)).await.unwrap();
    }
}

/// Holds the writer between its write and its fsync, for tests of what readers may see.
#[derive(Default)]
pub(crate) struct SyncGate {
    state: Mutex<(bool, bool)>, // (writer is waiting, released)
    cv: Condvar,
}

impl SyncGate {
    /// Called by the writer after `write`, before `fsync`.
    pub(crate) fn hold(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
        *s = (false, false);
    }

    /// Waits until the writer sits between write and fsync.
    pub(super) fn wait_held(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            let (next, timeout) = self.cv.wait_timeout(s, Duration::from_secs(30)).unwrap();
            assert!(!timeout.timed_out(), "writer never reached the gate");
            s = next;
        }
    }

    pub(super) fn release(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 = true;
        self.cv.notify_all();
    }
}

thread_local! {
    static GATE: RefCell<Option<Arc<SyncGate>>> = const { RefCell::new(None) };
}

/// The next spool opened on this thread stops at `gate` before every fsync.
pub(super) fn install_gate(gate: Arc<SyncGate>) {
    GATE.with(|g| *g.borrow_mut() = Some(gate));
}

pub(crate) fn take_gate() -> Option<Arc<SyncGate>> {
    GATE.with(|g| g.borrow_mut().take())
}
