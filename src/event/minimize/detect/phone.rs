//! Phone numbers, international (`+31 6 1234 5678`, `+1 (555) 123-4567`) and national (`020 7946 0958`,
//! `06-12345678`).

use std::ops::Range;

use super::{char_before, digits, is_word};

/// Phone rule: an optional `+`, then digit groups or `(digits)` groups joined by one ` `, `-` or `.` (or
/// nothing next to a parenthesis), 9–15 digits in all. The token is read maximally and judged whole, never
/// re-scanned from inside: a 16-digit number that failed Luhn has too many digits to be a phone. Not a phone:
/// dots mixed with spaces or dashes (`129.90 129.90`), a dotted quad shape, a leading date (`2024-11-25 10`),
/// a token glued to a word (`ts1732531200000`), or following `.`, `/`, `-`, a `:` after a digit or `:`
/// (`12:30:45.123456789`), or followed by `:` (`2024-11-25 10:30`).
pub(super) fn scan(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let (mut i, mut claimed) = (0, 0);
    let starts = |c: &u8| c.is_ascii_digit() || matches!(c, b'+' | b'(');
    while let Some(skip) = b[i..].iter().position(starts) {
        i += skip;
        let opens = b
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'(');
        if !(b[i].is_ascii_digit() || opens) {
            i += 1;
            continue;
        }
        let (end, shape) = phone_token(b, i);
        if end == i {
            i += 1;
            continue;
        }
        // The end of a claimed number is a boundary, as its `[redacted:phone]` will be on a second pass.
        if shape.is_phone() && phone_context(&s[claimed..], i - claimed, end - claimed) {
            out.push(i..end);
            claimed = end;
        }
        i = end;
    }
}

#[derive(Default)]
struct Shape {
    digits: usize,
    items: usize,
    first_lens: [usize; 3],
    first_seps: [u8; 2],
    /// Bit set of separators used: 1 space, 2 dash, 4 dot.
    seps: u8,
    long_item: bool,
}

impl Shape {
    fn is_phone(&self) -> bool {
        let dotted = self.seps & 4 != 0;
        let [a, b] = self.first_seps;
        let date = self.items >= 3
            && matches!(self.first_lens, [4, 2, 2] | [2, 2, 4])
            && a == b
            && matches!(a, b'-' | b'.');
        (9..=15).contains(&self.digits)
            && !(dotted && self.seps != 4)
            && !(dotted && self.items == 4 && !self.long_item)
            && !date
    }
}

fn phone_token(b: &[u8], start: usize) -> (usize, Shape) {
    let (mut j, mut end, mut shape) = (
        start + usize::from(b[start] == b'+'),
        start,
        Shape::default(),
    );
    loop {
        let paren = b.get(j) == Some(&b'(');
        let n = digits(b, j + usize::from(paren));
        if n == 0 || (paren && b.get(j + 1 + n) != Some(&b')')) {
            break;
        }
        if shape.items < 3 {
            shape.first_lens[shape.items] = n;
        }
        (shape.items, shape.digits, shape.long_item) =
            (shape.items + 1, shape.digits + n, shape.long_item || n > 3);
        j += n + 2 * usize::from(paren);
        end = j;
        match b.get(j).copied() {
            Some(c @ (b' ' | b'-' | b'.'))
                if b.get(j + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == b'(') =>
            {
                if shape.items <= 2 {
                    shape.first_seps[shape.items - 1] = c;
                }
                shape.seps |= match c {
                    b' ' => 1,
                    b'-' => 2,
                    _ => 4,
                };
                j += 1;
            }
            Some(b'(') => {}
            Some(c) if paren && c.is_ascii_digit() => {}
            _ => break,
        }
    }
    (end, shape)
}

fn phone_context(s: &str, start: usize, end: usize) -> bool {
    let before = match char_before(s, start) {
        None => true,
        Some(':') => !char_before(s, start - 1).is_some_and(|c| c.is_ascii_digit() || c == ':'),
        Some(c) => !is_word(c) && !matches!(c, '.' | '/' | '-'),
    };
    before
        && !s[end..]
            .chars()
            .next()
            .is_some_and(|c| is_word(c) || c == ':')
}
