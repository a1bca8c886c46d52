//! Readers: how a consumer (a sink) takes records out of the spool.
//!
//! A reader only ever sees records that are fsynced: it reads up to the committed position the writer
//! publishes after each fsync, and sleeps on that channel when it has caught up (no polling). It reads in
//! bounded batches and moves its durable cursor only when the consumer calls [`Reader::commit`] — after the
//! consumer's own storage said the batch is stored — so delivery is at-least-once across crashes. Records
//! routed to other consumers are skipped. Damaged regions are skipped (recovery has counted them).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::watch;

use super::cipher::SegmentCipher;
use super::record::StoredRecord;
use super::scan;
use super::segment::{self, Parse, SegmentHeader, DATA_START};
use super::shared::{Position, Shared};
use super::{cursor, SpoolError};

/// Smallest read; a frame larger than this makes the reader read more.
const MIN_CHUNK: usize = 64 << 10;

/// Records read in one go, and where the consumer stands once it has stored them.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<StoredRecord>,
    /// Records passed over because their route names other consumers.
    pub skipped: u64,
    start: Position,
    end: Position,
}

impl Batch {
    /// Where the batch starts: with the consumer's name, a deterministic batch id.
    pub fn start(&self) -> Position {
        self.start
    }

    pub fn end(&self) -> Position {
        self.end
    }

    /// Appends the batch read right after this one (anything between them was skipped damage or an
    /// expired segment).
    pub fn extend(&mut self, next: Batch) {
        self.records.extend(next.records);
        self.skipped += next.skipped;
        self.end = next.end;
    }
}

/// One consumer's view of the spool. Only one reader per consumer name is open at a time.
pub struct Reader {
    name: String,
    shared: Arc<Shared>,
    committed: watch::Receiver<Position>,
    pos: Position,
    /// Sequence number the next record in the current segment would have (for lag).
    next_seq: u64,
    open: Option<OpenSegment>,
}

struct OpenSegment {
    no: u64,
    file: File,
    cipher: Option<SegmentCipher>,
}

impl Reader {
    pub(crate) fn new(name: String, shared: Arc<Shared>, start: Position) -> Reader {
        let committed = shared.committed.subscribe();
        Reader {
            name,
            shared,
            committed,
            pos: start,
            next_seq: 0,
            open: None,
        }
    }

    /// The spool keys now in force (dead letters are sealed with the active one).
    pub fn keys(&self) -> Option<crate::spool::SpoolKeys> {
        self.shared.keys.load().as_ref().clone()
    }

    /// Records in the spool after this reader's position (whatever their route).
    pub fn lag_records(&self) -> u64 {
        let m = self.shared.seg_records.lock().expect("segment table lock");
        m.range(self.pos.seg..)
            .map(|(&seg, &n)| {
                if seg == self.pos.seg {
                    n.saturating_sub(self.next_seq)
                } else {
                    n
                }
            })
            .sum()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next batch of at most `max_records` records and about `max_bytes` bytes, waiting until at least
    /// one fsynced record is there. `Err(Closed)` once the writer is gone and everything is read.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch, SpoolError> {
        loop {
            if let Some(b) = self.try_batch(max_records, max_bytes)? {
                return Ok(b);
            }
            if self
                .shared
                .closed
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return Err(SpoolError::Closed);
            }
            self.committed
                .changed()
                .await
                .map_err(|_| SpoolError::Closed)?;
        }
    }

    /// The next batch if a record is ready now.
    pub fn try_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, SpoolError> {
        let max_records = max_records.max(1);
        let max_bytes = max_bytes.max(1);
        loop {
            let committed = *self.committed.borrow_and_update();
            if self.pos.offset < DATA_START {
                self.pos.offset = DATA_START;
            }
            if self.pos >= committed {
                return Ok(None);
            }
            if !self.open_segment(committed)? {
                continue;
            }
            let end = if self.pos.seg == committed.seg {
                committed.offset
            } else {
                self.current().file.metadata()?.len()
            };
            if self.pos.offset >= end {
                self.next_segment(committed)?;
                continue;
            }
            let batch = self.read(end, max_records, max_bytes)?;
            if !batch.records.is_empty() || batch.skipped > 0 {
                return Ok(Some(batch));
            }
        }
    }

    /// Saves the position after `batch` durably, then lets the writer reclaim what every consumer passed.
    pub fn commit(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        cursor::store(&self.shared.dir, &self.name, batch.end)?;
        let mut c = self.shared.cursors.lock().expect("cursor table lock");
        c.positions.insert(self.name.clone(), batch.end);
        drop(c);
        self.shared.reclaim.notify_one();
        Ok(())
    }

    fn current(&self) -> &OpenSegment {
        self.open.as_ref().expect("segment opened before reading")
    }

    /// Opens the segment at `pos` (moving on past segments that were expired or quarantined); `false` if it
    /// moved and the caller should look again.
    fn open_segment(&mut self, committed: Position) -> Result<bool, SpoolError> {
        if self.open.as_ref().is_some_and(|o| o.no == self.pos.seg) {
            return Ok(true);
        }
        let path = self.shared.dir.join(segment::segment_name(self.pos.seg));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.next_segment(committed)?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let mut head = vec![0u8; DATA_START as usize];
        file.read_exact_at(&mut head, 0)?;
        let header = SegmentHeader::decode(&head).map_err(|e| scan::header_error(&path, e))?;
        let keys = self.shared.keys.load();
        let cipher = scan::segment_cipher(&header, keys.as_ref().as_ref(), &path)?;
        self.open = Some(OpenSegment {
            no: self.pos.seg,
            file,
            cipher,
        });
        Ok(true)
    }

    /// Moves to the first segment after the current one that exists (or to the active one).
    fn next_segment(&mut self, committed: Position) -> Result<(), SpoolError> {
        let next = segment::list_segments(&self.shared.dir)?
            .into_iter()
            .map(|(n, _)| n)
            .find(|&n| n > self.pos.seg)
            .unwrap_or(self.pos.seg + 1);
        self.pos = Position {
            seg: next.min(committed.seg.max(self.pos.seg + 1)),
            offset: DATA_START,
        };
        self.next_seq = 0;
        self.open = None;
        Ok(())
    }

    /// Reads frames from `pos` up to `end` of the open segment.
    fn read(
        &mut self,
        end: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch, SpoolError> {
        let mut want = max_bytes.max(MIN_CHUNK) as u64;
        loop {
            let len = want.min(end - self.pos.offset) as usize;
            let mut chunk = vec![0u8; len];
            self.current()
                .file
                .read_exact_at(&mut chunk, self.pos.offset)?;
            let at_end = self.pos.offset + len as u64 == end;
            let mut batch = Batch {
                records: Vec::new(),
                skipped: 0,
                start: self.pos,
                end: self.pos,
            };
            let used = self.parse(&chunk, at_end, max_records, max_bytes, &mut batch);
            if used == 0 && !at_end {
                want *= 2;
                continue;
            }
            self.pos.offset += used as u64;
            batch.end = self.pos;
            return Ok(batch);
        }
    }

    /// Takes records from `chunk` into `batch`; returns the bytes consumed.
    fn parse(
        &mut self,
        chunk: &[u8],
        at_end: bool,
        max_records: usize,
        max_bytes: usize,
        batch: &mut Batch,
    ) -> usize {
        let (mut p, mut bytes, mut last_seq) = (0, 0, None);
        let cipher = self.current().cipher.as_ref();
        while p < chunk.len() && batch.records.len() < max_records && bytes < max_bytes {
            match segment::parse_at(chunk, p) {
                Parse::Frame(f) => {
                    p = f.end;
                    last_seq = Some(f.seq);
                    match scan::open_frame(cipher, &f) {
                        Ok(r) if r.route.includes(&self.name) => {
                            bytes += r.payload.len();
                            batch.records.push(r);
                        }
                        Ok(_) => batch.skipped += 1,
                        Err(kind) => tracing::debug!(
                            kind = kind.as_str(),
                            "spool reader: skipped a damaged frame"
                        ),
                    }
                }
                Parse::Short | Parse::Bad => match segment::resync(chunk, p + 1) {
                    Some(q) => p = q,
                    None if at_end => p = chunk.len(),
                    None => break,
                },
            }
        }
        if let Some(seq) = last_seq {
            self.next_seq = seq + 1;
        }
        p
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Ok(mut c) = self.shared.cursors.lock() {
            c.open.retain(|n| n != &self.name);
        }
    }
}
