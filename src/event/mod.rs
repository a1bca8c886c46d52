//! Events, in the three states a beacon passes through: `RawEvent` (bounded JSON, straight from `decode`),
//! `ValidEvent` (schema v1 checked and typed by `validate`), `MinimizedEvent` (personal data removed by
//! `minimize`). `MinimizedEvent` can only be built by `minimize`, and the spool accepts nothing else, so an
//! un-minimized event cannot reach storage by construction.

pub mod decode;
mod json;
pub mod minimize;
mod strings;
pub mod validate;

pub use decode::decode;
pub use minimize::{minimize, ClientMeta, Context, Outcome, Report};
pub use validate::validate;

/// One event object out of a request body, with its position when the body was a batch. It borrows the
/// body's bytes: keys and strings without escapes are not copied.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent<'a> {
    pub(crate) index: Option<usize>,
    pub(crate) object: json::Object<'a>,
    /// The string values a payload rule could match, with their paths in the event, in document order.
    pub(crate) scan: Vec<(String, String)>,
}

impl RawEvent<'_> {
    /// A single (non-batch) event from an already parsed object, for tests and benchmarks that skip `decode`.
    pub fn for_tests(object: serde_json::Map<String, serde_json::Value>) -> RawEvent<'static> {
        RawEvent::new(None, object)
    }

    /// An event from a `serde_json` object (copied); its scannable strings are found by walking it.
    pub(crate) fn new(
        index: Option<usize>,
        object: serde_json::Map<String, serde_json::Value>,
    ) -> RawEvent<'static> {
        let object = json::Object::from_map(object);
        let scan = strings::scannable(&object);
        RawEvent {
            index,
            object,
            scan,
        }
    }

    /// (path, value) of every string value a payload rule could match.
    pub fn scannable(&self) -> impl Iterator<Item = (&str, &str)> {
        self.scan.iter().map(|(p, v)| (p.as_str(), v.as_str()))
    }

    /// The `site` it names, `""` when absent or not a string (validation refuses those).
    pub fn site(&self) -> &str {
        self.object
            .get("site")
            .and_then(json::Json::as_str)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    PageView,
    CartUpdate,
    CheckoutStarted,
    Purchase,
    PlanView,
    Identify,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PageView => "page_view",
            Self::CartUpdate => "cart_update",
            Self::CheckoutStarted => "checkout_started",
            Self::Purchase => "purchase",
            Self::PlanView => "plan_view",
            Self::Identify => "identify",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "page_view" => Self::PageView,
            "cart_update" => Self::CartUpdate,
            "checkout_started" => Self::CheckoutStarted,
            "purchase" => Self::Purchase,
            "plan_view" => Self::PlanView,
            "identify" => Self::Identify,
            _ => return None,
        })
    }
}

/// An event that satisfied schema v1. Still carries personal data.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub site: String,
    pub kind: EventType,
    pub event_id: String,
    pub ts: Option<i64>,
    pub page_url: Option<String>,
    pub customer: Option<Customer>,
    pub cart: Option<Cart>,
    pub transaction: Option<Transaction>,
    pub plan: Option<Plan>,
    pub shipping: Option<Shipping>,
    pub converted: Option<bool>,
    /// `false` means the visitor declined: the tenant's strict profile applies.
    pub consent: Option<bool>,
    /// Keys outside schema v1, dropped during validation (counted by the caller).
    pub unknown_fields: u32,
    /// Path of the first unknown key, for tenants that reject unknown fields.
    pub first_unknown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Customer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub age: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cart {
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Item {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub qty: Option<u32>,
    pub price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transaction {
    pub id: Option<String>,
    pub total: Option<f64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shipping {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub region: Option<String>,
    pub country: Option<String>,
}

/// An event with personal data removed; the only thing the spool stores. Built only by `minimize`.
#[derive(Debug, Clone, PartialEq)]
pub struct MinimizedEvent {
    /// The whole stored record as JSON bytes, `site`, `type`, `event_id` and `received_ms` included.
    pub(in crate::event) record: Vec<u8>,
    /// The tenant, the event id as stored, and when the gateway received it: the spool's record header.
    pub(in crate::event) site: String,
    pub(in crate::event) event_id: String,
    pub(in crate::event) received_ms: i64,
    /// The tenant's sinks at ingest: written into the record, never re-decided later.
    pub(in crate::event) route: std::sync::Arc<crate::spool::Route>,
}

impl MinimizedEvent {
    /// The record the spool stores: one JSON object.
    pub fn record(&self) -> &[u8] {
        &self.record
    }

    pub fn to_record(&self) -> Vec<u8> {
        self.record.clone()
    }

    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn received_ms(&self) -> i64 {
        self.received_ms
    }

    pub fn route(&self) -> &crate::spool::Route {
        &self.route
    }

    #[cfg(test)]
    pub(crate) fn for_spool_tests(
        site: &str,
        event_id: &str,
        received_ms: i64,
        record: Vec<u8>,
    ) -> Self {
        Self {
            record,
            site: site.into(),
            event_id: event_id.into(),
            received_ms,
            route: Default::default(),
        }
    }
}
