//! E-mail addresses, plain or percent-encoded (`ann%40example.com`, as in a URL query), in any script.

use std::ops::Range;

fn is_local(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '\'')
}

/// `local@domain` or `local%40domain`. The local part is the run of local characters before the `@`, tracked
/// while walking forward (start, has a letter or digit), so it is never re-read; leading `.` and `'` are not
/// part of it (`'ann@example.com'`). The domain is read forward from the `@` and ends at the first non-domain
/// character, at the latest the next `@` or `%`: domain reads never overlap.
pub(super) fn scan(s: &str, out: &mut Vec<Range<usize>>) {
    if !s.contains('@') && !s.contains("%40") {
        return;
    }
    let (mut local, mut resume): (Option<(usize, bool)>, usize) = (None, 0);
    for (i, c) in s.char_indices() {
        if i < resume {
            continue;
        }
        let at = match c {
            '@' => 1,
            '%' if s[i..].starts_with("%40") => 3,
            _ => 0,
        };
        if let (true, Some((start, true))) = (at > 0, local) {
            if let Some(end) = domain_end(s, i + at) {
                out.push(start..end);
                (local, resume) = (None, end);
                continue;
            }
        }
        if c == '@' || !is_local(c) {
            local = None;
        } else if let Some((_, alnum)) = &mut local {
            *alnum |= c.is_alphanumeric();
        } else if c != '.' && c != '\'' {
            local = Some((i, c.is_alphanumeric()));
        }
    }
}

/// End of the longest domain at `from`: labels of letters, digits and `-`, at least two, the last one of two
/// or more letters. Trailing punctuation (`ann@example.com.`) is not part of it.
fn domain_end(s: &str, from: usize) -> Option<usize> {
    let (mut best, mut label, mut alpha, mut dots) = (None, 0, true, 0);
    for (off, c) in s[from..].char_indices() {
        if c == '.' {
            if label == 0 {
                break;
            }
            (dots, label, alpha) = (dots + 1, 0, true);
        } else if c.is_alphanumeric() || c == '-' {
            label += 1;
            alpha &= c.is_alphabetic();
            if dots > 0 && alpha && label >= 2 {
                best = Some(from + off + c.len_utf8());
            }
        } else {
            break;
        }
    }
    best
}
