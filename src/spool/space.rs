//! The writer's table of segments and their bytes: what `max_bytes` is checked against, and what is
//! deleted once every consumer's cursor has passed it (or expired past `max_age`, loudly).

use std::collections::BTreeMap;

use super::segment;
use super::shared::Shared;
use super::SpoolMetrics;

/// What the writer knows of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegInfo {
    /// Synced bytes, header included.
    pub bytes: u64,
    pub records: u64,
    /// Largest `received_ms` among its records (`i64::MIN` when empty).
    pub newest_ms: i64,
}

/// Every live segment; the last one is the active segment.
#[derive(Debug, Default)]
pub(crate) struct Space {
    segments: BTreeMap<u64, SegInfo>,
    active: u64,
    /// Records framed into the current commit but not yet synced.
    pending_records: u64,
    pending_newest: i64,
}

impl Space {
    /// The table recovery found (sealed segments only).
    pub(crate) fn new(sealed: BTreeMap<u64, SegInfo>) -> Self {
        Self {
            segments: sealed,
            active: 0,
            pending_records: 0,
            pending_newest: i64::MIN,
        }
    }

    pub(crate) fn start_segment(&mut self, n: u64, header_bytes: u64) {
        self.segments.insert(
            n,
            SegInfo {
                bytes: header_bytes,
                records: 0,
                newest_ms: i64::MIN,
            },
        );
        self.active = n;
    }

    pub(crate) fn active_len(&self) -> u64 {
        self.segments.get(&self.active).map_or(0, |s| s.bytes)
    }

    pub(crate) fn total(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    pub(crate) fn add_record(&mut self, received_ms: i64) {
        self.pending_records += 1;
        self.pending_newest = self.pending_newest.max(received_ms);
    }

    /// The pending records are on disk; returns the active segment's record count.
    pub(crate) fn synced(&mut self, bytes: u64) -> u64 {
        let mut records = 0;
        if let Some(s) = self.segments.get_mut(&self.active) {
            s.bytes += bytes;
            s.records += self.pending_records;
            s.newest_ms = s.newest_ms.max(self.pending_newest);
            records = s.records;
        }
        self.forget_unsynced();
        records
    }

    pub(crate) fn active(&self) -> u64 {
        self.active
    }

    pub(crate) fn forget_unsynced(&mut self) {
        self.pending_records = 0;
        self.pending_newest = i64::MIN;
    }

    pub(crate) fn publish_bytes(&self, m: &SpoolMetrics) {
        m.bytes.set(i64::try_from(self.total()).unwrap_or(i64::MAX));
        m.segments.set(self.segments.len() as i64);
    }

    pub(crate) fn active_is_older_than(&self, cutoff_ms: i64) -> bool {
        self.segments
            .get(&self.active)
            .is_some_and(|s| s.records > 0 && s.newest_ms < cutoff_ms)
    }

    /// Sealed segments every consumer has read past are deleted, oldest first. Without consumers nothing is.
    pub(crate) fn reclaim(&mut self, shared: &Shared) {
        let Some((slowest, _)) = shared.slowest() else {
            return;
        };
        while let Some((&n, info)) = self.segments.first_key_value() {
            let passed = slowest.seg > n || (slowest.seg == n && slowest.offset >= info.bytes);
            if n == self.active || !passed || !self.delete(shared, n) {
                return;
            }
            shared.metrics.segments_deleted.inc();
        }
    }

    /// Sealed segments whose newest record is older than `cutoff_ms` are deleted even if a consumer has not
    /// read them: logged with the consumers that lose records, and counted.
    pub(crate) fn expire(&mut self, shared: &Shared, cutoff_ms: i64) {
        let slowest = shared.slowest();
        while let Some((&n, &info)) = self.segments.first_key_value() {
            if n == self.active || info.newest_ms >= cutoff_ms {
                return;
            }
            let (unread, lost) = match &slowest {
                Some((p, names)) if p.seg < n => (names.clone(), info.records),
                Some((p, names)) if p.seg == n && p.offset < info.bytes => (
                    names.clone(),
                    info.records.min(self.unread_in(shared, n, p.offset)),
                ),
                _ => (Vec::new(), 0),
            };
            if !self.delete(shared, n) {
                return;
            }
            if lost > 0 {
                tracing::warn!(
                    segment = n,
                    records = lost,
                    consumers_behind = ?unread,
                    "spool: expired records past max_age before every consumer read them"
                );
                shared.metrics.expired_records.inc_by(lost);
            }
            shared.metrics.segments_deleted.inc();
        }
    }

    /// Intact frames of segment `n` from `offset` on (read before the segment is deleted).
    fn unread_in(&self, shared: &Shared, n: u64, offset: u64) -> u64 {
        let path = shared.dir.join(segment::segment_name(n));
        let Ok(data) = std::fs::read(&path) else {
            return self.segments.get(&n).map_or(0, |s| s.records);
        };
        let (mut pos, mut count) = (offset as usize, 0);
        while pos < data.len() {
            match segment::parse_at(&data, pos) {
                segment::Parse::Frame(f) => {
                    count += 1;
                    pos = f.end;
                }
                _ => match segment::resync(&data, pos + 1) {
                    Some(next) => pos = next,
                    None => break,
                },
            }
        }
        count
    }

    fn delete(&mut self, shared: &Shared, n: u64) -> bool {
        let path = shared.dir.join(segment::segment_name(n));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(segment = n, error = %e, "spool: cannot delete a segment");
                return false;
            }
        }
        tracing::debug!(segment = n, "spool: segment deleted");
        self.segments.remove(&n);
        shared.set_seg_records(n, None);
        true
    }
}
