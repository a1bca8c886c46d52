//! geo: the client's country instead of the client's address. [`Geo::country`] maps an IP to an ISO 3166-1
//! alpha-2 code from a MaxMind-format database, either the GeoIP2/GeoLite2 layout
//! (`{"country": {"iso_code": "NL"}}`) or the flat one (`{"country_code": "NL"}`, as in the CC0
//! geo-whois-asn-country database that `deploy/fetch-geoip.sh` fetches). Guarantees: the answer is exactly two
//! uppercase ASCII letters or `None` (unknown, malformed record, private or non-unicast address); IPv4-mapped
//! IPv6 is looked up as IPv4; [`Geo::open`] reads the file once, bounded by [`MAX_DATABASE_BYTES`], and checks
//! its whole structure (metadata, every reachable tree record, every data record) so that a corrupt file is an
//! error at open, never a panic at lookup; no error message carries an address. [`network_prefix`] is the
//! coarser alternative a tenant may keep: the /24 (IPv4) or /48 (IPv6) around the client.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

mod check;

use maxminddb::Reader;
use serde::Deserialize;

/// Largest database file [`Geo::open`] reads into memory (GeoIP2-City is about 130 MB).
pub const MAX_DATABASE_BYTES: u64 = 512 << 20;

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
        let probes = check::check(&buf).map_err(invalid)?;
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
}
