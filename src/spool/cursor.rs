//! Durable consumer cursors: `cursors/<name>` holds where a consumer goes on after a restart.
//!
//! ```text
//! cursor = "TGCUR001" ‖ u64 segment ‖ u64 offset ‖ u32 crc32(bytes 0..24)
//! ```
//! Written atomically (temp file, fsync, rename, fsync the directory), so a crash leaves the old or the
//! new cursor, never a mix. A damaged cursor file is an error at open, never a silent restart from zero.

use std::io;
use std::path::{Path, PathBuf};

use super::fsutil;
use super::shared::Position;

const MAGIC: &[u8; 8] = b"TGCUR001";
const LEN: usize = 28;

pub(crate) fn dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join("cursors")
}

fn path(spool_dir: &Path, name: &str) -> PathBuf {
    dir(spool_dir).join(name)
}

/// The consumer's saved position; `Ok(None)` if it never saved one.
pub(crate) fn load(spool_dir: &Path, name: &str) -> io::Result<Option<Position>> {
    let p = path(spool_dir, name);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode(&bytes).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cursor file {} is damaged; restore it or delete it to re-deliver from the oldest record", p.display()),
        )
    })
}

pub(crate) fn store(spool_dir: &Path, name: &str, at: Position) -> io::Result<()> {
    write(spool_dir, name, at)
}

fn write(spool_dir: &Path, name: &str, at: Position) -> io::Result<()> {
    let mut b = Vec::with_capacity(LEN);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&at.seg.to_le_bytes());
    b.extend_from_slice(&at.offset.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    fsutil::write_atomic(&path(spool_dir, name), &b)
}

fn decode(b: &[u8]) -> Option<Position> {
    if b.len() != LEN || !b.starts_with(MAGIC) {
        return None;
    }
    let crc = u32::from_le_bytes(b[24..28].try_into().ok()?);
    if crc32fast::hash(&b[..24]) != crc {
        return None;
    }
    Some(Position {
        seg: u64::from_le_bytes(b[8..16].try_into().ok()?),
        offset: u64::from_le_bytes(b[16..24].try_into().ok()?),
    })
}

/// Consumer names become file names: 1-64 of `A-Z a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        fsutil::private_dir(&super::dir(dir.path())).unwrap();
        assert_eq!(load(dir.path(), "file").unwrap(), None);
        let at = Position {
            seg: 3,
            offset: 4096,
        };
        store(dir.path(), "file", at).unwrap();
        assert_eq!(load(dir.path(), "file").unwrap(), Some(at));
        let p = path(dir.path(), "file");
        let mut b = std::fs::read(&p).unwrap();
        b[10] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let err = load(dir.path(), "file").unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(valid_name("ch-eu_1") && !valid_name("../x") && !valid_name(""));
    }
}
