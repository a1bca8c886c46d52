//! `[admin]` validated into [`AdminAccess`], with the rule that binds it to `listen.admin`: a loopback bind may
//! leave everything open, a non-loopback bind needs both a non-empty `admin.allow` and a token. Errors name
//! the token's source, never its content.

use std::net::SocketAddr;
use std::path::Path;

use super::file::ConfigFile;
use super::validate::Errors;
use crate::guard::access;
use crate::guard::admin::AdminAccess;
use crate::keys::Secret;

const MIN_TOKEN_CHARS: usize = 32;

pub(super) fn admin(file: &ConfigFile, base: &Path, errs: &mut Errors) -> AdminAccess {
    let a = &file.admin;
    let allow = super::guard::networks(&a.allow, "admin.allow", errs);
    let token = token(a.token_file.as_deref(), a.token_env.as_deref(), base, errs);
    let bind = file
        .listen
        .admin
        .as_deref()
        .and_then(|t| t.parse::<SocketAddr>().ok());
    if let Some(bind) = bind.filter(|b| !b.ip().is_loopback()) {
        let mut missing = Vec::new();
        if a.allow.is_empty() {
            missing.push("admin.allow");
        }
        if a.token_file.is_none() && a.token_env.is_none() {
            missing.push("admin.token_file (or admin.token_env)");
        }
        if !missing.is_empty() {
            errs.push(
                "listen.admin",
                format!(
                    "{bind} is not a loopback address: a non-loopback admin listener requires {}",
                    missing.join(" and ")
                ),
            );
        }
    }
    for (i, h) in a.hosts.iter().enumerate() {
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if !ok {
            errs.push(
                format!("admin.hosts[{i}]"),
                format!("{h:?} is not a host name"),
            );
        }
    }
    AdminAccess::new(allow, token.as_ref(), &a.hosts)
}

fn token(file: Option<&str>, env: Option<&str>, base: &Path, errs: &mut Errors) -> Option<Secret> {
    let (at, loaded) = match (file, env) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            errs.push("admin", "set at most one of `token_file` or `token_env`");
            return None;
        }
        (Some(f), None) => ("admin.token_file", Secret::from_file(&base.join(f))),
        (None, Some(e)) => ("admin.token_env", Secret::from_env(e)),
    };
    let secret = loaded.map_err(|e| errs.push(at, e)).ok()?;
    let text = secret.expose();
    if text.chars().count() < MIN_TOKEN_CHARS || !access::is_bearer_token(text) {
        errs.push(
            at,
            format!(
                "the token must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~ + / \
                 (e.g. `openssl rand -hex 32`)"
            ),
        );
        return None;
    }
    Some(secret)
}
