//! json: parses a body into a `serde_json::Value` as `serde_json::from_str` does (same recursion limit, same
//! errors), and also reports the first duplicated object key with its path (`cart.items[0].sku`) and marks
//! the string values the anomaly engine must see (see `strings`), with their paths.
//!
//! Why: parsers disagree on `{"site":"a","site":"b"}` (serde_json keeps the last, others the first), a known
//! way to show one component a different request than another. The last value is kept, as before; the
//! duplicate is a protocol fact the anomaly engine scores (CRS 920700-style).

use std::cell::RefCell;
use std::fmt;

use super::strings::{path_of, Step};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// What [`parse`] found beside the value.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The path of the first duplicated key.
    pub duplicate_key: Option<String>,
    /// (path from the root, value) of every string value that `needs_scan`, in document order.
    pub scan: Vec<(String, String)>,
}

/// Parses `text`; `Ok((value, what else was found))`.
pub fn parse(text: &str) -> serde_json::Result<(Value, Parsed)> {
    let state = State::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Seed(&state).deserialize(&mut de)?;
    de.end()?;
    let parsed = Parsed {
        duplicate_key: state.duplicate.into_inner().map(|m| m.path()),
        scan: state
            .scan
            .into_inner()
            .into_iter()
            .map(|m| (m.path(), m.value))
            .collect(),
    };
    Ok((value, parsed))
}

/// A value found deep in the body. Its path is built only for what is marked, on the way back up: each
/// enclosing object or array appends its step (innermost first) to the marks made while its child was
/// parsed, so an unmarked value costs no path work at all.
struct Marked {
    reversed: Vec<Step<String>>,
    value: String,
}

impl Marked {
    fn path(&self) -> String {
        path_of(self.reversed.iter().rev())
    }
}

#[derive(Default)]
struct State {
    duplicate: RefCell<Option<Marked>>,
    scan: RefCell<Vec<Marked>>,
}

/// How many marks existed before a child was parsed.
#[derive(Clone, Copy)]
struct Before {
    scan: usize,
    duplicate: bool,
}

impl State {
    fn before(&self) -> Before {
        Before {
            scan: self.scan.borrow().len(),
            duplicate: self.duplicate.borrow().is_some(),
        }
    }

    /// Appends `step` to every mark made since `before`.
    fn unwind(&self, before: Before, step: impl Fn() -> Step<String>) {
        let mut scan = self.scan.borrow_mut();
        for m in &mut scan[before.scan..] {
            m.reversed.push(step());
        }
        if !before.duplicate {
            if let Some(d) = self.duplicate.borrow_mut().as_mut() {
                d.reversed.push(step());
            }
        }
    }

    fn string(&self, v: &str) {
        if super::strings::needs_scan(v.as_bytes()) {
            self.scan.borrow_mut().push(Marked {
                reversed: Vec::new(),
                value: v.to_owned(),
            });
        }
    }

    fn duplicate(&self, key: &str) {
        let mut d = self.duplicate.borrow_mut();
        if d.is_none() {
            *d = Some(Marked {
                reversed: vec![Step::Key(key.to_owned())],
                value: String::new(),
            });
        }
    }
}

#[derive(Clone, Copy)]
struct Seed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        self.0.string(v);
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        self.0.string(&v);
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let i = items.len();
            let before = self.0.before();
            let next = seq.next_element_seed(self)?;
            self.0.unwind(before, || Step::Index(i));
            match next {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let before = self.0.before();
            let value = map.next_value_seed(self)?;
            self.0.unwind(before, || Step::Key(key.clone()));
            match out.entry(key) {
                Entry::Occupied(mut o) => {
                    self.0.duplicate(o.key());
                    o.insert(value);
                }
                Entry::Vacant(v) => {
                    v.insert(value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json_and_the_first_duplicate_path() {
        let text =
            r#"{"site":"a","cart":{"items":[{"sku":"1","sku":"2"}]},"site":"b","n":-1.5,"z":null}"#;
        let (v, found) = parse(text).unwrap();
        assert_eq!(
            v,
            serde_json::from_str::<Value>(text).unwrap(),
            "last value wins, as before"
        );
        assert_eq!(found.duplicate_key.as_deref(), Some("cart.items[0].sku"));
        let dup = |t: &str| parse(t).unwrap().1.duplicate_key;
        assert_eq!(dup(r#"[{"a":1},{"a":2}]"#), None, "one key per object");
        assert_eq!(dup(r#"[{"a":1,"a":2}]"#).as_deref(), Some("[0].a"));
    }

    #[test]
    fn scannable_strings_match_a_walk_of_the_parsed_value() {
        let text = r#"{"site":"demo","url":"https://x/?a=1&b=2","items":[{"n":"O'Reilly"},{"n":"Tee"}],"e":"a\u0040b"}"#;
        let (v, found) = parse(text).unwrap();
        let walked = super::super::strings::scannable(v.as_object().unwrap());
        let mut ours = found.scan.clone();
        let mut theirs = walked.clone();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 3, "{ours:?}");
    }

    #[test]
    fn errors_and_the_recursion_limit_match_serde_json() {
        for bad in ["{", "[1,]", "{\"a\":1} x", "\"\\ud800\""] {
            let ours = parse(bad).unwrap_err().to_string();
            let theirs = serde_json::from_str::<Value>(bad).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep)
            .unwrap_err()
            .to_string()
            .starts_with("recursion limit exceeded"));
    }
}
