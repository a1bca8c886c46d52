//! HMAC keys for keyed hashing of identifiers. A key is read from a file or an environment variable named in
//! the config (hex text, at least 32 bytes), carries an id, and never appears in logs, errors or metrics:
//! `Debug` prints only the id, and every error names the source, never the content.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;

/// Minimum key length in bytes (HMAC-SHA256 block-strength keys).
pub const MIN_KEY_BYTES: usize = 32;

pub struct HmacKey {
    id: String,
    key: hmac::Key,
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl HmacKey {
    pub fn new(id: impl Into<String>, secret: &[u8]) -> Self {
        Self {
            id: id.into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `"<id>:<hex of HMAC-SHA256(key, data)>"`: the id lets downstream join across key rotations.
    pub fn tag(&self, data: &[u8]) -> String {
        let tag = hmac::sign(&self.key, data);
        let mut out = String::with_capacity(self.id.len() + 1 + 64);
        out.push_str(&self.id);
        out.push(':');
        for b in tag.as_ref() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A tenant's keys: every configured key (so older hashes, e.g. in a suppression list, can still be matched)
/// and the one active key that new hashes use.
#[derive(Debug, Clone)]
pub struct KeyRing {
    active: std::sync::Arc<HmacKey>,
    keys: Vec<std::sync::Arc<HmacKey>>,
}

impl KeyRing {
    /// `None` if `active_id` is not among `keys`.
    pub fn new(keys: Vec<std::sync::Arc<HmacKey>>, active_id: &str) -> Option<KeyRing> {
        let active = keys.iter().find(|k| k.id() == active_id)?.clone();
        Some(KeyRing { active, keys })
    }

    pub fn active(&self) -> &HmacKey {
        &self.active
    }

    pub fn get(&self, id: &str) -> Option<&HmacKey> {
        self.keys.iter().find(|k| k.id() == id).map(|k| k.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key file {0} cannot be read: {1}")]
    Unreadable(PathBuf, String),
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("{0}: key must be hex text of at least {MIN_KEY_BYTES} bytes")]
    Malformed(String),
    #[error("key file {0} cannot be created: {1}")]
    Create(PathBuf, String),
}

/// What to do when a key file is missing and the config allows generating one (development only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Fail,
    /// Generate a random key in memory only (used by `tollgate check`, which never writes).
    GenerateInMemory,
    /// Generate a random key and write it with mode 0600.
    GenerateAndWrite,
}

/// Reads the secret bytes for a key.
pub fn load(source: &KeySource, missing: Missing) -> Result<Vec<u8>, KeyError> {
    match source {
        KeySource::Env(name) => {
            let text = std::env::var(name).map_err(|_| KeyError::EnvMissing(name.clone()))?;
            parse_hex(&text)
                .ok_or_else(|| KeyError::Malformed(format!("environment variable {name}")))
        }
        KeySource::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                parse_hex(&text).ok_or_else(|| KeyError::Malformed(path.display().to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing != Missing::Fail => {
                let secret = random_secret();
                if missing == Missing::GenerateAndWrite {
                    write_new(path, &secret)?;
                    tracing::warn!(path = %path.display(), "generated a development key file");
                }
                Ok(secret)
            }
            Err(e) => Err(KeyError::Unreadable(path.clone(), e.kind().to_string())),
        },
    }
}

fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; MIN_KEY_BYTES];
    aws_lc_rs::rand::fill(&mut secret).expect("system random source");
    secret
}

fn write_new(path: &Path, secret: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| KeyError::Create(path.to_path_buf(), e.kind().to_string());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    let mut text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if !t.len().is_multiple_of(2) || t.len() < MIN_KEY_BYTES * 2 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    t.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// A credential for a downstream (a ClickHouse password, an upstream bearer token): read from a file or an
/// environment variable, compared for reload, never printed (`Debug` shows `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The file's content without its trailing newline; errors name the file, never the content.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
        Self::checked(
            text.trim_end_matches(['\r', '\n']).to_owned(),
            &path.display().to_string(),
        )
    }

    pub fn from_env(name: &str) -> Result<Secret, String> {
        let text =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        Self::checked(text, &format!("environment variable {name}"))
    }

    fn checked(text: String, source: &str) -> Result<Secret, String> {
        if text.is_empty() || text.chars().any(|c| c.is_control()) {
            return Err(format!("{source}: must be one non-empty line"));
        }
        Ok(Secret(text))
    }

    #[cfg(test)]
    pub(crate) fn for_test(text: String) -> Secret {
        Secret(text)
    }

    /// The secret itself, for the one header or handshake that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_errors_never_show_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2-pass\n").unwrap();
        let s = Secret::from_file(&path).unwrap();
        assert_eq!(s.expose(), "hunter2-pass");
        assert!(!format!("{s:?}").contains("hunter2"));
        std::fs::write(&path, "two\nlines-hunter2\n").unwrap();
        let err = Secret::from_file(&path).unwrap_err();
        assert!(
            !err.contains("hunter2") && err.contains("one non-empty line"),
            "{err}"
        );
    }

    #[test]
    fn tag_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        let k = HmacKey::new("k1", b"Jefe");
        assert_eq!(
            k.tag(b"what do ya want for nothing?"),
            "k1:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let secret_hex = "ab".repeat(31); // too short on purpose
        std::fs::write(&path, &secret_hex).unwrap();
        let err = load(&KeySource::File(path), Missing::Fail)
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&secret_hex), "{err}");
        let k = HmacKey::new("k9", &[7u8; 32]);
        let dbg = format!("{k:?}");
        assert!(dbg.contains("k9") && dbg.contains("redacted") && !dbg.contains("7, 7"));
    }

    #[test]
    fn generated_key_file_is_private_and_reloads_identically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/demo.key");
        let src = KeySource::File(path.clone());
        let first = load(&src, Missing::GenerateAndWrite).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&src, Missing::Fail).unwrap(), first);
        assert!(load(
            &KeySource::File(dir.path().join("nope")),
            Missing::GenerateInMemory
        )
        .is_ok());
        assert!(!dir.path().join("nope").exists());
    }
}
