//! `Geo` against real .mmdb files: fixtures written by `common::mmdb` in both record layouts, corrupt files,
//! and (when fetched) the CC0 geo-whois-asn-country database.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use common::mmdb::{self, Layout};
use tollgate::event::minimize::geo::{Geo, GeoError};

const NETWORKS: &[(&str, &str)] = &[
    ("81.2.69.0/24", "GB"),
    ("203.0.113.0/24", "AU"),
    ("198.51.100.0/25", "nl"),   // lowercase in the file, uppercase out
    ("198.51.100.128/25", "X1"), // not a country code: no answer
    ("10.0.0.0/8", "ZZ"),        // private: never answered, whatever the file says
    ("2001:db8:100::/40", "NL"),
    ("2001:db8:200::/48", "GB"),
    ("2a02:ffff::/32", "DE"),
];

/// (address, expected country) for the fixture above.
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("81.2.69.160", Some("GB")),
    ("81.2.69.0", Some("GB")),
    ("81.2.69.255", Some("GB")),
    ("81.2.70.1", None),
    ("203.0.113.9", Some("AU")),
    ("198.51.100.7", Some("NL")),
    ("198.51.100.200", None),
    ("10.1.2.3", None),
    ("8.8.8.8", None),
    ("2001:db8:100::1", Some("NL")),
    ("2001:db8:1ff:ffff::1", Some("NL")),
    ("2001:db8:200:ffff::1", Some("GB")),
    ("2001:db8:201::1", None),
    ("2a02:ffff:1234::1", Some("DE")),
    ("2a03::1", None),
    ("::ffff:81.2.69.160", Some("GB")),
    ("::ffff:203.0.113.9", Some("AU")),
    ("::ffff:10.1.2.3", None),
    ("::1", None),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn country(geo: &Geo, ip: &str) -> Option<String> {
    let ip: IpAddr = ip.parse().unwrap();
    geo.country(ip)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
}

fn open_fixture(dir: &Path, layout: Layout) -> Geo {
    let path = write(
        dir,
        &format!("{layout:?}.mmdb"),
        &mmdb::build(layout, NETWORKS),
    );
    Geo::open(&path).unwrap()
}

#[test]
fn both_layouts_answer_the_same_known_addresses() {
    let dir = tempfile::tempdir().unwrap();
    for layout in [Layout::GeoIp2, Layout::Flat] {
        let geo = open_fixture(dir.path(), layout);
        assert_eq!(geo.database_type(), format!("Tollgate-Test-{layout:?}"));
        for (ip, want) in EXPECTED {
            assert_eq!(country(&geo, ip).as_deref(), *want, "{layout:?} {ip}");
        }
    }
}

#[test]
fn ipv4_only_database_answers_ipv4_and_mapped_ipv6_only() {
    let dir = tempfile::tempdir().unwrap();
    let v4: Vec<_> = NETWORKS
        .iter()
        .copied()
        .filter(|(n, _)| !n.contains(':'))
        .collect();
    let path = write(dir.path(), "v4.mmdb", &mmdb::build_v4(Layout::Flat, &v4));
    let geo = Geo::open(&path).unwrap();
    assert_eq!(country(&geo, "81.2.69.160").as_deref(), Some("GB"));
    assert_eq!(country(&geo, "::ffff:203.0.113.9").as_deref(), Some("AU"));
    // 0x5102:4500:: starts with the bits of 81.2.69.0; an IPv4 tree must not answer for it.
    assert_eq!(country(&geo, "5102:45a0::1"), None);
}

#[test]
fn fixture_reads_back_through_maxminddb_itself() {
    let bytes = mmdb::build(Layout::GeoIp2, NETWORKS);
    let reader = maxminddb::Reader::from_source(bytes).unwrap();
    assert_eq!(reader.metadata.ip_version, 6);
    assert_eq!(reader.metadata.record_size, 24);
    assert_eq!(reader.metadata.languages, ["en"]);
    let ip: IpAddr = "2001:db8:100::1".parse().unwrap();
    let rec: maxminddb::geoip2::Country = reader.lookup(ip).unwrap().unwrap();
    assert_eq!(rec.country.unwrap().iso_code, Some("NL"));
    // registered_country is a pointer to the same map
    assert_eq!(rec.registered_country.unwrap().iso_code, Some("NL"));
    let all = maxminddb::Reader::from_source(mmdb::build(Layout::Flat, NETWORKS)).unwrap();
    let mut nets: Vec<String> = all
        .within::<serde::de::IgnoredAny>("::/0".parse().unwrap())
        .unwrap()
        .map(|item| item.unwrap().ip_net.to_string())
        .collect();
    let mut want: Vec<&str> = NETWORKS.iter().map(|(n, _)| *n).collect();
    nets.sort();
    want.sort();
    assert_eq!(nets, want);
}

#[test]
fn debug_shows_type_and_node_count_only() {
    let dir = tempfile::tempdir().unwrap();
    let geo = open_fixture(dir.path(), Layout::Flat);
    let shown = format!("{geo:?}");
    assert!(
        shown.starts_with("Geo { database_type: \"Tollgate-Test-Flat\", node_count: "),
        "{shown}"
    );
    assert!(!shown.contains("81.2") && !shown.contains("NL"), "{shown}");
}

/// Each corrupt file must be an error naming the path, never a panic.
#[test]
fn corrupt_files_are_errors_that_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = mmdb::build(Layout::GeoIp2, NETWORKS);
    let nodes = maxminddb::Reader::from_source(good.clone())
        .unwrap()
        .metadata
        .node_count as usize;
    let tree_len = nodes * 6;
    let marker = good.len()
        - good
            .windows(14)
            .rev()
            .position(|w| w == mmdb::METADATA_MARKER)
            .unwrap()
        - 14;
    let patched = |at: usize, with: &[u8]| {
        let mut b = good.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let record = |v: usize| (v as u32).to_be_bytes()[1..].to_vec();
    let mut cut_tree = good[..tree_len / 2].to_vec();
    cut_tree.extend_from_slice(&good[marker..]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"not a database\n".repeat(100)),
        ("first-half", good[..good.len() / 2].to_vec()),
        ("last-byte-missing", good[..good.len() - 1].to_vec()),
        ("tree-cut", cut_tree),
        ("record-into-separator", patched(0, &record(nodes + 5))),
        ("record-past-data", patched(0, &record(nodes + 16 + marker))),
        ("string-overrun", patched(tree_len + 16 + 1, &[0x5f])),
        ("record-size-29", patched(good.len() - 1, &[29])),
        ("no-country", mmdb::build(Layout::Asn, NETWORKS)),
    ];
    for (name, bytes) in cases {
        let path = write(dir.path(), &format!("{name}.mmdb"), &bytes);
        let err = Geo::open(&path).expect_err(name);
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
        assert!(!msg.contains("81.2.69"), "{name}: {msg}");
        if name == "no-country" {
            assert!(matches!(err, GeoError::NoCountry { .. }), "{name}: {err:?}");
        }
    }
    let missing = dir.path().join("missing.mmdb");
    let err = Geo::open(&missing).unwrap_err();
    assert!(matches!(err, GeoError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));
}

/// The CC0 database fetched by `deploy/fetch-geoip.sh`. The addresses are Google public DNS and three
/// regional internet registries' own networks: registrations that do not move.
#[test]
fn cc0_database_answers_well_known_addresses() {
    let Some(path) = std::env::var_os("TOLLGATE_CC0_MMDB") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TOLLGATE_CC0_MMDB is not set; CI must fetch the database with deploy/fetch-geoip.sh first"
        );
        eprintln!(
            "note: TOLLGATE_CC0_MMDB not set, skipping; run deploy/fetch-geoip.sh to fetch it"
        );
        return;
    };
    let geo = Geo::open(Path::new(&path)).unwrap();
    for (ip, want, whose) in CC0_EXPECTED {
        assert_eq!(country(&geo, ip).as_deref(), Some(*want), "{ip} ({whose})");
    }
    assert_eq!(country(&geo, "192.168.1.1"), None);
}

const CC0_EXPECTED: &[(&str, &str, &str)] = &[
    ("8.8.8.8", "US", "Google public DNS"),
    ("2001:4860:4860::8888", "US", "Google public DNS"),
    ("::ffff:8.8.4.4", "US", "Google public DNS, IPv4-mapped"),
    ("193.0.6.139", "NL", "RIPE NCC"),
    ("2001:67c:2e8:22::c100:68b", "NL", "RIPE NCC"),
    ("202.12.29.205", "AU", "APNIC"),
    ("2001:dc0:2001:11::205", "AU", "APNIC"),
    ("200.3.14.184", "UY", "LACNIC"),
];

/// Every single-byte corruption of a fixture either fails to open or opens and answers lookups: no panic,
/// no hang (maxminddb itself indexes without bounds checks, so `Geo::open` must catch all of these).
#[test]
fn no_single_byte_corruption_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.mmdb");
    for layout in [Layout::GeoIp2, Layout::Flat] {
        let good = mmdb::build(layout, NETWORKS);
        for at in 0..good.len() {
            for with in [0x00, 0xff, good[at] ^ 0x80] {
                let mut bytes = good.clone();
                bytes[at] = with;
                std::fs::write(&path, &bytes).unwrap();
                if let Ok(geo) = Geo::open(&path) {
                    for (ip, _) in EXPECTED {
                        let _ = geo.country(ip.parse().unwrap());
                    }
                }
            }
        }
    }
}
