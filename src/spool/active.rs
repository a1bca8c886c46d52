//! The active segment: framing, encryption, the write + fsync of one group commit, rotation, and the
//! publication of the committed position that readers wait on.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use super::cipher::{SegmentCipher, TAG_LEN};
use super::health::{Fault, WriterState};
use super::segment::{self, SegmentHeader};
use super::shared::{Position, Shared};
use super::space::Space;
use super::writer::{Answer, Limits, Pending};
use super::{fsutil, SpoolError};
use crate::clock::Clock;

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
pub(crate) struct ActiveLog {
    pub(crate) shared: Arc<Shared>,
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
    pub(crate) fn open(
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
    pub(crate) fn maintain(&mut self, may_rotate: bool) {
        let total = self.space.total();
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
        if self.space.total() < total {
            self.shared.health.set_full(false);
        }
        self.space.publish_bytes(&self.shared.metrics);
    }

    /// Writes a batch and puts every waiter's answer into `answers`: `Full` for appends that do not fit
    /// (checked before any byte of them is written), then `Ok` after the fsync that covers the rest, or `Io`
    /// for all if anything failed. The caller sends them ([`super::writer`]'s relay).
    pub(crate) fn commit(&mut self, batch: Vec<Pending>, answers: &mut Vec<Answer>) {
        if let Some(failure) = &self.failed {
            for p in batch {
                answers.push((p.reply, Err(failure.to_error())));
            }
            return;
        }
        let mut result = self.rotate_if_key_changed();
        let mut buf = Vec::new();
        let mut waiters = Vec::with_capacity(batch.len());
        let mut records = 0;
        let mut refused = false;
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
                self.shared.health.set_full(true);
                refused = true;
                answers.push((p.reply, Err(SpoolError::Full)));
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
                self.shared.health.set_writer(WriterState::Ok);
                if !refused {
                    self.shared.health.set_full(false);
                }
                self.shared.metrics.records.inc_by(records);
                answers.extend(waiters.into_iter().map(|p| (p.reply, Ok(()))));
            }
            Err(e) => {
                tracing::error!(error = %e, segment = self.seg_no, "spool: commit failed");
                // After `fail` this stays `Stopped`.
                self.shared.health.set_writer(WriterState::Failing);
                for p in waiters.into_iter().chain(queue) {
                    let error = SpoolError::Io(io::Error::new(e.kind(), e.to_string()));
                    answers.push((p.reply, Err(error)));
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
        let injected = || io::Error::other("injected failure");
        let written = match self.shared.fault(Fault::Write) {
            true => Err(injected()),
            false => self.file.write_all(buf),
        };
        if let Err(e) = written {
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
        let synced = match self.shared.fault(Fault::Sync) {
            true => Err(injected()),
            false => self.file.sync_data(),
        };
        if let Err(e) = synced {
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
        self.shared.health.set_writer(WriterState::Stopped);
        self.failed = Some(Failure {
            kind: e.kind(),
            message: e.to_string(),
        });
    }

    /// Final fsync at shutdown.
    pub(crate) fn finish(self) -> Result<(), SpoolError> {
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
