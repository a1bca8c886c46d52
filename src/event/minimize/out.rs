//! out: the minimized record is written straight into JSON bytes, keys in a fixed order, with no intermediate
//! `serde_json::Value` tree: the spool stores exactly these bytes.

use std::io::Write;

/// One JSON object under construction. Empty nested objects are left out by [`Obj::obj`].
pub struct Obj {
    buf: Vec<u8>,
}

impl Obj {
    pub fn with_capacity(n: usize) -> Obj {
        let mut buf = Vec::with_capacity(n);
        buf.push(b'{');
        Obj { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == 1
    }

    /// Writes `"leaf<suffix>":`. Keys are Tollgate's own ASCII names, never client input, so they need no escaping.
    fn key(&mut self, leaf: &str, suffix: &str) {
        if !self.is_empty() {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(leaf.as_bytes());
        self.buf.extend_from_slice(suffix.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, leaf: &str, suffix: &str, value: &str) {
        self.key(leaf, suffix);
        // Writing a &str into a Vec cannot fail; serde_json escapes it.
        let _ = serde_json::to_writer(&mut self.buf, value);
    }

    pub fn int(&mut self, leaf: &str, value: i64) {
        self.key(leaf, "");
        let _ = write!(self.buf, "{value}");
    }

    /// Finite numbers only (`validate` refuses the others); a non-finite one is left out.
    pub fn num(&mut self, leaf: &str, value: f64) {
        if value.is_finite() {
            self.key(leaf, "");
            let _ = serde_json::to_writer(&mut self.buf, &value);
        }
    }

    pub fn bool(&mut self, leaf: &str, value: bool) {
        self.key(leaf, "");
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub fn obj(&mut self, leaf: &str, value: Obj) {
        if !value.is_empty() {
            self.key(leaf, "");
            self.buf.extend_from_slice(&value.finish());
        }
    }

    /// An array of the non-empty objects; nothing when all are empty.
    pub fn objs(&mut self, leaf: &str, values: Vec<Obj>) {
        let mut values = values.into_iter().filter(|o| !o.is_empty()).peekable();
        if values.peek().is_none() {
            return;
        }
        self.key(leaf, "");
        self.buf.push(b'[');
        for (i, o) in values.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(&o.finish());
        }
        self.buf.push(b']');
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(b'}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_and_skips_empties() {
        let mut inner = Obj::with_capacity(8);
        inner.str("email", "_hash", "k1:ab\"\n");
        let mut root = Obj::with_capacity(64);
        root.str("site", "", "démo 😀");
        root.int("received_ms", -5);
        root.num("value", 12.5);
        root.num("nan", f64::NAN);
        root.bool("converted", false);
        root.obj("customer", inner);
        root.obj("empty", Obj::with_capacity(1));
        root.objs("items", vec![Obj::with_capacity(1)]);
        let v: serde_json::Value = serde_json::from_slice(&root.finish()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"site": "démo 😀", "received_ms": -5, "value": 12.5, "converted": false,
                "customer": {"email_hash": "k1:ab\"\n"}})
        );
    }
}
