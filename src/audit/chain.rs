//! The hash chain of the audit log, pure: how a line is sealed and how a file is verified.
//!
//! A line is one JSON object ending in `"prev":"<hex>","hash":"<hex>"}`. `hash` is the SHA-256 of the line
//! without its `,"hash":"…"` member (that is, of everything the line says), and `prev` is the previous line's
//! `hash` — of the fixed string [`GENESIS`] for the first line. `seq` counts lines from 1. So an edited line
//! fails its own hash, a removed line breaks the next line's `prev` and `seq`, and an inserted line breaks its
//! own `prev` or the next one's: [`verify`] names the first line where the chain does not hold.

use crate::config::sha256_hex;

/// What the first line's `prev` is the hash of.
pub const GENESIS: &str = "tollgate audit log v1";

/// The `prev` of the first line.
pub fn genesis() -> String {
    sha256_hex(GENESIS.as_bytes())
}

/// Seals `body` (a JSON object whose last members are `seq` and `prev`, as [`crate::audit`] writes it) into
/// one line, without the newline.
pub fn seal(body: &str) -> String {
    debug_assert!(body.ends_with('}'));
    let hash = sha256_hex(body.as_bytes());
    format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1])
}

/// The parts of a sealed line the chain needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub hash: String,
}

/// Why a line breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not a sealed JSON line (torn, truncated, hand-written).
    Malformed,
    /// The line's content does not match its own hash: edited.
    Edited,
    /// `prev` is not the previous line's hash: a line was removed or inserted before it.
    Unlinked,
    /// `seq` does not follow the previous line's.
    Sequence,
}

impl Fault {
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Malformed => "not a sealed audit line",
            Fault::Edited => "content does not match its hash (edited)",
            Fault::Unlinked => {
                "prev does not match the previous line (a line was removed or inserted)"
            }
            Fault::Sequence => "seq does not follow the previous line",
        }
    }
}

/// The first line (1-based) where the chain breaks, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Break {
    pub line: usize,
    pub fault: Fault,
}

/// Checks one sealed line against the link before it (`None` = first line); returns its own link.
pub fn check(line: &str, before: Option<&Link>) -> Result<Link, Fault> {
    const TAIL: usize = ",\"hash\":\"\"}".len() + 64;
    if line.len() < TAIL || !line.is_char_boundary(line.len() - TAIL) {
        return Err(Fault::Malformed);
    }
    let (head, tail) = line.split_at(line.len() - TAIL);
    let hash = tail
        .strip_prefix(",\"hash\":\"")
        .and_then(|t| t.strip_suffix("\"}"))
        .ok_or(Fault::Malformed)?;
    let body = format!("{head}}}");
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|_| Fault::Malformed)?;
    let (Some(seq), Some(prev)) = (value["seq"].as_u64(), value["prev"].as_str()) else {
        return Err(Fault::Malformed);
    };
    if sha256_hex(body.as_bytes()) != hash {
        return Err(Fault::Edited);
    }
    let (want_prev, want_seq) = match before {
        Some(l) => (l.hash.clone(), l.seq + 1),
        None => (genesis(), 1),
    };
    if prev != want_prev {
        return Err(Fault::Unlinked);
    }
    if seq != want_seq {
        return Err(Fault::Sequence);
    }
    Ok(Link {
        seq,
        hash: hash.to_owned(),
    })
}

/// Verifies a whole audit log; `Ok(lines)` when every line holds. A last line without its newline is torn
/// and counts as malformed.
pub fn verify(text: &str) -> Result<usize, Break> {
    let mut before: Option<Link> = None;
    let mut n = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let fault = |fault| Break { line: i + 1, fault };
        let line = line.strip_suffix('\n').ok_or(fault(Fault::Malformed))?;
        before = Some(check(line, before.as_ref()).map_err(fault)?);
        n = i + 1;
    }
    Ok(n)
}

/// The link to continue from after `text` (an existing log): its last line's, if that line is sealed.
pub fn last_link(text: &str) -> Option<Link> {
    let last = text.trim_end_matches('\n').rsplit('\n').next()?;
    let (head, hash) = last.rsplit_once(",\"hash\":\"")?;
    let hash = hash.strip_suffix("\"}")?;
    let value: serde_json::Value = serde_json::from_str(&format!("{head}}}")).ok()?;
    Some(Link {
        seq: value["seq"].as_u64()?,
        hash: hash.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three sealed lines as the writer makes them.
    fn log(n: u64) -> Vec<String> {
        let mut prev = genesis();
        (1..=n)
            .map(|seq| {
                let line = seal(&format!(
                    "{{\"event\":\"e{seq}\",\"seq\":{seq},\"prev\":\"{prev}\"}}"
                ));
                prev = last_link(&line).unwrap().hash;
                line
            })
            .collect()
    }

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_an_empty_file_is_intact() {
        assert_eq!(verify(&text(&log(3))), Ok(3));
        assert_eq!(verify(""), Ok(0));
    }

    #[test]
    fn the_first_line_links_to_the_genesis_hash() {
        let l = log(1);
        assert!(l[0].contains(&genesis()));
        assert_eq!(check(&l[0], None).unwrap().seq, 1);
    }

    #[test]
    fn an_edited_line_is_named() {
        let mut l = log(3);
        l[1] = l[1].replace("e2", "eX");
        assert_eq!(
            verify(&text(&l)),
            Err(Break {
                line: 2,
                fault: Fault::Edited
            })
        );
    }

    #[test]
    fn a_removed_line_breaks_the_next_one() {
        let mut l = log(4);
        l.remove(1);
        assert_eq!(
            verify(&text(&l)),
            Err(Break {
                line: 2,
                fault: Fault::Unlinked
            })
        );
    }

    #[test]
    fn an_inserted_line_is_named_even_when_sealed() {
        let mut l = log(3);
        let forged = seal(&format!(
            "{{\"event\":\"forged\",\"seq\":2,\"prev\":\"{}\"}}",
            genesis()
        ));
        l.insert(1, forged);
        assert_eq!(verify(&text(&l)).unwrap_err().line, 2);
        let copy = l[3].clone();
        let mut l = log(3);
        l.insert(3, copy);
        assert_eq!(verify(&text(&l)).unwrap_err().line, 4);
    }

    #[test]
    fn a_torn_last_line_and_garbage_are_malformed() {
        let l = log(2);
        let torn = format!("{}\n{}", l[0], &l[1][..20]);
        assert_eq!(
            verify(&torn),
            Err(Break {
                line: 2,
                fault: Fault::Malformed
            })
        );
        assert_eq!(verify("hello\n").unwrap_err().fault, Fault::Malformed);
        assert_eq!(verify("é\n").unwrap_err().fault, Fault::Malformed);
    }

    #[test]
    fn last_link_continues_the_chain() {
        let l = log(2);
        let link = last_link(&text(&l)).unwrap();
        assert_eq!(link.seq, 2);
        assert_eq!(check(&l[1], Some(&check(&l[0], None).unwrap())), Ok(link));
        assert_eq!(last_link(""), None);
    }
}
