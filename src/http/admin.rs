//! The admin listener (loopback only): `GET /metrics` in Prometheus text format, `GET /healthz`, and
//! `POST /admin/reload` (validate the config file and swap it in, or keep the running one and say why).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{json, Resp};
use crate::app::Ctx;
use crate::reject::Reject;

pub async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Resp, Infallible> {
    let res = match (req.uri().path(), req.method()) {
        ("/metrics", &Method::GET) => {
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
        ("/admin/reload", &Method::POST) => reload(ctx).await,
        ("/admin/reload", _) => Reject::MethodNotAllowed { allow: "POST" }.into_response(),
        ("/metrics" | "/healthz", _) => Reject::MethodNotAllowed { allow: "GET" }.into_response(),
        _ => Reject::NotFound.into_response(),
    };
    Ok(res)
}

async fn reload(ctx: Arc<Ctx>) -> Resp {
    let result = tokio::task::spawn_blocking(move || ctx.reload()).await;
    let (status, body) = match result {
        Ok(Ok(())) => (StatusCode::OK, serde_json::json!({"status": "reloaded"})),
        Ok(Err(e)) => (
            StatusCode::CONFLICT,
            serde_json::json!({"error": "reload_rejected", "detail": e.to_string()}),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": "reload_failed"}),
        ),
    };
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
