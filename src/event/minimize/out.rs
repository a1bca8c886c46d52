//! out: the minimized record is written straight into JSON bytes, keys in a fixed order, with no intermediate
//! `serde_json::Value` tree: the spool stores exactly these bytes.

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
        // Most values need no escape: copied as they are. Otherwise serde_json escapes them (writing into a
        // Vec cannot fail).
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.reserve(value.len() + 2);
            self.buf.push(b'"');
            self.buf.extend_from_slice(value.as_bytes());
            self.buf.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut self.buf, value);
        }
    }

    pub fn int(&mut self, leaf: &str, value: i64) {
        self.key(leaf, "");
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
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

    #[test]
    fn strings_are_written_byte_for_byte_as_serde_json_writes_them() {
        for v in [
            "plain",
            "",
            "quote\"",
            "back\\slash",
            "nl\n",
            "\u{1}\u{1f}",
            "\u{7f}é😀/",
            "<tag>&",
        ] {
            let mut o = Obj::with_capacity(8);
            o.str("k", "", v);
            let want = format!("{{\"k\":{}}}", serde_json::to_string(v).unwrap());
            assert_eq!(String::from_utf8(o.finish()).unwrap(), want, "{v:?}");
        }
        for n in [0, -1, i64::MIN, i64::MAX, 1732262400000] {
            let mut o = Obj::with_capacity(8);
            o.int("n", n);
            assert_eq!(
                String::from_utf8(o.finish()).unwrap(),
                format!("{{\"n\":{n}}}")
            );
        }
    }
}
