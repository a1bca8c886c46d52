//! What a snapshot was built from: the SHA-256 of the config file's bytes and every file the config names
//! (TLS certificate and key, spool and tenant key files, server secrets, suppression lists, the GeoIP
//! database, sink CA / client certificates / password and token files). The reload watcher polls these paths;
//! the hash identifies the snapshot in logs, the audit log and `Ctx::generation`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{digest, SHA256};

use super::file::ConfigFile;

/// The file a snapshot came from: its hash and the paths it read. Empty for a snapshot built in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Lower-case hex SHA-256 of the config file's bytes as parsed.
    pub sha256: String,
    /// The config file first, then every file it names (resolved against its directory), without repeats.
    pub files: Vec<PathBuf>,
    /// `files` as they were just before the config was read (the config file's hash: of the bytes read);
    /// the reload watcher's baseline.
    pub stamps: Fingerprint,
}

/// One file's state as the reload watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    Missing,
    File {
        len: u64,
        mtime_ns: i128,
        ino: u64,
        dev: u64,
        /// Only for the config file.
        sha256: Option<String>,
    },
}

/// The state of every watched file, in order.
pub type Fingerprint = Vec<Stamp>;

/// Stats every file in `files` (symlinks followed: a swapped symlink shows as another inode). Never reads
/// one. Blocking.
pub fn stat(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|path| match std::fs::metadata(path) {
            Err(_) => Stamp::Missing,
            Ok(m) => Stamp::File {
                len: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ino: m.ino(),
                dev: m.dev(),
                sha256: None,
            },
        })
        .collect()
}

/// [`stat`], plus the SHA-256 of the first file's bytes (the config file). Blocking.
pub fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    let mut stamps = stat(files);
    if let (Some(path), Some(Stamp::File { sha256, .. })) = (files.first(), stamps.first_mut()) {
        *sha256 = std::fs::read(path).ok().map(|b| sha256_hex(&b));
    }
    stamps
}

/// Sets the config file's hash in stamps taken by [`stat`].
pub(super) fn with_hash(mut stamps: Fingerprint, hash: &str) -> Fingerprint {
    if let Some(Stamp::File { sha256, .. }) = stamps.first_mut() {
        *sha256 = Some(hash.to_owned());
    }
    stamps
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file `file` names, resolved against `base`; pure (nothing is read). Files that only exist to be
/// generated (development TLS material, `generate_if_missing` keys) are listed too: once generated, a
/// change to them is a change to the snapshot.
pub(super) fn referenced(file: &ConfigFile, base: &Path) -> Vec<PathBuf> {
    let mut names: Vec<&str> = vec![&file.tls.cert, &file.tls.key];
    names.extend(file.spool.keys.iter().filter_map(|k| k.file.as_deref()));
    for t in &file.tenants {
        names.extend(t.server_secret_file.as_deref());
        names.extend(t.suppression_file.as_deref());
        names.extend(t.keys.iter().filter_map(|k| k.file.as_deref()));
    }
    names.extend(file.geo.database.as_deref());
    for s in &file.sinks {
        for f in [
            &s.ca_file,
            &s.client_cert,
            &s.client_key,
            &s.password_file,
            &s.token_file,
        ] {
            names.extend(f.as_deref());
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for p in names.into_iter().map(|n| base.join(n)) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_named_file_once_relative_to_the_config() {
        let text = r#"data_dir = "d"
[listen]
public = "127.0.0.1:0"
[tls]
cert = "c.pem"
key = "k.pem"
[spool]
[[spool.keys]]
id = "s1"
file = "s.key"
[geo]
database = "/geo/x.mmdb"
[[tenants]]
site = "a"
active_key = "k1"
server_secret_file = "secret"
suppression_file = "supp.txt"
[[tenants.keys]]
id = "k1"
file = "s.key"
[[tenants.keys]]
id = "k2"
env = "K2"
"#;
        let file: ConfigFile = toml::from_str(text).unwrap();
        let got = referenced(&file, Path::new("/etc/tg"));
        let want: Vec<PathBuf> = [
            "/etc/tg/c.pem",
            "/etc/tg/k.pem",
            "/etc/tg/s.key",
            "/etc/tg/secret",
            "/etc/tg/supp.txt",
            "/geo/x.mmdb",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
