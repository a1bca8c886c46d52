//! decode: request body bytes → `RawEvent`s. Guarantees: the body is UTF-8 JSON within the configured bounds
//! (size, nesting depth, string length, keys per object, events per request), shaped as one event, an array of
//! events, or `{"events": [...]}`. A bound violation names the JSON path where it happened.

use super::json::{Json, Object};
use super::RawEvent;
use crate::config::Limits;
use crate::reject::Reject;

/// A decoded body: its events, and the path of the first duplicated JSON key (a protocol fact for the anomaly
/// engine; the last value is the one kept).
#[derive(Debug)]
pub struct Decoded<'a> {
    pub events: Vec<RawEvent<'a>>,
    pub duplicate_key: Option<String>,
}

pub fn decode<'a>(body: &'a [u8], limits: &Limits) -> Result<Decoded<'a>, Reject> {
    if body.len() > limits.max_body_bytes {
        return Err(Reject::BodyTooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| Reject::InvalidUtf8)?;
    let (root, parsed) = super::json::parse(text, limits.max_object_keys).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            Reject::TooDeep { field: "$".into() }
        } else {
            Reject::InvalidJson {
                detail: e.to_string(),
            }
        }
    })?;
    check_bounds(&root, 1, limits).map_err(|v| v.into_reject())?;
    let mut events = events(root, limits)?;
    // The strings the parser marked for the anomaly engine go to their events. A string outside every
    // event object (a wrapper's stray value) cannot be: `events` refused those bodies.
    let batch = events.first().is_some_and(|e| e.index.is_some());
    for (path, value) in parsed.scan {
        if let Some((i, rel)) = super::strings::split_event(&path, batch) {
            if let Some(e) = events.get_mut(i) {
                e.scan.push((rel.to_owned(), value));
            }
        }
    }
    Ok(Decoded {
        events,
        duplicate_key: parsed.duplicate_key,
    })
}

fn events<'a>(root: Json<'a>, limits: &Limits) -> Result<Vec<RawEvent<'a>>, Reject> {
    let items = match root {
        Json::Array(items) => items,
        Json::Object(mut map) if map.get("events").is_some() => {
            let Some(Json::Array(items)) = map.remove("events") else {
                return Err(Reject::WrongType {
                    field: "events".into(),
                    expected: "array",
                });
            };
            if !map.is_empty() {
                return Err(Reject::InvalidValue {
                    field: "$".into(),
                    detail: "a wrapper may only hold `events`",
                });
            }
            items
        }
        Json::Object(map) => {
            return Ok(vec![RawEvent {
                index: None,
                object: map,
                scan: Vec::new(),
            }])
        }
        _ => {
            return Err(Reject::WrongType {
                field: "$".into(),
                expected: "event object or array of events",
            })
        }
    };
    if items.is_empty() {
        return Err(Reject::EmptyBatch);
    }
    if items.len() > limits.max_events {
        return Err(Reject::TooManyEvents);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Json::Object(object) => Ok(RawEvent {
                index: Some(i),
                object,
                scan: Vec::new(),
            }),
            _ => Err(Reject::WrongType {
                field: format!("events[{i}]"),
                expected: "object",
            }),
        })
        .collect()
}

/// A bound violation found while walking, with the path built on the way back up.
struct Violation {
    kind: fn(String) -> Reject,
    path: Vec<String>,
}

impl Violation {
    fn new(kind: fn(String) -> Reject) -> Self {
        Self {
            kind,
            path: Vec::new(),
        }
    }

    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    fn into_reject(self) -> Reject {
        let mut field = String::new();
        for seg in self.path.iter().rev() {
            if !field.is_empty() && !seg.starts_with('[') {
                field.push('.');
            }
            field.push_str(seg);
        }
        // Top-level arrays are batches: name them like the wrapper form.
        if field.starts_with('[') {
            field.insert_str(0, "events");
        }
        (self.kind)(if field.is_empty() { "$".into() } else { field })
    }
}

fn check_bounds(v: &Json<'_>, depth: usize, limits: &Limits) -> Result<(), Violation> {
    let too_long = |s: &str| s.len() > limits.max_string_bytes;
    match v {
        Json::String(s) if too_long(s) => {
            Err(Violation::new(|field| Reject::StringTooLong { field }))
        }
        Json::Array(items) => {
            check_depth(depth, limits)?;
            for (i, item) in items.iter().enumerate() {
                check_bounds(item, depth + 1, limits).map_err(|e| e.at(format!("[{i}]")))?;
            }
            Ok(())
        }
        Json::Object(map) => {
            check_depth(depth, limits)?;
            check_object(map, depth, limits)
        }
        _ => Ok(()),
    }
}

fn check_object(map: &Object<'_>, depth: usize, limits: &Limits) -> Result<(), Violation> {
    if map.len() > limits.max_object_keys {
        return Err(Violation::new(|field| Reject::TooManyKeys { field }));
    }
    for (k, item) in map.iter() {
        if k.len() > limits.max_string_bytes {
            return Err(Violation::new(|field| Reject::StringTooLong { field }));
        }
        check_bounds(item, depth + 1, limits).map_err(|e| e.at(k.to_owned()))?;
    }
    Ok(())
}

fn check_depth(depth: usize, limits: &Limits) -> Result<(), Violation> {
    if depth > limits.max_depth {
        Err(Violation::new(|field| Reject::TooDeep { field }))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn limits() -> Limits {
        Limits {
            max_body_bytes: 65536,
            max_events: 3,
            max_depth: 4,
            max_string_bytes: 16,
            max_object_keys: 4,
            max_connections: 1,
            max_header_count: 8,
            max_header_bytes: 1024,
            h2_max_concurrent_streams: 1,
        }
    }

    fn err(body: &str) -> Reject {
        decode(body.as_bytes(), &limits())
            .map(|d| d.events)
            .unwrap_err()
    }

    #[test]
    fn three_body_shapes() {
        let one = decode(br#"{"site":"a"}"#, &limits()).unwrap().events;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].index, None);
        let arr = decode(br#"[{"site":"a"},{"site":"b"}]"#, &limits())
            .unwrap()
            .events;
        assert_eq!(
            arr.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![Some(0), Some(1)]
        );
        let wrapped = decode(br#"{"events":[{"site":"a"}]}"#, &limits())
            .unwrap()
            .events;
        assert_eq!(wrapped[0].index, Some(0));
    }

    #[test]
    fn bounds_name_the_path() {
        let cases: &[(&str, Reject)] = &[
            (
                r#"{"a":{"b":{"c":{"d":{}}}}}"#,
                Reject::TooDeep {
                    field: "a.b.c.d".into(),
                },
            ),
            (
                r#"[{"a":"01234567890123456"}]"#,
                Reject::StringTooLong {
                    field: "events[0].a".into(),
                },
            ),
            (
                r#"{"events":[{},{"a":[1,"01234567890123456"]}]}"#,
                Reject::StringTooLong {
                    field: "events[1].a[1]".into(),
                },
            ),
            (
                r#"{"a":1,"b":2,"c":3,"d":4,"e":5}"#,
                Reject::TooManyKeys { field: "$".into() },
            ),
            (r#"[{},{},{},{}]"#, Reject::TooManyEvents),
            (r#"[]"#, Reject::EmptyBatch),
            (
                r#"[{},3]"#,
                Reject::WrongType {
                    field: "events[1]".into(),
                    expected: "object",
                },
            ),
            (
                r#""x""#,
                Reject::WrongType {
                    field: "$".into(),
                    expected: "event object or array of events",
                },
            ),
            (
                r#"{"events":{}}"#,
                Reject::WrongType {
                    field: "events".into(),
                    expected: "array",
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(&err(body), want, "{body}");
        }
    }

    #[test]
    fn malformed_bodies() {
        assert_eq!(
            decode(b"{\"a\":\"\xff\"}", &limits()).unwrap_err(),
            Reject::InvalidUtf8
        );
        assert!(matches!(err("{"), Reject::InvalidJson { .. }));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(err(&deep), Reject::TooDeep { field: "$".into() });
        let big = vec![b' '; 65537];
        assert_eq!(decode(&big, &limits()).unwrap_err(), Reject::BodyTooLarge);
    }
}
