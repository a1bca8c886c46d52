//! Certificate choice by SNI. Guarantees: the lookup is a pure function of the name the client sent and the
//! snapshot's table — exact name first, then a wildcard covering exactly one leftmost label, then the default
//! certificate; case-insensitive, a trailing dot ignored. Every handshake gets a certificate (the default when
//! nothing matches), so a client never learns which names are configured from a failed handshake. The table is
//! part of the snapshot's `ServerConfig`: a reload rotates certificates for new handshakes only, an open
//! connection keeps the session it has.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A configured SNI name, normalized (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Name {
    /// `track.shop.example`
    Exact(String),
    /// `*.shop.example`, stored without the `*.`: matches `x.shop.example`, not `shop.example` nor `a.b.shop.example`.
    Wildcard(String),
}

impl Name {
    /// Parses a configured name: a DNS name (not an IP literal), `*` only as the whole leftmost label.
    pub fn parse(text: &str) -> Result<Name, String> {
        let lower = normalize(text);
        let (wild, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if rest.contains('*') {
            return Err(format!(
                "{text:?}: `*` is only allowed as the whole leftmost label"
            ));
        }
        if rest.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!("{text:?} is an IP address, not a DNS name"));
        }
        // A wildcard must leave at least two labels (`*.example` would cover a whole TLD).
        if wild && !rest.contains('.') {
            return Err(format!(
                "{text:?}: a wildcard needs at least two labels after `*.`"
            ));
        }
        rustls::pki_types::DnsName::try_from(rest)
            .map_err(|_| format!("{text:?} is not a DNS name"))?;
        Ok(match wild {
            true => Name::Wildcard(rest.to_string()),
            false => Name::Exact(rest.to_string()),
        })
    }

    /// As written in a certificate's SAN or the config (`*.` restored).
    pub fn display(&self) -> String {
        match self {
            Name::Exact(n) => n.clone(),
            Name::Wildcard(s) => format!("*.{s}"),
        }
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Which certificate a name picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Entry index, by exact name.
    Exact(usize),
    /// Entry index, by wildcard.
    Wildcard(usize),
    /// No entry: the default certificate.
    Default,
}

/// Names to entry indexes. Build with [`NameTable::insert`]; duplicates are refused.
#[derive(Debug, Default, Clone)]
pub struct NameTable {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl NameTable {
    /// Adds `name` for entry `index`; `Err` with the earlier entry's index if the name is taken.
    pub fn insert(&mut self, name: &Name, index: usize) -> Result<(), usize> {
        let map = match name {
            Name::Exact(_) => &mut self.exact,
            Name::Wildcard(_) => &mut self.wildcard,
        };
        let key = match name {
            Name::Exact(n) | Name::Wildcard(n) => n.clone(),
        };
        match map.get(&key) {
            Some(&earlier) => Err(earlier),
            None => {
                map.insert(key, index);
                Ok(())
            }
        }
    }

    /// Exact name first, then a wildcard for the name minus its leftmost label, then the default.
    pub fn pick(&self, sni: Option<&str>) -> Pick {
        let Some(sni) = sni else {
            return Pick::Default;
        };
        let name = normalize(sni);
        if let Some(&i) = self.exact.get(&name) {
            return Pick::Exact(i);
        }
        match name
            .split_once('.')
            .and_then(|(_, rest)| self.wildcard.get(rest))
        {
            Some(&i) => Pick::Wildcard(i),
            None => Pick::Default,
        }
    }
}

/// The snapshot's certificates: the default and one per `[[tls.sni]]` entry, chosen by [`NameTable::pick`].
#[derive(Debug)]
pub struct SniResolver {
    table: NameTable,
    entries: Vec<Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(
        table: NameTable,
        entries: Vec<Arc<CertifiedKey>>,
        default: Arc<CertifiedKey>,
    ) -> Self {
        Self {
            table,
            entries,
            default,
        }
    }

    pub fn pick(&self, sni: Option<&str>) -> Pick {
        self.table.pick(sni)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = match self.pick(hello.server_name()) {
            Pick::Exact(i) | Pick::Wildcard(i) => self.entries.get(i).unwrap_or(&self.default),
            Pick::Default => &self.default,
        };
        Some(key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[&[&str]]) -> NameTable {
        let mut t = NameTable::default();
        for (i, names) in entries.iter().enumerate() {
            for n in *names {
                t.insert(&Name::parse(n).unwrap(), i).unwrap();
            }
        }
        t
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let t = table(&[
            &["track.shop.example"],
            &["*.shop.example"],
            &["Other.Example."],
        ]);
        let cases: &[(Option<&str>, Pick)] = &[
            (Some("track.shop.example"), Pick::Exact(0)),
            (Some("TRACK.Shop.Example."), Pick::Exact(0)),
            (Some("cdn.shop.example"), Pick::Wildcard(1)),
            (Some("a.b.shop.example"), Pick::Default),
            (Some("shop.example"), Pick::Default),
            (Some("other.example"), Pick::Exact(2)),
            (Some("unknown.example"), Pick::Default),
            (None, Pick::Default),
        ];
        for (sni, want) in cases {
            assert_eq!(t.pick(*sni), *want, "{sni:?}");
        }
    }

    #[test]
    fn names_are_dns_names_with_a_leftmost_wildcard_only() {
        assert_eq!(
            Name::parse("*.Shop.example").unwrap(),
            Name::Wildcard("shop.example".into())
        );
        assert_eq!(
            Name::parse("a.example.").unwrap(),
            Name::Exact("a.example".into())
        );
        for bad in [
            "a.*.example",
            "*a.example",
            "*.example",
            "127.0.0.1",
            "::1",
            "a b.example",
            "",
            "*",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_name_is_taken_once() {
        let mut t = table(&[&["a.example", "*.b.example"]]);
        assert_eq!(t.insert(&Name::parse("A.example").unwrap(), 1), Err(0));
        assert_eq!(t.insert(&Name::parse("*.b.example").unwrap(), 1), Err(0));
        assert_eq!(t.insert(&Name::parse("x.b.example").unwrap(), 1), Ok(()));
    }
}
