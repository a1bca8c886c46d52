//! Normalisation of a value before matching, the CRS transformations that matter for JSON strings:
//! `urlDecodeUni` (repeated until stable, at most three rounds), `htmlEntityDecode`, full-width folding (the
//! part of NFKC attackers use; full NFKC needs `unicode-normalization`, not in the lock file) and
//! `replaceComments`. Case is left alone: the rules match ASCII case-insensitively.

use std::borrow::Cow;

/// Bytes that any payload rule needs (quotes, brackets, separators, escapes, `%`, `@`, `.`-free paths need
/// `/`), plus the lead bytes of U+F000–U+FFFF (full-width forms) and U+2000–U+2FFF (slash look-alikes). A value without any is not scanned.
const TRIGGER: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = b"'\"`<>;|&$(){}[]\\=%/:*+#@,\0\n\r\t";
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t[0xEF] = true;
    t[0xE2] = true;
    t
};

/// The triggers a user agent needs to be scanned for payloads: browsers' `( ) ; / , : +` are left out, so a
/// plain browser UA costs one pass over its bytes. A payload in a UA needs a quote, `<`, `$`, `{`, `` ` ``,
/// `|`, `&`, `%`, `\\`, `=` or `..` (log4shell, shellshock, SQL, XSS); a bare `; id` there is not scanned.
const UA_TRIGGER: [bool; 256] = {
    let mut t = TRIGGER;
    let browser = b"();/,:+@";
    let mut i = 0;
    while i < browser.len() {
        t[browser[i] as usize] = false;
        i += 1;
    }
    t
};

/// Whether a user agent can carry a payload any rule matches.
pub(crate) fn ua_needs_scan(ua: &[u8]) -> bool {
    any_in(ua, &UA_TRIGGER) || memchr::memmem::find(ua, b"..").is_some()
}

/// Whether `value` can match any payload rule at all.
pub(crate) fn needs_scan(value: &[u8]) -> bool {
    any_in(value, &TRIGGER)
}

/// Whether any byte of `s` is in `table`: 16 bytes at a time without a branch per byte (most values have
/// none, so every byte is looked at).
fn any_in(s: &[u8], table: &[bool; 256]) -> bool {
    let mut chunks = s.chunks_exact(16);
    for c in &mut chunks {
        if c.iter().fold(false, |acc, &b| acc | table[b as usize]) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| table[b as usize])
}

/// `value` as the rules see it; borrowed when nothing needed decoding.
pub fn normalize(value: &str) -> Cow<'_, [u8]> {
    let mut out: Cow<'_, [u8]> = Cow::Borrowed(value.as_bytes());
    for _ in 0..3 {
        match url_decode(&out) {
            Some(d) => out = Cow::Owned(d),
            None => break,
        }
    }
    if let Some(d) = html_decode(&out) {
        out = Cow::Owned(d);
        if let Some(d) = url_decode(&out) {
            out = Cow::Owned(d);
        }
    }
    if let Some(d) = fold_full_width(&out) {
        out = Cow::Owned(d);
    }
    if let Some(d) = replace_comments(&out) {
        out = Cow::Owned(d);
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_char(out: &mut Vec<u8>, cp: u32) {
    let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// `%XX` and IIS `%uXXXX`; `None` when there was nothing to decode. `+` stays (rules treat it as a space
/// where SQL needs it, and `{{7+7}}` must survive).
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let first = memchr_pct(s)?;
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    let mut changed = false;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(&a), Some(&b)) = (s.get(i + 1), s.get(i + 2)) {
                if let (Some(h), Some(l)) = (hex(a), hex(b)) {
                    out.push(h << 4 | l);
                    i += 3;
                    changed = true;
                    continue;
                }
            }
            if matches!(s.get(i + 1), Some(b'u' | b'U')) && i + 6 <= s.len() {
                let h: Option<u32> = s[i + 2..i + 6]
                    .iter()
                    .try_fold(0u32, |acc, &c| Some(acc << 4 | hex(c)? as u32));
                if let Some(cp) = h {
                    push_char(&mut out, cp);
                    i += 6;
                    changed = true;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

fn memchr_pct(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'%', s)
}

const ENTITIES: &[(&[u8], u8)] = &[
    (b"lt", b'<'),
    (b"gt", b'>'),
    (b"amp", b'&'),
    (b"quot", b'"'),
    (b"apos", b'\''),
    (b"sol", b'/'),
    (b"bsol", b'\\'),
    (b"lpar", b'('),
    (b"rpar", b')'),
    (b"colon", b':'),
    (b"semi", b';'),
    (b"equals", b'='),
    (b"comma", b','),
    (b"period", b'.'),
    (b"grave", b'`'),
    (b"lbrace", b'{'),
    (b"rbrace", b'}'),
    (b"lsqb", b'['),
    (b"rsqb", b']'),
    (b"excl", b'!'),
    (b"num", b'#'),
    (b"dollar", b'$'),
    (b"percnt", b'%'),
    (b"ast", b'*'),
    (b"plus", b'+'),
    (b"vert", b'|'),
    (b"tab", b'\t'),
    (b"newline", b'\n'),
    (b"nbsp", b' '),
];

/// One entity at `s` (just after `&`): the decoded bytes go to `out`, returns the length consumed.
fn entity(s: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if s.first() == Some(&b'#') {
        let (radix, start) = match s.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = s[start..]
            .iter()
            .take(8)
            .take_while(|b| hex(**b).is_some_and(|d| d < radix))
            .count();
        if digits == 0 {
            return None;
        }
        let cp = s[start..start + digits].iter().fold(0u32, |acc, &c| {
            acc * radix as u32 + hex(c).unwrap_or(0) as u32
        });
        push_char(out, cp);
        let end = start + digits;
        return Some(if s.get(end) == Some(&b';') {
            end + 1
        } else {
            end
        });
    }
    let name_len = s
        .iter()
        .take(8)
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if s.get(name_len) != Some(&b';') {
        return None;
    }
    let name = &s[..name_len];
    let &(_, b) = ENTITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    out.push(b);
    Some(name_len + 1)
}

/// Named (common) and numeric entities; `None` when there were none.
fn html_decode(s: &[u8]) -> Option<Vec<u8>> {
    // The first `&` that starts an entity: a URL's `&utm_medium=` allocates nothing.
    let first =
        memchr::memchr_iter(b'&', s).find(|&i| entity(&s[i + 1..], &mut Vec::new()).is_some())?;
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    let mut changed = false;
    while i < s.len() {
        if s[i] == b'&' {
            if let Some(n) = entity(&s[i + 1..], &mut out) {
                i += 1 + n;
                changed = true;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// U+FF01–U+FF5E to ASCII 0x21–0x7E, U+3000 to a space, and the slashes IIS "best fit" maps (U+2215 and
/// U+2044 to `/`, U+2216 to `\`).
fn fold_full_width(s: &[u8]) -> Option<Vec<u8>> {
    let is_fw = |w: &[u8]| {
        matches!(
            w,
            [0xEF, 0xBC, 0x81..=0xBF, ..]
                | [0xEF, 0xBD, 0x80..=0x9E, ..]
                | [0xE3, 0x80, 0x80, ..]
                | [0xE2, 0x88, 0x95 | 0x96, ..]
                | [0xE2, 0x81, 0x84, ..]
        )
    };
    let first = memchr::memchr3_iter(0xEF, 0xE3, 0xE2, s).find(|&i| is_fw(&s[i..]))?;
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    while i < s.len() {
        match s[i..] {
            [0xEF, 0xBC, b @ 0x81..=0xBF, ..] => out.push(b - 0x60),
            [0xEF, 0xBD, b @ 0x80..=0x9E, ..] => out.push(b - 0x20),
            [0xE3, 0x80, 0x80, ..] => out.push(b' '),
            [0xE2, 0x88, 0x95, ..] | [0xE2, 0x81, 0x84, ..] => out.push(b'/'),
            [0xE2, 0x88, 0x96, ..] => out.push(b'\\'),
            _ => {
                out.push(s[i]);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    Some(out)
}

/// `/*` (when closed later), `/*!50000` and `*/` become a space, so `union/**/select` and `/*!union*/` read
/// as words; an unclosed `/*` (`admin'/*`) stays for the rules to see.
fn replace_comments(s: &[u8]) -> Option<Vec<u8>> {
    let has = memchr::memchr_iter(b'*', s)
        .any(|i| (i > 0 && s[i - 1] == b'/') || s.get(i + 1) == Some(&b'/'));
    if !has {
        return None;
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"/*") && s[i + 2..].windows(2).any(|w| w == b"*/") {
            i += 2;
            if s.get(i) == Some(&b'!') {
                i += 1;
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            out.push(b' ');
        } else if s[i..].starts_with(b"*/") {
            i += 2;
            out.push(b' ');
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        String::from_utf8_lossy(&normalize(s)).into_owned()
    }

    #[test]
    fn decodes_layers() {
        assert_eq!(n("%253Cscript%253E"), "<script>");
        assert_eq!(n("%25253Cx"), "<x");
        assert_eq!(n("&lt;img src=x&gt;"), "<img src=x>");
        assert_eq!(n("&#60;&#x3c;&#X3C;&#0000060"), "<<<<");
        assert_eq!(n("%u003cscript"), "<script");
        assert_eq!(n("＜ｓｃｒｉｐｔ＞"), "<script>");
        assert_eq!(n("union/**/select"), "union  select");
        assert_eq!(n("/*!50000union*/ select"), " union  select");
    }

    #[test]
    fn leaves_plain_text_borrowed() {
        for s in [
            "Tom & Jerry",
            "AT&T",
            "100% cotton",
            "O'Reilly",
            "東京 🎉",
            "a+b",
        ] {
            assert!(matches!(normalize(s), Cow::Borrowed(_)), "{s}");
        }
        assert!(!needs_scan(b"T-shirt"));
        assert!(needs_scan(b"O'Reilly"));
    }
}
