//! Stand-alone files in the spool's format, for records that leave the spool but must stay encrypted at
//! rest (dead letters): one segment-format file, written whole and fsynced, read back with the same walk.

use std::path::Path;

use super::cipher::{self, SpoolKeys};
use super::record::{self, StoredRecord};
use super::scan;
use super::segment::{self, SegmentHeader};
use super::{fsutil, SpoolError};

/// Writes `records` to a new file at `path` (0600), encrypted under the active key, and fsyncs it and its
/// directory. Fails if `path` exists.
pub fn write_records(
    path: &Path,
    keys: &SpoolKeys,
    records: &[StoredRecord],
) -> Result<(), SpoolError> {
    let key = keys.active();
    let salt = cipher::new_salt();
    let header = SegmentHeader {
        seg_no: 0,
        key_id: Some(key.id().to_owned()),
        salt,
    };
    let seal = key.for_segment(&salt, 0);
    let mut out = header.encode();
    let mut body = Vec::new();
    for (seq, r) in records.iter().enumerate() {
        body.clear();
        record::encode_into(
            &mut body,
            &r.site,
            &r.event_id,
            r.received_ms,
            &r.route,
            &r.payload,
        );
        let frame = segment::frame_header(body.len() + cipher::TAG_LEN, seq as u64);
        seal.seal(seq as u64, segment::aad(&frame), &mut body);
        segment::finish_frame(&mut out, frame, &body);
    }
    if path.exists() {
        return Err(SpoolError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists", path.display()),
        )));
    }
    // Whole or not at all: a crash mid-write leaves only a temp file, never a short letter under its name.
    fsutil::write_atomic(path, &out)?;
    Ok(())
}

/// Reads every intact record of a file written by [`write_records`].
pub fn read_records(path: &Path, keys: &SpoolKeys) -> Result<Vec<StoredRecord>, SpoolError> {
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let scan = scan::scan_segment(&data, path, Some(keys), |r, _, _| out.push(r))?;
    if !scan.damage.is_empty() || scan.torn_tail.is_some() {
        tracing::warn!(file = %path.display(), "damaged records in a sealed file were skipped");
    }
    Ok(out)
}

/// Creates `dir` (and parents) 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    fsutil::private_dir(dir)
}
