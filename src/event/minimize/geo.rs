//! geo: the client's country instead of the client's address. [`Geo::country`] maps an IP to an ISO 3166-1
//! alpha-2 code from a MaxMind-format database, either the GeoIP2/GeoLite2 layout
//! (`{"country": {"iso_code": "NL"}}`) or the flat one (`{"country_code": "NL"}`, as in the CC0
//! geo-whois-asn-country database that `deploy/fetch-geoip.sh` fetches). Guarantees: the answer is exactly two
//! uppercase ASCII letters or `None` (unknown, malformed record, private or non-unicast address); IPv4-mapped
//! IPv6 is looked up as IPv4; [`Geo::open`] reads the file once, bounded by [`MAX_DATABASE_BYTES`], and checks
//! its whole structure (metadata, every reachable tree record, every data record) so that a corrupt file is an
//! error at open, never a panic at lookup; no error message carries an address. [`network_prefix`] is the
//! coarser alternative a tenant may keep: the /24 (IPv4) or /48 (IPv6) around the client.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::Deserialize;

/// Largest database file [`Geo::open`] reads into memory (GeoIP2-City is about 130 MB).
pub const MAX_DATABASE_BYTES: u64 = 512 << 20;
/// Distinct records tried at open to make sure the database has country data at all.
const COUNTRY_PROBES: usize = 1024;
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The metadata lies within the last 128 KiB of the file (format spec).
const METADATA_MAX_BYTES: usize = 128 << 10;
/// Sixteen zero bytes between the search tree and the data section.
const DATA_SEPARATOR: usize = 16;
/// Nesting bound for data values (GeoIP2-City needs about 5).
const MAX_DEPTH: usize = 32;

/// A country database held in memory.
pub struct Geo {
    reader: Reader<Vec<u8>>,
}

/// Why a database cannot be used. Messages name the file, never an address.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("GeoIP database {path} cannot be read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("GeoIP database {path} is larger than {MAX_DATABASE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("GeoIP database {path} is not a valid MaxMind DB: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("GeoIP database {path} (type {database_type:?}) has no country data")]
    NoCountry {
        path: PathBuf,
        database_type: String,
    },
}

impl Geo {
    /// Opens and validates a database file (reads it fully into memory).
    pub fn open(path: &Path) -> Result<Geo, GeoError> {
        let io = |source| GeoError::Io {
            path: path.to_owned(),
            source,
        };
        let invalid = |reason: String| GeoError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_DATABASE_BYTES + 1).read_to_end(&mut buf))
            .map_err(io)?;
        if buf.len() as u64 > MAX_DATABASE_BYTES {
            return Err(GeoError::TooLarge {
                path: path.to_owned(),
            });
        }
        let probes = check(&buf).map_err(invalid)?;
        let reader = Reader::from_source(buf).map_err(|e| invalid(e.to_string()))?;
        let geo = Geo { reader };
        if !probes.into_iter().any(|ip| geo.lookup(ip).is_some()) {
            return Err(GeoError::NoCountry {
                path: path.to_owned(),
                database_type: geo.database_type().to_owned(),
            });
        }
        Ok(geo)
    }

    /// ISO 3166-1 alpha-2 country code (uppercase, exactly 2 ASCII letters) or None (not found, malformed
    /// record, private address). Works for both layouts; IPv4 addresses work in IPv6 databases and IPv4-mapped
    /// IPv6 (`::ffff:a.b.c.d`) is looked up as IPv4.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let ip = ip.to_canonical();
        if !is_public_unicast(ip) || (ip.is_ipv6() && self.reader.metadata.ip_version == 4) {
            return None;
        }
        self.lookup(ip)
    }

    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    fn lookup(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let record: Record = self.reader.lookup(ip).ok().flatten()?;
        let code = match record.country {
            Some(Country { iso_code: Some(c) }) => c,
            _ => record.country_code?,
        };
        match code.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Geo")
            .field("database_type", &self.database_type())
            .field("node_count", &self.reader.metadata.node_count)
            .finish()
    }
}

/// The client's network: "/24" for IPv4 ("203.0.113.0/24"), "/48" for IPv6 ("2001:db8:1::/48");
/// IPv4-mapped IPv6 is treated as IPv4.
pub fn network_prefix(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("{}/24", Ipv4Addr::from(u32::from(v4) & !0xff)),
        IpAddr::V6(v6) => format!("{}/48", Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 48))),
    }
}

/// Both layouts in one shape; fields of the other layout (and everything else) are ignored.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

/// Private, loopback, link-local, shared (100.64/10), unspecified, broadcast and multicast addresses never
/// get a country, whatever the database says. Documentation ranges do (tests use them).
fn is_public_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let shared = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || shared)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = (first & 0xfe00) == 0xfc00;
            let link_local = (first & 0xffc0) == 0xfe80;
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || unique_local
                || link_local)
        }
    }
}

// ---- structural check ----------------------------------------------------------------------------------
// maxminddb 0.26 indexes its buffer without bounds checks, so a corrupt file would panic inside a lookup.
// Everything it can ever read is walked here first, mirroring its decoder step by step.

/// Checks the whole file; returns one address for each of the first distinct data records (for the
/// country probe).
fn check(buf: &[u8]) -> Result<Vec<IpAddr>, String> {
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
    fn network_prefix_keeps_the_24_or_48() {
        let cases = [
            ("203.0.113.77", "203.0.113.0/24"),
            ("203.0.113.0", "203.0.113.0/24"),
            ("255.255.255.255", "255.255.255.0/24"),
            ("0.0.0.1", "0.0.0.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
            ("2001:db8:1::", "2001:db8:1::/48"),
            ("2001:db8:ffff:ffff::1", "2001:db8:ffff::/48"),
            ("::1", "::/48"),
            ("::ffff:198.51.100.200", "198.51.100.0/24"),
        ];
        for (ip, want) in cases {
            assert_eq!(network_prefix(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn only_public_unicast_addresses_are_looked_up() {
        let never = "10.1.2.3 172.16.0.1 192.168.1.1 127.0.0.1 169.254.1.1 100.64.0.1 0.0.0.0 \
                     255.255.255.255 224.0.0.1 ::1 :: fc00::1 fd12::1 fe80::1 ff02::1";
        for ip in never.split_whitespace() {
            assert!(!is_public_unicast(ip.parse().unwrap()), "{ip}");
        }
        for ip in "8.8.8.8 203.0.113.1 100.128.0.1 2001:db8::1 2a00::1".split_whitespace() {
            assert!(is_public_unicast(ip.parse().unwrap()), "{ip}");
        }
    }

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
