//! Every request Tollgate refuses ends here: one closed enum owns the status code, the JSON error body and
//! the metric label, so a rejection can never be answered one way and counted another.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};

/// Why a request (or the whole batch it carried) was refused. `field` names the offending JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: &'static str },
    #[error("plain HTTP accepts only GET and HEAD, which redirect to HTTPS")]
    PlainHttp,
    #[error("content type must be application/json or text/plain")]
    UnsupportedMediaType,
    #[error(
        "the {header} header is ambiguous: repeated, or Content-Length beside Transfer-Encoding"
    )]
    AmbiguousRequest { header: &'static str },
    #[error("body exceeds the configured limit")]
    BodyTooLarge,
    #[error("body not received in time")]
    BodyTimeout,
    #[error("body ended before it was complete")]
    BodyIncomplete,
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    #[error("body is not valid JSON: {detail}")]
    InvalidJson { detail: String },
    #[error("JSON nested deeper than the configured limit")]
    TooDeep { field: String },
    #[error("string longer than the configured limit")]
    StringTooLong { field: String },
    #[error("object has more keys than the configured limit")]
    TooManyKeys { field: String },
    #[error("more events in one request than the configured limit")]
    TooManyEvents,
    #[error("request carries no event")]
    EmptyBatch,
    #[error("required field is missing")]
    MissingField { field: String },
    #[error("field has the wrong type, expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("field value is not allowed: {detail}")]
    InvalidValue { field: String, detail: &'static str },
    #[error("field is not part of schema v1 and this site rejects unknown fields")]
    UnknownField { field: String },
    #[error("site is not a configured tenant")]
    UnknownSite { field: String },
    #[error("origin is not allowed for this site")]
    OriginNotAllowed,
    #[error("a request without Origin or Referer needs the site's server credential (Authorization: Bearer)")]
    CredentialMissing,
    #[error("the Authorization header is malformed or its bearer credential is not the site's")]
    CredentialInvalid,
    #[error("the source address is not in the site's networks (server_networks, allow_networks, deny_networks)")]
    NetworkNotAllowed,
    #[error("the source address may not use this route")]
    RouteNetworkNotAllowed,
    #[error("the request looks like an attack and was refused")]
    AnomalyDetected,
    #[error("too many requests, retry later")]
    RateLimited { retry_after_s: u32 },
    #[error("this address is banned for a while after suspicious requests")]
    Banned { retry_after_s: u32 },
    #[error("spool is full, retry later")]
    SpoolFull,
    #[error("spool is unavailable, retry later")]
    SpoolUnavailable,
}

impl Reject {
    /// Every variant's metric label, for pre-registering the counter and for tests.
    pub const ALL_REASONS: &'static [&'static str] = &[
        "not_found",
        "method_not_allowed",
        "plain_http",
        "unsupported_media_type",
        "ambiguous_request",
        "body_too_large",
        "body_timeout",
        "body_incomplete",
        "invalid_utf8",
        "invalid_json",
        "too_deep",
        "string_too_long",
        "too_many_keys",
        "too_many_events",
        "empty_batch",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "unknown_field",
        "unknown_site",
        "origin_not_allowed",
        "credential_missing",
        "credential_invalid",
        "network_not_allowed",
        "route_network_not_allowed",
        "anomaly_detected",
        "rate_limited",
        "banned",
        "spool_full",
        "spool_unavailable",
    ];

    /// The stable, machine-readable reason: JSON `error` value and the `reason` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::NotFound => "not_found",
            Reject::MethodNotAllowed { .. } => "method_not_allowed",
            Reject::PlainHttp => "plain_http",
            Reject::UnsupportedMediaType => "unsupported_media_type",
            Reject::AmbiguousRequest { .. } => "ambiguous_request",
            Reject::BodyTooLarge => "body_too_large",
            Reject::BodyTimeout => "body_timeout",
            Reject::BodyIncomplete => "body_incomplete",
            Reject::InvalidUtf8 => "invalid_utf8",
            Reject::InvalidJson { .. } => "invalid_json",
            Reject::TooDeep { .. } => "too_deep",
            Reject::StringTooLong { .. } => "string_too_long",
            Reject::TooManyKeys { .. } => "too_many_keys",
            Reject::TooManyEvents => "too_many_events",
            Reject::EmptyBatch => "empty_batch",
            Reject::MissingField { .. } => "missing_field",
            Reject::WrongType { .. } => "wrong_type",
            Reject::InvalidValue { .. } => "invalid_value",
            Reject::UnknownField { .. } => "unknown_field",
            Reject::UnknownSite { .. } => "unknown_site",
            Reject::OriginNotAllowed => "origin_not_allowed",
            Reject::CredentialMissing => "credential_missing",
            Reject::CredentialInvalid => "credential_invalid",
            Reject::NetworkNotAllowed => "network_not_allowed",
            Reject::RouteNetworkNotAllowed => "route_network_not_allowed",
            Reject::AnomalyDetected => "anomaly_detected",
            Reject::RateLimited { .. } => "rate_limited",
            Reject::Banned { .. } => "banned",
            Reject::SpoolFull => "spool_full",
            Reject::SpoolUnavailable => "spool_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Reject::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reject::BodyTooLarge | Reject::TooManyEvents => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::CredentialMissing | Reject::CredentialInvalid => StatusCode::UNAUTHORIZED,
            Reject::UnknownSite { .. }
            | Reject::OriginNotAllowed
            | Reject::NetworkNotAllowed
            | Reject::RouteNetworkNotAllowed
            | Reject::AnomalyDetected
            | Reject::Banned { .. }
            | Reject::PlainHttp => StatusCode::FORBIDDEN,
            Reject::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::SpoolFull | Reject::SpoolUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reject::InvalidUtf8
            | Reject::AmbiguousRequest { .. }
            | Reject::BodyIncomplete
            | Reject::InvalidJson { .. }
            | Reject::TooDeep { .. }
            | Reject::StringTooLong { .. }
            | Reject::TooManyKeys { .. }
            | Reject::EmptyBatch
            | Reject::MissingField { .. }
            | Reject::WrongType { .. }
            | Reject::InvalidValue { .. }
            | Reject::UnknownField { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON path of the offending value, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Reject::TooDeep { field }
            | Reject::StringTooLong { field }
            | Reject::TooManyKeys { field }
            | Reject::MissingField { field }
            | Reject::WrongType { field, .. }
            | Reject::InvalidValue { field, .. }
            | Reject::UnknownField { field }
            | Reject::UnknownSite { field } => Some(field),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying, for the 503s.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Reject::SpoolFull => Some(30),
            Reject::SpoolUnavailable => Some(5),
            Reject::RateLimited { retry_after_s } | Reject::Banned { retry_after_s } => {
                Some(*retry_after_s)
            }
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge of the 401s (RFC 6750 §3).
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Reject::CredentialMissing => Some("Bearer"),
            Reject::CredentialInvalid => Some("Bearer error=\"invalid_token\""),
            _ => None,
        }
    }

    /// Prefixes the field path with the event's position in a batch (`events[3].customer.email`).
    pub fn in_event(mut self, index: Option<usize>) -> Self {
        let Some(i) = index else { return self };
        match &mut self {
            Reject::TooDeep { field }
            | Reject::StringTooLong { field }
            | Reject::TooManyKeys { field }
            | Reject::MissingField { field }
            | Reject::WrongType { field, .. }
            | Reject::InvalidValue { field, .. }
            | Reject::UnknownField { field }
            | Reject::UnknownSite { field } => {
                *field = if field.is_empty() {
                    format!("events[{i}]")
                } else {
                    format!("events[{i}].{field}")
                };
            }
            _ => {}
        }
        self
    }

    /// `{"error": reason, "field": path-or-null, "detail": human text}`.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({
            "error": self.reason(),
            "field": self.field(),
            "detail": self.to_string(),
        });
        Bytes::from(v.to_string())
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(self.body()));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        if let Some(s) = self.retry_after() {
            h.insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        if let Some(challenge) = self.www_authenticate() {
            h.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(challenge),
            );
        }
        if let Reject::MethodNotAllowed { allow } = &self {
            h.insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
        // After an ambiguous head nobody knows where the next request starts: the connection ends here.
        if matches!(self, Reject::PlainHttp | Reject::AmbiguousRequest { .. }) {
            h.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_list_is_complete_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reject::ALL_REASONS {
            assert!(seen.insert(*r), "duplicate reason {r}");
        }
        // one sample of every variant must map into the list
        let field = || "f".to_string();
        let samples = [
            Reject::NotFound,
            Reject::MethodNotAllowed { allow: "POST" },
            Reject::PlainHttp,
            Reject::UnsupportedMediaType,
            Reject::AmbiguousRequest { header: "host" },
            Reject::BodyTooLarge,
            Reject::BodyTimeout,
            Reject::BodyIncomplete,
            Reject::InvalidUtf8,
            Reject::InvalidJson { detail: "x".into() },
            Reject::TooDeep { field: field() },
            Reject::StringTooLong { field: field() },
            Reject::TooManyKeys { field: field() },
            Reject::TooManyEvents,
            Reject::EmptyBatch,
            Reject::MissingField { field: field() },
            Reject::WrongType {
                field: field(),
                expected: "string",
            },
            Reject::InvalidValue {
                field: field(),
                detail: "x",
            },
            Reject::UnknownField { field: field() },
            Reject::UnknownSite { field: field() },
            Reject::OriginNotAllowed,
            Reject::CredentialMissing,
            Reject::CredentialInvalid,
            Reject::NetworkNotAllowed,
            Reject::RouteNetworkNotAllowed,
            Reject::AnomalyDetected,
            Reject::RateLimited { retry_after_s: 1 },
            Reject::Banned { retry_after_s: 1 },
            Reject::SpoolFull,
            Reject::SpoolUnavailable,
        ];
        assert_eq!(samples.len(), Reject::ALL_REASONS.len());
        for s in samples {
            assert!(Reject::ALL_REASONS.contains(&s.reason()));
        }
    }

    #[test]
    fn access_refusals_map_to_status_reason_and_challenge() {
        let cases = [
            (
                Reject::CredentialMissing,
                401,
                "credential_missing",
                Some("Bearer"),
            ),
            (
                Reject::CredentialInvalid,
                401,
                "credential_invalid",
                Some("Bearer error=\"invalid_token\""),
            ),
            (Reject::NetworkNotAllowed, 403, "network_not_allowed", None),
            (
                Reject::RouteNetworkNotAllowed,
                403,
                "route_network_not_allowed",
                None,
            ),
            (Reject::OriginNotAllowed, 403, "origin_not_allowed", None),
        ];
        for (r, status, reason, challenge) in cases {
            assert_eq!(r.status().as_u16(), status, "{reason}");
            assert_eq!(r.reason(), reason);
            assert_eq!(r.field(), None, "{reason}");
            let res = r.into_response();
            assert_eq!(res.status().as_u16(), status);
            let got = res.headers().get(header::WWW_AUTHENTICATE);
            assert_eq!(got.map(|v| v.to_str().unwrap()), challenge, "{reason}");
        }
    }

    #[test]
    fn batch_index_prefixes_field() {
        let r = Reject::MissingField {
            field: "event_id".into(),
        }
        .in_event(Some(2));
        assert_eq!(r.field(), Some("events[2].event_id"));
        let body: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(body["error"], "missing_field");
        assert_eq!(body["field"], "events[2].event_id");
    }
}
