//! The group-commit writer: one OS thread owns the active segment file.
//!
//! It takes the first queued append, gathers more for at most `commit_window` (or
//! until `max_batch_bytes`), writes them with one `write` and one `fsync`, and only
//! then answers every waiter. An append never straddles two segments.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::recover::Recovered;
use super::segment::segment_name;
use super::{SpoolError, SpoolMetrics};

/// One queued append: its encoded frames and the channel to answer on.
pub(crate) struct Pending {
    pub frames: Vec<u8>,
    pub records: u64,
    pub reply: oneshot::Sender<Result<(), SpoolError>>,
}

/// Bounds the writer enforces (copied from `SpoolConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub commit_window: Duration,
    pub max_batch_bytes: usize,
}

/// The running writer thread and the channels to stop it and hear how it ended.
#[derive(Debug)]
pub(crate) struct WriterThread {
    shutdown: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), SpoolError>>,
    thread: JoinHandle<()>,
}

/// Opens the active segment and starts the writer thread. It runs a current-thread
/// runtime with time enabled, used only to wait on the queue and the commit window.
pub(crate) fn spawn(
    dir: PathBuf,
    recovered: &Recovered,
    limits: Limits,
    metrics: Arc<SpoolMetrics>,
    rx: mpsc::Receiver<Pending>,
) -> Result<WriterThread, SpoolError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let log = ActiveLog::open(dir, recovered, limits, metrics)?;
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
            let _ = done_tx.send(result);
        })?;
    Ok(WriterThread {
        shutdown,
        done,
        thread,
    })
}

impl WriterThread {
    /// Asks the thread to drain and stop, waits for its result, then joins it. The join
    /// happens after the thread has sent its result, so it does not block for long.
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
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match inbox.recv(None).await {
                Some(p) => p,
                None => break,
            },
        };
        let (batch, next) = gather(first, &mut inbox, limits).await;
        carry = next;
        log.commit(batch);
    }
    log.finish()
}

/// Collects appends after `first` until the window closes or the batch is full. An
/// append that would overflow `max_batch_bytes` is handed back for the next batch.
async fn gather(
    first: Pending,
    inbox: &mut Inbox,
    limits: Limits,
) -> (Vec<Pending>, Option<Pending>) {
    let deadline = Instant::now() + limits.commit_window;
    let mut bytes = first.frames.len();
    let mut batch = vec![first];
    while bytes < limits.max_batch_bytes {
        let Some(next) = inbox.recv(Some(deadline)).await else {
            break;
        };
        if bytes + next.frames.len() > limits.max_batch_bytes {
            return (batch, Some(next));
        }
        bytes += next.frames.len();
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

impl Inbox {
    /// Next queued append, waiting at most until `deadline` (forever if `None`).
    /// Once shutdown is requested (or the `SpoolWriter` dropped) the queue is closed to
    /// senders and this only drains what is already queued, without waiting.
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

/// The active segment and the byte accounting.
struct ActiveLog {
    dir: PathBuf,
    seg_no: u64,
    file: File,
    /// Bytes of the active segment that are written and synced.
    seg_len: u64,
    /// Bytes of all earlier segments.
    closed_bytes: u64,
    failed: Option<Failure>,
    limits: Limits,
    metrics: Arc<SpoolMetrics>,
}

impl ActiveLog {
    fn open(
        dir: PathBuf,
        recovered: &Recovered,
        limits: Limits,
        metrics: Arc<SpoolMetrics>,
    ) -> io::Result<Self> {
        let (seg_no, seg_len, file) = match recovered.last {
            Some((n, len)) => (n, len, open_segment(&dir, n, false)?),
            None => {
                let file = open_segment(&dir, 1, true)?;
                sync_dir(&dir)?;
                (1, 0, file)
            }
        };
        let closed_bytes = recovered.total_bytes - seg_len;
        Ok(Self {
            dir,
            seg_no,
            file,
            seg_len,
            closed_bytes,
            failed: None,
            limits,
            metrics,
        })
    }

    fn total(&self) -> u64 {
        self.closed_bytes + self.seg_len
    }

    /// Writes a batch and answers every waiter: `Full` for appends that do not fit
    /// (checked before any byte of them is written), then `Ok` after the fsync that
    /// covers the rest, or `Io` for all of them if anything failed.
    fn commit(&mut self, batch: Vec<Pending>) {
        if let Some(failure) = &self.failed {
            for p in batch {
                let _ = p.reply.send(Err(failure.to_error()));
            }
            return;
        }
        let mut buf = Vec::new();
        let mut waiters = Vec::with_capacity(batch.len());
        let mut records = 0;
        let mut result = Ok(());
        let mut queue = batch.into_iter();
        for p in queue.by_ref() {
            let size = p.frames.len() as u64;
            if self.total() + buf.len() as u64 + size > self.limits.max_bytes {
                self.metrics.full.inc();
                let _ = p.reply.send(Err(SpoolError::Full));
                continue;
            }
            let in_segment = self.seg_len + buf.len() as u64;
            if in_segment > 0 && in_segment + size > self.limits.segment_bytes {
                if let Err(e) = self.flush(&mut buf).and_then(|()| self.rotate()) {
                    result = Err(e);
                    waiters.push(p);
                    break;
                }
            }
            buf.extend_from_slice(&p.frames);
            records += p.records;
            waiters.push(p);
        }
        match result.and_then(|()| self.flush(&mut buf)) {
            Ok(()) => {
                self.metrics.records.inc_by(records);
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

    /// Writes `buf` to the active segment with one write and syncs it. A failed write
    /// is rolled back to the last synced length; a failed fsync (or rollback) stops the
    /// writer for good, since the kernel may have dropped the dirty pages.
    fn flush(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.file.write_all(buf) {
            if let Err(rollback) = self.file.set_len(self.seg_len) {
                self.fail(&rollback);
            }
            return Err(e);
        }
        if let Err(e) = self.file.sync_data() {
            self.fail(&e);
            return Err(e);
        }
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.seg_len += buf.len() as u64;
        buf.clear();
        self.metrics.commits.inc();
        self.metrics
            .bytes
            .set(i64::try_from(self.total()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Closes the (already synced) active segment and starts the next one; the
    /// directory is synced so the new file's entry is durable.
    fn rotate(&mut self) -> io::Result<()> {
        let next = self.seg_no + 1;
        let file = open_segment(&self.dir, next, true)?;
        if let Err(e) = sync_dir(&self.dir) {
            self.fail(&e);
            return Err(e);
        }
        tracing::debug!(segment = next, "spool: rotated");
        self.file = file;
        self.closed_bytes += self.seg_len;
        self.seg_len = 0;
        self.seg_no = next;
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

fn open_segment(dir: &Path, n: u64, create: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true);
    if create {
        options.create_new(true);
    }
    options.open(dir.join(segment_name(n)))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
