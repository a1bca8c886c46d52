//! The durable local spool: a write-ahead log of minimized events in one directory.
//!
//! What it guarantees: [`Spool::append`] resolves `Ok` only after every record of the
//! call has been written and `fsync`ed; it never reports success for data that is not
//! on disk, and it never drops silently — a spool that would exceed `max_bytes` answers
//! [`SpoolError::Full`] without writing any record of that call. The records of one call
//! are written together, in order, into one segment, never interleaved with another
//! call. Appends are group-committed: one writer thread batches the appends that arrive
//! within `commit_window` into one write and one fsync. After a crash, [`Spool::open`]
//! keeps every complete, checksum-valid record and truncates a torn or corrupt segment
//! tail (so an append that was never acknowledged may survive partly, as a prefix of its
//! records, or not at all: delivery is at-least-once for a caller that retries). Only
//! [`MinimizedEvent`]s can be stored. One process may open a directory at a time.
//!
//! Layout: segment files `seg-{n:020}.log`, numbered from 1; each is a sequence of frames
//! `[u32 LE payload length][u32 LE crc32 of payload][payload]`.

mod metrics;
mod recover;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::event::MinimizedEvent;

pub use metrics::SpoolMetrics;
pub use segment::MAX_RECORD_BYTES;

/// Where the spool lives and how far it may grow.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Spool directory, created if missing.
    pub dir: PathBuf,
    /// Rotate to a new segment when the current one would exceed this. An append larger
    /// than this gets a segment of its own.
    pub segment_bytes: u64,
    /// Total bytes of all segments; an append that would exceed it fails with `Full`.
    pub max_bytes: u64,
    /// After the first queued append, collect more for at most this long before committing.
    pub commit_window: Duration,
    /// Cap of one group commit (an append larger than this is committed alone).
    pub max_batch_bytes: usize,
    /// Bound of the append queue; senders wait when it is full. Must be at least 1.
    pub queue_depth: usize,
}

impl SpoolConfig {
    /// A config with safe defaults: 64 MiB segments, 1 GiB total, 2 ms window,
    /// 1 MiB batches, 1024 queued appends.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            commit_window: Duration::from_millis(2),
            max_batch_bytes: 1 << 20,
            queue_depth: 1024,
        }
    }
}

/// Why the spool refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The append would take the spool past `max_bytes`; nothing of it was written.
    #[error("spool is full")]
    Full,
    /// The spool writer was closed.
    #[error("spool is closed")]
    Closed,
    /// A record is empty or larger than [`MAX_RECORD_BYTES`].
    #[error("record of {len} bytes cannot be spooled")]
    RecordSize { len: usize },
    /// The configuration cannot work.
    #[error("invalid spool config: {0}")]
    InvalidConfig(&'static str),
    /// Another process (or another open spool) holds this directory.
    #[error("spool directory {0} is in use by another process")]
    Locked(PathBuf),
    /// The writer thread panicked.
    #[error("spool writer thread panicked")]
    WriterPanicked,
    /// Reading, writing or syncing the spool failed; the append is not durable.
    #[error("spool I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What recovery found when the spool was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files found.
    pub segments: usize,
    /// Complete records kept.
    pub records: u64,
    /// Segments whose torn or corrupt tail was truncated.
    pub torn_tails: u64,
    /// Bytes removed by those truncations.
    pub truncated_bytes: u64,
}

/// Cheap, cloneable handle to append to the spool.
#[derive(Debug, Clone)]
pub struct Spool {
    tx: mpsc::Sender<writer::Pending>,
}

/// Owns the writer thread. Dropping it without [`SpoolWriter::close`] also stops the
/// writer after it drains the queue, but nobody waits for it.
#[derive(Debug)]
pub struct SpoolWriter {
    thread: writer::WriterThread,
    /// An exclusive lock on `<dir>/LOCK`, held while the writer lives (the kernel drops it if the process dies).
    _lock: std::fs::File,
}

impl Spool {
    /// Recovers the directory, starts the writer thread, and returns the handle, the
    /// writer and what recovery found.
    pub fn open(
        cfg: SpoolConfig,
        metrics: Arc<SpoolMetrics>,
    ) -> Result<(Spool, SpoolWriter, Recovery), SpoolError> {
        if cfg.queue_depth == 0 {
            return Err(SpoolError::InvalidConfig("queue_depth must be at least 1"));
        }
        std::fs::create_dir_all(&cfg.dir)?;
        let lock = lock(&cfg.dir)?;
        let recovered = recover::recover(&cfg.dir, &metrics)?;
        let limits = writer::Limits {
            segment_bytes: cfg.segment_bytes,
            max_bytes: cfg.max_bytes,
            commit_window: cfg.commit_window,
            max_batch_bytes: cfg.max_batch_bytes,
        };
        let (tx, rx) = mpsc::channel(cfg.queue_depth);
        let thread = writer::spawn(cfg.dir, &recovered, limits, metrics, rx)?;
        Ok((
            Spool { tx },
            SpoolWriter {
                thread,
                _lock: lock,
            },
            recovered.report,
        ))
    }

    /// Appends all `events` as one unit and resolves after the fsync that covers them.
    ///
    /// `Err(Full)` if `max_bytes` would be exceeded (nothing of this call written),
    /// `Err(Closed)` once the writer is closed, `Err(Io)` if the commit failed. Waits
    /// while the queue is full. Dropping the future after it was queued does not
    /// cancel the write.
    pub async fn append(&self, events: &[MinimizedEvent]) -> Result<(), SpoolError> {
        if events.is_empty() {
            return if self.tx.is_closed() {
                Err(SpoolError::Closed)
            } else {
                Ok(())
            };
        }
        let mut frames = Vec::new();
        for event in events {
            segment::encode_into(&mut frames, event.record())?;
        }
        let (reply, answer) = oneshot::channel();
        let pending = writer::Pending {
            frames,
            records: events.len() as u64,
            reply,
        };
        self.tx
            .send(pending)
            .await
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }
}

/// Two writers on one directory would interleave and truncate each other's records: the second is refused.
fn lock(dir: &Path) -> Result<std::fs::File, SpoolError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(SpoolError::Io(e)),
    }
}

impl SpoolWriter {
    /// Stops accepting appends (later ones get `Closed`), commits every append already
    /// queued (cutting the current commit window short), does a final fsync and joins
    /// the thread. An async fn that awaits the thread's result on any tokio runtime; the
    /// join itself happens once the thread is done, so it does not block the executor.
    pub async fn close(self) -> Result<(), SpoolError> {
        self.thread.stop().await
    }
}

/// Reads every complete record of the spool in `dir`, in order, without modifying
/// anything. Stops reading a segment at its first torn or corrupt frame and goes on
/// with the next segment.
pub fn read_all(dir: &Path) -> Result<Vec<Vec<u8>>, SpoolError> {
    let mut records = Vec::new();
    for (_, path) in segment::list_segments(dir)? {
        let (end, _) = segment::scan_file(&path, |payload| records.push(payload.to_vec()))?;
        if let Some(fault) = end.fault {
            tracing::debug!(segment = %path.display(), ?fault, "spool: read stopped at a torn tail");
        }
    }
    Ok(records)
}
