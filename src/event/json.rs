//! json: parses a body into a `serde_json::Value` as `serde_json::from_str` does (same recursion limit, same
//! errors), and also reports the first duplicated object key with its path (`cart.items[0].sku`).
//!
//! Why: parsers disagree on `{"site":"a","site":"b"}` (serde_json keeps the last, others the first), a known
//! way to show one component a different request than another. The last value is kept, as before; the
//! duplicate is a protocol fact the anomaly engine scores (CRS 920700-style).

use std::cell::RefCell;
use std::fmt::{self, Write};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Parses `text`; `Ok((value, first duplicate key path))`.
pub fn parse(text: &str) -> serde_json::Result<(Value, Option<String>)> {
    let state = State::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Seed(&state).deserialize(&mut de)?;
    de.end()?;
    Ok((value, state.duplicate.into_inner()))
}

#[derive(Default)]
struct State {
    /// The path of the value being parsed.
    path: RefCell<String>,
    duplicate: RefCell<Option<String>>,
}

impl State {
    /// Runs `f` with `segment` appended to the path (`.key` or `[i]`).
    fn within<T>(&self, segment: Segment<'_>, f: impl FnOnce() -> T) -> T {
        let len = {
            let mut p = self.path.borrow_mut();
            let len = p.len();
            match segment {
                Segment::Key(k) => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(k);
                }
                Segment::Index(i) => {
                    let _ = write!(p, "[{i}]");
                }
            }
            len
        };
        let out = f();
        self.path.borrow_mut().truncate(len);
        out
    }

    fn duplicate(&self, key: &str) {
        let mut d = self.duplicate.borrow_mut();
        if d.is_none() {
            let p = self.path.borrow();
            *d = Some(if p.is_empty() {
                key.to_owned()
            } else {
                format!("{p}.{key}")
            });
        }
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
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
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
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
            match self
                .0
                .within(Segment::Index(i), || seq.next_element_seed(self))?
            {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = self
                .0
                .within(Segment::Key(&key), || map.next_value_seed(self))?;
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
        let (v, dup) = parse(text).unwrap();
        assert_eq!(
            v,
            serde_json::from_str::<Value>(text).unwrap(),
            "last value wins, as before"
        );
        assert_eq!(dup.as_deref(), Some("cart.items[0].sku"));
        assert_eq!(
            parse(r#"[{"a":1},{"a":2}]"#).unwrap().1,
            None,
            "one key per object"
        );
        assert_eq!(
            parse(r#"[{"a":1,"a":2}]"#).unwrap().1.as_deref(),
            Some("[0].a")
        );
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
