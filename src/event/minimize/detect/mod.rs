//! detect: finds personal data in free text and replaces each finding with `[redacted:<kind>]`. One file per
//! kind, in precedence order: `email` (also percent-encoded, `ann%40example.com`, any script), `iban`
//! (registered country length, mod 97), `card` (13–19 digits, Luhn), `ip` (IPv4, IPv6), `phone` (9–15
//! digits). Each scanner reads only the text that no scanner before it claimed, so a span has exactly one kind.
//! IBAN goes before card: a card-shaped run of digit groups inside a valid IBAN is that IBAN's account number.
//! A disabled kind is still recognised and left verbatim, so its digits are never re-read as a lower kind.
//!
//! Guarantees: a finding is never glued to a letter or digit of any script; slicing happens only at ASCII bytes
//! or `char_indices` positions, so text around a finding (emoji included) is kept byte for byte (in its NFKC
//! form, below) and nothing panics; redacting twice changes nothing, because a `[redacted:…]` marker acts on
//! every scanner exactly like the edge of a claimed span does on the first pass.
//!
//! Bounded time, by construction: each scanner is one forward pass, without backtracking. A candidate's
//! look-ahead is either capped by a constant (20 digits per card window, an IBAN's ≤ 34 characters, 45 for
//! IPv6) or ends where the next candidate's look-ahead starts (the domain after one `@` stops at the next `@`),
//! and a rejected token is skipped whole, never re-scanned from inside. So every byte is read a small constant
//! number of times per scanner: O(n) for the five, and the output is at most a constant factor longer than the
//! input. ASCII text without a digit or `@` holds no kind and comes back borrowed after one byte scan; nothing
//! allocates unless an enabled kind is found or the text holds compatibility forms.
//!
//! Compatibility forms: the scanners read the NFKC form of the text ([`nfkc`]), so what Japanese and Chinese
//! input methods type — full-width digits and letters (`４１１１`, `ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ`), the
//! ideographic space as a separator — and circled, superscript or mathematical digits are caught like their
//! ASCII forms. What is stored for a redacted value is its NFKC form with the findings replaced: NFKC is the
//! canonical form of exactly these variants (`Ｔシャツ` → `Tシャツ`, half-width katakana → full-width, `ﬁ` →
//! `fi`), so nothing an analyst groups or searches by is lost, and one spelling is stored for what readers see
//! as one text. ASCII is its own NFKC form, and text the quick check finds already normalised is not copied:
//! only text that holds compatibility forms (or combining marks the quick check leaves open) pays for a copy.
//! Redacted output is NFKC too, so redacting twice still changes nothing.
//!
//! `truncate:N` ([`truncate`]) redacts the whole value first, then cuts on a char boundary and never inside a
//! `[redacted:…]` marker, so no cut leaves a partial address the scanners would no longer recognise.

use std::borrow::Cow;
use std::ops::Range;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

mod card;
mod email;
mod iban;
mod ip;
mod phone;
#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectorKind {
    Email,
    Phone,
    Card,
    Iban,
    Ip,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 5] = [Self::Email, Self::Phone, Self::Card, Self::Iban, Self::Ip];

    pub fn label(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
            Self::Iban => "iban",
            Self::Ip => "ip",
        }
    }

    /// Inverse of [`DetectorKind::label`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == s)
    }

    fn marker(self) -> &'static str {
        match self {
            Self::Email => "[redacted:email]",
            Self::Phone => "[redacted:phone]",
            Self::Card => "[redacted:card]",
            Self::Iban => "[redacted:iban]",
            Self::Ip => "[redacted:ip]",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Which kinds are redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detectors {
    mask: u8,
}

impl Detectors {
    pub fn all() -> Self {
        Self {
            mask: DetectorKind::ALL.iter().fold(0, |m, k| m | k.bit()),
        }
    }

    pub fn none() -> Self {
        Self { mask: 0 }
    }

    pub fn without(self, kind: DetectorKind) -> Self {
        Self {
            mask: self.mask & !kind.bit(),
        }
    }

    pub fn with(self, kind: DetectorKind) -> Self {
        Self {
            mask: self.mask | kind.bit(),
        }
    }

    pub fn is_enabled(&self, kind: DetectorKind) -> bool {
        self.mask & kind.bit() != 0
    }
}

/// Redactions made, per kind (saturating).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hits {
    counts: [u32; 5],
}

impl Hits {
    pub fn get(&self, kind: DetectorKind) -> u32 {
        self.counts[kind as usize]
    }

    pub fn add(&mut self, kind: DetectorKind) {
        let n = &mut self.counts[kind as usize];
        *n = n.saturating_add(1);
    }

    pub fn merge(&mut self, other: &Hits) {
        for (n, m) in self.counts.iter_mut().zip(other.counts) {
            *n = n.saturating_add(m);
        }
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0, |t, n| t.saturating_add(*n))
    }
}

/// A scanner pushes the spans it finds in one gap of unclaimed text, in order, relative to that gap.
type Scan = fn(&str, &mut Vec<Range<usize>>);

/// Scan order is precedence order. IBAN is read before card: a card-shaped run of digit groups inside a
/// registered, mod-97-valid IBAN is that IBAN's account number.
const SCANNERS: [(DetectorKind, Scan); 5] = [
    (DetectorKind::Email, email::scan),
    (DetectorKind::Iban, iban::scan),
    (DetectorKind::Card, card::scan),
    (DetectorKind::Ip, ip::scan),
    (DetectorKind::Phone, phone::scan),
];

/// `text` in NFKC, the form the scanners and e-mail hashing read. Borrowed when it is ASCII (its own NFKC form)
/// or the quick check finds it already normalised; one pass over the bytes for ASCII.
pub fn nfkc(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    }
}

/// The NFKC form of `text` with every detected span replaced by `[redacted:<label>]`. Borrowed (no allocation)
/// when the text is already NFKC and nothing was found.
pub fn redact<'a>(text: &'a str, detectors: &Detectors, hits: &mut Hits) -> Cow<'a, str> {
    // Kinds after the last enabled one cannot change the result: skip them.
    let Some(last) = SCANNERS.iter().rposition(|(k, _)| detectors.is_enabled(*k)) else {
        return Cow::Borrowed(text);
    };
    // The common case in one byte scan: ASCII text (its own NFKC form) without a digit or `@` holds no kind.
    let first = text
        .bytes()
        .position(|b| !b.is_ascii() || b.is_ascii_digit() || b == b'@');
    let Some(first) = first else {
        return Cow::Borrowed(text);
    };
    let text = if text.as_bytes()[first].is_ascii() && text[first..].is_ascii() {
        Cow::Borrowed(text)
    } else {
        nfkc(text)
    };
    match replace(&text, &SCANNERS[..=last], detectors, hits) {
        Some(out) => Cow::Owned(out),
        None => text,
    }
}

/// `truncate:N`: redacts `text`, keeps its first `chars` characters without splitting a marker, and redacts
/// what is kept again, since a cut can shorten a long digit run into a phone-sized one. When that second pass
/// replaces something, the result is cut again; text a few rounds cannot settle is not stored at all.
pub fn truncate(text: &str, chars: usize, detectors: &Detectors, hits: &mut Hits) -> String {
    let mut t = redact(text, detectors, hits).into_owned();
    for _ in 0..4 {
        let kept = cut(&t, chars);
        match redact(kept, detectors, hits) {
            Cow::Borrowed(kept) => return kept.to_owned(),
            Cow::Owned(again) => t = again,
        }
    }
    String::new()
}

/// The first `chars` characters of redacted text, cut back to the start of a `[redacted:…]` marker that the
/// cut would split.
fn cut(text: &str, chars: usize) -> &str {
    let Some((end, _)) = text.char_indices().nth(chars) else {
        return text;
    };
    let split = |open: usize| {
        DetectorKind::ALL.iter().any(|k| {
            let m = k.marker();
            text[open..].starts_with(m) && open + m.len() > end
        })
    };
    // A marker holds no `[` after its first byte, so only the last `[` before the cut can open a split one.
    match text[..end].rfind('[') {
        Some(open) if split(open) => &text[..open],
        _ => &text[..end],
    }
}

/// Runs `scanners` over NFKC text; the text with the enabled kinds replaced, or `None` if none was found.
fn replace(
    text: &str,
    scanners: &[(DetectorKind, Scan)],
    detectors: &Detectors,
    hits: &mut Hits,
) -> Option<String> {
    if !text.bytes().any(|b| b.is_ascii_digit() || b == b'@') {
        return None;
    }
    let mut claimed: Vec<(Range<usize>, DetectorKind)> = Vec::new();
    let (mut found, mut scratch) = (Vec::new(), Vec::new());
    for &(kind, scan) in scanners {
        found.clear();
        let mut from = 0;
        let ends = std::iter::once(text.len()..text.len());
        for next in claimed.iter().map(|(r, _)| r.clone()).chain(ends) {
            let base = found.len();
            scan(&text[from..next.start], &mut found);
            for r in &mut found[base..] {
                *r = r.start + from..r.end + from;
            }
            from = next.end;
        }
        merge(&mut claimed, &found, kind, &mut scratch);
    }
    let mut spans = claimed
        .iter()
        .filter(|(_, k)| detectors.is_enabled(*k))
        .peekable();
    spans.peek()?;
    let mut out = String::with_capacity(text.len() + 16);
    let mut from = 0;
    for (r, kind) in spans {
        out.push_str(&text[from..r.start]);
        out.push_str(kind.marker());
        hits.add(*kind);
        from = r.end;
    }
    out.push_str(&text[from..]);
    Some(out)
}

/// Merges two sorted, disjoint span lists (the new ones lie in the gaps of the old ones) in one pass.
fn merge(
    claimed: &mut Vec<(Range<usize>, DetectorKind)>,
    found: &[Range<usize>],
    kind: DetectorKind,
    scratch: &mut Vec<(Range<usize>, DetectorKind)>,
) {
    if found.is_empty() {
        return;
    }
    scratch.clear();
    let mut new = found.iter().map(|r| (r.clone(), kind)).peekable();
    for old in claimed.drain(..) {
        while let Some(n) = new.next_if(|n| n.0.start < old.0.start) {
            scratch.push(n);
        }
        scratch.push(old);
    }
    scratch.extend(new);
    std::mem::swap(claimed, scratch);
}

/// Letters, digits (any script) and `_`: a finding may not be glued to one of these.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The char ending at byte `i`, which must be a char boundary (O(1)).
fn char_before(s: &str, i: usize) -> Option<char> {
    s[..i].chars().next_back()
}

fn word_before(s: &str, i: usize) -> bool {
    char_before(s, i).is_some_and(is_word)
}

fn word_at(s: &str, i: usize) -> bool {
    s[i..].chars().next().is_some_and(is_word)
}

fn digits(b: &[u8], i: usize) -> usize {
    b[i..].iter().take_while(|c| c.is_ascii_digit()).count()
}
