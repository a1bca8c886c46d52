//! cors: what a browser on a shop's page may do cross-origin. The event route answers a preflight
//! (`OPTIONS`) and marks its responses readable only for an origin some tenant allows; everything else gets
//! no grant at all, so a page elsewhere can neither read an answer nor pass a preflight. Guarantees:
//! - the granted origin is echoed, never `*`, with `Vary: Origin`; credentials are never allowed;
//! - a preflight for a foreign origin, a missing origin, another method than `POST` or a header outside
//!   `content-type` answers `403` with a JSON reason and no `Access-Control-*` header;
//! - the decision is pure: [`allowed`] over the snapshot's tenants.
//!
//! `navigator.sendBeacon` with a string body sends `text/plain`, which needs no preflight; `beacon.js` relies
//! on that. A preflight happens for `application/json` (a `fetch` or an `XMLHttpRequest` from a shop's own
//! code), and is answered here.

use std::collections::HashMap;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::StatusCode;

use super::Resp;
use crate::config::Tenant;

/// How long a browser may cache a preflight answer (Chromium caps it at 2 hours).
pub const MAX_AGE_S: u32 = 7200;

/// The request headers a preflight may ask for.
const ALLOWED_HEADERS: &str = "content-type";

/// `origin` if some tenant allows it (its configured spelling compared without case).
pub fn allowed<'a>(origin: &'a str, tenants: &HashMap<String, Tenant>) -> Option<&'a str> {
    tenants
        .values()
        .any(|t| {
            t.allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(origin))
        })
        .then_some(origin)
}

/// The request's `Origin`, when it is valid text.
pub fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN)?.to_str().ok()
}

/// Adds the grant for `origin` to a response (`Vary: Origin` always, so caches keep answers apart).
pub fn grant(res: &mut Resp, origin: Option<&str>) {
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

/// Why a preflight got no grant; the JSON `error` of its `403`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    OriginNotAllowed,
    MethodNotAllowed,
    HeaderNotAllowed,
}

impl Denied {
    pub fn label(self) -> &'static str {
        match self {
            Denied::OriginNotAllowed => "cors_origin_not_allowed",
            Denied::MethodNotAllowed => "cors_method_not_allowed",
            Denied::HeaderNotAllowed => "cors_header_not_allowed",
        }
    }
}

/// Decides a preflight from its headers.
pub fn check_preflight<'a>(
    headers: &'a HeaderMap,
    tenants: &HashMap<String, Tenant>,
) -> Result<&'a str, Denied> {
    let origin = origin(headers)
        .and_then(|o| allowed(o, tenants))
        .ok_or(Denied::OriginNotAllowed)?;
    let method = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .map(HeaderValue::as_bytes);
    if method != Some(b"POST") {
        return Err(Denied::MethodNotAllowed);
    }
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let asked = asked.to_str().map_err(|_| Denied::HeaderNotAllowed)?;
        let ok = asked
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .all(|h| h.eq_ignore_ascii_case(ALLOWED_HEADERS));
        if !ok {
            return Err(Denied::HeaderNotAllowed);
        }
    }
    Ok(origin)
}

/// The answer to a preflight: `204` with the grant, or `403` with the reason and no grant.
pub fn preflight(headers: &HeaderMap, tenants: &HashMap<String, Tenant>) -> Resp {
    match check_preflight(headers, tenants) {
        Ok(origin) => {
            let mut res = Resp::new(Default::default());
            *res.status_mut() = StatusCode::NO_CONTENT;
            grant(&mut res, Some(origin));
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_S));
            res
        }
        Err(denied) => {
            let body = serde_json::json!({
                "error": denied.label(),
                "field": null,
                "detail": "no cross-origin grant for this request",
            });
            let mut res = Resp::new(body.to_string().into());
            *res.status_mut() = StatusCode::FORBIDDEN;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res.headers_mut()
                .append(header::VARY, HeaderValue::from_static("Origin"));
            res
        }
    }
}
