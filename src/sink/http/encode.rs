//! The request body of the `http` sink: NDJSON, one payload per line, exactly as minimized.

use crate::spool::StoredRecord;

/// One line per record, each ending in `\n`. A payload is one JSON object, in which a raw line break can
/// only be whitespace (inside a string it would be escaped), so any is turned into a space: the line stays
/// the same JSON value and the NDJSON framing cannot break.
pub fn ndjson(records: &[StoredRecord]) -> Vec<u8> {
    let len = records.iter().map(|r| r.payload.len() + 1).sum();
    let mut out = Vec::with_capacity(len);
    for r in records {
        out.extend(
            r.payload
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Route;

    fn rec(payload: &str) -> StoredRecord {
        StoredRecord {
            site: "s".into(),
            event_id: "e".into(),
            received_ms: 1,
            route: Route::All,
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn one_line_per_payload_and_line_breaks_stay_json() {
        let body = ndjson(&[rec(r#"{"a":1}"#), rec("{\n\"b\":\r\n\"x\\ny\"}")]);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], r#"{"a":1}"#);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["b"], "x\ny");
        assert!(text.ends_with('\n'));
        assert!(ndjson(&[]).is_empty());
    }
}
