//! The public routes, served only over TLS: `POST /v1/events` and `GET /healthz`. Every response, accepted or
//! refused, carries `Strict-Transport-Security`. A batch is all-or-nothing: if any event in it is refused the
//! whole request is refused, naming the first offending event and field, and nothing of it is stored, so a
//! client can fix and resend the request without creating duplicates. A route with lists
//! (`[guard.lists.routes]`, [`lists::check_route`]) answers only clients they admit, before anything else
//! of the request is read; the rest get `403 route_network_not_allowed`.
//!
//! What can be decided from the head alone is decided first, in [`handle`]: ban, route lists, an ambiguous
//! head ([`screen::unambiguous`], `400 ambiguous_request`), route and method, and for `POST /v1/events` the
//! media type and a declared length over the limit. Such a refusal drains the body before it answers
//! ([`body::discard`]), so that it reaches HTTP/2 clients instead of a stream reset.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};

use super::answered::RouteLabel;
use super::{body, cors, ingest, json, pixel, Resp};
use crate::app::Ctx;
use crate::config::Snapshot;
use crate::guard::behaviour::Signal;
use crate::guard::connmeta::ConnMeta;
use crate::guard::{lists, screen};
use crate::reject::Reject;

pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The pixel's path.
pub const PIXEL: &str = "/v1/p.gif";
/// The paths `dispatch` serves at fixed places: the keys `[guard.lists.routes]` may use. (`beacon.js` is at
/// `beacon.script_path`, public by design: it carries nothing but the script.)
pub const ROUTES: [&str; 3] = ["/v1/events", PIXEL, "/healthz"];

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    meta: ConnMeta,
) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let snap = ctx.config.load_full();
    let route = match req.uri().path() {
        "/v1/events" => RouteLabel::Events,
        PIXEL => RouteLabel::Pixel,
        "/healthz" => RouteLabel::Healthz,
        p if p == snap.beacon.script_path => RouteLabel::Script,
        _ => RouteLabel::Other,
    };
    let client = meta.request_client(req.headers(), &snap.trusted_proxies);
    let now = tokio::time::Instant::now().into_std();
    // The cross-origin grant of an answer on the event route, decided before the request is consumed.
    let cors = (route == RouteLabel::Events && req.method() != Method::OPTIONS).then(|| {
        cors::origin(req.headers())
            .and_then(|o| cors::allowed(o, &snap.tenants))
            .map(str::to_owned)
    });
    let h1 = req.version() < Version::HTTP_2;
    // Everything decided before the body is read; a refusal here drains the body before answering.
    let decided = ctx
        .jail
        .check(client, now)
        .and_then(|()| lists::check_route(client, req.uri().path(), &snap.route_lists))
        .and_then(|()| screen::unambiguous(req.headers()))
        .and_then(|()| Route::of(&req, &snap));
    let (result, drained) = match decided {
        Ok(to) => (serve(to, req, client, &ctx, &snap).await, true),
        Err(refused) => {
            let budget = DISCARD_FACTOR * snap.limits.max_body_bytes;
            let within = snap.timeouts.body_read.min(body::DISCARD_WITHIN);
            let drained = body::discard(req.into_body(), budget, within).await;
            (Err(refused), drained)
        }
    };
    let mut res = match result {
        Ok(res) => res,
        Err(reject) => {
            ctx.metrics.reject(&reject);
            let status = reject.status();
            if status.is_client_error()
                && !matches!(reject, Reject::RateLimited { .. } | Reject::Banned { .. })
            {
                let (b, bans) = (snap.behaviour.as_ref(), snap.bans.as_ref());
                ctx.jail.observe(b, bans, client, Signal::ClientError, now);
            }
            reject.into_response()
        }
    };
    if let Some(origin) = cors {
        cors::grant(&mut res, origin.as_deref());
    }
    let h = res.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    if h1 && !drained {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let seconds = started.elapsed().as_secs_f64();
    ctx.metrics.answered.record(route, res.status(), seconds);
    Ok(res)
}

/// A refused body is drained up to this many times `max_body_bytes`: every body the limit admits drains,
/// and so does one declared up to twice the limit (the usual `413`), before the answer goes out.
const DISCARD_FACTOR: usize = 2;

/// Where a request goes, decided from its head alone: route, method and what the route checks before
/// reading a body.
enum Route {
    Events,
    Preflight,
    Pixel,
    Script,
    Health,
}

impl Route {
    fn of(req: &Request<Incoming>, snap: &Snapshot) -> Result<Route, Reject> {
        let script = snap.beacon.script_path.as_str();
        match (req.uri().path(), req.method()) {
            ("/v1/events", &Method::POST) => {
                ingest::before_body(req.headers(), snap.limits.max_body_bytes)?;
                Ok(Route::Events)
            }
            ("/v1/events", &Method::OPTIONS) => Ok(Route::Preflight),
            ("/v1/events", _) => Err(Reject::MethodNotAllowed {
                allow: "POST, OPTIONS",
            }),
            (PIXEL, &Method::GET) => Ok(Route::Pixel),
            (PIXEL, _) => Err(Reject::MethodNotAllowed { allow: "GET" }),
            (p, &Method::GET | &Method::HEAD) if p == script => Ok(Route::Script),
            (p, _) if p == script => Err(Reject::MethodNotAllowed { allow: "GET, HEAD" }),
            ("/healthz", &Method::GET | &Method::HEAD) => Ok(Route::Health),
            ("/healthz", _) => Err(Reject::MethodNotAllowed { allow: "GET, HEAD" }),
            _ => Err(Reject::NotFound),
        }
    }
}

/// Runs the route; `client` is the request's client address as [`handle`] resolved it, `snap` the one snapshot
/// the whole request uses.
async fn serve(
    to: Route,
    req: Request<Incoming>,
    client: IpAddr,
    ctx: &Ctx,
    snap: &Snapshot,
) -> Result<Resp, Reject> {
    match to {
        Route::Events => ingest::post(req, client, ctx, snap).await,
        Route::Preflight => {
            let res = cors::preflight(req.headers(), &snap.tenants);
            ctx.metrics.preflight(res.status());
            Ok(res)
        }
        Route::Pixel => pixel::get(req, ctx, snap, client).await,
        Route::Script => Ok(ctx.script.serve(req.headers())),
        Route::Health => Ok(json(StatusCode::OK, r#"{"status":"ok"}"#)),
    }
}
