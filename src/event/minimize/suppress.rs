//! suppress: erasure on request. A tenant's suppression file lists hashed subject identifiers
//! (`<key id>:<hex HMAC of the normalized e-mail>`, one per line, `#` comments), as `tollgate suppress` prints
//! them; normalized is [`super::normalize`]: NFKC, trimmed, lower-cased, so a full-width spelling of a listed
//! address matches too. An event whose e-mail hashes to a listed entry under any of the listed key ids is
//! dropped before minimization, so a person who asked to be forgotten stops flowing in, across key rotations.

use std::collections::HashSet;

use crate::keys::KeyRing;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Suppression {
    entries: HashSet<String>,
    key_ids: Vec<String>,
}

impl Suppression {
    /// Parses a suppression file; every entry's key id must be one of `keys`. Errors name the line, never
    /// its content beyond the key id.
    pub fn parse(text: &str, keys: &KeyRing) -> Result<Suppression, Vec<String>> {
        let mut s = Suppression::default();
        let mut errors = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((id, hex)) = line.split_once(':') else {
                errors.push(format!(
                    "line {}: expected <key id>:<64 hex characters>",
                    n + 1
                ));
                continue;
            };
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(format!(
                    "line {}: expected <key id>:<64 hex characters>",
                    n + 1
                ));
            } else if keys.get(id).is_none() {
                errors.push(format!(
                    "line {}: key id {id:?} is not one of this tenant's keys",
                    n + 1
                ));
            } else {
                if !s.key_ids.iter().any(|k| k == id) {
                    s.key_ids.push(id.to_string());
                }
                s.entries
                    .insert(format!("{id}:{}", hex.to_ascii_lowercase()));
            }
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a normalized identifier is listed under any key id the list uses.
    pub fn matches(&self, normalized: &str, keys: &KeyRing) -> bool {
        self.key_ids
            .iter()
            .filter_map(|id| keys.get(id))
            .any(|k| self.entries.contains(&k.tag(normalized.as_bytes())))
    }
}
