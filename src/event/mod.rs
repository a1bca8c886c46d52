//! Events, in the three states a beacon passes through: `RawEvent` (bounded JSON, straight from `decode`),
//! `ValidEvent` (schema v1 checked and typed by `validate`), `MinimizedEvent` (personal data removed by
//! `minimize`). `MinimizedEvent` can only be built by `minimize`, and the spool accepts nothing else, so an
//! un-minimized event cannot reach storage by construction.

pub mod decode;
pub mod minimize;
pub mod validate;

use serde::Serialize;

pub use decode::decode;
pub use minimize::minimize;
pub use validate::validate;

/// One event object out of a request body, with its position when the body was a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub(crate) index: Option<usize>,
    pub(crate) object: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    PageView,
    CartUpdate,
    CheckoutStarted,
    Purchase,
    PlanView,
    Identify,
}

impl EventType {
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
    /// Keys outside schema v1, dropped during validation (counted by the caller).
    pub unknown_fields: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Customer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub age: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Cart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Item {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qty: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Transaction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinimizedEvent {
    pub(in crate::event) site: String,
    #[serde(rename = "type")]
    pub(in crate::event) kind: EventType,
    pub(in crate::event) event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) ts: Option<i64>,
    /// Server receive time, milliseconds since the epoch.
    pub(in crate::event) received_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) page_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) customer: Option<minimize::MinCustomer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) cart: Option<Cart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) transaction: Option<Transaction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) plan: Option<Plan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) shipping: Option<minimize::MinShipping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) converted: Option<bool>,
}

impl MinimizedEvent {
    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// Serialized form stored in the spool: one JSON object.
    pub fn to_record(&self) -> Vec<u8> {
        // Only strings, numbers, bools and derived structs: serialization cannot fail. Non-finite floats
        // were refused by `validate`.
        serde_json::to_vec(self).unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn for_test(site: &str, event_id: &str) -> Self {
        Self {
            site: site.into(),
            kind: EventType::PageView,
            event_id: event_id.into(),
            ts: None,
            received_ms: 0,
            page_url: None,
            customer: None,
            cart: None,
            transaction: None,
            plan: None,
            shipping: None,
            converted: None,
        }
    }
}
