//! The group-commit writer: one OS thread owns the active segment file and the byte count.
//!
//! It takes the first queued append, gathers more for at most `commit_window` (or until `max_batch_bytes`),
//! encrypts and frames them, writes them with one `write` and one `fsync`, publishes the new committed
//! position to readers, and only then answers every waiter. An append never straddles two segments. The
//! writer never appends to a segment it did not create: after a restart it starts a new one. Between
//! commits it deletes segments every consumer has passed (and, with `max_age`, expires old ones).

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::cipher::{SegmentCipher, TAG_LEN};
use super::segment::{self, SegmentHeader, FRAME_HEADER_LEN};
use super::shared::{Position, Shared};
use super::space::Space;
use super::{fsutil, SpoolError};
use crate::clock::Clock;

/// One queued append: its records' plaintext (record header + payload each) and the channel to answer on.
pub(crate) struct Pending {
    pub plain: Vec<u8>,
    pub lens: Vec<u32>,
    pub newest_ms: i64,
    pub reply: oneshot::Sender<Result<(), SpoolError>>,
}

impl Pending {
    /// Bytes these records take on disk.
    pub(crate) fn disk_len(&self) -> u64 {
        (self.plain.len() + self.lens.len() * (FRAME_HEADER_LEN + TAG_LEN)) as u64
    }
}

/// Bounds the writer enforces (copied from `SpoolConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub commit_window: Duration,
    pub max_batch_bytes: usize,
    pub max_age: Option<Duration>,
}

/// The running writer thread and the channels to stop it and hear how it ended.
#[derive(Debug)]
pub(crate) struct WriterThread {
    shutdown: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), SpoolError>>,
    thread: JoinHandle<()>,
}

/// Starts the writer thread on a new segment numbered `next_seg`.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    space: Space,
    next_seg: u64,
    limits: Limits,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Pending>,
) -> Result<WriterThread, SpoolError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let log = ActiveLog::open(shared.clone(), space, next_seg, limits, clock)?;
    let (shutdown, shutdown_rx) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let inbox = Inbox {
        rx,
        shutdown: shutdown_rx,
        closing: false,
    };
    let thread = std::thread::Builder::new()
        .name("tollgate-spool".into())
        .spawn(move || {
            let result = runtime.block_on(run(inbox, log, limits));
            shared
                .closed
                .store(true, std::sync::atomic::Ordering::Release);
            shared.committed.send_modify(|_| {});
            let _ = done_tx.send(result);
        })?;
    Ok(WriterThread {
        shutdown,
        done,
        thread,
    })
}

impl WriterThread {
    /// Asks the thread to drain and stop, waits for its result, then joins it.
    pub(crate) async fn stop(self) -> Result<(), SpoolError> {
        let _ = self.shutdown.send(());
        let result = self.done.await;
        if self.thread.join().is_err() {
            return Err(SpoolError::WriterPanicked);
        }
        result.map_err(|_| SpoolError::WriterPanicked)?
    }
}

async fn run(mut inbox: Inbox, mut log: ActiveLog, limits: Limits) -> Result<(), SpoolError> {
    let mut carry = None;
    // With max_age, wake up now and then to expire even when no append arrives.
    let tick = limits
        .max_age
        .map(|a| (a / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)));
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match inbox.wait(&log.shared, tick).await {
                Wake::Append(p) => p,
                Wake::Maintain => {
                    log.maintain(true);
                    continue;
                }
                Wake::Closed => break,
            },
        };
        let (batch, next) = gather(first, &mut inbox, limits).await;
        carry = next;
        log.commit(batch);
    }
    log.finish()
}

/// Collects appends after `first` until the window closes or the batch is full. An append that would
/// overflow `max_batch_bytes` is handed back for the next batch.
async fn gather(
    first: Pending,
    inbox: &mut Inbox,
    limits: Limits,
) -> (Vec<Pending>, Option<Pending>) {
    let deadline = Instant::now() + limits.commit_window;
    let mut bytes = first.disk_len() as usize;
    let mut batch = vec![first];
    while bytes < limits.max_batch_bytes {
        let Some(next) = inbox.recv(Some(deadline)).await else {
            break;
        };
        let size = next.disk_len() as usize;
        if bytes + size > limits.max_batch_bytes {
            return (batch, Some(next));
        }
        bytes += size;
        batch.push(next);
    }
    (batch, None)
}

/// The append queue plus the shutdown signal of `SpoolWriter`.
struct Inbox {
    rx: mpsc::Receiver<Pending>,
    shutdown: oneshot::Receiver<()>,
    closing: bool,
}

enum Wake {
    Append(Pending),
    /// A reader moved its cursor, or the expiry tick elapsed.
    Maintain,
    Closed,
}

impl Inbox {
    /// Waits for an append while idle; also wakes for space maintenance.
    async fn wait(&mut self, shared: &Shared, tick: Option<Duration>) -> Wake {
        if self.closing {
            return self.rx.recv().await.map_or(Wake::Closed, Wake::Append);
        }
        let tick = async {
            match tick {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            p = self.recv(None) => p.map_or(Wake::Closed, Wake::Append),
            () = shared.reclaim.notified() => Wake::Maintain,
            () = tick => Wake::Maintain,
        }
    }

    /// Next queued append, waiting at most until `deadline` (forever if `None`). Once shutdown is requested
    /// (or the `SpoolWriter` dropped) the queue is closed to senders and this only drains what is queued.
    async fn recv(&mut self, deadline: Option<Instant>) -> Option<Pending> {
        if let Ok(p) = self.rx.try_recv() {
            return Some(p);
        }
        if !self.closing {
            let window = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut self.shutdown => {
                    self.rx.close();
                    self.closing = true;
                }
                p = self.rx.recv() => return p,
                () = window => return None,
            }
        }
        self.rx.recv().await
    }
}

/// A failure after which the file state is unknown (failed fsync or rollback).
#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_error(&self) -> SpoolError {
        SpoolError::Io(io::Error::new(
            self.kind,
            format!("spool writer stopped after: {}", self.message),
        ))
    }
}

/// The active segment.
struct ActiveLog {
    shared: Arc<Shared>,
    space: Space,
    seg_no: u64,
    file: File,
    /// Key id and AEAD key of the active segment (`None`: plaintext).
    key_id: Option<String>,
    cipher: Option<SegmentCipher>,
    /// Next record sequence number in the active segment; never rolled back.
    seq: u64,
    failed: Option<Failure>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    scratch: Vec<u8>,
    #[cfg(test)]
    gate: Option<Arc<super::tests::SyncGate>>,
}

impl ActiveLog {
    fn open(
        shared: Arc<Shared>,
        space: Space,
        seg_no: u64,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SpoolError> {
        let (file, key_id, cipher) = create_segment(&shared, seg_no)?;
        let mut log = Self {
            shared,
            space,
            seg_no,
            file,
            key_id,
            cipher,
            seq: 0,
            failed: None,
            limits,
            clock,
            scratch: Vec::new(),
            #[cfg(test)]
            gate: super::tests::take_gate(),
        };
        log.space.start_segment(seg_no, segment::DATA_START);
        log.publish();
        log.space.publish_bytes(&log.shared.metrics);
        Ok(log)
    }

    fn publish(&self) {
        self.shared.committed.send_replace(Position {
            seg: self.seg_no,
            offset: self.space.active_len(),
        });
    }

    /// Deletes what every consumer has passed, and expires what is older than `max_age`. Only between
    /// commits may it seal an expired active segment (`may_rotate`): inside one, frames are being framed
    /// for the active segment.
    fn maintain(&mut self, may_rotate: bool) {
        if let Some(max_age) = self.limits.max_age {
            let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
            let cutoff = self.clock.now_ms().saturating_sub(age);
            if may_rotate && self.failed.is_none() && self.space.active_is_older_than(cutoff) {
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, "spool: rotation for expiry failed");
                }
            }
            self.space.expire(&self.shared, cutoff);
        }
        self.space.reclaim(&self.shared);
        self.space.publish_bytes(&self.shared.metrics);
    }

    /// Writes a batch and answers every waiter: `Full` for appends that do not fit (checked before any byte
    /// of them is written), then `Ok` after the fsync that covers the rest, or `Io` for all if anything failed.
    fn commit(&mut self, batch: Vec<Pending>) {
        if let Some(failure) = &self.failed {
            for p in batch {
                let _ = p.reply.send(Err(failure.to_error()));
            }
            return;
        }
        let mut result = self.rotate_if_key_changed();
        let mut buf = Vec::new();
        let mut waiters = Vec::with_capacity(batch.len());
        let mut records = 0;
        let mut queue = batch.into_iter();
        while result.is_ok() {
            let Some(p) = queue.next() else { break };
            let size = p.disk_len();
            let in_segment = self.space.active_len() - segment::DATA_START + buf.len() as u64;
            let rotates = in_segment > 0 && in_segment + size > self.limits.segment_bytes;
            // A rotation adds the next segment's header: it counts against max_bytes too.
            let header = if rotates { segment::DATA_START } else { 0 };
            if !self.fits(buf.len() as u64 + size + header) {
                self.shared.metrics.full.inc();
                let _ = p.reply.send(Err(SpoolError::Full));
                continue;
            }
            if rotates {
                result = self.flush(&mut buf).and_then(|()| self.rotate());
            }
            if result.is_ok() {
                self.encode(&p, &mut buf);
                records += p.lens.len() as u64;
            }
            waiters.push(p);
        }
        match result.and_then(|()| self.flush(&mut buf)) {
            Ok(()) => {
                self.shared.metrics.records.inc_by(records);
                for p in waiters {
                    let _ = p.reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, segment = self.seg_no, "spool: commit failed");
                for p in waiters.into_iter().chain(queue) {
                    let _ = p
                        .reply
                        .send(Err(SpoolError::Io(io::Error::new(e.kind(), e.to_string()))));
                }
            }
        }
    }

    /// Whether `extra` more bytes fit under `max_bytes`, reclaiming first if they would not.
    fn fits(&mut self, extra: u64) -> bool {
        if self.space.total() + extra <= self.limits.max_bytes {
            return true;
        }
        self.maintain(false);
        self.space.total() + extra <= self.limits.max_bytes
    }

    /// Frames (and encrypts) the records of one append into `buf`.
    fn encode(&mut self, p: &Pending, buf: &mut Vec<u8>) {
        let mut at = 0;
        for &len in &p.lens {
            let plain = &p.plain[at..at + len as usize];
            at += len as usize;
            let body_len = plain.len() + if self.cipher.is_some() { TAG_LEN } else { 0 };
            let header = segment::frame_header(body_len, self.seq);
            self.scratch.clear();
            self.scratch.extend_from_slice(plain);
            if let Some(c) = &self.cipher {
                c.seal(self.seq, segment::aad(&header), &mut self.scratch);
            }
            segment::finish_frame(buf, header, &self.scratch);
            self.space.add_record(p.newest_ms);
            self.seq += 1;
        }
    }

    /// A reload that changed the active key takes effect with a new segment.
    fn rotate_if_key_changed(&mut self) -> io::Result<()> {
        let keys = self.shared.keys.load();
        let active = keys.as_ref().as_ref().map(|k| k.active().id().to_owned());
        if active != self.key_id {
            tracing::info!(segment = self.seg_no + 1, key = ?active, "spool: active key changed, new segment");
            return self.rotate();
        }
        Ok(())
    }

    /// Writes `buf` to the active segment with one write and syncs it, then publishes the new end. A failed
    /// write is rolled back to the last synced length; a failed fsync (or rollback) stops the writer for
    /// good, since the kernel may have dropped the dirty pages.
    fn flush(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.file.write_all(buf) {
            if let Err(rollback) = self.file.set_len(self.space.active_len()) {
                self.fail(&rollback);
            }
            self.space.forget_unsynced();
            return Err(e);
        }
        #[cfg(test)]
        if let Some(gate) = &self.gate {
            gate.hold();
        }
        if let Err(e) = self.file.sync_data() {
            self.fail(&e);
            return Err(e);
        }
        let m = &self.shared.metrics;
        m.commit_seconds.observe(started.elapsed().as_secs_f64());
        let records = self.space.synced(buf.len() as u64);
        self.shared
            .set_seg_records(self.space.active(), Some(records));
        buf.clear();
        m.commits.inc();
        self.space.publish_bytes(m);
        self.publish();
        Ok(())
    }

    /// Seals the (already synced) active segment and starts the next one.
    fn rotate(&mut self) -> io::Result<()> {
        let next = self.seg_no + 1;
        let (file, key_id, cipher) = match create_segment(&self.shared, next) {
            Ok(created) => created,
            Err(SpoolError::Io(e)) => {
                self.fail(&e);
                return Err(e);
            }
            Err(other) => return Err(io::Error::other(other.to_string())),
        };
        tracing::debug!(segment = next, "spool: rotated");
        self.file = file;
        self.key_id = key_id;
        self.cipher = cipher;
        self.seg_no = next;
        self.seq = 0;
        self.space.start_segment(next, segment::DATA_START);
        self.space.publish_bytes(&self.shared.metrics);
        self.publish();
        Ok(())
    }

    fn fail(&mut self, e: &io::Error) {
        tracing::error!(error = %e, "spool: writer stopped, restart to recover");
        self.failed = Some(Failure {
            kind: e.kind(),
            message: e.to_string(),
        });
    }

    /// Final fsync at shutdown.
    fn finish(self) -> Result<(), SpoolError> {
        if let Some(failure) = &self.failed {
            return Err(failure.to_error());
        }
        self.file.sync_all()?;
        Ok(())
    }
}

/// Creates segment `n` with its header (encrypted with the active key, if any), fsynced with its directory.
fn create_segment(
    shared: &Shared,
    n: u64,
) -> Result<(File, Option<String>, Option<SegmentCipher>), SpoolError> {
    let keys = shared.keys.load();
    let active = keys.as_ref().as_ref().map(|k| k.active().clone());
    let salt = super::cipher::new_salt();
    let header = SegmentHeader {
        seg_no: n,
        key_id: active.as_ref().map(|k| k.id().to_owned()),
        salt,
    };
    let path = shared.dir.join(segment::segment_name(n));
    let mut file = fsutil::create_private(&path)?;
    file.write_all(&header.encode())?;
    file.sync_all()?;
    fsutil::sync_dir(&shared.dir)?;
    let cipher = active.as_ref().map(|k| k.for_segment(&salt, n));
    Ok((file, header.key_id, cipher))
}
