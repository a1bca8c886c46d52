//! minimize: `ValidEvent` → `MinimizedEvent`, the last step before anything is written. Guarantees:
//! - the client IP is never written: only the country (GeoIP) and, if the tenant's profile asks, its /24 or /48;
//! - the raw user agent is never written: only browser family, major version and device class;
//! - every field gets exactly the action its tenant's profile names ([`policy`]): keep, drop, keyed hash,
//!   truncate, generalize, scrub_url, redact (the [`detect`] scanners for e-mail, phone, card, IBAN, IP);
//! - the scanners and the e-mail hash read the NFKC form of the text, so full-width and other compatibility
//!   forms (`４１１１ …`, `ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ`) are caught and hash like their ASCII forms; a redacted
//!   value is stored in NFKC form (see [`detect`] for why that loses nothing), and `truncate` redacts first;
//! - `Sec-GPC: 1`, `DNT: 1` or `"consent": false` switch the event to the tenant's strict profile, which by
//!   construction keeps no identifier, hashed or not;
//! - an event whose subject is on the tenant's suppression list is dropped here ([`suppress`]).
//!
//! Only this module can build a `MinimizedEvent`, and the spool accepts nothing else.

pub mod detect;
pub mod geo;
mod out;
pub mod policy;
pub mod suppress;
pub mod url;
pub mod useragent;

use std::net::IpAddr;

use self::detect::{redact, truncate, Hits};
use self::geo::Geo;
use self::out::Obj;
use self::policy::{Action, Field, Profile, ACTION_LABELS, FIELD_COUNT};
use super::{MinimizedEvent, ValidEvent};
use crate::config::Tenant;
use crate::keys::HmacKey;

/// What the request said about its sender; none of it is stored as is.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: IpAddr,
    /// Already reduced: the raw header never reaches minimization.
    pub user_agent: Option<useragent::UaSummary>,
    /// `Sec-GPC: 1` or `DNT: 1` was sent.
    pub opted_out: bool,
}

pub struct Context<'a> {
    pub tenant: &'a Tenant,
    pub client: &'a ClientMeta,
    pub geo: Option<&'a Geo>,
    pub received_ms: i64,
}

pub enum Outcome {
    Keep(MinimizedEvent),
    /// The subject is on the suppression list: nothing is stored.
    Suppressed,
}

/// What minimization did, for the metrics: counts per field and action, detector hits, strict and suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub actions: [[u32; ACTION_LABELS.len()]; FIELD_COUNT],
    pub hits: Hits,
    pub strict: u32,
    pub suppressed: u32,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            actions: [[0; ACTION_LABELS.len()]; FIELD_COUNT],
            hits: Hits::default(),
            strict: 0,
            suppressed: 0,
        }
    }
}

impl Report {
    pub fn count(&self, field: Field, action_label: &str) -> u32 {
        ACTION_LABELS
            .iter()
            .position(|l| *l == action_label)
            .map_or(0, |i| self.actions[field.index()][i])
    }
}

/// The form of a value that `hash` and the suppression list key on (and `tollgate suppress` prints): NFKC,
/// trimmed, lower-cased, so `ＡＮＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ` and `ann@example.com` are one subject. ASCII input
/// hashes as it always did.
pub fn normalize(value: &str) -> String {
    detect::nfkc(value).trim().to_lowercase()
}

pub fn minimize(ev: ValidEvent, ctx: &Context<'_>, report: &mut Report) -> Outcome {
    let tenant = ctx.tenant;
    if !tenant.suppression.is_empty() {
        let email = ev.customer.as_ref().and_then(|c| c.email.as_deref());
        if email.is_some_and(|e| tenant.suppression.matches(&normalize(e), &tenant.keys)) {
            report.suppressed += 1;
            return Outcome::Suppressed;
        }
    }
    let strict = ctx.client.opted_out || ev.consent == Some(false);
    report.strict += u32::from(strict);
    let profile = if strict {
        &tenant.strict
    } else {
        &tenant.profile
    };
    let mut w = Writer {
        profile,
        key: tenant.keys.active(),
        report,
    };
    let mut root = Obj::with_capacity(512);
    root.str("site", "", &ev.site);
    root.str("type", "", ev.kind.as_str());
    let event_id = w.event_id(&mut root, ev.event_id);
    root.int("received_ms", ctx.received_ms);
    w.int(&mut root, Field::Ts, ev.ts);
    w.text(&mut root, Field::PageUrl, ev.page_url);
    if let Some(c) = ev.customer {
        let mut m = Obj::with_capacity(128);
        w.text(&mut m, Field::CustomerEmail, c.email);
        w.text(&mut m, Field::CustomerFirstName, c.first_name);
        w.int(&mut m, Field::CustomerAge, c.age.map(i64::from));
        root.obj("customer", m);
    }
    if let Some(c) = ev.cart {
        let mut m = Obj::with_capacity(128);
        w.money(&mut m, Field::CartValue, c.value);
        w.text(&mut m, Field::CartCurrency, c.currency);
        let items = c.items.into_iter().map(|i| w.item(i)).collect();
        m.objs("items", items);
        root.obj("cart", m);
    }
    if let Some(t) = ev.transaction {
        let mut m = Obj::with_capacity(64);
        w.text(&mut m, Field::TransactionId, t.id);
        w.money(&mut m, Field::TransactionTotal, t.total);
        w.text(&mut m, Field::TransactionCurrency, t.currency);
        root.obj("transaction", m);
    }
    if let Some(p) = ev.plan {
        let mut m = Obj::with_capacity(64);
        w.text(&mut m, Field::PlanId, p.id);
        w.text(&mut m, Field::PlanName, p.name);
        root.obj("plan", m);
    }
    if let Some(s) = ev.shipping {
        let mut m = Obj::with_capacity(64);
        for (field, value) in [
            (Field::ShippingFirstName, s.first_name),
            (Field::ShippingLastName, s.last_name),
            (Field::ShippingStreet, s.street),
            (Field::ShippingPostalCode, s.postal_code),
            (Field::ShippingRegion, s.region),
            (Field::ShippingCountry, s.country),
        ] {
            w.text(&mut m, field, value);
        }
        root.obj("shipping", m);
    }
    if let Some(b) = ev.converted {
        if w.action(Field::Converted) == Action::Keep {
            root.bool("converted", b);
        }
    }
    w.client(&mut root, ctx);
    Outcome::Keep(MinimizedEvent {
        record: root.finish(),
        site: ev.site,
        event_id,
        received_ms: ctx.received_ms,
        route: tenant.route.clone(),
    })
}

fn leaf(field: Field) -> &'static str {
    let path = field.path();
    match path.bytes().rposition(|b| b == b'.') {
        Some(dot) => &path[dot + 1..],
        None => path,
    }
}

/// The key suffix for a field under an action: derived values get one so downstream never mistakes a hash or
/// a band for the original.
fn suffix(action: Action) -> &'static str {
    match action {
        Action::Hash => "_hash",
        Action::AgeBand => "_band",
        Action::Prefix(_) => "_prefix",
        Action::Network => "_network",
        _ => "",
    }
}

struct Writer<'a> {
    profile: &'a Profile,
    key: &'a HmacKey,
    report: &'a mut Report,
}

impl Writer<'_> {
    fn action(&mut self, field: Field) -> Action {
        let a = self.profile.action(field);
        self.report.actions[field.index()][a.label_index()] += 1;
        a
    }

    /// Writes the event id as stored (redacted unless the profile keeps it) and returns it.
    fn event_id(&mut self, out: &mut Obj, id: String) -> String {
        let stored = match self.action(Field::EventId) {
            Action::Keep => id,
            _ => redact(&id, &self.profile.detectors, &mut self.report.hits).into_owned(),
        };
        out.str("event_id", "", &stored);
        stored
    }

    fn text(&mut self, out: &mut Obj, field: Field, value: Option<String>) {
        let Some(v) = value else { return };
        let action = self.action(field);
        let (leaf, suffix) = (leaf(field), suffix(action));
        let hits = &mut self.report.hits;
        let detectors = &self.profile.detectors;
        match action {
            Action::Keep => out.str(leaf, suffix, &v),
            Action::Drop => {}
            Action::Hash => out.str(leaf, suffix, &self.key.tag(normalize(&v).as_bytes())),
            Action::Truncate(n) => out.str(leaf, suffix, &truncate(&v, n, detectors, hits)),
            Action::Redact => out.str(leaf, suffix, &redact(&v, detectors, hits)),
            Action::ScrubUrl => out.str(leaf, suffix, &url::scrub_url(&v, self.profile, hits)),
            Action::Prefix(n) => {
                let p: String = v.chars().filter(|c| !c.is_whitespace()).take(n).collect();
                out.str(leaf, suffix, &p.to_uppercase());
            }
            // `policy` lets only text actions reach text fields.
            _ => {}
        }
    }

    fn int(&mut self, out: &mut Obj, field: Field, value: Option<i64>) {
        let Some(v) = value else { return };
        let action = self.action(field);
        match action {
            Action::Keep => out.int(leaf(field), v),
            Action::AgeBand => out.str(leaf(field), suffix(action), age_band(v)),
            Action::Hour => out.int(leaf(field), v - v.rem_euclid(3_600_000)),
            Action::Day => out.int(leaf(field), v - v.rem_euclid(86_400_000)),
            _ => {}
        }
    }

    fn money(&mut self, out: &mut Obj, field: Field, value: Option<f64>) {
        let Some(v) = value else { return };
        match self.action(field) {
            Action::Keep => out.num(leaf(field), v),
            Action::Round(step) => out.num(
                leaf(field),
                ((v / step).round() * step * 100.0).round() / 100.0,
            ),
            _ => {}
        }
    }

    fn item(&mut self, i: super::Item) -> Obj {
        let mut m = Obj::with_capacity(96);
        self.text(&mut m, Field::ItemSku, i.sku);
        self.text(&mut m, Field::ItemName, i.name);
        if let Some(q) = i.qty {
            if self.action(Field::ItemQty) == Action::Keep {
                m.int("qty", q.into());
            }
        }
        self.money(&mut m, Field::ItemPrice, i.price);
        m
    }

    /// `client.country`, `client.ip_network`, `user_agent`: derived from the request, never copied from it.
    fn client(&mut self, root: &mut Obj, ctx: &Context<'_>) {
        let mut m = Obj::with_capacity(64);
        let ip = ctx.client.ip;
        if let Some(geo) = ctx.geo {
            if self.action(Field::ClientCountry) == Action::Keep {
                if let Some(cc) = geo.country(ip) {
                    m.str("country", "", std::str::from_utf8(&cc).unwrap_or_default());
                }
            }
        }
        if self.action(Field::ClientIp) == Action::Network {
            m.str("ip", "_network", &geo::network_prefix(ip));
        }
        root.obj("client", m);
        if let Some(ua) = &ctx.client.user_agent {
            if self.action(Field::UserAgent) == Action::Keep {
                let mut u = Obj::with_capacity(64);
                u.str("family", "", &ua.family);
                if let Some(major) = ua.major {
                    u.int("major", major.into());
                }
                u.str("device", "", ua.device);
                root.obj("user_agent", u);
            }
        }
    }
}

pub fn age_band(age: i64) -> &'static str {
    match age {
        i64::MIN..=17 => "under-18",
        18..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

#[cfg(test)]
mod tests;
