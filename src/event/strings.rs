//! strings: the string values of an event a payload rule could match (those with a byte from the anomaly
//! engine's trigger set, [`needs_scan`]), each with its JSON path relative to the event (`cart.items[0].name`).
//! `decode` marks them while it parses, when the bytes are in cache anyway; an event built from an
//! already parsed object (tests, benchmarks) gets them from [`scannable`], a walk over the object. Both give
//! the same strings (the parse in document order, the walk in key order); the parse also keeps the value a
//! duplicated key lost, so a value smuggled that way is scored too.

use std::fmt::Write;

use super::json::{Json, Object};

pub(crate) use crate::guard::anomaly::needs_scan;

/// (path, value) of every string in `object` that [`needs_scan`].
pub(crate) fn scannable(object: &Object<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    collect(object, &mut Vec::with_capacity(8), &mut out);
    out
}

/// One step of a JSON path; `K` is a borrowed or an owned key.
#[derive(Clone, Copy)]
pub(crate) enum Step<K> {
    Key(K),
    Index(usize),
}

/// `cart.items[0].name` from its steps, outermost first.
pub(crate) fn path_of<'s, K: AsRef<str> + 's>(
    steps: impl IntoIterator<Item = &'s Step<K>>,
) -> String {
    let mut path = String::with_capacity(32);
    for step in steps {
        match step {
            Step::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_ref());
            }
            Step::Index(i) => {
                let _ = write!(path, "[{i}]");
            }
        }
    }
    path
}

fn collect<'a>(
    object: &'a Object<'_>,
    steps: &mut Vec<Step<&'a str>>,
    out: &mut Vec<(String, String)>,
) {
    for (key, value) in object.iter() {
        steps.push(Step::Key(key));
        walk(value, steps, out);
        steps.pop();
    }
}

fn walk<'a>(value: &'a Json<'_>, steps: &mut Vec<Step<&'a str>>, out: &mut Vec<(String, String)>) {
    match value {
        Json::String(s) if needs_scan(s.as_bytes()) => {
            out.push((path_of(steps.iter()), s.to_string()))
        }
        Json::String(_) => {}
        Json::Object(o) => collect(o, steps, out),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                walk(item, steps, out);
                steps.pop();
            }
        }
        Json::Null | Json::Bool(_) | Json::Number(_) => {}
    }
}

/// Splits a path from the body's root into the event it is in and the path within that event: `[2].a.b` and
/// `events[2].a.b` → (2, `a.b`); for a body that is one event, the path is already relative.
pub(crate) fn split_event(path: &str, batch: bool) -> Option<(usize, &str)> {
    if !batch {
        return Some((0, path));
    }
    let rest = path
        .strip_prefix("events")
        .unwrap_or(path)
        .strip_prefix('[')?;
    let close = rest.find(']')?;
    let index = rest[..close].parse().ok()?;
    let tail = &rest[close + 1..];
    Some((index, tail.strip_prefix('.').unwrap_or(tail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_a_rule_could_match_with_their_paths() {
        let v = serde_json::json!({"site": "demo's", "cart": {"items": [{"name": "<Tee>", "qty": 2}, {"sku": "S1'"}, {"sku": "plain"}]}});
        let serde_json::Value::Object(map) = v else {
            panic!("object")
        };
        let out = scannable(&Object::from_map(map));
        let paths: Vec<(&str, &str)> = out.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
        assert_eq!(
            paths,
            [
                ("cart.items[0].name", "<Tee>"),
                ("cart.items[1].sku", "S1'"),
                ("site", "demo's")
            ]
        );
    }

    #[test]
    fn event_paths_split_from_the_root() {
        assert_eq!(split_event("[2].cart.sku", true), Some((2, "cart.sku")));
        assert_eq!(
            split_event("events[10].page_url", true),
            Some((10, "page_url"))
        );
        assert_eq!(split_event("[0]", true), Some((0, "")));
        assert_eq!(split_event("cart.sku", false), Some((0, "cart.sku")));
        assert_eq!(split_event("nope", true), None);
    }
}
