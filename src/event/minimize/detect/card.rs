//! Payment cards: 13–19 digits passing Luhn, in one run or in groups joined by single spaces or dashes.

use std::ops::Range;

use super::{digits, word_at, word_before};

/// Tokens of digit groups joined by single spaces or dashes; the card windows inside each.
pub(super) fn scan(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(skip) = b[i..].iter().position(u8::is_ascii_digit) {
        i += skip;
        let first_end = i + digits(b, i);
        let (mut last, mut end) = (i, first_end);
        while matches!(b.get(end), Some(b' ' | b'-'))
            && b.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            last = end + 1;
            end = last + digits(b, last);
        }
        // A group glued to a word belongs to that word (`fe80`, `12ab`): only the groups between count.
        let from = if word_before(s, i) { first_end + 1 } else { i };
        let to = if word_at(s, end) {
            last.saturating_sub(1)
        } else {
            end
        };
        if from < to {
            card_windows(b, from, to, out);
        }
        i = end;
    }
}

/// From each group start, the longest run of whole groups holding 13–19 digits that passes Luhn: one group,
/// or groups of 3–6 digits each (4-4-4-4, 4-6-5, 4-4-4-4-3). At most 20 digits are read per start.
fn card_windows(b: &[u8], start: usize, end: usize, out: &mut Vec<Range<usize>>) {
    let mut g = start;
    while g < end {
        let (mut buf, mut n, mut j, mut first, mut best) = ([0u8; 19], 0, g, 0, None);
        while j < end {
            let len = b[j..end]
                .iter()
                .take(20)
                .take_while(|c| c.is_ascii_digit())
                .count();
            if n == 0 {
                first = len;
            } else if !(3..=6).contains(&first) || !(3..=6).contains(&len) {
                break;
            }
            if n + len > 19 {
                break;
            }
            buf[n..n + len].copy_from_slice(&b[j..j + len]);
            (n, j) = (n + len, j + len + 1);
            if n >= 13 && luhn(&buf[..n]) {
                best = Some(j - 1);
            }
        }
        if let Some(e) = best {
            out.push(g..e);
            g = e + 1;
        } else {
            g += digits(b, g) + 1;
        }
    }
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let v = u32::from(c - b'0') << (i % 2);
            if v > 9 {
                v - 9
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
