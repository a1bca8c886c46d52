//! json: parses a body into a borrowed tree ([`Json`]) with serde_json's tokenizer (same grammar, same
//! recursion limit, same errors as `serde_json::from_str`), and also reports the first duplicated object key
//! with its path (`cart.items[0].sku`) and marks the string values the anomaly engine must see (see
//! `strings`), with their paths.
//!
//! The tree borrows every key and string without escapes from the body, and an object is a small vector of
//! entries in document order: parsing the sample event allocates a few vectors instead of a `String` per key
//! and value and a B-tree per object (`benches/pipeline.rs`).
//!
//! Why duplicates matter: parsers disagree on `{"site":"a","site":"b"}` (serde_json keeps the last, others the
//! first), a known way to show one component a different request than another. The last value is kept; the
//! duplicate is a protocol fact the anomaly engine scores (CRS 920700-style).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;

use super::strings::{path_of, Step};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A JSON value borrowing from the body it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object: its entries in document order, each key once (a duplicated key keeps its first place and
/// its last value, as `serde_json::Map` keeps the last value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(pub(crate) Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) -> Option<Json<'a>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// An owned copy of a `serde_json` object (tests and benchmarks that build events as values).
    pub fn from_map(map: serde_json::Map<String, Value>) -> Object<'static> {
        Object(
            map.into_iter()
                .map(|(k, v)| (Cow::Owned(k), Json::from_value(v)))
                .collect(),
        )
    }
}

impl<'a> IntoIterator for Object<'a> {
    type Item = (Cow<'a, str>, Json<'a>);
    type IntoIter = std::vec::IntoIter<(Cow<'a, str>, Json<'a>)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Json<'_> {
    /// An owned copy of a `serde_json::Value`.
    pub fn from_value(v: Value) -> Json<'static> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(n),
            Value::String(s) => Json::String(Cow::Owned(s)),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(Object::from_map(map)),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

/// What [`parse`] found beside the value.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The path of the first duplicated key.
    pub duplicate_key: Option<String>,
    /// (path from the root, value) of every string value that `needs_scan`, in document order.
    pub scan: Vec<(String, String)>,
}

/// Parses `text`; `Ok((value, what else was found))`. Duplicates are looked for among the first
/// `max_keys` keys of an object only: an object with more is refused by the bounds check anyway, and a
/// linear search over thousands of keys would cost quadratic time.
pub fn parse(text: &str, max_keys: usize) -> serde_json::Result<(Json<'_>, Parsed)> {
    let state = State {
        max_keys,
        ..State::default()
    };
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
    max_keys: usize,
    duplicate: RefCell<Option<Marked>>,
    scan: RefCell<Vec<Marked>>,
    /// How many marks exist (scannable strings, plus one for the duplicate): read before and after every
    /// child, so the common case (nothing marked) costs two reads of a `Cell`, not four `RefCell` borrows.
    marks: Cell<usize>,
}

/// The marks that existed before a child was parsed.
#[derive(Clone, Copy)]
struct Before {
    marks: usize,
    scan: usize,
    duplicate: bool,
}

impl State {
    fn before(&self) -> Before {
        let marks = self.marks.get();
        if marks == 0 {
            return Before {
                marks,
                scan: 0,
                duplicate: false,
            };
        }
        Before {
            marks,
            scan: self.scan.borrow().len(),
            duplicate: self.duplicate.borrow().is_some(),
        }
    }

    /// Appends `step` to every mark made since `before`.
    fn unwind(&self, before: Before, step: impl Fn() -> Step<String>) {
        if self.marks.get() == before.marks {
            return;
        }
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
            self.marks.set(self.marks.get() + 1);
        }
    }

    fn duplicate(&self, key: &str) {
        let mut d = self.duplicate.borrow_mut();
        if d.is_none() {
            *d = Some(Marked {
                reversed: vec![Step::Key(key.to_owned())],
                value: String::new(),
            });
            self.marks.set(self.marks.get() + 1);
        }
    }
}

#[derive(Clone, Copy)]
struct Seed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        self.0.string(v);
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        self.0.string(v);
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        self.0.string(&v);
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let i = items.len();
            let before = self.0.before();
            let next = seq.next_element_seed(self)?;
            self.0.unwind(before, || Step::Index(i));
            match next {
                Some(v) => items.push(v),
                None => return Ok(Json::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Json<'de>)> = Vec::with_capacity(8);
        while let Some(key) = map.next_key_seed(Key)? {
            let before = self.0.before();
            let value = map.next_value_seed(self)?;
            self.0.unwind(before, || Step::Key(key.as_ref().to_owned()));
            let seen = match out.len() <= self.0.max_keys {
                true => out.iter().position(|(k, _)| *k == key),
                false => None,
            };
            match seen {
                Some(at) => {
                    self.0.duplicate(&key);
                    out[at].1 = value;
                }
                None => out.push((key, value)),
            }
        }
        Ok(Json::Object(Object(out)))
    }
}

/// An object key, borrowed from the body unless it holds an escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> serde_json::Result<(Json<'_>, Parsed)> {
        super::parse(text, 64)
    }

    fn to_value(v: &Json<'_>) -> Value {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
            Json::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.to_owned(), to_value(v))).collect())
            }
        }
    }

    #[test]
    fn same_value_as_serde_json_and_the_first_duplicate_path() {
        let text =
            r#"{"site":"a","cart":{"items":[{"sku":"1","sku":"2"}]},"site":"b","n":-1.5,"z":null}"#;
        let (v, found) = parse(text).unwrap();
        assert_eq!(
            to_value(&v),
            serde_json::from_str::<Value>(text).unwrap(),
            "last value wins, as serde_json keeps it"
        );
        assert_eq!(found.duplicate_key.as_deref(), Some("cart.items[0].sku"));
        let dup = |t: &str| parse(t).unwrap().1.duplicate_key;
        assert_eq!(dup(r#"[{"a":1},{"a":2}]"#), None, "one key per object");
        assert_eq!(dup(r#"[{"a":1,"a":2}]"#).as_deref(), Some("[0].a"));
        assert_eq!(
            dup(r#"{"a\u0062":1,"ab":2}"#).as_deref(),
            Some("ab"),
            "escaped keys compare by value"
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let (v, _) = parse(r#"{"plain":"abc","esc":"a\nb"}"#).unwrap();
        let Json::Object(o) = v else { panic!("object") };
        assert!(matches!(
            o.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(o.get("esc"), Some(Json::String(Cow::Owned(s))) if s == "a\nb"));
    }

    #[test]
    fn duplicates_are_looked_for_only_within_the_key_bound() {
        let text = r#"{"a":1,"b":2,"c":3,"a":4}"#;
        let (v, found) = super::parse(text, 2).unwrap();
        assert_eq!(
            found.duplicate_key, None,
            "past the bound: the object is refused later"
        );
        let Json::Object(o) = v else { panic!("object") };
        assert_eq!(o.len(), 4);
    }

    #[test]
    fn scannable_strings_match_a_walk_of_the_parsed_value() {
        let text = r#"{"site":"demo","url":"https://x/?a=1&b=2","items":[{"n":"O'Reilly"},{"n":"Tee"}],"e":"a\u0040b"}"#;
        let (v, found) = parse(text).unwrap();
        let Json::Object(o) = &v else {
            panic!("object")
        };
        let walked = super::super::strings::scannable(o);
        let mut ours = found.scan.clone();
        let mut theirs = walked.clone();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 3, "{ours:?}");
    }

    #[test]
    fn errors_and_the_recursion_limit_match_serde_json() {
        for bad in ["{", "[1,]", "{\"a\":1} x", "\"\\ud800\"", "{1:2}"] {
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
