//! Startup recovery: keep every intact record, cut only a torn tail of the last segment.
//!
//! Every segment is read whole and every frame authenticated. A damaged region anywhere is skipped, its
//! bytes copied once to `quarantine/seg-<n>-at-<offset>.bin` (still encrypted), logged with its offsets and
//! counted in `tollgate_spool_corrupt_records_total`; the records after it are kept. Only the last segment —
//! the one being written when the process stopped — is ever truncated, and only at the start of a frame
//! that the crash left incomplete (or of damage that runs to its end). A last segment too short to hold its
//! header was being created and is removed; a segment whose header copies are both damaged is moved to
//! quarantine whole. Recovery never refuses to start over damage; it refuses a segment it cannot decrypt
//! (a missing or wrong key), naming the key id and the segment, and a pre-v1 segment.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use super::cipher::SpoolKeys;
use super::scan::{self, Damage, DamageKind, SegmentScan};
use super::segment::{self, HeaderError};
use super::space::SegInfo;
use super::{fsutil, Recovery, SpoolError, SpoolMetrics};

/// What the writer needs to continue after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Every readable segment, all of them sealed now.
    pub sealed: BTreeMap<u64, SegInfo>,
    /// The number the writer's first new segment gets.
    pub next_seg: u64,
    pub report: Recovery,
}

/// Scans every segment of `dir` in order; see the module docs for what it changes.
pub(crate) fn recover(
    dir: &Path,
    keys: Option<&SpoolKeys>,
    metrics: &SpoolMetrics,
) -> Result<Recovered, SpoolError> {
    let segments = segment::list_segments(dir)?;
    let mut report = Recovery {
        segments: segments.len(),
        ..Recovery::default()
    };
    let mut sealed = BTreeMap::new();
    let last_no = segments.last().map(|(n, _)| *n);
    for (n, path) in &segments {
        let is_last = Some(*n) == last_no;
        let data = std::fs::read(path)?;
        let scan = match scan::scan_segment(&data, path, keys, |_, _, _| {}) {
            Ok(scan) => scan,
            Err(SpoolError::BadSegment {
                reason: HeaderError::Short,
                ..
            }) if is_last => {
                tracing::warn!(segment = %path.display(), "spool: removed a segment whose creation was cut short");
                std::fs::remove_file(path)?;
                continue;
            }
            Err(SpoolError::BadSegment {
                reason: HeaderError::Damaged | HeaderError::Short,
                ..
            }) => {
                quarantine_whole(dir, *n, path)?;
                // Its records are unreadable without a header; estimate them by their sync markers.
                let frames = data
                    .get(segment::DATA_START as usize..)
                    .map_or(0, scan::count_syncs);
                report.corrupt_records += frames.max(1);
                continue;
            }
            Err(other) => return Err(other),
        };
        let kept = apply(dir, path, &data, &scan, is_last, &mut report)?;
        report.records += scan.records;
        sealed.insert(
            *n,
            SegInfo {
                bytes: kept,
                records: scan.records,
                newest_ms: scan.newest_ms,
            },
        );
    }
    metrics.recovered_records.inc_by(report.records);
    metrics.torn_tails.inc_by(report.torn_tails);
    metrics.truncated_bytes.inc_by(report.truncated_bytes);
    metrics.corrupt_records.inc_by(report.corrupt_records);
    if report.segments > 0 {
        tracing::info!(
            segments = report.segments,
            records = report.records,
            torn_tails = report.torn_tails,
            corrupt_records = report.corrupt_records,
            "spool: recovered"
        );
    }
    Ok(Recovered {
        sealed,
        next_seg: last_no.map_or(1, |n| n + 1),
        report,
    })
}

/// Quarantines the damage of one segment and truncates the last one's torn tail; returns the bytes kept.
fn apply(
    dir: &Path,
    path: &Path,
    data: &[u8],
    scan: &SegmentScan,
    is_last: bool,
    report: &mut Recovery,
) -> Result<u64, SpoolError> {
    let mut cut_at = scan.torn_tail;
    let mut damage = scan.damage.clone();
    // Only the last segment can have been cut by a crash (recovery trimmed every earlier one when it was
    // last): in a sealed segment, a frame that runs past the end is damage (a bad length field).
    if let (Some(at), false) = (scan.torn_tail, is_last) {
        damage.push(Damage {
            start: at,
            end: scan.len,
            lost: 1,
            kind: DamageKind::Frame,
        });
    }
    for d in &damage {
        tracing::error!(
            segment = %path.display(),
            start = d.start,
            end = d.end,
            records_lost = d.lost,
            kind = d.kind.as_str(),
            "spool: skipped a damaged region; the records after it are kept"
        );
        let name = format!("seg-{:020}-at-{}.bin", scan.seg_no, d.start);
        quarantine(dir, &name, &data[d.start as usize..d.end as usize])?;
        report.corrupt_records += d.lost;
        if is_last && d.end == scan.len {
            cut_at = Some(d.start);
        }
    }
    match cut_at {
        Some(at) if is_last => {
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(at)?;
            file.sync_all()?;
            tracing::warn!(segment = %path.display(), kept_bytes = at, truncated_bytes = scan.len - at,
                "spool: truncated the torn tail of the last segment");
            report.torn_tails += u64::from(scan.torn_tail.is_some());
            report.truncated_bytes += scan.len - at;
            Ok(at)
        }
        _ => Ok(scan.len),
    }
}

fn quarantine(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
    let qdir = dir.join("quarantine");
    fsutil::private_dir(&qdir)?;
    if fsutil::write_once(&qdir.join(name), bytes)? {
        fsutil::sync_dir(&qdir)?;
    }
    Ok(())
}

fn quarantine_whole(dir: &Path, n: u64, path: &Path) -> Result<(), SpoolError> {
    let qdir = dir.join("quarantine");
    fsutil::private_dir(&qdir)?;
    let target = qdir.join(format!("seg-{n:020}-whole.bin"));
    std::fs::rename(path, &target)?;
    fsutil::sync_dir(dir)?;
    tracing::error!(segment = %path.display(), moved_to = %target.display(),
        "spool: both header copies are damaged; segment moved to quarantine");
    Ok(())
}
