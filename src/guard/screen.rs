//! screen: the anomaly stage of a request. Every string value of every decoded event that a payload rule could
//! match (marked by `decode` with its JSON path, `cart.items[0].name`; a string without any trigger byte cannot
//! match a rule), the user agent and the request's protocol facts (duplicate JSON keys from `decode`,
//! abnormal headers from [`header_facts`]) go through the [`anomaly`](super::anomaly) engine, with the event's
//! `site` for per-tenant exclusions, before validation can drop anything. An event whose enforced score reaches
//! the threshold refuses the whole request (`403 anomaly_detected`); hits are counted by family either way.
//! Before all that, [`unambiguous`] refuses outright (`400 ambiguous_request`) what two parsers could read two
//! ways: repeated singleton headers and `Content-Length` beside `Transfer-Encoding`.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use hyper::header::{self, HeaderName};
use hyper::HeaderMap;

use super::anomaly::{Engine, Family, Mode, ProtocolFacts, Verdict};
use super::jail::GuardMetrics;
use crate::event::RawEvent;
use crate::reject::Reject;

/// `tollgate_anomaly_hits_total{family}` and `tollgate_anomaly_blocked_total`; labels resolved once.
pub struct ScreenMetrics {
    hits: [IntCounter; Family::ALL.len()],
    blocked: IntCounter,
}

impl ScreenMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let hits = IntCounterVec::new(
            Opts::new(
                "tollgate_anomaly_hits_total",
                "Anomaly rule hits, by family (enforced or detect-only).",
            ),
            &["family"],
        )?;
        let blocked = IntCounter::new(
            "tollgate_anomaly_blocked_total",
            "Requests refused by the anomaly threshold.",
        )?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(blocked.clone()))?;
        Ok(Self {
            hits: Family::ALL.map(|f| hits.with_label_values(&[f.label()])),
            blocked,
        })
    }
}

/// What the engine sees of the request beside its events.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The raw `User-Agent` (minimization only ever sees a reduced one).
    pub user_agent: Option<&'a str>,
    pub protocol: ProtocolFacts<'a>,
}

/// What a header name means to [`header_facts`]: (must appear at most once, value must be visible ASCII).
fn kind(name: &HeaderName) -> (bool, bool) {
    match *name {
        header::CONTENT_TYPE
        | header::CONTENT_LENGTH
        | header::HOST
        | header::ORIGIN
        | header::AUTHORIZATION => (true, true),
        header::REFERER | header::USER_AGENT => (true, false),
        _ => (false, false),
    }
}

/// A single header value longer than this is abnormal (cookies excepted; `max_header_bytes` bounds all).
const LONG_VALUE: usize = 4096;

/// Protocol facts the headers show, in one pass: abnormal headers (a repeated Content-Type, Content-Length,
/// Host, Origin, Referer, Authorization or User-Agent; a value that is not visible ASCII in the first five;
/// a value over 4 KiB, cookies excepted), and `Content-Length` beside `Transfer-Encoding`.
pub fn header_facts(headers: &HeaderMap) -> ProtocolFacts<'static> {
    let mut abnormal = 0u32;
    // `HeaderMap::iter` yields every value of one name before the next name.
    let mut prev: Option<&HeaderName> = None;
    let (mut counted_repeat, mut length, mut chunked) = (false, false, false);
    for (name, v) in headers.iter() {
        length |= name == header::CONTENT_LENGTH;
        chunked |= name == header::TRANSFER_ENCODING;
        let (singleton, ascii) = kind(name);
        if prev == Some(name) {
            if singleton && !counted_repeat {
                abnormal += 1;
                counted_repeat = true;
            }
        } else {
            prev = Some(name);
            counted_repeat = false;
        }
        if ascii
            && !v
                .as_bytes()
                .iter()
                .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
        {
            abnormal += 1;
        }
        if v.len() > LONG_VALUE && name != header::COOKIE {
            abnormal += 1;
        }
    }
    ProtocolFacts {
        abnormal_headers: abnormal,
        conflicting_lengths: length && chunked,
        ..ProtocolFacts::default()
    }
}

/// The headers a request may carry at most once, refused outright when repeated (Referer and User-Agent,
/// also singletons, are only scored by [`header_facts`]).
const UNAMBIGUOUS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::HOST,
    header::ORIGIN,
    header::AUTHORIZATION,
];

/// Refuses a request two parsers could read two ways, before any route sees it: a repeated Content-Type,
/// Content-Length, Host, Origin or Authorization, or `Content-Length` beside `Transfer-Encoding`
/// (`400 ambiguous_request` naming the header). hyper's HTTP/1.1 parser already drops `Content-Length` when
/// `Transfer-Encoding` is present (and closes the connection after the answer); HTTP/2 forbids
/// `Transfer-Encoding`. The second check is for whatever codec comes next.
pub fn unambiguous(headers: &HeaderMap) -> Result<(), Reject> {
    for name in &UNAMBIGUOUS {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(Reject::AmbiguousRequest {
                header: static_name(name),
            });
        }
    }
    if headers.contains_key(header::CONTENT_LENGTH)
        && headers.contains_key(header::TRANSFER_ENCODING)
    {
        return Err(Reject::AmbiguousRequest {
            header: "transfer-encoding",
        });
    }
    Ok(())
}

fn static_name(name: &HeaderName) -> &'static str {
    match *name {
        header::CONTENT_TYPE => "content-type",
        header::CONTENT_LENGTH => "content-length",
        header::HOST => "host",
        header::ORIGIN => "origin",
        _ => "authorization",
    }
}

/// Scores each event of the request (the request's facts with the first); refuses the request at the first
/// blocked event.
pub fn admit(
    engine: &Engine,
    m: &ScreenMetrics,
    guard: &GuardMetrics,
    events: &[RawEvent<'_>],
    request: &RequestFacts<'_>,
) -> Result<(), Reject> {
    for (i, event) in events.iter().enumerate() {
        let site = event.site();
        // The user agent and protocol facts are scored once per request, with the first event.
        let (ua, facts) = match i {
            0 => (request.user_agent, request.protocol),
            _ => (None, ProtocolFacts::default()),
        };
        let verdict = engine.score(site, &facts, event.scannable(), ua);
        for hit in &verdict.hits {
            let at = Family::ALL
                .iter()
                .position(|f| *f == hit.family)
                .expect("every family is in ALL");
            m.hits[at].inc();
        }
        if verdict.score >= engine.threshold() {
            decide(engine, guard, &verdict);
        }
        if verdict.blocked {
            m.blocked.inc();
            tracing::info!(
                score = verdict.score,
                hits = verdict.hits.len(),
                "anomaly: request refused"
            );
            return Err(Reject::AnomalyDetected);
        }
    }
    Ok(())
}

/// Counts a refusal (or, for detect-only families, a would-be refusal) once per family that scored in it.
fn decide(engine: &Engine, guard: &GuardMetrics, verdict: &Verdict) {
    let mut seen = [false; Family::ALL.len()];
    for hit in &verdict.hits {
        let at = Family::ALL
            .iter()
            .position(|f| *f == hit.family)
            .unwrap_or(0);
        if !std::mem::replace(&mut seen[at], true) {
            let enforce = verdict.blocked && engine.mode(hit.family) == Mode::Enforce;
            guard.decide("anomaly", hit.family.label(), enforce);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn repeated_singletons_and_two_lengths_are_ambiguous() {
        let one = |name: HeaderName| {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("a"));
            h.append(
                header::REFERER,
                HeaderValue::from_static("https://a.example/"),
            );
            h.append(
                header::REFERER,
                HeaderValue::from_static("https://b.example/"),
            );
            h
        };
        for name in UNAMBIGUOUS {
            let mut h = one(name.clone());
            assert_eq!(unambiguous(&h), Ok(()), "{name} once");
            h.append(name.clone(), HeaderValue::from_static("b"));
            assert_eq!(
                unambiguous(&h),
                Err(Reject::AmbiguousRequest {
                    header: static_name(&name)
                })
            );
            assert_eq!(static_name(&name), name.as_str());
        }
        let mut h = one(header::CONTENT_LENGTH);
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let refused = unambiguous(&h).unwrap_err();
        assert_eq!(refused.reason(), "ambiguous_request");
        assert_eq!(refused.status().as_u16(), 400);
    }

    #[test]
    fn header_facts_count_what_is_abnormal() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&"c".repeat(5000)).unwrap(),
        );
        assert_eq!(
            header_facts(&h),
            ProtocolFacts::default(),
            "a normal request"
        );
        h.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"https://sh\xc3\xb6p.example").unwrap(),
        );
        h.insert("x-long", HeaderValue::from_str(&"x".repeat(5000)).unwrap());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let f = header_facts(&h);
        assert_eq!(f.abnormal_headers, 3);
        assert!(f.conflicting_lengths);
    }
}
