//! The admin listener: `GET /healthz` (the process answers), `GET /readyz` ([`readiness`]: 200, or 503 with
//! every reason), `GET /admin/status` ([`super::status`]), `GET /metrics` in Prometheus text format,
//! `POST /admin/reload` (validate the config file and swap it in — `200` with the new generation and config
//! SHA-256 — or keep the running one and say why: `409` with every error),
//! `GET /admin/bans` (the bans in force: address or IPv6 /64, seconds left, strikes, reason, log subject) and
//! `DELETE /admin/bans/{address}` (lift one ban and forget its strikes; any address of a banned /64 lifts it;
//! logged by subject).
//!
//! Before any route, [`guard::admin::host`] checks `Host` (421 otherwise, DNS rebinding); every route but
//! `/healthz` and `/readyz` then needs the bearer token when `[admin]` configures one
//! ([`guard::admin::token`], 401 otherwise). The source allow list was checked on accept (`listener`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{json, Resp};
use crate::app::Ctx;
use crate::guard::{self, admin::AdminRefusal};
use crate::readiness;
use crate::reject::Reject;
use crate::reload::Trigger;

/// Paths answered without the token: what a load balancer or orchestrator probes.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

pub async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Resp, Infallible> {
    let allowed = {
        let snap = ctx.config.load();
        guard::admin::host(req.headers(), &snap.admin).and_then(|()| {
            match PROBES.contains(&req.uri().path()) {
                true => Ok(()),
                false => guard::admin::token(req.headers(), &snap.admin),
            }
        })
    };
    if let Err(refusal) = allowed {
        ctx.metrics.admin_refused[refusal as usize].inc();
        return Ok(refused(refusal));
    }
    Ok(route(req, ctx).await)
}

fn refused(r: AdminRefusal) -> Resp {
    let mut res = json(r.status(), r.body());
    if r == AdminRefusal::Unauthorized {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

async fn route(req: Request<Incoming>, ctx: Arc<Ctx>) -> Resp {
    match (req.uri().path(), req.method()) {
        ("/metrics", &Method::GET) => {
            // Readiness as a gauge, computed as /readyz computes it, at each scrape.
            let ready = readiness::check(&readiness::inputs(&ctx)).is_empty();
            ctx.metrics.ready.set(i64::from(ready));
            let mut res = Response::new(Full::new(Bytes::from(crate::metrics::render(
                &ctx.registry,
            ))));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        ("/healthz", &Method::GET) => json(StatusCode::OK, r#"{"status":"ok"}"#),
        ("/readyz", &Method::GET) => ready(&ctx),
        ("/admin/status", &Method::GET) => json_value(StatusCode::OK, &super::status::status(&ctx)),
        ("/admin/reload", &Method::POST) => reload(ctx).await,
        ("/admin/reload", _) => Reject::MethodNotAllowed { allow: "POST" }.into_response(),
        ("/admin/bans", &Method::GET) => bans(&ctx),
        ("/admin/bans", _) => Reject::MethodNotAllowed { allow: "GET" }.into_response(),
        (path, method) if path.starts_with("/admin/bans/") => match *method {
            Method::DELETE => lift(&ctx, &path["/admin/bans/".len()..]),
            _ => Reject::MethodNotAllowed { allow: "DELETE" }.into_response(),
        },
        ("/metrics" | "/healthz" | "/readyz" | "/admin/status", _) => {
            Reject::MethodNotAllowed { allow: "GET" }.into_response()
        }
        _ => Reject::NotFound.into_response(),
    }
}

fn ready(ctx: &Ctx) -> Resp {
    let reasons = readiness::check(&readiness::inputs(ctx));
    let status = match reasons.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_value(status, &readiness::body(&reasons))
}

fn bans(ctx: &Ctx) -> Resp {
    let now = tokio::time::Instant::now().into_std();
    let list: Vec<serde_json::Value> = ctx
        .jail
        .bans
        .list(now)
        .into_iter()
        .map(|b| {
            serde_json::json!({
                "address": b.address,
                "remaining_s": b.remaining_s,
                "strikes": b.strikes,
                "reason": b.reason,
                "subject": ctx.jail.subject_of(b.key),
            })
        })
        .collect();
    json_value(StatusCode::OK, &serde_json::json!({ "bans": list }))
}

/// `address` as written in the path: an IP address, or an IPv6 /64 as `GET /admin/bans` lists it.
fn lift(ctx: &Ctx, address: &str) -> Resp {
    let text = address.strip_suffix("/64").unwrap_or(address);
    let Ok(ip) = text.parse::<std::net::IpAddr>() else {
        let body = serde_json::json!({"error": "invalid_address", "detail": "not an IP address"});
        return json_value(StatusCode::BAD_REQUEST, &body);
    };
    if ctx.jail.lift(ip) {
        json_value(StatusCode::OK, &serde_json::json!({"status": "lifted"}))
    } else {
        let body = serde_json::json!({"error": "not_banned", "detail": "no ban for this address"});
        json_value(StatusCode::NOT_FOUND, &body)
    }
}

fn json_value(status: StatusCode, body: &serde_json::Value) -> Resp {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

async fn reload(ctx: Arc<Ctx>) -> Resp {
    let result = tokio::task::spawn_blocking(move || ctx.reload_from(Trigger::Admin)).await;
    let (status, body) = match result {
        Ok(Ok(g)) => (
            StatusCode::OK,
            serde_json::json!({"status": "reloaded", "generation": g.number, "sha256": g.sha256}),
        ),
        Ok(Err(e)) => (
            StatusCode::CONFLICT,
            serde_json::json!({"error": "reload_rejected", "detail": e.to_string()}),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": "reload_failed"}),
        ),
    };
    json_value(status, &body)
}
