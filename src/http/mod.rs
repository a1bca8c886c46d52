//! http: what happens between a connection and a route. `public` serves the TLS listener (HTTP/1.1 and
//! HTTP/2, HSTS on every response; events through `ingest`, the `pixel`, `cors` preflights, the `script`
//! `beacon.js`), `redirect` the plain listener (GET/HEAD → 308, nothing else accepted),
//! `admin` the admin listener (`/healthz`, `/readyz`, `/admin/status` from `status`, `/metrics`, reload, bans). `body` reads request bodies within their bounds;
//! `idle` closes connections on which nothing moves, `activity` those on which bytes move but no request
//! comes (a silent client after TLS, an HTTP/2 connection kept open with PINGs).

pub mod activity;
pub mod admin;
pub mod answered;
pub mod body;
pub mod cors;
pub mod idle;
mod ingest;
pub mod pixel;
pub mod public;
pub mod redirect;
pub mod script;
pub mod status;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

pub type Resp = Response<Full<Bytes>>;

/// A small JSON response.
pub fn json(status: hyper::StatusCode, body: &'static str) -> Resp {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}
