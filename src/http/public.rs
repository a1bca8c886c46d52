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

use super::{ingest, json, Resp};
use crate::app::Ctx;
use crate::guard::behaviour::Signal;
use crate::guard::connmeta::ConnMeta;
use crate::guard::lists;
use crate::reject::Reject;

pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The paths `dispatch` serves: the keys `[guard.lists.routes]` may use.
pub const ROUTES: [&str; 2] = ["/v1/events", "/healthz"];

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    meta: ConnMeta,
) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let route = match req.uri().path() {
        "/v1/events" => "events",
        "/healthz" => "healthz",
        _ => "other",
    };
    let snap = ctx.config.load_full();
    let client = meta.request_client(req.headers(), &snap.trusted_proxies);
    let now = tokio::time::Instant::now().into_std();
    let admitted = ctx
        .jail
        .check(client, now)
        .and_then(|()| lists::check_route(client, req.uri().path(), &snap.route_lists));
    let result = match admitted {
        Ok(()) => dispatch(req, &ctx, meta).await,
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

async fn dispatch(req: Request<Incoming>, ctx: &Ctx, meta: ConnMeta) -> Result<Resp, Reject> {
    match (req.uri().path(), req.method()) {
        ("/v1/events", &Method::POST) => ingest::post(req, ctx, meta).await,
        ("/v1/events", _) => Err(Reject::MethodNotAllowed { allow: "POST" }),
        ("/healthz", &Method::GET | &Method::HEAD) => {
            Ok(json(StatusCode::OK, r#"{"status":"ok"}"#))
        }
        ("/healthz", _) => Err(Reject::MethodNotAllowed { allow: "GET, HEAD" }),
        _ => Err(Reject::NotFound),
    }
}
