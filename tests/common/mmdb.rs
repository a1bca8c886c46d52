//! A minimal MaxMind DB (binary format 2.0) writer for test fixtures: a binary search tree with 24-bit records
//! (IPv6 tree with IPv4 networks under `::/96`, or an IPv4-only tree), a data section with deduplicated
//! records (maps, UTF-8 strings, uint16/32/64, arrays and pointers, as real databases use them), the 16-byte
//! separator, and the metadata map after `\xAB\xCD\xEFMaxMind.com`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

pub const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
const DATA_SEPARATOR: usize = 16;

/// The shape of each network's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// GeoIP2/GeoLite2: `{"country": {"geoname_id", "iso_code", "names": {"en"}}, "registered_country": ->}`.
    GeoIp2,
    /// ip-location-db: `{"country_code": "NL"}`, the key shared through a pointer.
    Flat,
    /// No country at all, like GeoLite2-ASN: `{"autonomous_system_number", "autonomous_system_organization"}`.
    Asn,
}

/// An IPv6 database (ip_version 6). `networks` are CIDRs with the country code of each; IPv4 networks go
/// under `::/96`. Networks must not overlap.
pub fn build(layout: Layout, networks: &[(&str, &str)]) -> Vec<u8> {
    write(layout, networks, 6)
}

/// An IPv4-only database (ip_version 4); IPv6 networks are refused.
pub fn build_v4(layout: Layout, networks: &[(&str, &str)]) -> Vec<u8> {
    write(layout, networks, 4)
}

fn write(layout: Layout, networks: &[(&str, &str)], ip_version: u16) -> Vec<u8> {
    let width = if ip_version == 6 { 128 } else { 32 };
    let mut data = Data::default();
    let mut tree = vec![[Rec::Empty; 2]];
    for (cidr, code) in networks {
        let (key, prefix) = parse_cidr(cidr, width);
        let at = data.record(layout, code);
        insert(&mut tree, key, width, prefix, at);
    }
    let node_count = tree.len();
    let mut out = Vec::new();
    for node in &tree {
        for rec in node {
            let value = match *rec {
                Rec::Empty => node_count,
                Rec::Node(n) => n,
                Rec::Data(at) => node_count + DATA_SEPARATOR + at,
            };
            assert!(value < 1 << 24, "fixture too large for 24-bit records");
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; DATA_SEPARATOR]);
    out.extend_from_slice(&data.bytes);
    out.extend_from_slice(METADATA_MARKER);
    metadata(&mut out, layout, node_count as u32, ip_version);
    out
}

#[derive(Debug, Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

/// The network's address as a `width`-bit key, and its prefix length in that key.
fn parse_cidr(cidr: &str, width: u32) -> (u128, u32) {
    let (addr, len) = cidr.split_once('/').expect("CIDR like 81.2.69.0/24");
    let len: u32 = len.parse().expect("prefix length");
    let (key, prefix) = match addr.parse::<IpAddr>().expect("IP address") {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), len + width - 32),
        IpAddr::V6(v6) => {
            assert_eq!(width, 128, "IPv6 network {cidr} in an IPv4 database");
            (u128::from(v6), len)
        }
    };
    assert!((1..=width).contains(&prefix), "prefix of {cidr}");
    let host_bits = width - prefix;
    (key >> host_bits << host_bits, prefix)
}

fn insert(tree: &mut Vec<[Rec; 2]>, key: u128, width: u32, prefix: u32, at: usize) {
    let mut node = 0;
    for depth in 0..prefix {
        let bit = ((key >> (width - 1 - depth)) & 1) as usize;
        if depth + 1 == prefix {
            assert!(
                matches!(tree[node][bit], Rec::Empty),
                "overlapping networks"
            );
            tree[node][bit] = Rec::Data(at);
            return;
        }
        node = match tree[node][bit] {
            Rec::Node(next) => next,
            Rec::Empty => {
                tree.push([Rec::Empty; 2]);
                tree[node][bit] = Rec::Node(tree.len() - 1);
                tree.len() - 1
            }
            Rec::Data(_) => panic!("overlapping networks"),
        };
    }
}

/// The data section: one record per distinct code, keys shared through pointers where real writers do.
#[derive(Default)]
struct Data {
    bytes: Vec<u8>,
    records: BTreeMap<String, usize>,
    country_code_key: Option<usize>,
}

impl Data {
    fn record(&mut self, layout: Layout, code: &str) -> usize {
        if let Some(&at) = self.records.get(code) {
            return at;
        }
        let start = self.bytes.len();
        let b = &mut self.bytes;
        match layout {
            Layout::GeoIp2 => {
                map(b, 2);
                string(b, "country");
                let country = b.len();
                map(b, 3);
                string(b, "geoname_id");
                uint(b, 6, 2_750_405 + start as u64);
                string(b, "iso_code");
                string(b, code);
                string(b, "names");
                map(b, 1);
                string(b, "en");
                string(b, &format!("Country {code}"));
                string(b, "registered_country");
                pointer(b, country);
            }
            Layout::Flat => {
                map(b, 1);
                match self.country_code_key {
                    Some(key) => pointer(b, key),
                    None => {
                        self.country_code_key = Some(b.len());
                        string(b, "country_code");
                    }
                }
                string(b, code);
            }
            Layout::Asn => {
                map(b, 2);
                string(b, "autonomous_system_number");
                uint(b, 6, 64_496 + start as u64);
                string(b, "autonomous_system_organization");
                string(b, code);
            }
        }
        self.records.insert(code.to_owned(), start);
        start
    }
}

fn metadata(b: &mut Vec<u8>, layout: Layout, node_count: u32, ip_version: u16) {
    map(b, 9);
    string(b, "binary_format_major_version");
    uint(b, 5, 2);
    string(b, "binary_format_minor_version");
    uint(b, 5, 0);
    string(b, "build_epoch");
    uint(b, 9, 1_732_262_400);
    string(b, "database_type");
    string(b, &format!("Tollgate-Test-{layout:?}"));
    string(b, "description");
    map(b, 1);
    string(b, "en");
    string(b, "Tollgate test fixture");
    string(b, "ip_version");
    uint(b, 5, u64::from(ip_version));
    string(b, "languages");
    array(b, 1);
    string(b, "en");
    string(b, "node_count");
    uint(b, 6, u64::from(node_count));
    string(b, "record_size");
    uint(b, 5, 24);
}

/// Control byte(s) for a value of `kind` (1..=15) and payload size `size`: type in the top 3 bits (0 and an
/// extra byte of `kind - 7` for extended types), then the size, with 1 to 3 extra bytes past 28.
fn control(b: &mut Vec<u8>, kind: u8, size: usize) {
    let (low, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        b.push((kind << 5) | low);
    } else {
        b.extend_from_slice(&[low, kind - 7]);
    }
    b.extend_from_slice(&extra);
}

fn string(b: &mut Vec<u8>, s: &str) {
    control(b, 2, s.len());
    b.extend_from_slice(s.as_bytes());
}

fn map(b: &mut Vec<u8>, pairs: usize) {
    control(b, 7, pairs);
}

fn array(b: &mut Vec<u8>, items: usize) {
    control(b, 11, items);
}

/// An unsigned integer of `kind` 5 (uint16), 6 (uint32) or 9 (uint64), in as few bytes as it needs.
fn uint(b: &mut Vec<u8>, kind: u8, v: u64) {
    let max = match kind {
        5 => 2,
        6 => 4,
        9 => 8,
        _ => panic!("not an unsigned type: {kind}"),
    };
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&x| x == 0).count();
    assert!(8 - skip <= max, "{v} does not fit type {kind}");
    control(b, kind, 8 - skip);
    b.extend_from_slice(&bytes[skip..]);
}

/// A pointer to offset `to` of the data section: 001SSVVV, then SS+1 bytes, each size biased as in the spec.
fn pointer(b: &mut Vec<u8>, to: usize) {
    let (ss, v) = match to {
        0..=2047 => (0, to),
        2048..=526_335 => (1, to - 2048),
        526_336..=134_744_063 => (2, to - 526_336),
        _ => (3, to),
    };
    let len = ss + 1;
    let high = if ss == 3 {
        0
    } else {
        (v >> (8 * len)) as u8 & 0x7
    };
    b.push(0x20 | ((ss as u8) << 3) | high);
    b.extend_from_slice(&(v as u32).to_be_bytes()[4 - len..]);
}
