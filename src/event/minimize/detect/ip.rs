//! IPv4 dotted quads (with an optional port) and IPv6 literals, compressed and IPv4-mapped forms included.

use std::ops::Range;

use super::{word_at, word_before};

fn is_ip_byte(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// Maximal runs of hex digits, `:` and `.` around a decimal digit, not glued to a word, judged whole: a dotted
/// quad, an IPv6 literal, or a dotted quad with a port. Trailing dots are dropped, a trailing `:` only before
/// whitespace (`10.0.0.1: down`). `1.2.3.4.5`, `999.1.1.1` and `12:30:45` are runs that are none of these.
pub(super) fn scan(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let mut done = 0;
    // Both forms hold a decimal digit (see `ip_literal`): find one, then its run, which lies after `done`.
    while let Some(skip) = b[done..].iter().position(u8::is_ascii_digit) {
        let digit = done + skip;
        let i = done
            + b[done..digit]
                .iter()
                .rposition(|c| !is_ip_byte(*c))
                .map_or(0, |p| p + 1);
        let run = digit + b[digit..].iter().take_while(|c| is_ip_byte(**c)).count();
        let mut end = run;
        while end > i && b[end - 1] == b'.' {
            end -= 1;
        }
        if end == run && end > i + 1 && b[end - 1] == b':' && b[end - 2] != b':' {
            end -= usize::from(b.get(run).is_some_and(u8::is_ascii_whitespace));
        }
        if !word_before(s, i) && !word_at(s, run) {
            if let Some(len) = ip_literal(&s[i..end]) {
                out.push(i..i + len);
            }
        }
        done = run;
    }
}

/// Length of the address at the start of `t`, which must be all of `t` except a `:port`. `t` holds a decimal
/// digit: that keeps `dead::beef`, `a::b` and `::` out of IPv6.
fn ip_literal(t: &str) -> Option<usize> {
    if !t.contains(':') {
        return ipv4(t).then_some(t.len());
    }
    if t.len() <= 45 && ipv6(t) {
        return Some(t.len());
    }
    let (addr, port) = t.split_once(':')?;
    (ipv4(addr) && port.len() <= 5 && port.bytes().all(|c| c.is_ascii_digit()))
        .then_some(addr.len())
}

fn ipv4(t: &str) -> bool {
    let mut parts = t.split('.');
    let octet =
        |p: &str| p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u8>().is_ok();
    (0..4).all(|_| parts.next().is_some_and(octet)) && parts.next().is_none()
}

fn ipv6(t: &str) -> bool {
    match t.split_once("::") {
        Some((head, tail)) => match (hex_groups(head, false), hex_groups(tail, true)) {
            (Some(h), Some(r)) => h + r <= 7,
            _ => false,
        },
        None => hex_groups(t, true) == Some(8),
    }
}

/// Number of 16-bit groups in `a:b:c` (a trailing dotted quad counts two), `None` if malformed.
fn hex_groups(part: &str, v4_tail: bool) -> Option<usize> {
    if part.is_empty() {
        return Some(0);
    }
    let mut groups = part.split(':').peekable();
    let mut n = 0;
    while let Some(g) = groups.next() {
        if v4_tail && groups.peek().is_none() && g.contains('.') {
            return ipv4(g).then_some(n + 2);
        }
        if g.is_empty() || g.len() > 4 || !g.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        n += 1;
    }
    Some(n)
}
