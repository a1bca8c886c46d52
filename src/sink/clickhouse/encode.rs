//! Rows for `JSONEachRow`: the record header's columns, the event's `type`, and the whole minimized event as
//! one string column.

use serde::{Deserialize, Serialize};

use crate::sink::{DeadReason, SendError};
use crate::spool::StoredRecord;

#[derive(Serialize)]
struct Row<'a> {
    site: &'a str,
    event_id: &'a str,
    received_ms: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    record: &'a str,
}

/// Only the field the sink reads from a payload; the rest is skipped, not kept.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type", default)]
    kind: serde_json::Value,
}

/// One JSON line per record. A payload that is not a UTF-8 JSON object makes the batch unacceptable
/// (`Dead(Invalid)`): the error names the record, never its content.
pub fn rows(records: &[StoredRecord]) -> Result<Vec<u8>, SendError> {
    let len: usize = records
        .iter()
        .map(|r| r.payload.len() * 11 / 10 + r.site.len() + r.event_id.len() + 80)
        .sum();
    let mut out = Vec::with_capacity(len);
    for r in records {
        let invalid = || {
            SendError::dead(
                DeadReason::Invalid,
                format!("{}/{}: payload is not a JSON object", r.site, r.event_id),
            )
        };
        let record = std::str::from_utf8(&r.payload).map_err(|_| invalid())?;
        if !record.trim_start().starts_with('{') {
            return Err(invalid());
        }
        let head: Head = serde_json::from_str(record).map_err(|_| invalid())?;
        let row = Row {
            site: &r.site,
            event_id: &r.event_id,
            received_ms: r.received_ms,
            // A `type` that is not a string (validation makes it one) is stored empty; the record keeps it.
            kind: head.kind.as_str().unwrap_or(""),
            record,
        };
        serde_json::to_writer(&mut out, &row).map_err(|_| invalid())?;
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Route;

    fn rec(payload: &[u8]) -> StoredRecord {
        StoredRecord {
            site: "shop_1".into(),
            event_id: "e-1".into(),
            received_ms: 1_732_262_400_000,
            route: Route::All,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn a_row_carries_the_header_the_type_and_the_event_as_text() {
        let payload = br#"{"type":"purchase","cart":{"value":1.5,"note":"a\"b\nc"},"x":"\u00e9"}"#;
        let body = rows(&[rec(payload), rec(br#"{"site":"shop_1"}"#)]).unwrap();
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["site"], "shop_1");
        assert_eq!(lines[0]["event_id"], "e-1");
        assert_eq!(lines[0]["received_ms"], 1_732_262_400_000i64);
        assert_eq!(lines[0]["type"], "purchase");
        assert_eq!(lines[0]["record"].as_str().unwrap().as_bytes(), payload);
        assert_eq!(lines[1]["type"], "", "no type: empty, not an error");
    }

    #[test]
    fn a_payload_that_is_not_an_object_refuses_the_batch_without_showing_it() {
        for bad in [
            &b"[1]"[..],
            b"{\"type\":",
            b"\xff{}",
            b"secret-text",
            b"{} {}",
        ] {
            let err = rows(&[rec(bad)]).unwrap_err();
            let SendError::Dead {
                reason: DeadReason::Invalid,
                detail,
            } = err
            else {
                panic!("{err:?}")
            };
            assert!(
                detail.contains("shop_1/e-1") && !detail.contains("secret"),
                "{detail}"
            );
        }
        let odd = String::from_utf8(rows(&[rec(br#"{"type":5}"#)]).unwrap()).unwrap();
        assert!(odd.contains(r#""type":"""#), "{odd}");
    }
}
