//! Offline views of a spool directory for the CLI: `dump`, `verify` (an fsck: reports, never changes) and
//! `status` (segments, bytes, oldest record, each consumer's lag). They walk segments exactly as recovery
//! does, so they agree with it on what survives.

use std::path::Path;

use super::cipher::SpoolKeys;
use super::record::StoredRecord;
use super::scan::{self, SegmentScan};
use super::segment::{self, HeaderError, SegmentHeader, DATA_START};
use super::shared::Position;
use super::{cursor, SpoolError};

/// Every intact record of the spool in `dir`, oldest first. Never modifies anything.
pub fn read_all(dir: &Path, keys: Option<&SpoolKeys>) -> Result<Vec<StoredRecord>, SpoolError> {
    let mut out = Vec::new();
    for scan in scan_all(dir, keys, |_, r, _, _| out.push(r))? {
        scan?;
    }
    Ok(out)
}

/// Walks every segment as recovery does: the newest segment, when its creation was cut short (no complete
/// header yet — a crash, or the running writer creating it right now), holds nothing and is passed over; a
/// segment deleted while the walk runs is passed over too.
fn scan_all(
    dir: &Path,
    keys: Option<&SpoolKeys>,
    mut on_record: impl FnMut(u64, StoredRecord, u64, u64),
) -> Result<Vec<Result<SegmentScan, SpoolError>>, SpoolError> {
    let segments = segment::list_segments(dir)?;
    let last = segments.last().map(|(n, _)| *n);
    let mut out = Vec::new();
    for (n, path) in segments {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        match scan::scan_segment(&data, &path, keys, |r, s, e| on_record(n, r, s, e)) {
            Err(SpoolError::BadSegment {
                reason: HeaderError::Short,
                ..
            }) if Some(n) == last => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// What `spool verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub segments: Vec<SegmentScan>,
    /// Segments that cannot be read at all, with why.
    pub unreadable: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.unreadable.is_empty()
            && self
                .segments
                .iter()
                .all(|s| s.damage.is_empty() && s.torn_tail.is_none())
    }
}

/// Checks every frame of every segment (checksums and authentication); changes nothing.
pub fn verify(dir: &Path, keys: Option<&SpoolKeys>) -> Result<VerifyReport, SpoolError> {
    let mut report = VerifyReport::default();
    for scan in scan_all(dir, keys, |_, _, _, _| {})? {
        match scan {
            Ok(s) => report.segments.push(s),
            Err(SpoolError::Io(e)) => return Err(SpoolError::Io(e)),
            Err(e) => report.unreadable.push(e.to_string()),
        }
    }
    Ok(report)
}

/// One consumer's place and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStatus {
    pub name: String,
    pub cursor: Position,
    pub lag_records: u64,
    pub lag_bytes: u64,
    /// Age of the oldest record it has not read, in seconds (0 when caught up).
    pub lag_seconds: u64,
}

/// What `spool status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolStatus {
    pub segments: usize,
    pub bytes: u64,
    pub records: u64,
    pub oldest_record_age_seconds: Option<u64>,
    pub consumers: Vec<ConsumerStatus>,
}

/// Reads the spool and the cursors of `consumers`; `now_ms` is wall time.
pub fn status(
    dir: &Path,
    keys: Option<&SpoolKeys>,
    consumers: &[String],
    now_ms: i64,
) -> Result<SpoolStatus, SpoolError> {
    let mut st = SpoolStatus {
        segments: 0,
        bytes: 0,
        records: 0,
        oldest_record_age_seconds: None,
        consumers: Vec::new(),
    };
    let mut cursors = Vec::new();
    for name in consumers {
        let cursor = cursor::load(dir, name)?.unwrap_or_default();
        cursors.push((name.clone(), cursor, 0u64, 0u64, None::<i64>));
    }
    let age = |ms: i64| u64::try_from(now_ms.saturating_sub(ms) / 1000).unwrap_or(0);
    let mut oldest = None::<i64>;
    let scans = scan_all(dir, keys, |n, r, start, end| {
        st.records += 1;
        oldest = Some(oldest.map_or(r.received_ms, |o| o.min(r.received_ms)));
        for c in cursors.iter_mut() {
            if (Position {
                seg: n,
                offset: start,
            }) >= c.1
                && r.route.includes(&c.0)
            {
                c.2 += 1;
                c.3 += end - start;
                c.4 = Some(c.4.map_or(r.received_ms, |o: i64| o.min(r.received_ms)));
            }
        }
    })?;
    for scan in scans {
        let scan = scan?;
        st.segments += 1;
        st.bytes += scan.len;
    }
    st.oldest_record_age_seconds = oldest.map(age);
    st.consumers = cursors
        .into_iter()
        .map(|(name, cursor, records, bytes, first)| ConsumerStatus {
            name,
            cursor,
            lag_records: records,
            lag_bytes: bytes,
            lag_seconds: first.map_or(0, age),
        })
        .collect();
    Ok(st)
}

/// Key ids named by the segment headers in `dir`.
pub(crate) fn key_ids(dir: &Path) -> Result<Vec<String>, SpoolError> {
    let mut ids = Vec::new();
    for (_, path) in segment::list_segments(dir)? {
        let mut head = vec![0u8; DATA_START as usize];
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // deleted meanwhile
            Err(e) => return Err(e.into()),
        };
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0)?;
        if let Ok(SegmentHeader {
            key_id: Some(id), ..
        }) = SegmentHeader::decode(&head[..n])
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}
