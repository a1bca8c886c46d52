//! The structural check behind [`super::Geo::open`]: maxminddb 0.26 indexes its buffer without bounds checks,
//! so a corrupt file would panic inside a lookup. Everything it can ever read is walked here first, mirroring
//! its decoder step by step.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Distinct records tried at open to make sure the database has country data at all.
pub(super) const COUNTRY_PROBES: usize = 1024;
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The metadata lies within the last 128 KiB of the file (format spec).
const METADATA_MAX_BYTES: usize = 128 << 10;
/// Sixteen zero bytes between the search tree and the data section.
const DATA_SEPARATOR: usize = 16;
/// Nesting bound for data values (GeoIP2-City needs about 5).
const MAX_DEPTH: usize = 32;

/// Checks the whole file; returns one address for each of the first distinct data records (for the
/// country probe).
pub(super) fn check(buf: &[u8]) -> Result<Vec<IpAddr>, String> {
    let tail = buf
        .len()
        .saturating_sub(METADATA_MAX_BYTES + METADATA_MARKER.len());
    let marker = buf[tail..]
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .map(|i| tail + i)
        .ok_or("no metadata marker (truncated, or not a .mmdb file)")?;
    let meta = &buf[marker + METADATA_MARKER.len()..];
    skip(meta, 0, 0, &mut HashSet::new())?;
    let field =
        |name: &str| metadata_uint(meta, name)?.ok_or_else(|| format!("metadata lacks {name}"));
    if field("binary_format_major_version")? != 2 {
        return Err("unsupported binary format major version".into());
    }
    let (nodes, record_size, ip_version) = (
        field("node_count")?,
        field("record_size")?,
        field("ip_version")?,
    );
    if ![24, 28, 32].contains(&record_size) || ![4, 6].contains(&ip_version) || nodes == 0 {
        return Err(format!(
            "unsupported record size {record_size}, ip version {ip_version} or node count {nodes}"
        ));
    }
    let tree_len = usize::try_from(nodes)
        .ok()
        .and_then(|n| n.checked_mul(record_size as usize / 4))
        .filter(|&len| len.saturating_add(DATA_SEPARATOR) <= marker)
        .ok_or("search tree larger than the file")?;
    let tree = Tree {
        bytes: &buf[..tree_len],
        nodes: nodes as usize,
        record_size: record_size as usize,
        width: if ip_version == 6 { 128 } else { 32 },
    };
    tree.walk(&buf[tree_len + DATA_SEPARATOR..marker])
}

struct Tree<'a> {
    bytes: &'a [u8],
    nodes: usize,
    record_size: usize,
    width: u32,
}

impl Tree<'_> {
    fn record(&self, node: usize, side: usize) -> usize {
        let be = |b: &[u8]| b.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize);
        let base = node * self.record_size / 4;
        match self.record_size {
            24 => be(&self.bytes[base + side * 3..base + side * 3 + 3]),
            28 => {
                let middle = self.bytes[base + 3];
                let high = if side == 0 {
                    middle >> 4
                } else {
                    middle & 0x0f
                };
                ((high as usize) << 24) | be(&self.bytes[base + side * 4..base + side * 4 + 3])
            }
            _ => be(&self.bytes[base + side * 4..base + side * 4 + 4]),
        }
    }

    /// Depth-first over every node reachable from the root: each record is a node, the empty marker, or a
    /// well-formed value in `data`.
    fn walk(&self, data: &[u8]) -> Result<Vec<IpAddr>, String> {
        let mut seen = vec![false; self.nodes];
        let mut valid = HashSet::new();
        let mut probes = Vec::new();
        let mut stack = vec![(0usize, 0u128, 0u32)];
        seen[0] = true;
        while let Some((node, bits, depth)) = stack.pop() {
            for side in [1, 0] {
                let bits = bits | ((side as u128) << (self.width - 1 - depth));
                let value = self.record(node, side);
                if value < self.nodes {
                    if depth + 1 == self.width {
                        return Err("search tree deeper than an address".into());
                    }
                    if !std::mem::replace(&mut seen[value], true) {
                        stack.push((value, bits, depth + 1));
                    }
                } else if value > self.nodes {
                    let at = (value - self.nodes)
                        .checked_sub(DATA_SEPARATOR)
                        .filter(|&at| at < data.len())
                        .ok_or("search tree record points outside the data section")?;
                    if !valid.contains(&at) {
                        // Insert only once checked, so a record that points back to itself is caught.
                        skip(data, at, 0, &mut valid)?;
                        valid.insert(at);
                        if probes.len() < COUNTRY_PROBES {
                            probes.push(match self.width {
                                32 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
                                _ => IpAddr::V6(Ipv6Addr::from(bits)),
                            });
                        }
                    }
                }
            }
        }
        Ok(probes)
    }
}

/// Type, size and payload position of the value at `at` (maxminddb's `size_and_type`).
fn control(buf: &[u8], at: usize) -> Result<(u8, usize, usize), String> {
    let overrun = || "data runs past the end of its section".to_string();
    let byte = |i: usize| buf.get(i).copied().ok_or_else(overrun);
    let ctrl = byte(at)?;
    let mut pos = at + 1;
    let mut kind = ctrl >> 5;
    if kind == 0 {
        let ext = byte(pos)?;
        if ext > 8 {
            return Err(format!("unknown extended data type {ext}"));
        }
        kind = ext + 7;
        pos += 1;
    }
    let low = (ctrl & 0x1f) as usize;
    let extra = buf
        .get(pos..pos + low.saturating_sub(28))
        .ok_or_else(overrun)?;
    pos += extra.len();
    let n = extra.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let size = match low {
        0..=28 => low,
        29 => 29 + n,
        30 => 285 + n,
        _ => 65_821 + n,
    };
    Ok((kind, size, pos))
}

/// Checks the value at `at` and returns where it ends. `valid` holds offsets already checked.
fn skip(buf: &[u8], at: usize, depth: usize, valid: &mut HashSet<usize>) -> Result<usize, String> {
    if depth > MAX_DEPTH {
        return Err("data nested too deeply (or a pointer loop)".into());
    }
    let (kind, size, pos) = control(buf, at)?;
    let payload = |len: usize| {
        Some(pos + len)
            .filter(|&end| end <= buf.len())
            .ok_or_else(|| "data runs past the end of its section".to_string())
    };
    match (kind, size) {
        (1, _) => {
            let (target, end) = pointer(buf, size, pos)?;
            if control(buf, target)?.0 == 1 {
                return Err("pointer to a pointer".into());
            }
            if !valid.contains(&target) {
                skip(buf, target, depth + 1, valid)?;
                valid.insert(target);
            }
            Ok(end)
        }
        (2 | 4, _) | (5, 0..=2) | (6 | 8, 0..=4) | (9, 0..=8) | (10, 0..=16) | (3, 8) | (15, 4) => {
            payload(size)
        }
        (14, 0..=1) => Ok(pos),
        (7 | 11, _) => {
            let items = if kind == 7 { size * 2 } else { size };
            (0..items).try_fold(pos, |p, _| skip(buf, p, depth + 1, valid))
        }
        _ => Err(format!("malformed value of type {kind}, size {size}")),
    }
}

/// Target and end of a pointer whose control byte said `size` (maxminddb's `decode_pointer`).
fn pointer(buf: &[u8], size: usize, pos: usize) -> Result<(usize, usize), String> {
    let len = ((size >> 3) & 0x3) + 1;
    let bytes = buf
        .get(pos..pos + len)
        .ok_or("pointer runs past its section")?;
    let base = if len == 4 { 0 } else { size & 0x7 };
    let value = bytes.iter().fold(base, |acc, &b| (acc << 8) | b as usize);
    let target = value + [0, 0, 2048, 526_336, 0][len];
    if target >= buf.len() {
        return Err("pointer outside its section".into());
    }
    Ok((target, pos + len))
}

/// The unsigned integer under `name` in the (already checked) top-level metadata map.
fn metadata_uint(meta: &[u8], name: &str) -> Result<Option<u64>, String> {
    let (kind, pairs, mut pos) = control(meta, 0)?;
    if kind != 7 {
        return Err("metadata is not a map".into());
    }
    let resolve = |at: usize| -> Result<(u8, usize, usize), String> {
        match control(meta, at)? {
            (1, size, pos) => control(meta, pointer(meta, size, pos)?.0),
            other => Ok(other),
        }
    };
    let mut scratch = HashSet::new();
    for _ in 0..pairs {
        let (key_kind, key_len, key_at) = resolve(pos)?;
        pos = skip(meta, pos, 0, &mut scratch)?;
        let (kind, len, at) = resolve(pos)?;
        pos = skip(meta, pos, 0, &mut scratch)?;
        if key_kind == 2 && &meta[key_at..key_at + key_len] == name.as_bytes() {
            return match kind {
                5 | 6 | 9 => Ok(Some(
                    meta[at..at + len]
                        .iter()
                        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
                )),
                _ => Err(format!("metadata {name} is not an unsigned integer")),
            };
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_rejects_overruns_and_pointer_loops() {
        let mut valid = HashSet::new();
        // map of 1 pair whose key string claims 5 bytes but has 2
        assert!(skip(&[0xe1, 0x45, b'a', b'b'], 0, 0, &mut valid).is_err());
        // a pointer to itself's map: {"a": -> 0}
        assert!(skip(&[0xe1, 0x41, b'a', 0x20, 0x00], 0, 0, &mut valid).is_err());
        // {"a": "b"} is fine and ends at 5
        assert_eq!(
            skip(&[0xe1, 0x41, b'a', 0x41, b'b'], 0, 0, &mut valid),
            Ok(5)
        );
        // extended type byte beyond 15
        assert!(skip(&[0x00, 0xff], 0, 0, &mut valid).is_err());
    }
}
