//! IBANs: a registered country code, its exact length, the mod-97 check; written in one run or in groups
//! of four, any case.

use std::ops::Range;

use super::{word_at, word_before};

/// ISO 13616 registry: country code and IBAN length.
const IBAN_LENGTHS: &[u8] = b"AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24DE22DJ27DK18DO28\
EE20EG29ES24FI18FK18FO18FR27GB22GE22GI23GL18GR27GT28HN28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21\
LT20LU20LV21LY25MC27MD24ME22MK19MN20MR27MT31MU30NI28NL18NO15OM23PK24PL28PS29PT25QA29RO24RS22RU33SA24SC31SD18\
SE24SI19SK24SM27SO23ST25SV28TL23TN24TR26UA29VA22VG24XK20YE30";

/// Finds each digit pair after two ASCII letters that start a word; `iban_at` reads a bounded stretch from
/// there, so this stays linear.
pub(super) fn scan(s: &str, out: &mut Vec<Range<usize>>) {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(skip) = b[i..].iter().position(u8::is_ascii_digit) {
        let d = i + skip;
        let head = d >= 2 && b[d - 2].is_ascii_alphabetic() && b[d - 1].is_ascii_alphabetic();
        if head && !word_before(s, d - 2) {
            if let Some(end) = iban_at(s, d - 2) {
                out.push(d - 2..end);
                i = end;
                continue;
            }
        }
        i = d + 1;
    }
}

/// An IBAN at word start `start`, case-insensitive: one run of exactly the country's length, or groups of four
/// joined by single spaces, the last group one to four long. Reads at most the country length (≤ 34) + spaces.
fn iban_at(s: &str, start: usize) -> Option<usize> {
    let b = s.as_bytes();
    let head = b.get(start..start + 4)?;
    if !(head[..2].iter().all(u8::is_ascii_alphabetic) && head[2..].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let cc = [head[0].to_ascii_uppercase(), head[1].to_ascii_uppercase()];
    let entry = IBAN_LENGTHS.chunks(4).find(|e| e[..2] == cc)?;
    let want = usize::from((entry[2] - b'0') * 10 + entry[3] - b'0');
    // mod 97 of the rearranged number (BBAN, then country and check digits), fed one character at a time.
    let (mut len, mut at, mut rem) = (0, start, 0);
    loop {
        let n = alnum_run(s, at, want - len)?;
        let grouped = if len == 0 {
            n == want || n == 4
        } else {
            n == 4 || len + n == want
        };
        if !grouped {
            return None;
        }
        let skip = if len == 0 { 4 } else { 0 };
        rem = b[at + skip..at + n].iter().fold(rem, |r, &c| mod97(r, c));
        (len, at) = (len + n, at + n);
        if len == want {
            return (head.iter().fold(rem, |r, &c| mod97(r, c)) == 1).then_some(at);
        }
        if b.get(at) != Some(&b' ') {
            return None;
        }
        at += 1;
    }
}

/// Length of the ASCII alphanumeric run at `from` if it is 1..=`max` long and not glued to a word character.
fn alnum_run(s: &str, from: usize, max: usize) -> Option<usize> {
    let n = s.as_bytes()[from..]
        .iter()
        .take(max + 1)
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    (n > 0 && n <= max && !word_at(s, from + n)).then_some(n)
}

fn mod97(r: u32, c: u8) -> u32 {
    if c.is_ascii_digit() {
        (r * 10 + u32::from(c - b'0')) % 97
    } else {
        (r * 100 + u32::from(c.to_ascii_uppercase() - b'A') + 10) % 97
    }
}
