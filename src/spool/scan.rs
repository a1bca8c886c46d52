//! Reading a whole segment: every intact record in order, and every damaged region with its offsets. The
//! same walk serves recovery, `spool verify` and `spool dump`, so they always agree on what survives.

use std::path::Path;

use super::cipher::{SegmentCipher, SpoolKeys};
use super::record::{self, StoredRecord};
use super::segment::{self, Frame, HeaderError, Parse, SegmentHeader, DATA_START};
use super::SpoolError;

/// Why a region of a segment could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// Bytes that are not an intact frame (bad sync marker, length or checksum).
    Frame,
    /// A frame whose checksum is intact but whose encryption tag is not (tampering, or a second key).
    Auth,
    /// A decrypted frame that is not a well-formed record.
    Record,
}

impl DamageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Frame => "frame",
            DamageKind::Auth => "authentication",
            DamageKind::Record => "record",
        }
    }
}

/// One damaged region: bytes `start..end` of a segment, costing about `lost` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    pub lost: u64,
    pub kind: DamageKind,
}

/// What a walk over one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub seg_no: u64,
    pub key_id: Option<String>,
    pub len: u64,
    pub records: u64,
    pub oldest_ms: Option<i64>,
    pub newest_ms: i64,
    pub damage: Vec<Damage>,
    /// Where an incomplete last frame starts (a write cut short by a crash), if any.
    pub torn_tail: Option<u64>,
}

/// Walks `data` (a whole segment file), handing every intact record and its frame offsets to `on_record`.
/// A segment whose key is not configured, or whose every frame fails authentication, is an error.
pub(crate) fn scan_segment(
    data: &[u8],
    name: &Path,
    keys: Option<&SpoolKeys>,
    mut on_record: impl FnMut(StoredRecord, u64, u64),
) -> Result<SegmentScan, SpoolError> {
    let header = SegmentHeader::decode(data).map_err(|e| header_error(name, e))?;
    let cipher = segment_cipher(&header, keys, name)?;
    let mut scan = SegmentScan {
        seg_no: header.seg_no,
        key_id: header.key_id.clone(),
        len: data.len() as u64,
        records: 0,
        oldest_ms: None,
        newest_ms: i64::MIN,
        damage: Vec::new(),
        torn_tail: None,
    };
    let (mut pos, mut next_seq, mut auth_failures) = (DATA_START as usize, 0u64, 0u64);
    while pos < data.len() {
        let frame = match segment::parse_at(data, pos) {
            Parse::Frame(f) => f,
            short_or_bad => {
                let Some(next) = segment::resync(data, pos + 1) else {
                    if short_or_bad == Parse::Short {
                        scan.torn_tail = Some(pos as u64);
                    } else {
                        let lost = count_syncs(&data[pos..]).max(1);
                        scan.damage
                            .push(damage(pos, data.len(), lost, DamageKind::Frame));
                    }
                    break;
                };
                let seq = match segment::parse_at(data, next) {
                    Parse::Frame(f) => f.seq,
                    _ => next_seq + 1,
                };
                let lost = seq.saturating_sub(next_seq).max(1);
                scan.damage.push(damage(pos, next, lost, DamageKind::Frame));
                pos = next;
                continue;
            }
        };
        next_seq = frame.seq + 1;
        pos = frame.end;
        match open_frame(cipher.as_ref(), &frame) {
            Ok(r) => {
                scan.records += 1;
                scan.oldest_ms = Some(
                    scan.oldest_ms
                        .map_or(r.received_ms, |o| o.min(r.received_ms)),
                );
                scan.newest_ms = scan.newest_ms.max(r.received_ms);
                on_record(r, frame.start as u64, frame.end as u64);
            }
            Err(kind) => {
                auth_failures += u64::from(kind == DamageKind::Auth);
                scan.damage.push(damage(frame.start, frame.end, 1, kind));
            }
        }
    }
    if auth_failures > 0 && scan.records == 0 {
        return Err(SpoolError::WrongKey {
            key_id: header.key_id.unwrap_or_default(),
            segment: name.to_path_buf(),
        });
    }
    Ok(scan)
}

/// Decrypts and parses one intact frame.
pub(crate) fn open_frame(
    cipher: Option<&SegmentCipher>,
    frame: &Frame<'_>,
) -> Result<StoredRecord, DamageKind> {
    let mut body = frame.body.to_vec();
    let plain = match cipher {
        Some(c) => c
            .open(frame.seq, segment::aad(frame.header), &mut body)
            .ok_or(DamageKind::Auth)?,
        None => &mut body[..],
    };
    record::decode(plain).ok_or(DamageKind::Record)
}

/// The AEAD key for a segment, or an error naming the key id and the segment.
pub(crate) fn segment_cipher(
    header: &SegmentHeader,
    keys: Option<&SpoolKeys>,
    name: &Path,
) -> Result<Option<SegmentCipher>, SpoolError> {
    let Some(id) = &header.key_id else {
        return Ok(None);
    };
    let key = keys
        .and_then(|k| k.get(id))
        .ok_or_else(|| SpoolError::UnknownKey {
            key_id: id.clone(),
            segment: name.to_path_buf(),
        })?;
    Ok(Some(key.for_segment(&header.salt, header.seg_no)))
}

pub(crate) fn header_error(name: &Path, e: HeaderError) -> SpoolError {
    SpoolError::BadSegment {
        segment: name.to_path_buf(),
        reason: e,
    }
}

fn damage(start: usize, end: usize, lost: u64, kind: DamageKind) -> Damage {
    Damage {
        start: start as u64,
        end: end as u64,
        lost,
        kind,
    }
}

pub(crate) fn count_syncs(data: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while let Some(next) = segment::resync_marker(data, at) {
        n += 1;
        at = next + 1;
    }
    n
}
