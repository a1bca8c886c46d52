//! The group-commit writer: one OS thread owns the active segment file and the byte count.
//!
//! It takes the first queued append, gathers more for at most `commit_window` (or until `max_batch_bytes`),
//! encrypts and frames them, writes them with one `write` and one `fsync`, publishes the new committed
//! position to readers, and only then answers every waiter. An append never straddles two segments. The
//! writer never appends to a segment it did not create: after a restart it starts a new one. Between
//! commits it deletes segments every consumer has passed (and, with `max_age`, expires old ones).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::active::ActiveLog;
use super::cipher::TAG_LEN;
use super::segment::FRAME_HEADER_LEN;
use super::shared::Shared;
use super::space::Space;
use super::SpoolError;
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

/// One waiter's answer: the channel its append waits on, and the outcome of the commit that covered it.
pub(crate) type Answer = (
    oneshot::Sender<Result<(), SpoolError>>,
    Result<(), SpoolError>,
);

/// Sends a commit's answers. Each answer wakes a request task; woken from this thread, each wake goes
/// through the runtime's shared inject queue (a lock, and a futex when a worker sleeps). So the writer
/// hands the whole batch to a relay task on the runtime that opened the spool: one cross-thread wake per
/// commit, and the request tasks are woken on a worker's own queue. Without a runtime (or once it is gone)
/// the writer answers directly.
struct Relay {
    tx: Option<mpsc::UnboundedSender<Vec<Answer>>>,
}

impl Relay {
    fn start() -> Relay {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Relay { tx: None };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Answer>>();
        runtime.spawn(async move {
            while let Some(batch) = rx.recv().await {
                answer_all(batch);
            }
        });
        Relay { tx: Some(tx) }
    }

    fn deliver(&self, batch: Vec<Answer>) {
        if batch.is_empty() {
            return;
        }
        match &self.tx {
            Some(tx) => {
                if let Err(unsent) = tx.send(batch) {
                    answer_all(unsent.0);
                }
            }
            None => answer_all(batch),
        }
    }
}

fn answer_all(batch: Vec<Answer>) {
    for (to, outcome) in batch {
        let _ = to.send(outcome);
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
    let relay = Relay::start();
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
            let result = runtime.block_on(run(inbox, log, limits, relay));
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

async fn run(
    mut inbox: Inbox,
    mut log: ActiveLog,
    limits: Limits,
    relay: Relay,
) -> Result<(), SpoolError> {
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
        let mut answers = Vec::with_capacity(batch.len());
        log.commit(batch, &mut answers);
        relay.deliver(answers);
    }
    log.finish()
}

/// Windows up to this long are waited out on the writer's own thread (`thread::sleep`, microsecond
/// precision). Longer ones use the runtime's timer, which also hears shutdown but ticks in milliseconds:
/// a deadline even of "now" could hold a commit until the next tick.
const PRECISE_WINDOW: Duration = Duration::from_millis(1);

/// Collects appends after `first` until the window closes or the batch is full. An append that would
/// overflow `max_batch_bytes` is handed back for the next batch. A window up to [`PRECISE_WINDOW`] is
/// slept, then what is queued is taken; a zero window takes only what is already queued.
async fn gather(
    first: Pending,
    inbox: &mut Inbox,
    limits: Limits,
) -> (Vec<Pending>, Option<Pending>) {
    let window = limits.commit_window;
    let precise = window <= PRECISE_WINDOW;
    if precise && !window.is_zero() {
        std::thread::sleep(window);
    }
    let deadline = Instant::now() + window;
    let mut bytes = first.disk_len() as usize;
    let mut batch = vec![first];
    while bytes < limits.max_batch_bytes {
        let next = match precise {
            true => inbox.rx.try_recv().ok(),
            false => inbox.recv(Some(deadline)).await,
        };
        let Some(next) = next else {
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
