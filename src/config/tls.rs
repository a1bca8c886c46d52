//! `[tls]` and `[[tls.sni]]` into the snapshot's [`crate::tls::Tls`]: the protocol floor, the default certificate
//! (generated or renewed in development, see [`crate::tls::dev`]) and each SNI entry. Every entry is checked: its
//! names are DNS names (wildcard only as the whole leftmost label), no name appears twice across entries, and its
//! certificate covers each of its names.

use std::path::{Path, PathBuf};

use super::file::{SniFile, TlsFile};
use super::validate::Errors;
use super::LoadMode;
use crate::tls::cert::{self, Loaded};
use crate::tls::sni::{Name, NameTable};
use crate::tls::{self, SniEntry};

pub(super) fn tls_material(
    file: &TlsFile,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<(tls::Tls, Option<PathBuf>)> {
    let versions = match file.min_version.as_str() {
        "1.2" => Some(tls::Versions::Intermediate),
        "1.3" => Some(tls::Versions::Modern),
        other => {
            let msg = format!("{other:?} is not one of \"1.2\", \"1.3\"");
            errs.push("tls.min_version", msg);
            None
        }
    };
    let (cert, key) = (base.join(&file.cert), base.join(&file.key));
    let now = tls::dev::unix_now();
    let default = tls::dev::default_pair(&cert, &key, file.dev_self_signed, mode, now)
        .map_err(|e| errs.push("tls", e.to_string()))
        .ok();
    let (entries, table) = sni_entries(&file.sni, base, errs)?;
    let (default, dev_ca) = default?;
    tls::build(default, entries, table, versions?)
        .map_err(|e| errs.push("tls", e.to_string()))
        .ok()
        .map(|t| (t, dev_ca))
}

/// Every `[[tls.sni]]` entry loaded and its names in one table; `None` if any entry had an error (all recorded).
fn sni_entries(
    files: &[SniFile],
    base: &Path,
    errs: &mut Errors,
) -> Option<(Vec<SniEntry>, NameTable)> {
    let before = errs.0.len();
    let mut table = NameTable::default();
    let mut entries = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let at = format!("tls.sni[{i}]");
        if f.names.is_empty() {
            errs.push(format!("{at}.names"), "at least one name");
        }
        let loaded = cert::load_pair(&base.join(&f.cert), &base.join(&f.key))
            .map_err(|e| errs.push(&at, e.to_string()))
            .ok();
        let names = names(f, &at, i, &mut table, errs);
        if let Some(loaded) = loaded {
            check_coverage(&loaded, &names, &at, errs);
            let label = names.first().map(|(_, n)| n.display()).unwrap_or_default();
            entries.push(SniEntry { label, loaded });
        }
    }
    (errs.0.len() == before).then_some((entries, table))
}

/// Parses entry `i`'s names into `table`; returns those that parsed, with their index in `names`.
fn names(
    f: &SniFile,
    at: &str,
    i: usize,
    table: &mut NameTable,
    errs: &mut Errors,
) -> Vec<(usize, Name)> {
    let mut out = Vec::new();
    for (j, text) in f.names.iter().enumerate() {
        let path = format!("{at}.names[{j}]");
        match Name::parse(text) {
            Ok(name) => {
                if let Err(earlier) = table.insert(&name, i) {
                    errs.push(
                        &path,
                        format!("{text:?} is already listed in tls.sni[{earlier}]"),
                    );
                }
                out.push((j, name));
            }
            Err(e) => errs.push(&path, e),
        }
    }
    out
}

fn check_coverage(loaded: &Loaded, names: &[(usize, Name)], at: &str, errs: &mut Errors) {
    for (j, name) in names {
        if !cert::covers(&loaded.facts.dns_names, name) {
            errs.push(
                format!("{at}.names[{j}]"),
                format!(
                    "the certificate does not cover {:?} (its DNS names: {})",
                    name.display(),
                    loaded.facts.dns_names.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, stem: &str, sans: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    fn entry(names: &[&str], stem: &str) -> SniFile {
        SniFile {
            names: names.iter().map(|s| s.to_string()).collect(),
            cert: format!("{stem}.pem"),
            key: format!("{stem}.key"),
        }
    }

    #[test]
    fn every_entry_error_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        write_cert(
            dir.path(),
            "shop",
            &["track.shop.example", "*.shop.example"],
        );
        write_cert(dir.path(), "other", &["other.example"]);
        let files = [
            entry(&["track.shop.example", "*.shop.example"], "shop"),
            entry(
                &["TRACK.shop.example", "a.*.example", "x.other.example"],
                "other",
            ),
            entry(&[], "missing"),
        ];
        let mut errs = Errors::default();
        assert!(sni_entries(&files, dir.path(), &mut errs).is_none());
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tls.sni[1].names[0]", // duplicate of tls.sni[0]
                "tls.sni[1].names[1]", // wildcard not leftmost
                "tls.sni[1].names[0]", // not covered by other.pem
                "tls.sni[1].names[2]", // not covered either
                "tls.sni[2].names",
                "tls.sni[2]", // files missing
            ],
            "{:?}",
            errs.0
        );
    }

    #[test]
    fn good_entries_are_labelled_by_their_first_name() {
        let dir = tempfile::tempdir().unwrap();
        write_cert(dir.path(), "shop", &["*.shop.example"]);
        let mut errs = Errors::default();
        let (entries, table) = sni_entries(
            &[entry(&["*.Shop.example."], "shop")],
            dir.path(),
            &mut errs,
        )
        .unwrap();
        assert_eq!(entries[0].label, "*.shop.example");
        assert_eq!(
            table.pick(Some("t.shop.example")),
            tls::sni::Pick::Wildcard(0)
        );
    }
}
