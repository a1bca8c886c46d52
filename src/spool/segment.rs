//! Segment files and record framing.
//!
//! A segment is a sequence of frames `[u32 LE len][u32 LE crc32(payload)][payload]`.
//! Everything here is pure or read-only: writing and truncating live in `writer`
//! and `recover`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::SpoolError;

/// Bytes of the frame header (length + checksum).
pub(crate) const HEADER_LEN: usize = 8;
/// Largest payload a frame may carry; a longer length field counts as corruption.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

const PREFIX: &str = "seg-";
const SUFFIX: &str = ".log";

/// File name of segment number `n` (`seg-00000000000000000001.log`).
pub(crate) fn segment_name(n: u64) -> String {
    format!("{PREFIX}{n:020}{SUFFIX}")
}

/// Segment number of a file name, if it is one of ours.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segments of `dir` as `(number, path)`, sorted by number. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(parse_segment_name) {
            segments.push((n, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|(n, _)| *n);
    Ok(segments)
}

/// Appends one frame for `payload` to `buf`.
///
/// Fails if the payload is empty or longer than [`MAX_RECORD_BYTES`]: such a frame
/// would read back as corrupt.
pub(crate) fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) -> Result<(), SpoolError> {
    if payload.is_empty() || payload.len() > MAX_RECORD_BYTES {
        return Err(SpoolError::RecordSize { len: payload.len() });
    }
    let len = u32::try_from(payload.len()).expect("bounded by MAX_RECORD_BYTES");
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// Why a scan stopped before the end of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The data ends inside a header or a payload.
    Incomplete,
    /// The length field is 0 or above [`MAX_RECORD_BYTES`].
    BadLength(u32),
    /// The payload does not match its checksum.
    BadChecksum,
}

/// Where a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Bytes of complete, valid frames from the start.
    pub valid_len: u64,
    /// Number of valid frames.
    pub records: u64,
    /// Set if bytes follow `valid_len` that are not a valid frame.
    pub fault: Option<Fault>,
}

/// Reads frames from `reader` until the end or the first bad frame, handing each
/// valid payload to `on_record`. Only a real read error is an `Err`.
pub(crate) fn scan<R: Read>(reader: R, mut on_record: impl FnMut(&[u8])) -> io::Result<ScanEnd> {
    let mut reader = BufReader::new(reader);
    let mut end = ScanEnd {
        valid_len: 0,
        records: 0,
        fault: None,
    };
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        match read_full(&mut reader, &mut header)? {
            0 => return Ok(end),
            HEADER_LEN => {}
            _ => return Ok(end.with_fault(Fault::Incomplete)),
        }
        let (len, crc) = split_header(&header);
        if len == 0 || len as usize > MAX_RECORD_BYTES {
            return Ok(end.with_fault(Fault::BadLength(len)));
        }
        payload.resize(len as usize, 0);
        if read_full(&mut reader, &mut payload)? < payload.len() {
            return Ok(end.with_fault(Fault::Incomplete));
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(end.with_fault(Fault::BadChecksum));
        }
        on_record(&payload);
        end.valid_len += (HEADER_LEN + payload.len()) as u64;
        end.records += 1;
    }
}

/// Scans the segment file at `path` (see [`scan`]); also returns the file length.
pub(crate) fn scan_file(path: &Path, on_record: impl FnMut(&[u8])) -> io::Result<(ScanEnd, u64)> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    Ok((scan(file, on_record)?, file_len))
}

impl ScanEnd {
    fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }
}

fn split_header(header: &[u8; HEADER_LEN]) -> (u32, u32) {
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    (
        u32::from_le_bytes([l0, l1, l2, l3]),
        u32::from_le_bytes([c0, c1, c2, c3]),
    )
}

/// Reads until `buf` is full or the end of the data; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            encode_into(&mut buf, p).unwrap();
        }
        buf
    }

    fn scan_all(data: &[u8]) -> (Vec<Vec<u8>>, ScanEnd) {
        let mut out = Vec::new();
        let end = scan(data, |p| out.push(p.to_vec())).unwrap();
        (out, end)
    }

    #[test]
    fn frames_round_trip() {
        let data = frames(&[b"a", b"{\"k\":1}", &[7u8; 1000]]);
        let (records, end) = scan_all(&data);
        assert_eq!(
            records,
            vec![b"a".to_vec(), b"{\"k\":1}".to_vec(), vec![7u8; 1000]]
        );
        assert_eq!(
            end,
            ScanEnd {
                valid_len: data.len() as u64,
                records: 3,
                fault: None
            }
        );
    }

    #[test]
    fn every_cut_point_keeps_only_complete_frames() {
        let data = frames(&[b"first", b"second"]);
        let first_len = HEADER_LEN + 5;
        for cut in 1..data.len() {
            let (records, end) = scan_all(&data[..cut]);
            let expect = usize::from(cut >= first_len);
            assert_eq!(records.len(), expect, "cut at {cut}");
            assert_eq!(end.valid_len, (expect * first_len) as u64);
            let fault = if cut == first_len {
                None
            } else {
                Some(Fault::Incomplete)
            };
            assert_eq!(end.fault, fault, "cut at {cut}");
        }
    }

    #[test]
    fn zero_and_huge_lengths_are_corrupt() {
        let mut data = frames(&[b"ok"]);
        data.extend_from_slice(&[0u8; HEADER_LEN]);
        assert_eq!(scan_all(&data).1.fault, Some(Fault::BadLength(0)));

        let mut data = frames(&[b"ok"]);
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        data.extend_from_slice(&[0u8; 4]);
        let (records, end) = scan_all(&data);
        assert_eq!(records.len(), 1);
        assert_eq!(end.fault, Some(Fault::BadLength(u32::MAX)));
    }

    #[test]
    fn flipped_payload_byte_fails_checksum() {
        let mut data = frames(&[b"keep", b"flip me"]);
        let last = data.len() - 1;
        data[last] ^= 0x01;
        let (records, end) = scan_all(&data);
        assert_eq!(records, vec![b"keep".to_vec()]);
        assert_eq!(end.fault, Some(Fault::BadChecksum));
        assert_eq!(end.valid_len, (HEADER_LEN + 4) as u64);
    }

    #[test]
    fn empty_and_oversized_records_are_refused() {
        let mut buf = Vec::new();
        assert!(matches!(
            encode_into(&mut buf, b""),
            Err(SpoolError::RecordSize { len: 0 })
        ));
        let big = vec![1u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            encode_into(&mut buf, &big),
            Err(SpoolError::RecordSize { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn segment_names_parse_back() {
        assert_eq!(segment_name(1), "seg-00000000000000000001.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        for other in [
            "seg-1.log",
            "seg-0000000000000000000x.log",
            "x.log",
            "seg-00000000000000000001.tmp",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }
}
