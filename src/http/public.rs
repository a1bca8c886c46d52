//! The public routes, served only over TLS: `POST /v1/events` and `GET /healthz`. Every response, accepted or
//! refused, carries `Strict-Transport-Security`. A batch is all-or-nothing: if any event in it is refused the
//! whole request is refused, naming the first offending event and field, and nothing of it is stored, so a
//! client can fix and resend the request without creating duplicates.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::{body, json, Resp};
use crate::app::Ctx;
use crate::event::{self, MinimizedEvent};
use crate::guard::access;
use crate::reject::Reject;
use crate::spool::SpoolError;

pub const HSTS: &str = "max-age=63072000; includeSubDomains";

pub async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let route = match req.uri().path() {
        "/v1/events" => "events",
        "/healthz" => "healthz",
        _ => "other",
    };
    let mut res = match dispatch(req, &ctx).await {
        Ok(res) => res,
        Err(reject) => {
            ctx.metrics.reject(&reject);
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
    Ok(res)
}

async fn dispatch(req: Request<Incoming>, ctx: &Ctx) -> Result<Resp, Reject> {
    match (req.uri().path(), req.method()) {
        ("/v1/events", &Method::POST) => ingest(req, ctx).await,
        ("/v1/events", _) => Err(Reject::MethodNotAllowed { allow: "POST" }),
        ("/healthz", &Method::GET | &Method::HEAD) => {
            Ok(json(StatusCode::OK, r#"{"status":"ok"}"#))
        }
        ("/healthz", _) => Err(Reject::MethodNotAllowed { allow: "GET, HEAD" }),
        _ => Err(Reject::NotFound),
    }
}

/// `application/json`, or `text/plain` as `navigator.sendBeacon` sends strings; parameters are ignored.
fn content_type_ok(req: &Request<Incoming>) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("text/plain")
}

async fn ingest(req: Request<Incoming>, ctx: &Ctx) -> Result<Resp, Reject> {
    if !content_type_ok(&req) {
        return Err(Reject::UnsupportedMediaType);
    }
    let snap = ctx.config.load_full();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("invalid").to_string());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let bytes = body::read(
        req.into_body(),
        declared,
        snap.limits.max_body_bytes,
        snap.timeouts.body_read,
    )
    .await?;
    let raw = event::decode(&bytes, &snap.limits)?;
    let received_ms = ctx.clock.now_ms();
    let mut minimized: Vec<MinimizedEvent> = Vec::with_capacity(raw.len());
    for r in raw {
        let index = r.index;
        let valid = event::validate(r)?;
        let tenant = access::check(&valid.site, origin.as_deref(), &snap.tenants)
            .map_err(|e| e.in_event(index))?;
        if valid.unknown_fields > 0 {
            ctx.metrics
                .unknown_fields_dropped
                .with_label_values(&[&tenant.site])
                .inc_by(valid.unknown_fields.into());
        }
        minimized.push(event::minimize(valid, &tenant.active_key, received_ms));
    }
    ctx.spool.append(&minimized).await.map_err(|e| match e {
        SpoolError::Full => Reject::SpoolFull,
        other => {
            tracing::error!(error = %other, "spool append failed");
            Reject::SpoolUnavailable
        }
    })?;
    for ev in &minimized {
        ctx.metrics
            .events_accepted
            .with_label_values(&[ev.site()])
            .inc();
    }
    let mut res = Resp::new(Default::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}
