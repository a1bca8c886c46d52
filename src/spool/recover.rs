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

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use crate::spool::tests::{
        append_each, close, config, ev, evs, file_len, frame, open, records, segment_paths,
    };
    use crate::spool::{read_all, Recovery, SpoolConfig};

    #[tokio::test]
    async fn recovery_truncates_a_torn_tail_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, writer, _, _) = open(config(dir.path()));
        let events = evs(0..6);
        append_each(&spool, &events[..5]).await;
        close(writer).await;

        let last = segment_paths(dir.path()).pop().unwrap();
        let len = file_len(&last);
        OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 3)
            .unwrap();

        let (spool, writer, recovery, metrics) = open(config(dir.path()));
        let torn = Recovery {
            segments: 1,
            records: 4,
            torn_tails: 1,
            truncated_bytes: frame() - 3,
        };
        assert_eq!(recovery, torn);
        assert_eq!(
            (metrics.torn_tails.get(), metrics.recovered_records.get()),
            (1, 4)
        );
        assert_eq!(metrics.truncated_bytes.get(), frame() - 3);
        assert_eq!(file_len(&last), 4 * frame());
        assert_eq!(read_all(dir.path()).unwrap(), records(&events[..4]));

        spool.append(&events[5..]).await.unwrap();
        close(writer).await;
        let expected = records(&[ev(0), ev(1), ev(2), ev(3), ev(5)]);
        assert_eq!(read_all(dir.path()).unwrap(), expected);

        let (_, writer, recovery, _) = open(config(dir.path()));
        assert_eq!(
            recovery,
            Recovery {
                segments: 1,
                records: 5,
                torn_tails: 0,
                truncated_bytes: 0
            }
        );
        close(writer).await;
    }

    /// Flips one byte at `offset` of `path`.
    fn flip_byte(path: &Path, offset: u64) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).unwrap();
        file.write_all_at(&[byte[0] ^ 0x20], offset).unwrap();
    }

    #[tokio::test]
    async fn recovery_catches_a_flipped_payload_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, writer, _, _) = open(config(dir.path()));
        let events = evs(0..3);
        append_each(&spool, &events).await;
        close(writer).await;

        let last = segment_paths(dir.path()).pop().unwrap();
        flip_byte(&last, file_len(&last) - 5);
        assert_eq!(
            read_all(dir.path()).unwrap(),
            records(&events[..2]),
            "read_all stops at the bad CRC"
        );

        let (_, writer, recovery, _) = open(config(dir.path()));
        assert_eq!(
            recovery,
            Recovery {
                segments: 1,
                records: 2,
                torn_tails: 1,
                truncated_bytes: frame()
            }
        );
        assert_eq!(file_len(&last), 2 * frame());
        close(writer).await;
    }

    #[tokio::test]
    async fn torn_tail_in_an_earlier_segment_keeps_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            segment_bytes: 2 * frame(),
            ..config(dir.path())
        };
        let (spool, writer, _, _) = open(cfg.clone());
        let events = evs(0..4);
        append_each(&spool, &events).await;
        close(writer).await;

        let first = segment_paths(dir.path()).remove(0);
        flip_byte(&first, 2 * frame() - 5);
        let (_, writer, recovery, _) = open(cfg);
        assert_eq!(
            recovery,
            Recovery {
                segments: 2,
                records: 3,
                torn_tails: 1,
                truncated_bytes: frame()
            }
        );
        close(writer).await;
        assert_eq!(
            read_all(dir.path()).unwrap(),
            records(&[ev(0), ev(2), ev(3)])
        );
    }
}
