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

use super::{body, json, Resp};
use crate::app::Ctx;
use crate::config::Snapshot;
use crate::event::{self, ClientMeta, Context, MinimizedEvent, Outcome, Report};
use crate::guard::bans::BanReason;
use crate::guard::behaviour::Signal;
use crate::guard::connmeta::ConnMeta;
use crate::guard::{access, limit, lists, screen};
use crate::reject::Reject;
use crate::spool::SpoolError;

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
        ("/v1/events", &Method::POST) => ingest(req, ctx, meta).await,
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

fn header_is_one(req: &Request<Incoming>, name: &str) -> bool {
    req.headers()
        .get(name)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
}

/// What minimization may derive from (never copy out of) the request: address, user agent, opt-out signals.
/// The address is the connection's client, or `X-Forwarded-For`'s when that client is a trusted proxy.
fn client_meta(req: &Request<Incoming>, meta: ConnMeta, snap: &Snapshot, ctx: &Ctx) -> ClientMeta {
    ClientMeta {
        ip: meta.request_client(req.headers(), &snap.trusted_proxies),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ctx.user_agents.reduce(ua)),
        opted_out: header_is_one(req, "sec-gpc") || header_is_one(req, "dnt"),
    }
}

/// What one request did for one tenant, recorded in the metrics once the request is accepted.
struct Tally<'a> {
    site: &'a str,
    report: Report,
    unknown: u64,
    accepted: u64,
}

async fn ingest(req: Request<Incoming>, ctx: &Ctx, meta: ConnMeta) -> Result<Resp, Reject> {
    if !content_type_ok(&req) {
        return Err(Reject::UnsupportedMediaType);
    }
    let snap = ctx.config.load_full();
    let client = client_meta(&req, meta, &snap, ctx);
    // Refused only once the body is read: answering an HTTP/2 stream early resets it, which curl reports as
    // a framing error instead of the 401.
    let caller = access::caller(req.headers(), client.ip);
    // The raw user agent, for the anomaly engine only (minimization sees the reduced one); a cheap clone.
    let user_agent = snap
        .anomaly
        .as_ref()
        .and_then(|_| req.headers().get(header::USER_AGENT).cloned());
    let header_facts = screen::header_facts(req.headers());
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
    let caller = caller?;
    let decoded = event::decode(&bytes, &snap.limits)?;
    let raw = decoded.events;
    if let Some(engine) = &snap.anomaly {
        let ua = user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let mut protocol = header_facts;
        protocol.duplicate_key = decoded.duplicate_key.as_deref();
        let request = screen::RequestFacts {
            user_agent: ua.as_deref(),
            protocol,
        };
        let screened = screen::admit(
            engine,
            &ctx.metrics.screen,
            &ctx.jail.metrics,
            &raw,
            &request,
        );
        if let Err(reject) = screened {
            let now = tokio::time::Instant::now().into_std();
            let bans = snap.bans.as_ref();
            ctx.jail.offence(bans, client.ip, BanReason::Anomaly, now);
            return Err(reject);
        }
    }
    let received_ms = ctx.clock.now_ms();
    let mut minimized: Vec<MinimizedEvent> = Vec::with_capacity(raw.len());
    // One tally per tenant in the request (almost always exactly one).
    let mut tallies: Vec<Tally<'_>> = Vec::with_capacity(1);
    for r in raw {
        let index = r.index;
        let valid = event::validate(r)?;
        // Every event's tenant admits the caller: a batch that mixes tenants satisfies each one.
        let tenant = match access::check(&valid.site, &caller, &snap.tenants) {
            Ok(tenant) => tenant,
            Err(e) => {
                if matches!(e, Reject::UnknownSite { .. }) {
                    let (b, bans) = (snap.behaviour.as_ref(), snap.bans.as_ref());
                    let (signal, now) = (
                        Signal::UnknownSite(&valid.site),
                        tokio::time::Instant::now().into_std(),
                    );
                    ctx.jail.observe(b, bans, client.ip, signal, now);
                }
                return Err(e.in_event(index));
            }
        };
        if let (true, Some(field)) = (tenant.reject_unknown_fields, &valid.first_unknown) {
            return Err(Reject::UnknownField {
                field: field.clone(),
            }
            .in_event(index));
        }
        let slot = match tallies.iter().position(|t| t.site == tenant.site) {
            Some(i) => i,
            None => {
                // Rate limits apply once per request and tenant, after the caller was admitted.
                let m = (&ctx.metrics.limits, &ctx.jail.metrics);
                limit::admit(&ctx.ratelimit, m, client.ip, &tenant.site)?;
                tallies.push(Tally {
                    site: &tenant.site,
                    report: Report::default(),
                    unknown: 0,
                    accepted: 0,
                });
                tallies.len() - 1
            }
        };
        let tally = &mut tallies[slot];
        tally.unknown += u64::from(valid.unknown_fields);
        let mctx = Context {
            tenant,
            client: &client,
            geo: snap.geo.as_deref(),
            received_ms,
        };
        if let Outcome::Keep(m) = event::minimize(valid, &mctx, &mut tally.report) {
            tally.accepted += 1;
            minimized.push(m);
        }
    }
    if !minimized.is_empty() {
        ctx.spool.append(&minimized).await.map_err(|e| match e {
            SpoolError::Full => Reject::SpoolFull,
            other => {
                tracing::error!(error = %other, "spool append failed");
                Reject::SpoolUnavailable
            }
        })?;
    }
    let events: u64 = tallies.iter().map(|t| t.accepted).sum();
    if events > 0 {
        let (b, bans) = (snap.behaviour.as_ref(), snap.bans.as_ref());
        let signal = Signal::Events(u32::try_from(events).unwrap_or(u32::MAX));
        let now = tokio::time::Instant::now().into_std();
        ctx.jail.observe(b, bans, client.ip, signal, now);
    }
    // Counted only once the request is accepted: a refused request is retried and would count twice.
    for t in &tallies {
        let m = &ctx.metrics;
        m.pii.record(t.site, &t.report);
        if t.unknown > 0 {
            m.unknown_fields_dropped
                .with_label_values(&[t.site])
                .inc_by(t.unknown);
        }
        if t.accepted > 0 {
            m.events_accepted
                .with_label_values(&[t.site])
                .inc_by(t.accepted);
        }
    }
    let mut res = Resp::new(Default::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}
