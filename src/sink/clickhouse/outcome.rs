//! The one place that classifies ClickHouse's answer to an insert, by exception code first and HTTP status
//! second. ClickHouse 18.16 answers parse errors with `500`, so the status alone would retry a batch that
//! can never go in; and an error raised after the status line arrives as a `200`.

use std::time::Duration;

use crate::sink::outcome::classify_http;
use crate::sink::{DeadReason, RetryReason, SendError};

/// What an exception code means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ClickHouse cannot read these rows as the table's columns: dead-lettered.
    Invalid,
    /// The server is busy or hurt: retried.
    Busy,
    /// The sink's configuration does not match the server (table, database, user, setting): retried,
    /// loudly, until an operator fixes it — every batch would fail the same way.
    Operator,
}

/// Exception codes with their ClickHouse names (`src/Common/ErrorCodes.cpp`); unlisted codes fall back to
/// the HTTP status.
pub const CODES: &[(u32, &str, Class)] = &[
    (6, "CANNOT_PARSE_TEXT", Class::Invalid),
    (26, "CANNOT_PARSE_QUOTED_STRING", Class::Invalid),
    (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", Class::Invalid),
    (38, "CANNOT_PARSE_DATE", Class::Invalid),
    (41, "CANNOT_PARSE_DATETIME", Class::Invalid),
    (53, "TYPE_MISMATCH", Class::Invalid),
    (69, "ARGUMENT_OUT_OF_BOUND", Class::Invalid),
    (70, "CANNOT_CONVERT_TYPE", Class::Invalid),
    (72, "CANNOT_PARSE_NUMBER", Class::Invalid),
    (117, "INCORRECT_DATA", Class::Invalid),
    (131, "TOO_LARGE_STRING_SIZE", Class::Invalid),
    (349, "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", Class::Invalid),
    (159, "TIMEOUT_EXCEEDED", Class::Busy),
    (202, "TOO_MANY_SIMULTANEOUS_QUERIES", Class::Busy),
    (209, "SOCKET_TIMEOUT", Class::Busy),
    (210, "NETWORK_ERROR", Class::Busy),
    (241, "MEMORY_LIMIT_EXCEEDED", Class::Busy),
    (242, "TABLE_IS_READ_ONLY", Class::Busy),
    (252, "TOO_MANY_PARTS", Class::Busy),
    (319, "UNKNOWN_STATUS_OF_INSERT", Class::Busy),
    (16, "NO_SUCH_COLUMN_IN_TABLE", Class::Operator),
    (60, "UNKNOWN_TABLE", Class::Operator),
    (81, "UNKNOWN_DATABASE", Class::Operator),
    (115, "UNKNOWN_SETTING", Class::Operator),
    (164, "READONLY", Class::Operator),
    (192, "UNKNOWN_USER", Class::Operator),
    (193, "WRONG_PASSWORD", Class::Operator),
    (194, "REQUIRED_PASSWORD", Class::Operator),
    (195, "IP_ADDRESS_NOT_ALLOWED", Class::Operator),
    (497, "ACCESS_DENIED", Class::Operator),
    (516, "AUTHENTICATION_FAILED", Class::Operator),
];

/// The class and name of a listed code.
pub fn lookup(code: u32) -> Option<(Class, &'static str)> {
    CODES
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|&(_, name, class)| (class, name))
}

/// The exception an answer reports: the `X-ClickHouse-Exception-Code` header (newer servers), else a
/// `Code: N` text in the body (where 18.16 puts `Code: N, e.displayText() = …`).
pub fn exception_code(status: u16, header: Option<&str>, body: &[u8]) -> Option<u32> {
    let ok = (200..300).contains(&status);
    header
        .and_then(|c| c.trim().parse().ok())
        .or_else(|| body_code(body, ok))
}

/// Classifies an answer by its exception code (from [`exception_code`]), then its status and
/// `Retry-After`. The detail names the code, never the body's text (a parse error quotes the rows).
pub fn classify(
    status: u16,
    code: Option<u32>,
    retry_after: Option<&str>,
    cap: Duration,
) -> Result<(), SendError> {
    let ok = (200..300).contains(&status);
    let Some(code) = code.filter(|c| *c != 0) else {
        return classify_http(status, retry_after, cap, "from clickhouse");
    };
    let listed = lookup(code);
    let detail = format!(
        "clickhouse exception {code} ({}), status {status}",
        listed.map_or("unlisted", |l| l.1)
    );
    match listed.map(|l| l.0) {
        Some(Class::Invalid) => Err(SendError::dead(DeadReason::Invalid, detail)),
        Some(Class::Busy) => Err(SendError::retry(RetryReason::Server, detail)),
        Some(Class::Operator) => Err(SendError::retry(
            RetryReason::Server,
            format!("{detail}: check the sink's database, table, user and password, and the table's DDL"),
        )),
        // An unlisted error after a 200: the insert may be partial; the table collapses a retry.
        None if ok => Err(SendError::retry(RetryReason::Server, detail)),
        None => classify_http(status, retry_after, cap, &detail),
    }
}

/// `Code: N` at the start of an error body, or (after a `200`, which may carry rows before the error) at
/// the start of any line.
fn body_code(body: &[u8], after_ok: bool) -> Option<u32> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let parse = |line: &str| {
        let rest = line.trim_start().strip_prefix("Code: ")?;
        rest[..rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len())]
            .parse()
            .ok()
    };
    if after_ok {
        text.lines().find_map(parse)
    } else {
        parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(30);

    fn class_of(r: &Result<(), SendError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(SendError::Dead {
                reason: DeadReason::Invalid,
                ..
            }) => "invalid",
            Err(SendError::Dead {
                reason: DeadReason::Refused,
                ..
            }) => "refused",
            Err(SendError::Retry {
                reason: RetryReason::Server,
                ..
            }) => "server",
            Err(SendError::Retry {
                reason: RetryReason::Throttled,
                ..
            }) => "throttled",
            Err(SendError::Retry { .. }) => "retry",
        }
    }

    #[test]
    fn answers_are_classified_by_code_then_status() {
        let body = |s: &'static str| s.as_bytes();
        for (status, header, text, want) in [
            (200u16, None, body(""), "ok"),
            (200, Some("0"), body(""), "ok"),
            (500, None, body("Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected \" before: abc"), "invalid"),
            (400, None, body("Code: 26, e.displayText() = DB::Exception: Cannot parse JSON string"), "invalid"),
            (500, Some("53"), body("Code: 53. DB::Exception: Type mismatch"), "invalid"),
            (200, None, body("{\"a\":1}\nCode: 72, e.displayText() = DB::Exception"), "invalid"),
            (500, None, body("Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded"), "server"),
            (500, Some("252"), body(""), "server"),
            (404, None, body("Code: 60, e.displayText() = DB::Exception: Table tollgate.nope doesn't exist."), "server"),
            (404, None, body("Code: 81, e.displayText() = DB::Exception: Database nodb doesn't exist"), "server"),
            (401, None, body("Code: 193, e.displayText() = DB::Exception: Wrong password for user writer"), "server"),
            (516, Some("516"), body(""), "server"),
            (200, None, body("Code: 999, e.displayText() = DB::Exception: something new"), "server"),
            (400, None, body("Code: 62, e.displayText() = DB::Exception: Syntax error"), "refused"),
            (500, None, body("Code: 1000, e.displayText() = DB::Exception: POCO"), "server"),
            (503, None, body("overloaded"), "throttled"),
            (403, None, body("forbidden by a proxy"), "refused"),
            (200, None, body("{\"x\":\"Code: 27\"}"), "ok"),
        ] {
            let got = classify(status, exception_code(status, header, text), None, CAP);
            assert_eq!(class_of(&got), want, "{status} {header:?} {:?}: {got:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn details_name_the_code_not_the_rows() {
        let body = b"Code: 27, e.displayText() = DB::Exception: before: secret-row";
        let err = classify(500, exception_code(500, None, body), None, CAP).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("27") && text.contains("CANNOT_PARSE_INPUT_ASSERTION_FAILED"),
            "{text}"
        );
        assert!(!text.contains("secret-row"), "{text}");
        let err = classify(404, Some(60), None, CAP).unwrap_err();
        assert!(
            err.to_string().contains("check the sink's database, table"),
            "{err}"
        );
    }

    #[test]
    fn codes_are_listed_once() {
        for (i, (code, ..)) in CODES.iter().enumerate() {
            assert!(
                CODES[i + 1..].iter().all(|(c, ..)| c != code),
                "{code} twice"
            );
        }
    }
}
