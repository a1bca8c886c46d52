//! The public routes, served only over TLS: `POST /v1/events` and `GET /healthz`. Every response, accepted or
//! refused, carries `Strict-Transport-Security`. A batch is all-or-nothing: if any event in it is refused the
//! whole request is refused, naming the first offending event and field, and nothing of it is stored, so a
//! client can fix and resend the request without creating duplicates. A route with lists
//! (`[guard.lists.routes]`, [`lists::check_route`]) answers only clients they admit, before anything else
//! of the request is read; the rest get `403 route_network_not_allowed`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::{cors, ingest, json, pixel, Resp};
use crate::app::Ctx;
use crate::config::Snapshot;
use crate::guard::behaviour::Signal;
use crate::guard::connmeta::ConnMeta;
use crate::guard::lists;
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
        "/v1/events" => "events",
        PIXEL => "pixel",
        "/healthz" => "healthz",
        p if p == snap.beacon.script_path => "script",
        _ => "other",
    };
    let client = meta.request_client(req.headers(), &snap.trusted_proxies);
    let now = tokio::time::Instant::now().into_std();
    let admitted = ctx
        .jail
        .check(client, now)
        .and_then(|()| lists::check_route(client, req.uri().path(), &snap.route_lists));
    // The cross-origin grant of an answer on the event route, decided before the request is consumed.
    let cors = (route == "events" && req.method() != Method::OPTIONS).then(|| {
        cors::origin(req.headers())
            .and_then(|o| cors::allowed(o, &snap.tenants))
            .map(str::to_owned)
    });
    let result = match admitted {
        Ok(()) => dispatch(req, &ctx, &snap, meta).await,
        Err(refused) => Err(refused),
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
    res.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    ctx.metrics
        .request_seconds
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .requests
        .with_label_values(&[route, res.status().as_str()])
        .inc();
    Ok(res)
}

async fn dispatch(
    req: Request<Incoming>,
    ctx: &Ctx,
    snap: &Snapshot,
    meta: ConnMeta,
) -> Result<Resp, Reject> {
    match (req.uri().path(), req.method()) {
        ("/v1/events", &Method::POST) => ingest::post(req, ctx, meta).await,
        ("/v1/events", &Method::OPTIONS) => {
            let res = cors::preflight(req.headers(), &snap.tenants);
            ctx.metrics.preflight(res.status());
            Ok(res)
        }
        ("/v1/events", _) => Err(Reject::MethodNotAllowed {
            allow: "POST, OPTIONS",
        }),
        (PIXEL, &Method::GET) => pixel::get(req, ctx, snap, meta).await,
        (PIXEL, _) => Err(Reject::MethodNotAllowed { allow: "GET" }),
        (p, &Method::GET | &Method::HEAD) if p == snap.beacon.script_path => {
            Ok(ctx.script.serve(req.headers()))
        }
        (p, _) if p == snap.beacon.script_path => {
            Err(Reject::MethodNotAllowed { allow: "GET, HEAD" })
        }
        ("/healthz", &Method::GET | &Method::HEAD) => {
            Ok(json(StatusCode::OK, r#"{"status":"ok"}"#))
        }
        ("/healthz", _) => Err(Reject::MethodNotAllowed { allow: "GET, HEAD" }),
        _ => Err(Reject::NotFound),
    }
}
