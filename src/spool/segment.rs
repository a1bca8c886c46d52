//! Segment format v1: the bytes on disk, and how to find every intact frame again after damage.
//!
//! ```text
//! segment = header ‖ header (the same 128 bytes twice) ‖ frame*
//! header  = "TGSPOOL\x01" ‖ u16 version ‖ u16 flags ‖ u64 segment number ‖ [16] salt
//!           ‖ u8 key-id length ‖ [64] key id ‖ zero padding ‖ u32 crc32(bytes 0..124)
//! frame   = [4] sync marker ‖ u32 body length ‖ u64 seq ‖ u32 crc32(sync ‖ length ‖ seq ‖ body) ‖ body
//! body    = AES-256-GCM(record header ‖ payload) ‖ tag      (see `cipher` and `record`)
//! ```
//! All integers little-endian. The header is written twice so that no single damaged byte can make a whole
//! segment unreadable. Every frame starts with a sync marker and its checksum covers its own header, so a
//! reader that meets a bad frame looks for the next offset where a complete frame with a valid checksum
//! starts ([`resync`]) and goes on from there: damage costs the damaged frames, never the ones after them.
//! Everything here is pure or read-only; writing and truncating live in `writer` and `recover`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::cipher::SALT_LEN;

/// Length of one header copy.
pub(crate) const HEADER_LEN: usize = 128;
/// Where the first frame of a segment starts.
pub const DATA_START: u64 = 2 * HEADER_LEN as u64;
/// Bytes of a frame header (sync, length, seq, crc).
pub(crate) const FRAME_HEADER_LEN: usize = 20;
/// Largest frame body; a longer length field counts as damage.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Longest key id a segment header can name.
pub const MAX_KEY_ID: usize = 64;

const MAGIC: &[u8; 8] = b"TGSPOOL\x01";
const VERSION: u16 = 1;
const FLAG_ENCRYPTED: u16 = 1;
const SYNC: [u8; 4] = [0xF5, 0x7A, 0x6C, 0xA3];

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

/// What a segment header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub seg_no: u64,
    /// `None` for a plaintext segment (benchmarks only; configured spools always encrypt).
    pub key_id: Option<String>,
    pub salt: [u8; SALT_LEN],
}

impl SegmentHeader {
    /// Both copies of the header, ready to write at offset 0.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if self.key_id.is_some() {
            FLAG_ENCRYPTED
        } else {
            0
        };
        h[10..12].copy_from_slice(&flags.to_le_bytes());
        h[12..20].copy_from_slice(&self.seg_no.to_le_bytes());
        h[20..36].copy_from_slice(&self.salt);
        let id = self.key_id.as_deref().unwrap_or_default().as_bytes();
        assert!(
            id.len() <= MAX_KEY_ID,
            "key ids are validated to {MAX_KEY_ID} bytes"
        );
        h[36] = id.len() as u8;
        h[37..37 + id.len()].copy_from_slice(id);
        let crc = crc32fast::hash(&h[..124]);
        h[124..].copy_from_slice(&crc.to_le_bytes());
        let mut both = h.clone();
        both.extend_from_slice(&h);
        both
    }

    /// Reads the first intact copy of the header at the start of `data`.
    pub(crate) fn decode(data: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if data.len() >= HEADER_LEN && !data.starts_with(MAGIC) && looks_like_v0(data) {
            return Err(HeaderError::PreV1);
        }
        let mut last = HeaderError::Short;
        for copy in [0, HEADER_LEN] {
            match data.get(copy..copy + HEADER_LEN) {
                Some(h) => match decode_one(h) {
                    Ok(header) => return Ok(header),
                    Err(e) => last = e,
                },
                None => return Err(last),
            }
        }
        Err(last)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the segment header is incomplete")]
    Short,
    #[error("neither copy of the segment header is intact")]
    Damaged,
    #[error("segment format version {0} is not supported by this build")]
    Version(u16),
    #[error("this is a pre-v1 (unencrypted, headerless) segment")]
    PreV1,
}

fn decode_one(h: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let crc = u32::from_le_bytes(h[124..128].try_into().expect("4 bytes"));
    if !h.starts_with(MAGIC) || crc32fast::hash(&h[..124]) != crc {
        return Err(HeaderError::Damaged);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    let flags = u16::from_le_bytes([h[10], h[11]]);
    let id_len = usize::from(h[36]).min(MAX_KEY_ID);
    let key_id = (flags & FLAG_ENCRYPTED != 0)
        .then(|| String::from_utf8_lossy(&h[37..37 + id_len]).into_owned());
    Ok(SegmentHeader {
        seg_no: u64::from_le_bytes(h[12..20].try_into().expect("8 bytes")),
        key_id,
        salt: h[20..36].try_into().expect("16 bytes"),
    })
}

/// The foundation's format: `[u32 len][u32 crc32(payload)][payload]` with JSON payloads.
fn looks_like_v0(data: &[u8]) -> bool {
    let len = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
    len > 0 && data.len() >= 8 + len && {
        let crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
        crc32fast::hash(&data[8..8 + len]) == crc
    }
}

/// Frame header bytes for a body of `body_len` bytes; the crc is filled in by [`finish_frame`].
pub(crate) fn frame_header(body_len: usize, seq: u64) -> [u8; FRAME_HEADER_LEN] {
    let len = u32::try_from(body_len).expect("bounded by MAX_RECORD_BYTES");
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&SYNC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h
}

/// The bytes of the frame header the AEAD authenticates (sync, length, seq).
pub(crate) fn aad(header: &[u8; FRAME_HEADER_LEN]) -> &[u8] {
    &header[..16]
}

/// Appends a complete frame (header with checksum, then `body`) to `out`.
pub(crate) fn finish_frame(out: &mut Vec<u8>, mut header: [u8; FRAME_HEADER_LEN], body: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..16]);
    crc.update(body);
    header[16..].copy_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
}

/// One intact frame found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// Offset of the frame's first byte in the buffer, and of the byte after it.
    pub start: usize,
    pub end: usize,
    pub seq: u64,
    pub header: &'a [u8; FRAME_HEADER_LEN],
    pub body: &'a [u8],
}

/// What sits at one offset of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse<'a> {
    Frame(Frame<'a>),
    /// The buffer ends before the frame that starts here could be complete (a torn tail, or more to read).
    Short,
    /// Not an intact frame.
    Bad,
}

/// Parses the frame starting at `pos` of `data`.
pub(crate) fn parse_at(data: &[u8], pos: usize) -> Parse<'_> {
    let Some(header) = data.get(pos..pos + FRAME_HEADER_LEN) else {
        let rest = &data[pos.min(data.len())..];
        let n = rest.len().min(4);
        return if rest[..n] == SYNC[..n] {
            Parse::Short
        } else {
            Parse::Bad
        };
    };
    let header: &[u8; FRAME_HEADER_LEN] = header.try_into().expect("sliced to length");
    if header[..4] != SYNC {
        return Parse::Bad;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Parse::Bad;
    }
    let start = pos + FRAME_HEADER_LEN;
    let Some(body) = data.get(start..start + len) else {
        return Parse::Short;
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..16]);
    crc.update(body);
    if crc.finalize().to_le_bytes() != header[16..] {
        return Parse::Bad;
    }
    Parse::Frame(Frame {
        start: pos,
        end: start + len,
        seq: u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
        header,
        body,
    })
}

/// The first offset after `from` where an intact frame starts, if any in `data`.
pub(crate) fn resync(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + FRAME_HEADER_LEN <= data.len() {
        let off = data[at..].windows(4).position(|w| w == SYNC)?;
        let pos = at + off;
        if let Parse::Frame(_) = parse_at(data, pos) {
            return Some(pos);
        }
        at = pos + 1;
    }
    None
}

/// The offset of the next sync marker at or after `from`, intact frame or not.
pub(crate) fn resync_marker(data: &[u8], from: usize) -> Option<usize> {
    let rest = data.get(from..)?;
    rest.windows(4)
        .position(|w| w == SYNC)
        .map(|off| from + off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, b) in bodies.iter().enumerate() {
            finish_frame(&mut out, frame_header(b.len(), seq as u64), b);
        }
        out
    }

    fn walk(data: &[u8]) -> (Vec<u64>, Vec<(usize, usize)>) {
        let (mut seqs, mut damage, mut pos) = (Vec::new(), Vec::new(), 0);
        while pos < data.len() {
            match parse_at(data, pos) {
                Parse::Frame(f) => {
                    seqs.push(f.seq);
                    pos = f.end;
                }
                Parse::Short | Parse::Bad => {
                    let next = resync(data, pos + 1).unwrap_or(data.len());
                    damage.push((pos, next));
                    pos = next;
                }
            }
        }
        (seqs, damage)
    }

    #[test]
    fn header_round_trips_and_survives_one_damaged_copy() {
        let h = SegmentHeader {
            seg_no: 42,
            key_id: Some("s1".into()),
            salt: [7; SALT_LEN],
        };
        let mut bytes = h.encode();
        assert_eq!(bytes.len() as u64, DATA_START);
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), h);
        for i in 0..HEADER_LEN {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert_eq!(SegmentHeader::decode(&damaged).unwrap(), h, "byte {i}");
        }
        bytes[3] ^= 1;
        bytes[HEADER_LEN + 3] ^= 1;
        assert_eq!(SegmentHeader::decode(&bytes), Err(HeaderError::Damaged));
        assert_eq!(
            SegmentHeader::decode(&h.encode()[..100]),
            Err(HeaderError::Short)
        );
    }

    #[test]
    fn the_foundation_format_is_recognised() {
        let payload = br#"{"site":"demo","event_id":"e1","pad":"......................................................................................................................."}"#;
        let mut v0 = (payload.len() as u32).to_le_bytes().to_vec();
        v0.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        v0.extend_from_slice(payload);
        assert_eq!(SegmentHeader::decode(&v0), Err(HeaderError::PreV1));
    }

    #[test]
    fn every_single_byte_flip_costs_exactly_its_frame() {
        let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 30 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let data = frames(&refs);
        assert_eq!(walk(&data), ((0..5).collect(), vec![]));
        let mut bounds = vec![0];
        for b in &bodies {
            bounds.push(bounds.last().unwrap() + FRAME_HEADER_LEN + b.len());
        }
        for i in 0..data.len() {
            let mut damaged = data.clone();
            damaged[i] ^= 0x01;
            let hit = bounds.iter().rposition(|&b| b <= i).unwrap() as u64;
            let expect: Vec<u64> = (0..5).filter(|&s| s != hit).collect();
            let (seqs, damage) = walk(&damaged);
            assert_eq!(seqs, expect, "flip at {i}");
            assert_eq!(damage.len(), 1, "flip at {i}");
        }
    }

    #[test]
    fn a_cut_anywhere_keeps_the_frames_before_it() {
        let data = frames(&[b"first", b"second"]);
        let first = FRAME_HEADER_LEN + 5;
        for cut in 1..data.len() {
            let (seqs, damage) = walk(&data[..cut]);
            assert_eq!(seqs.len(), usize::from(cut >= first), "cut at {cut}");
            assert_eq!(damage.is_empty(), cut == first, "cut at {cut}");
        }
        assert_eq!(parse_at(&data[..first + 3], first), Parse::Short);
        assert_eq!(parse_at(&data[..first + 25], first), Parse::Short);
    }

    #[test]
    fn zero_and_huge_lengths_are_bad() {
        let mut data = frames(&[b"ok"]);
        let mut h = frame_header(1, 1);
        h[4..8].copy_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&h);
        assert_eq!(parse_at(&data, FRAME_HEADER_LEN + 2), Parse::Bad);
        h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_at(&h, 0), Parse::Bad);
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
