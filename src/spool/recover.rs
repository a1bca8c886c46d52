//! Startup recovery: keep every complete record, cut off torn or corrupt tails.

use std::fs::OpenOptions;
use std::path::Path;

use super::segment::{self, Fault};
use super::{Recovery, SpoolError, SpoolMetrics};

/// What the writer needs to continue after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Number and (valid) length of the last segment, if any exists.
    pub last: Option<(u64, u64)>,
    /// Total valid bytes of all segments.
    pub total_bytes: u64,
    pub report: Recovery,
}

/// Scans every segment of `dir` in order. A segment whose data ends in an incomplete
/// or corrupt frame is truncated right after its last valid frame (and synced); later
/// segments are kept either way.
pub(crate) fn recover(dir: &Path, metrics: &SpoolMetrics) -> Result<Recovered, SpoolError> {
    let segments = segment::list_segments(dir)?;
    let mut report = Recovery {
        segments: segments.len(),
        records: 0,
        torn_tails: 0,
        truncated_bytes: 0,
    };
    let mut total_bytes = 0;
    let mut last = None;
    for (n, path) in &segments {
        let (end, file_len) = segment::scan_file(path, |_| {})?;
        if let Some(fault) = end.fault {
            truncate(path, end.valid_len)?;
            let cut = file_len.saturating_sub(end.valid_len);
            tracing::warn!(
                segment = %path.display(),
                kept_bytes = end.valid_len,
                truncated_bytes = cut,
                reason = fault_reason(fault),
                "spool: truncated a torn or corrupt segment tail"
            );
            report.torn_tails += 1;
            report.truncated_bytes += cut;
        }
        report.records += end.records;
        total_bytes += end.valid_len;
        last = Some((*n, end.valid_len));
    }
    metrics.recovered_records.inc_by(report.records);
    metrics.torn_tails.inc_by(report.torn_tails);
    metrics.truncated_bytes.inc_by(report.truncated_bytes);
    metrics
        .bytes
        .set(i64::try_from(total_bytes).unwrap_or(i64::MAX));
    if report.segments > 0 {
        tracing::info!(
            segments = report.segments,
            records = report.records,
            torn_tails = report.torn_tails,
            "spool: recovered"
        );
    }
    Ok(Recovered {
        last,
        total_bytes,
        report,
    })
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

fn fault_reason(fault: Fault) -> &'static str {
    match fault {
        Fault::Incomplete => "incomplete frame",
        Fault::BadLength(_) => "bad length",
        Fault::BadChecksum => "checksum mismatch",
    }
}
