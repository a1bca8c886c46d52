//! The durable local spool: an encrypted write-ahead log of minimized events, read by named consumers.
//!
//! What it guarantees:
//! - [`Spool::append`] resolves `Ok` only after every record of the call is written and `fsync`ed; it never
//!   reports success for data that is not on disk, and never drops silently — a spool that would exceed
//!   `max_bytes` (after deleting what every consumer has passed) answers [`SpoolError::Full`] without writing
//!   any record of that call. The records of one call are written together, in order, into one segment.
//!   Appends are group-committed by one writer thread (see `writer`).
//! - Everything on disk is encrypted with AES-256-GCM under the active spool key (see `cipher`); files are
//!   0600 and directories 0700 whatever the umask.
//! - Damage costs the damaged records only: frames carry sync markers and checksums over their headers, so
//!   readers and recovery find the next intact record (see `segment`, `scan`, `recover`). Only a torn tail
//!   of the last segment is ever cut.
//! - A [`Reader`] sees only fsynced records and moves its durable cursor when its consumer commits; a
//!   segment is deleted once every configured consumer's cursor is past it, or — only with `max_age` —
//!   expired, logged and counted.
//!
//! Only [`MinimizedEvent`]s can be stored. One process may open a directory at a time (`LOCK`).
//!
//! Layout of the directory: `seg-{n:020}.log` segments, `cursors/<consumer>`, `quarantine/`, `LOCK`.

mod active;
mod cipher;
mod cursor;
mod fsutil;
mod health;
mod inspect;
mod metrics;
mod reader;
mod record;
mod recover;
mod scan;
mod sealed;
mod segment;
mod shared;
mod space;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::clock::Clock;
use crate::event::MinimizedEvent;

pub use cipher::{SpoolKey, SpoolKeys};
pub use cursor::valid_name as valid_consumer_name;
pub use health::{Fault, Faults, SpoolHealth, WriterState};
pub use inspect::{read_all, status, verify, ConsumerStatus, SpoolStatus, VerifyReport};
pub use metrics::SpoolMetrics;
pub use reader::{Batch, Reader};
pub use record::{Route, StoredRecord};
pub use scan::{Damage, DamageKind};
pub use sealed::{private_dir, read_records, write_records};
pub use segment::{HeaderError, DATA_START, MAX_KEY_ID, MAX_RECORD_BYTES};
pub use shared::Position;

/// Where the spool lives, how far it may grow, and who reads it. Restart-only: compared whole on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Spool directory, created (0700) if missing.
    pub dir: PathBuf,
    /// Rotate to a new segment when the current one would exceed this. An append larger than this gets a
    /// segment of its own.
    pub segment_bytes: u64,
    /// Total bytes of all segments; an append that would exceed it fails with `Full`.
    pub max_bytes: u64,
    /// After the first queued append, collect more for at most this long before committing.
    pub commit_window: Duration,
    /// Cap of one group commit (an append larger than this is committed alone).
    pub max_batch_bytes: usize,
    /// Bound of the append queue; senders wait when it is full. Must be at least 1.
    pub queue_depth: usize,
    /// Records older than this are expired (deleted, logged, counted) even if a consumer has not read them.
    pub max_age: Option<Duration>,
    /// The consumers whose cursors hold segments; none means nothing is ever deleted (but by `max_age`).
    pub consumers: Vec<String>,
}

impl SpoolConfig {
    /// A config with safe defaults: 64 MiB segments, 1 GiB total, 2 ms window, 1 MiB batches, 1024 queued
    /// appends, no expiry, no consumers.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            commit_window: Duration::from_millis(2),
            max_batch_bytes: 1 << 20,
            queue_depth: 1024,
            max_age: None,
            consumers: Vec::new(),
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
    InvalidConfig(String),
    /// Another process (or another open spool) holds this directory.
    #[error("spool directory {0} is in use by another process")]
    Locked(PathBuf),
    /// A segment names a key id that is not configured.
    #[error("spool segment {} is encrypted with key id {key_id:?}, which is not configured (add it to spool.keys)", segment.display())]
    UnknownKey { key_id: String, segment: PathBuf },
    /// The configured key with that id does not decrypt the segment.
    #[error("spool key {key_id:?} does not decrypt segment {} (wrong key material for this id?)", segment.display())]
    WrongKey { key_id: String, segment: PathBuf },
    /// A segment that cannot be read at all.
    #[error("spool segment {}: {reason}{}", segment.display(), if *reason == HeaderError::PreV1 { "; Tollgate 0.1 wrote it: deliver or move away the old segments before upgrading (README, \"Spool format\")" } else { "" })]
    BadSegment {
        segment: PathBuf,
        reason: HeaderError,
    },
    /// A reader for this consumer is already open, or the consumer is not configured.
    #[error("spool consumer {0:?}: {1}")]
    Consumer(String, &'static str),
    /// The writer thread panicked.
    #[error("spool writer thread panicked")]
    WriterPanicked,
    /// Reading, writing or syncing the spool failed; the append is not durable.
    #[error("spool I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What recovery found when the spool was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Segment files found.
    pub segments: usize,
    /// Intact records kept.
    pub records: u64,
    /// Torn tails cut from the last segment (0 or 1).
    pub torn_tails: u64,
    /// Bytes cut from the last segment.
    pub truncated_bytes: u64,
    /// Records lost to damage (skipped and quarantined).
    pub corrupt_records: u64,
}

/// Cheap, cloneable handle to append to the spool and to open readers.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<writer::Pending>,
    shared: Arc<shared::Shared>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// Owns the writer thread. Dropping it without [`SpoolWriter::close`] also stops the writer after it
/// drains the queue, but nobody waits for it.
#[derive(Debug)]
pub struct SpoolWriter {
    thread: writer::WriterThread,
    /// An exclusive lock on `<dir>/LOCK`, held while the writer lives (the kernel drops it if the process dies).
    _lock: std::fs::File,
}

impl Spool {
    /// Recovers the directory, starts the writer thread on a new segment, and returns the handle, the writer
    /// and what recovery found. `keys: None` writes plaintext segments (benchmarks only).
    pub fn open(
        cfg: SpoolConfig,
        keys: Option<SpoolKeys>,
        clock: Arc<dyn Clock>,
        metrics: Arc<SpoolMetrics>,
    ) -> Result<(Spool, SpoolWriter, Recovery), SpoolError> {
        Self::open_inner(cfg, keys, clock, metrics, None)
    }

    /// [`Spool::open`] with a fault-injection seam: tests make the writer's next `write` or `fsync` fail
    /// through the returned [`Faults`]. Never used by the gateway itself.
    #[doc(hidden)]
    pub fn open_with_faults(
        cfg: SpoolConfig,
        keys: Option<SpoolKeys>,
        clock: Arc<dyn Clock>,
        metrics: Arc<SpoolMetrics>,
    ) -> Result<(Spool, SpoolWriter, Recovery, Arc<Faults>), SpoolError> {
        let faults = Arc::new(Faults::default());
        let (spool, writer, recovery) =
            Self::open_inner(cfg, keys, clock, metrics, Some(faults.clone()))?;
        Ok((spool, writer, recovery, faults))
    }

    fn open_inner(
        cfg: SpoolConfig,
        keys: Option<SpoolKeys>,
        clock: Arc<dyn Clock>,
        metrics: Arc<SpoolMetrics>,
        faults: Option<Arc<Faults>>,
    ) -> Result<(Spool, SpoolWriter, Recovery), SpoolError> {
        if cfg.queue_depth == 0 {
            return Err(SpoolError::InvalidConfig(
                "queue_depth must be at least 1".into(),
            ));
        }
        fsutil::private_dir(&cfg.dir)?;
        fsutil::private_dir(&cursor::dir(&cfg.dir))?;
        let lock = lock(&cfg.dir)?;
        let recovered = recover::recover(&cfg.dir, keys.as_ref(), &metrics)?;
        let mut positions = std::collections::BTreeMap::new();
        for name in &cfg.consumers {
            if !cursor::valid_name(name) {
                return Err(SpoolError::Consumer(
                    name.clone(),
                    "names are 1-64 of A-Z a-z 0-9 _ -",
                ));
            }
            positions.insert(
                name.clone(),
                cursor::load(&cfg.dir, name)?.unwrap_or_default(),
            );
        }
        let shared = Arc::new(shared::Shared {
            dir: cfg.dir.clone(),
            committed: watch::Sender::new(Position::default()),
            cursors: Mutex::new(shared::Cursors {
                positions,
                open: Vec::new(),
            }),
            reclaim: Notify::new(),
            keys: ArcSwap::from_pointee(keys),
            metrics,
            closed: std::sync::atomic::AtomicBool::new(false),
            seg_records: Mutex::new(
                recovered
                    .sealed
                    .iter()
                    .map(|(n, s)| (*n, s.records))
                    .collect(),
            ),
            health: health::Health::default(),
            faults,
        });
        let limits = writer::Limits {
            segment_bytes: cfg.segment_bytes,
            max_bytes: cfg.max_bytes,
            commit_window: cfg.commit_window,
            max_batch_bytes: cfg.max_batch_bytes,
            max_age: cfg.max_age,
        };
        let (tx, rx) = mpsc::channel(cfg.queue_depth);
        let space = space::Space::new(recovered.sealed);
        let thread = writer::spawn(shared.clone(), space, recovered.next_seg, limits, clock, rx)?;
        Ok((
            Spool { tx, shared },
            SpoolWriter {
                thread,
                _lock: lock,
            },
            recovered.report,
        ))
    }

    /// Appends all `events` as one unit, each routed as its tenant said at ingest, and resolves after the fsync that covers
    /// them. `Err(Full)` if `max_bytes` would be exceeded (nothing of this call written), `Err(Closed)` once
    /// the writer is closed, `Err(Io)` if the commit failed. Waits while the queue is full. Dropping the
    /// future after it was queued does not cancel the write.
    pub async fn append(&self, events: &[MinimizedEvent]) -> Result<(), SpoolError> {
        if events.is_empty() {
            return if self.tx.is_closed() {
                Err(SpoolError::Closed)
            } else {
                Ok(())
            };
        }
        let mut plain = Vec::with_capacity(events.iter().map(|e| e.record().len() + 64).sum());
        let mut lens = Vec::with_capacity(events.len());
        let mut newest_ms = i64::MIN;
        for e in events {
            let before = plain.len();
            record::encode_into(
                &mut plain,
                e.site(),
                e.event_id(),
                e.received_ms(),
                e.route(),
                e.record(),
            );
            let len = plain.len() - before;
            if e.record().is_empty() || len + cipher::TAG_LEN > MAX_RECORD_BYTES {
                return Err(SpoolError::RecordSize { len });
            }
            lens.push(len as u32);
            newest_ms = newest_ms.max(e.received_ms());
        }
        let (reply, answer) = oneshot::channel();
        let pending = writer::Pending {
            plain,
            lens,
            newest_ms,
            reply,
        };
        self.tx
            .send(pending)
            .await
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Opens the reader of a configured consumer, at its durable cursor (the oldest record if it has none).
    pub fn reader(&self, name: &str) -> Result<Reader, SpoolError> {
        let mut c = self.shared.cursors.lock().expect("cursor table lock");
        let Some(&start) = c.positions.get(name) else {
            return Err(SpoolError::Consumer(
                name.into(),
                "not among spool consumers",
            ));
        };
        if c.open.iter().any(|n| n == name) {
            return Err(SpoolError::Consumer(
                name.into(),
                "a reader is already open",
            ));
        }
        c.open.push(name.to_owned());
        drop(c);
        Ok(Reader::new(name.to_owned(), self.shared.clone(), start))
    }

    /// New keys after a reload: all of them decrypt, and a changed active key starts a new segment.
    pub fn set_keys(&self, keys: SpoolKeys) {
        self.shared.keys.store(Arc::new(Some(keys)));
    }

    /// Key ids of the segments on disk now (a reload must not drop a key these still need).
    pub fn key_ids_in_use(&self) -> Result<Vec<String>, SpoolError> {
        inspect::key_ids(&self.shared.dir)
    }

    /// Whether the writer is committing and whether appends are refused for space (see `health`).
    pub fn health(&self) -> SpoolHealth {
        self.shared.health.get()
    }

    /// The end of fsynced data.
    pub fn committed(&self) -> Position {
        *self.shared.committed.borrow()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// Frames events exactly as the writer does — record header, AES-256-GCM under a segment key derived from
/// the active key once per segment (or plaintext), frame header and checksum — without writing anything.
/// For the benchmark that measures what encryption adds to the ingest path.
#[doc(hidden)]
pub struct BenchFramer {
    seal: Option<cipher::SegmentCipher>,
    body: Vec<u8>,
    seq: u64,
}

impl BenchFramer {
    pub fn new(keys: Option<&SpoolKeys>) -> Self {
        let seal = keys.map(|k| k.active().for_segment(&[7u8; cipher::SALT_LEN], 1));
        Self {
            seal,
            body: Vec::new(),
            seq: 0,
        }
    }

    pub fn frame(&mut self, events: &[MinimizedEvent], out: &mut Vec<u8>) {
        for e in events {
            self.body.clear();
            record::encode_into(
                &mut self.body,
                e.site(),
                e.event_id(),
                e.received_ms(),
                e.route(),
                e.record(),
            );
            let tag = if self.seal.is_some() {
                cipher::TAG_LEN
            } else {
                0
            };
            let header = segment::frame_header(self.body.len() + tag, self.seq);
            if let Some(c) = &self.seal {
                c.seal(self.seq, segment::aad(&header), &mut self.body);
            }
            segment::finish_frame(out, header, &self.body);
            self.seq += 1;
        }
    }
}

/// Two writers on one directory would interleave and truncate each other's records: the second is refused.
fn lock(dir: &Path) -> Result<std::fs::File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(SpoolError::Io(e)),
    }
}

impl SpoolWriter {
    /// Stops accepting appends (later ones get `Closed`), commits every append already queued (cutting the
    /// current commit window short), does a final fsync and joins the thread.
    pub async fn close(self) -> Result<(), SpoolError> {
        self.thread.stop().await
    }
}
