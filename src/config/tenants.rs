//! Tenants and their settings: origins, server-side access, HMAC keys, policy profiles, suppression lists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::file::{KeyFile, ProfileFile, TenantFile};
use super::validate::Errors;
use super::{LoadMode, Tenant};
use crate::event::minimize::policy::{self, Action, Field, Profile};
use crate::event::minimize::suppress::Suppression;
use crate::guard::access::{self, ServerAccess};
use crate::keys::{self, HmacKey, KeyRing, KeySource, Missing, Secret};
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
        let server = server_access(t, &at, base, errs);
        let networks = crate::guard::lists::Lists {
            allow: super::guard::networks(&t.allow_networks, &format!("{at}.allow_networks"), errs),
            deny: super::guard::networks(&t.deny_networks, &format!("{at}.deny_networks"), errs),
        };
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
                server,
                networks,
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

/// Shortest server secret accepted, in characters (`openssl rand -hex 32` prints 64).
const MIN_SERVER_SECRET_CHARS: usize = 32;

/// A server secret (from a file or an environment variable, never inline) and the networks it is good from.
/// Errors name the source, never the content.
fn server_access(t: &TenantFile, at: &str, base: &Path, errs: &mut Errors) -> Option<ServerAccess> {
    let networks =
        super::guard::networks(&t.server_networks, &format!("{at}.server_networks"), errs);
    let (source, secret) = match (&t.server_secret_file, &t.server_secret_env) {
        (None, None) => {
            if !t.server_networks.is_empty() {
                errs.push(
                    format!("{at}.server_networks"),
                    "has no effect without server_secret_file or server_secret_env",
                );
            }
            return None;
        }
        (Some(_), Some(_)) => {
            errs.push(
                at,
                "set at most one of `server_secret_file` or `server_secret_env`",
            );
            return None;
        }
        (Some(f), None) => ("server_secret_file", Secret::from_file(&base.join(f))),
        (None, Some(e)) => ("server_secret_env", Secret::from_env(e)),
    };
    if t.server_networks.is_empty() {
        errs.push(
            format!("{at}.server_networks"),
            "list the networks server-side callers post from (\"0.0.0.0/0\" and \"::/0\" for anywhere)",
        );
    }
    let sat = format!("{at}.{source}");
    let secret = secret.map_err(|e| errs.push(&sat, e)).ok()?;
    let text = secret.expose();
    if text.chars().count() < MIN_SERVER_SECRET_CHARS || !access::is_bearer_token(text) {
        errs.push(
            &sat,
            format!(
                "the secret must be at least {MIN_SERVER_SECRET_CHARS} characters of A-Z a-z 0-9 - . _ ~ + / \
                 (a bearer token; e.g. `openssl rand -hex 32`)"
            ),
        );
        return None;
    }
    Some(ServerAccess::new(&secret, networks))
}

fn key_ring(
    t: &TenantFile,
    at: &str,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
) -> Option<KeyRing> {
    let (ids, loaded) = load_keys(
        &t.keys,
        &format!("{at}.keys"),
        base,
        mode,
        errs,
        HmacKey::new,
    );
    if !ids.contains(t.active_key.as_str()) {
        errs.push(
            format!("{at}.active_key"),
            format!("{:?} is not one of this tenant's key ids", t.active_key),
        );
    }
    KeyRing::new(loaded, &t.active_key)
}

/// Loads a `keys` list (tenant HMAC keys, spool keys): every id checked (a token, unique), every secret read
/// from its file or variable; returns the ids and the keys that loaded, errors recorded under `at[j]`.
pub(super) fn load_keys<K>(
    keys: &[KeyFile],
    at: &str,
    base: &Path,
    mode: LoadMode,
    errs: &mut Errors,
    make: impl Fn(String, &[u8]) -> K,
) -> (HashSet<String>, Vec<Arc<K>>) {
    let mut ids = HashSet::new();
    let mut loaded = Vec::new();
    for (j, k) in keys.iter().enumerate() {
        let kat = format!("{at}[{j}]");
        if !is_token(&k.id) {
            errs.push(
                format!("{kat}.id"),
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            );
        } else if !ids.insert(k.id.clone()) {
            errs.push(format!("{kat}.id"), format!("duplicate key id {:?}", k.id));
        }
        if let Some(secret) = key_secret(k, &kat, base, mode, errs) {
            loaded.push(Arc::new(make(k.id.clone(), &secret)));
        }
    }
    (ids, loaded)
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
