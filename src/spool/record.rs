//! The record a frame carries once decrypted: a small header the sinks route and de-duplicate by, then the
//! minimized event exactly as `minimize` wrote it.
//!
//! ```text
//! record = u8 version (1) ‖ u16 site length ‖ site ‖ u16 event-id length ‖ event id ‖ i64 received_ms
//!          ‖ u8 route count (0 = every consumer) ‖ (u16 length ‖ sink name)* ‖ payload (one JSON object)
//! ```
//! The route is fixed here at ingest: a later reload can change where new events go, never where stored
//! events go (which is how EU data stays on EU storage).

const VERSION: u8 = 1;
/// Longest site, event id or sink name a record header can hold.
pub const MAX_FIELD: usize = u16::MAX as usize;

/// Where a record may be delivered, decided at ingest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Route {
    /// Every consumer of the spool.
    #[default]
    All,
    /// Only the named consumers (sinks).
    Only(Vec<String>),
}

impl Route {
    pub fn includes(&self, consumer: &str) -> bool {
        match self {
            Route::All => true,
            Route::Only(names) => names.iter().any(|n| n == consumer),
        }
    }
}

/// One record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub site: String,
    pub event_id: String,
    pub received_ms: i64,
    pub route: Route,
    /// The minimized event: one JSON object.
    pub payload: Vec<u8>,
}

/// Appends the plaintext of a record to `out`. Fields longer than [`MAX_FIELD`] are cut (they are
/// bounded far below it by the request limits).
pub(crate) fn encode_into(
    out: &mut Vec<u8>,
    site: &str,
    event_id: &str,
    received_ms: i64,
    route: &Route,
    payload: &[u8],
) {
    out.push(VERSION);
    put_str(out, site);
    put_str(out, event_id);
    out.extend_from_slice(&received_ms.to_le_bytes());
    match route {
        Route::All => out.push(0),
        Route::Only(names) => {
            let names = &names[..names.len().min(255)];
            out.push(names.len() as u8);
            for n in names {
                put_str(out, n);
            }
        }
    }
    out.extend_from_slice(payload);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Parses a decrypted record; `None` if it is not a well-formed v1 record.
pub(crate) fn decode(data: &[u8]) -> Option<StoredRecord> {
    let mut r = Cursor { data, pos: 0 };
    if r.u8()? != VERSION {
        return None;
    }
    let site = r.str()?;
    let event_id = r.str()?;
    let received_ms = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let route = match r.u8()? {
        0 => Route::All,
        n => Route::Only((0..n).map(|_| r.str()).collect::<Option<Vec<_>>>()?),
    };
    Some(StoredRecord {
        site,
        event_id,
        received_ms,
        route,
        payload: data[r.pos..].to_vec(),
    })
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.data.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn str(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(len))?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_routes() {
        for route in [Route::All, Route::Only(vec!["file".into(), "ch-eu".into()])] {
            let mut buf = Vec::new();
            encode_into(&mut buf, "démo", "e-1", -5, &route, br#"{"a":1}"#);
            let r = decode(&buf).unwrap();
            assert_eq!(
                r,
                StoredRecord {
                    site: "démo".into(),
                    event_id: "e-1".into(),
                    received_ms: -5,
                    route: route.clone(),
                    payload: br#"{"a":1}"#.to_vec()
                }
            );
        }
        assert!(Route::Only(vec!["a".into()]).includes("a"));
        assert!(!Route::Only(vec!["a".into()]).includes("b"));
        assert!(Route::All.includes("b"));
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut buf = Vec::new();
        encode_into(&mut buf, "s", "e", 1, &Route::All, b"{}");
        for cut in 0..buf.len() - 2 {
            assert!(decode(&buf[..cut]).is_none(), "cut {cut}");
        }
        buf[0] = 2;
        assert!(decode(&buf).is_none());
    }
}
