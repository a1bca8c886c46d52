//! Encryption at rest: AES-256-GCM (aws-lc-rs) for every record of every segment.
//!
//! Keys: an operator key (≥ 32 bytes, from a file or the environment, with an id) never encrypts directly.
//! Each segment carries a fresh random 16-byte salt in its header, and its records are sealed with
//! `HKDF-SHA256(ikm = operator key, salt = segment salt, info = "tollgate spool v1" ‖ segment number)`.
//!
//! Nonces: 96 bits, `0u32 ‖ seq` where `seq` is the record's sequence number in its segment, stored in the
//! frame header. A segment is only ever written by the writer session that created it (after a restart the
//! writer always starts a new segment), and `seq` only grows within that session — it is not rolled back
//! when a failed write is — so a (segment key, nonce) pair is never used twice. The random salt makes the
//! segment key unique even when a spool directory is wiped and segment numbers start again at 1 under the
//! same operator key. The frame header (sync marker, length, seq) is the associated data, so a frame cannot
//! be moved or renumbered without failing authentication.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;

/// Bytes the AEAD adds to every record.
pub const TAG_LEN: usize = 16;
/// Bytes of the per-segment salt.
pub const SALT_LEN: usize = 16;

const INFO: &[u8] = b"tollgate spool v1";

/// One operator key for the spool. `Debug` shows only the id.
pub struct SpoolKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl SpoolKey {
    pub fn new(id: impl Into<String>, secret: &[u8]) -> Self {
        Self {
            id: id.into(),
            secret: secret.to_vec(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key that seals the records of one segment.
    pub(crate) fn for_segment(&self, salt: &[u8; SALT_LEN], seg_no: u64) -> SegmentCipher {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.secret);
        let seg = seg_no.to_le_bytes();
        let info = [INFO, &seg[..]];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("HKDF output of one AES-256 key is within bounds");
        SegmentCipher {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }
}

/// Every spool key the operator configured: all of them can read, the active one encrypts new segments.
#[derive(Debug, Clone)]
pub struct SpoolKeys {
    active: Arc<SpoolKey>,
    keys: Vec<Arc<SpoolKey>>,
}

impl SpoolKeys {
    /// `None` if `active_id` is not among `keys`.
    pub fn new(keys: Vec<Arc<SpoolKey>>, active_id: &str) -> Option<Self> {
        let active = keys.iter().find(|k| k.id() == active_id)?.clone();
        Some(Self { active, keys })
    }

    pub fn active(&self) -> &Arc<SpoolKey> {
        &self.active
    }

    pub fn get(&self, id: &str) -> Option<&Arc<SpoolKey>> {
        self.keys.iter().find(|k| k.id() == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id())
    }
}

/// The AEAD key of one segment.
pub(crate) struct SegmentCipher {
    key: LessSafeKey,
}

impl SegmentCipher {
    /// Encrypts `in_out` in place and appends the tag.
    pub(crate) fn seal(&self, seq: u64, aad: &[u8], in_out: &mut Vec<u8>) {
        self.key
            .seal_in_place_append_tag(nonce(seq), Aad::from(aad), in_out)
            .expect("AES-GCM sealing of a bounded record cannot fail");
    }

    /// Decrypts `in_out` (ciphertext ‖ tag) in place; `None` if authentication fails.
    pub(crate) fn open<'a>(
        &self,
        seq: u64,
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        self.key
            .open_in_place(nonce(seq), Aad::from(aad), in_out)
            .ok()
    }
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A fresh random salt for a new segment.
pub(crate) fn new_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).expect("system random source");
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_rejects_tampering() {
        let key = SpoolKey::new("s1", &[9u8; 32]);
        let salt = [1u8; SALT_LEN];
        let c = key.for_segment(&salt, 7);
        let mut buf = b"secret marker".to_vec();
        c.seal(3, b"hdr", &mut buf);
        assert_eq!(buf.len(), 13 + TAG_LEN);
        assert!(!buf.windows(6).any(|w| w == b"secret"));
        let mut copy = buf.clone();
        assert_eq!(c.open(3, b"hdr", &mut copy).unwrap(), b"secret marker");
        for (seq, aad, seg, salt2) in [
            (4, &b"hdr"[..], 7, salt),
            (3, &b"hdR"[..], 7, salt),
            (3, &b"hdr"[..], 8, salt),
            (3, &b"hdr"[..], 7, [2u8; SALT_LEN]),
        ] {
            let mut copy = buf.clone();
            let other = key.for_segment(&salt2, seg);
            assert!(
                other.open(seq, aad, &mut copy).is_none(),
                "{seq} {aad:?} {seg}"
            );
        }
        let wrong = SpoolKey::new("s1", &[8u8; 32]).for_segment(&salt, 7);
        assert!(wrong.open(3, b"hdr", &mut buf.clone()).is_none());
    }

    #[test]
    fn debug_hides_the_secret_and_ring_finds_keys() {
        let k = Arc::new(SpoolKey::new("s9", &[7u8; 32]));
        let dbg = format!("{k:?}");
        assert!(dbg.contains("s9") && !dbg.contains("7, 7"), "{dbg}");
        let ring = SpoolKeys::new(vec![k.clone()], "s9").unwrap();
        assert_eq!(ring.active().id(), "s9");
        assert!(ring.get("s1").is_none());
        assert!(SpoolKeys::new(vec![k], "s1").is_none());
    }
}
