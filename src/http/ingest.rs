//! ingest: the event pipeline of one request, from body bytes to the spool and the `204`, shared by
//! `POST /v1/events` ([`post`]) and the pixel ([`super::pixel`]).

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode};

use super::{body, Resp};
use crate::app::Ctx;
use crate::config::Snapshot;
use crate::event::{self, ClientMeta, Context, MinimizedEvent, Outcome, Report};
use crate::guard::bans::BanReason;
use crate::guard::behaviour::Signal;
use crate::guard::{access, limit, screen};
use crate::reject::Reject;
use crate::spool::SpoolError;

/// `application/json`, or `text/plain` as `navigator.sendBeacon` sends strings; parameters are ignored.
fn content_type_ok(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("text/plain")
}

fn header_is_one(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
}

/// What minimization may derive from (never copy out of) the request: address, user agent, opt-out signals.
/// The address is the request's client as `public::handle` resolved it (the connection's, or
/// `X-Forwarded-For`'s when the connection comes from a trusted proxy).
fn client_meta(headers: &HeaderMap, ip: IpAddr, ctx: &Ctx) -> ClientMeta {
    ClientMeta {
        ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ctx.user_agents.reduce(ua)),
        opted_out: header_is_one(headers, "sec-gpc") || header_is_one(headers, "dnt"),
    }
}

/// What one request did for one tenant, recorded in the metrics once the request is accepted.
struct Tally<'a> {
    site: &'a str,
    report: Report,
    unknown: u64,
    accepted: u64,
}

/// The body's `Content-Length`, when declared.
pub(super) fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// What `POST /v1/events` refuses before reading the body: the media type, then a declared length over
/// `max_body_bytes`. The caller drains the body before answering ([`body::discard`]).
pub(super) fn before_body(headers: &HeaderMap, max_body_bytes: usize) -> Result<(), Reject> {
    if !content_type_ok(headers) {
        return Err(Reject::UnsupportedMediaType);
    }
    if declared_len(headers).is_some_and(|n| n > max_body_bytes as u64) {
        return Err(Reject::BodyTooLarge);
    }
    Ok(())
}

/// `POST /v1/events`, once [`before_body`] passed: the body within its bounds, then [`accept`].
pub(super) async fn post(
    req: Request<Incoming>,
    client: IpAddr,
    ctx: &Ctx,
    snap: &Snapshot,
) -> Result<Resp, Reject> {
    let (parts, incoming) = req.into_parts();
    let declared = declared_len(&parts.headers);
    // Every refusal past this point waits until the body is read: answering an HTTP/2 stream early resets
    // it, which curl reports as a framing error instead of the 401.
    let bytes = body::read(
        incoming,
        declared,
        snap.limits.max_body_bytes,
        snap.timeouts.body_read,
    )
    .await?;
    accept(&parts.headers, client, ctx, snap, &bytes).await
}

/// One request's events, from body bytes to the spool: caller, decode, anomaly screen, then per event
/// validation, tenant access, rate limits and minimization; one spool append for the whole request; `204`.
/// Shared by `POST /v1/events` and the pixel (`GET /v1/p.gif?d=`), so both answer the same refusals.
pub(super) async fn accept(
    headers: &HeaderMap,
    client: IpAddr,
    ctx: &Ctx,
    snap: &Snapshot,
    bytes: &[u8],
) -> Result<Resp, Reject> {
    let client = client_meta(headers, client, ctx);
    // One instant for every guard decision of this request.
    let now = tokio::time::Instant::now().into_std();
    let caller = access::caller(headers, client.ip)?;
    // The raw user agent, for the anomaly engine only (minimization sees the reduced one).
    let user_agent = snap
        .anomaly
        .as_ref()
        .and_then(|_| headers.get(header::USER_AGENT));
    let decoded = event::decode(bytes, &snap.limits)?;
    let raw = decoded.events;
    if let Some(engine) = &snap.anomaly {
        let ua = user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let mut protocol = screen::header_facts(headers);
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
                    let signal = Signal::UnknownSite(&valid.site);
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
