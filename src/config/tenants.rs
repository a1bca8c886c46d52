//! Tenants and their privacy settings: origins, HMAC keys, policy profiles, suppression lists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::file::{KeyFile, ProfileFile, TenantFile};
use super::validate::Errors;
use super::{LoadMode, Tenant};
use crate::event::minimize::policy::{self, Action, Field, Profile};
use crate::event::minimize::suppress::Suppression;
use crate::keys::{self, HmacKey, KeyRing, KeySource, Missing};
use crate::spool::Route;

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The built-in `default` and `strict` profiles, overridden or joined by `[profiles.NAME]` tables.
/// Every profile starts from the built-in one of the same name, or from `default`.
pub(super) fn profiles(
    files: &BTreeMap<String, ProfileFile>,
    errs: &mut Errors,
) -> HashMap<String, Arc<Profile>> {
    let mut out: HashMap<String, Arc<Profile>> = HashMap::new();
    out.insert("default".into(), Arc::new(Profile::builtin_default()));
    out.insert("strict".into(), Arc::new(Profile::builtin_strict()));
    for (name, f) in files {
        let at = format!("profiles.{name}");
        if !is_token(name) {
            errs.push(&at, "profile names are 1-64 characters of A-Z a-z 0-9 _ -");
        }
        let mut p = if name == "strict" {
            Profile::builtin_strict()
        } else {
            Profile::builtin_default()
        };
        p.name = name.clone();
        for (path, text) in &f.fields {
            let fat = format!("{at}.fields.\"{path}\"");
            let Some(field) = Field::parse(path) else {
                errs.push(fat, format!("unknown field {path:?}"));
                continue;
            };
            match Action::parse(text) {
                Ok(a) if a.fits(field.kind()) => p.set(field, a),
                Ok(_) => errs.push(fat, format!("action {text:?} does not apply to {path}")),
                Err(e) => errs.push(fat, e),
            }
        }
        if let Some(labels) = &f.detectors {
            match policy::detectors(labels) {
                Ok(d) => p.detectors = d,
                Err(e) => errs.push(format!("{at}.detectors"), e),
            }
        }
        if let Some(allow) = &f.url_query_allow {
            p.url_query_allow = allow.clone();
        }
        out.insert(name.clone(), Arc::new(p));
    }
    out
}

pub(super) fn tenants(
    list: &[TenantFile],
    profiles: &HashMap<String, Arc<Profile>>,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> HashMap<String, Tenant> {
    let mut out = HashMap::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tenants[{i}]");
        if !is_token(&t.site) {
            errs.push(
                format!("{at}.site"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if out.contains_key(&t.site) {
            errs.push(format!("{at}.site"), format!("duplicate site {:?}", t.site));
        }
        let allowed_origins = origins(&t.allowed_origins, &at, errs);
        let profile = profile(profiles, &t.profile, &format!("{at}.profile"), errs);
        let strict = strict_profile(
            profiles,
            &t.strict_profile,
            &format!("{at}.strict_profile"),
            errs,
        );
        let reject_unknown_fields = match t.unknown_fields.as_str() {
            "drop" => false,
            "reject" => true,
            other => {
                errs.push(
                    format!("{at}.unknown_fields"),
                    format!("{other:?} is not \"drop\" or \"reject\""),
                );
                false
            }
        };
        let Some(keys) = key_ring(t, &at, base, mode, errs) else {
            continue;
        };
        let suppression = suppression(t, &at, base, &keys, errs);
        if let (Some(profile), Some(strict)) = (profile, strict) {
            let tenant = Tenant {
                site: t.site.clone(),
                allowed_origins,
                keys,
                profile,
                strict,
                reject_unknown_fields,
                suppression,
                region: t.region.clone(),
                route: Arc::new(Route::All), // resolved against the sinks by `routes`
            };
            out.insert(t.site.clone(), tenant);
        }
    }
    out
}

fn profile(
    profiles: &HashMap<String, Arc<Profile>>,
    name: &str,
    at: &str,
    errs: &mut Errors,
) -> Option<Arc<Profile>> {
    let p = profiles.get(name).cloned();
    if p.is_none() {
        errs.push(at, format!("no profile named {name:?}"));
    }
    p
}

/// A strict profile must keep no identifier at all, hashed or not.
fn strict_profile(
    profiles: &HashMap<String, Arc<Profile>>,
    name: &str,
    at: &str,
    errs: &mut Errors,
) -> Option<Arc<Profile>> {
    let p = profile(profiles, name, at, errs)?;
    let violations = p.strict_violations();
    for v in &violations {
        errs.push(
            at,
            format!("profile {name:?} cannot be a strict profile: {v}"),
        );
    }
    violations.is_empty().then_some(p)
}

fn origins(list: &[String], at: &str, errs: &mut Errors) -> Vec<String> {
    let mut out = Vec::with_capacity(list.len());
    for (j, o) in list.iter().enumerate() {
        let lower = o.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => out.push(lower),
            _ => errs.push(
                format!("{at}.allowed_origins[{j}]"),
                format!("{o:?} is not an origin like \"https://shop.example\" (scheme and host, no path)"),
            ),
        }
    }
    out
}

fn key_ring(
    t: &TenantFile,
    at: &str,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<KeyRing> {
    let mut ids = HashSet::new();
    let mut loaded = Vec::new();
    for (j, k) in t.keys.iter().enumerate() {
        let kat = format!("{at}.keys[{j}]");
        if !is_token(&k.id) {
            errs.push(
                format!("{kat}.id"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if !ids.insert(k.id.as_str()) {
            errs.push(format!("{kat}.id"), format!("duplicate key id {:?}", k.id));
        }
        if let Some(secret) = key_secret(k, &kat, base, mode, errs) {
            loaded.push(Arc::new(HmacKey::new(k.id.clone(), &secret)));
        }
    }
    if !ids.contains(t.active_key.as_str()) {
        errs.push(
            format!("{at}.active_key"),
            format!("{:?} is not one of this tenant's key ids", t.active_key),
        );
    }
    KeyRing::new(loaded, &t.active_key)
}

pub(super) fn key_secret(
    k: &KeyFile,
    kat: &str,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<Vec<u8>> {
    let source = match (&k.file, &k.env) {
        (Some(f), None) => KeySource::File(base.join(f)),
        (None, Some(e)) => KeySource::Env(e.clone()),
        _ => {
            errs.push(kat, "set exactly one of `file` or `env`");
            return None;
        }
    };
    let missing = match (k.generate_if_missing, mode) {
        (false, _) => Missing::Fail,
        (true, LoadMode::Check) => Missing::GenerateInMemory,
        (true, LoadMode::Run) => Missing::GenerateAndWrite,
    };
    keys::load(&source, missing)
        .map_err(|e| errs.push(kat, e.to_string()))
        .ok()
}

fn suppression(
    t: &TenantFile,
    at: &str,
    base: &Path,
    keys: &KeyRing,
    errs: &mut Errors,
) -> Suppression {
    let Some(file) = &t.suppression_file else {
        return Suppression::default();
    };
    let path = base.join(file);
    let sat = format!("{at}.suppression_file");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            errs.push(sat, format!("cannot read {}: {e}", path.display()));
            return Suppression::default();
        }
    };
    Suppression::parse(&text, keys).unwrap_or_else(|problems| {
        for p in problems {
            errs.push(&sat, p);
        }
        Suppression::default()
    })
}
