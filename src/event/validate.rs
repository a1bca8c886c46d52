//! validate: `RawEvent` → `ValidEvent` against schema v1. Guarantees: `site`, `type` and `event_id` are present
//! and well-formed, every known field has its documented type (numbers finite, ids bounded), unknown keys are
//! dropped and counted. The first problem found is returned with its JSON path.

use std::borrow::Cow;

use super::json::{Json, Object};
use super::{Cart, Customer, EventType, Item, Plan, RawEvent, Shipping, Transaction, ValidEvent};
use crate::reject::Reject;

/// Longest accepted `event_id`.
pub const MAX_EVENT_ID: usize = 128;

pub fn validate(raw: RawEvent<'_>) -> Result<ValidEvent, Reject> {
    let index = raw.index;
    validate_object(raw.object).map_err(|r| r.in_event(index))
}

/// Most keys any schema v1 object has.
const MAX_KEYS: usize = 12;
const ROOT: &[&str] = &[
    "site",
    "type",
    "event_id",
    "ts",
    "page_url",
    "customer",
    "cart",
    "transaction",
    "plan",
    "shipping",
    "converted",
    "consent",
];
const CUSTOMER: &[&str] = &["email", "first_name", "age"];
const CART: &[&str] = &["value", "currency", "items"];
const ITEM: &[&str] = &["sku", "name", "qty", "price"];
const TRANSACTION: &[&str] = &["id", "total", "currency"];
const PLAN: &[&str] = &["id", "name"];
const SHIPPING: &[&str] = &[
    "first_name",
    "last_name",
    "street",
    "postal_code",
    "region",
    "country",
];

/// One JSON object, split in a single pass over its entries into one slot per known key; the rest is counted
/// as unknown (no per-key tree lookups, no leftover map).
struct Obj<'a> {
    keys: &'static [&'static str],
    slots: [Option<Json<'a>>; MAX_KEYS],
    path: String,
    unknown: u32,
    first_unknown: Option<String>,
}

impl<'a> Obj<'a> {
    fn new(map: Object<'a>, path: String, keys: &'static [&'static str]) -> Obj<'a> {
        debug_assert!(keys.len() <= MAX_KEYS);
        let mut o = Obj {
            keys,
            slots: Default::default(),
            path,
            unknown: 0,
            first_unknown: None,
        };
        for (k, v) in map {
            match keys.iter().position(|known| *known == k.as_ref()) {
                Some(i) => o.slots[i] = Some(v),
                None => {
                    o.unknown += 1;
                    if o.first_unknown.is_none() {
                        o.first_unknown = Some(o.field(&k));
                    }
                }
            }
        }
        o
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// `null` counts as absent.
    fn take(&mut self, key: &str) -> Option<Json<'a>> {
        let i = self.keys.iter().position(|known| *known == key)?;
        self.slots[i].take().filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, Reject> {
        match self.take(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(Cow::into_owned(s))),
            Some(_) => Err(Reject::WrongType {
                field: self.field(key),
                expected: "string",
            }),
        }
    }

    fn number(&mut self, key: &str) -> Result<Option<f64>, Reject> {
        match self.take(key) {
            None => Ok(None),
            Some(Json::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(Reject::InvalidValue {
                    field: self.field(key),
                    detail: "number out of range",
                }),
            },
            Some(_) => Err(Reject::WrongType {
                field: self.field(key),
                expected: "number",
            }),
        }
    }

    fn uint(&mut self, key: &str, max: u64) -> Result<Option<u64>, Reject> {
        match self.take(key) {
            None => Ok(None),
            Some(Json::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(Reject::InvalidValue {
                    field: self.field(key),
                    detail: "not a non-negative integer in range",
                }),
            },
            Some(_) => Err(Reject::WrongType {
                field: self.field(key),
                expected: "integer",
            }),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>, Reject> {
        match self.take(key) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(Reject::WrongType {
                field: self.field(key),
                expected: "boolean",
            }),
        }
    }

    fn object(
        &mut self,
        key: &str,
        keys: &'static [&'static str],
    ) -> Result<Option<Obj<'a>>, Reject> {
        match self.take(key) {
            None => Ok(None),
            Some(Json::Object(map)) => Ok(Some(Obj::new(map, self.field(key), keys))),
            Some(_) => Err(Reject::WrongType {
                field: self.field(key),
                expected: "object",
            }),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, Reject> {
        self.string(key)?.ok_or_else(|| Reject::MissingField {
            field: self.field(key),
        })
    }

    fn currency(&mut self, key: &str) -> Result<Option<String>, Reject> {
        let c = self.string(key)?;
        if let Some(c) = &c {
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(Reject::InvalidValue {
                    field: self.field(key),
                    detail: "ISO 4217 code, e.g. EUR",
                });
            }
        }
        Ok(c)
    }
}

/// Keys nobody asked for, across the whole event.
#[derive(Default)]
struct Unknown {
    count: u32,
    first: Option<String>,
}

impl Unknown {
    fn add(&mut self, o: &Obj<'_>) {
        self.count += o.unknown;
        if self.first.is_none() {
            self.first.clone_from(&o.first_unknown);
        }
    }
}

fn validate_object(map: Object<'_>) -> Result<ValidEvent, Reject> {
    let mut o = Obj::new(map, String::new(), ROOT);
    let site = o.required_string("site")?;
    if site.is_empty() {
        return Err(Reject::InvalidValue {
            field: "site".into(),
            detail: "must not be empty",
        });
    }
    let kind_text = o.required_string("type")?;
    let kind = EventType::parse(&kind_text).ok_or(Reject::InvalidValue {
        field: "type".into(),
        detail: "unknown event type",
    })?;
    let event_id = o.required_string("event_id")?;
    if event_id.is_empty()
        || event_id.len() > MAX_EVENT_ID
        || event_id.chars().any(char::is_control)
    {
        return Err(Reject::InvalidValue {
            field: "event_id".into(),
            detail: "1-128 printable characters",
        });
    }
    let ts = o.uint("ts", i64::MAX as u64)?.map(|v| v as i64);
    let page_url = o.string("page_url")?;
    let mut unknown = Unknown::default();
    let customer = o
        .object("customer", CUSTOMER)?
        .map(|c| customer(c, &mut unknown))
        .transpose()?;
    let cart = o
        .object("cart", CART)?
        .map(|c| cart(c, &mut unknown))
        .transpose()?;
    let transaction = o
        .object("transaction", TRANSACTION)?
        .map(|t| transaction(t, &mut unknown))
        .transpose()?;
    let plan = o
        .object("plan", PLAN)?
        .map(|p| plan(p, &mut unknown))
        .transpose()?;
    let shipping = o
        .object("shipping", SHIPPING)?
        .map(|s| shipping(s, &mut unknown))
        .transpose()?;
    let converted = o.boolean("converted")?;
    let consent = o.boolean("consent")?;
    unknown.add(&o);
    Ok(ValidEvent {
        site,
        kind,
        event_id,
        ts,
        page_url,
        customer,
        cart,
        transaction,
        plan,
        shipping,
        converted,
        consent,
        unknown_fields: unknown.count,
        first_unknown: unknown.first,
    })
}

fn customer(mut o: Obj<'_>, unknown: &mut Unknown) -> Result<Customer, Reject> {
    let c = Customer {
        email: o.string("email")?,
        first_name: o.string("first_name")?,
        age: o.uint("age", 150)?.map(|a| a as u32),
    };
    unknown.add(&o);
    Ok(c)
}

fn cart(mut o: Obj<'_>, unknown: &mut Unknown) -> Result<Cart, Reject> {
    let value = o.number("value")?;
    let currency = o.currency("currency")?;
    let items = match o.take("items") {
        None => Vec::new(),
        Some(Json::Array(list)) => {
            let path = o.field("items");
            let parse_item = |(i, v): (usize, Json<'_>)| match v {
                Json::Object(map) => item(Obj::new(map, format!("{path}[{i}]"), ITEM), unknown),
                _ => Err(Reject::WrongType {
                    field: format!("{path}[{i}]"),
                    expected: "object",
                }),
            };
            list.into_iter()
                .enumerate()
                .map(parse_item)
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(Reject::WrongType {
                field: o.field("items"),
                expected: "array",
            })
        }
    };
    unknown.add(&o);
    Ok(Cart {
        value,
        currency,
        items,
    })
}

fn item(mut o: Obj<'_>, unknown: &mut Unknown) -> Result<Item, Reject> {
    let i = Item {
        sku: o.string("sku")?,
        name: o.string("name")?,
        qty: o.uint("qty", u32::MAX as u64)?.map(|q| q as u32),
        price: o.number("price")?,
    };
    unknown.add(&o);
    Ok(i)
}

fn transaction(mut o: Obj<'_>, unknown: &mut Unknown) -> Result<Transaction, Reject> {
    let t = Transaction {
        id: o.string("id")?,
        total: o.number("total")?,
        currency: o.currency("currency")?,
    };
    unknown.add(&o);
    Ok(t)
}

fn plan(mut o: Obj<'_>, unknown: &mut Unknown) -> Result<Plan, Reject> {
    let p = Plan {
        id: o.string("id")?,
        name: o.string("name")?,
    };
    unknown.add(&o);
    Ok(p)
}

fn shipping(mut o: Obj<'_>, unknown: &mut Unknown) -> Result<Shipping, Reject> {
    let s = Shipping {
        first_name: o.string("first_name")?,
        last_name: o.string("last_name")?,
        street: o.string("street")?,
        postal_code: o.string("postal_code")?,
        region: o.string("region")?,
        country: o.string("country")?,
    };
    unknown.add(&o);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn raw(v: serde_json::Value, index: Option<usize>) -> RawEvent<'static> {
        let Value::Object(object) = v else {
            panic!("object")
        };
        RawEvent::new(index, object)
    }

    #[test]
    fn design_sample_is_valid() {
        let v: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/sample_event.json")).unwrap();
        let ev = validate(raw(v, None)).unwrap();
        assert_eq!(ev.kind, EventType::CartUpdate);
        assert_eq!(
            ev.customer.unwrap().email.as_deref(),
            Some("Ann@Example.com")
        );
        assert_eq!(ev.cart.unwrap().items.len(), 1);
        assert_eq!(ev.unknown_fields, 0);
    }

    #[test]
    fn schema_errors_name_the_field() {
        use serde_json::json;
        let base = || json!({"site": "demo", "type": "purchase", "event_id": "e1"});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        let mut no_id = base();
        no_id.as_object_mut().unwrap().remove("event_id");
        let cases = vec![
            (
                no_id,
                Reject::MissingField {
                    field: "event_id".into(),
                },
            ),
            (
                with("site", json!(5)),
                Reject::WrongType {
                    field: "site".into(),
                    expected: "string",
                },
            ),
            (
                with("type", json!("teleport")),
                Reject::InvalidValue {
                    field: "type".into(),
                    detail: "unknown event type",
                },
            ),
            (
                with("ts", json!(-1)),
                Reject::InvalidValue {
                    field: "ts".into(),
                    detail: "not a non-negative integer in range",
                },
            ),
            (
                with("customer", json!({"age": "old"})),
                Reject::WrongType {
                    field: "customer.age".into(),
                    expected: "integer",
                },
            ),
            (
                with("cart", json!({"items": [{"qty": 1}, {"price": "x"}]})),
                Reject::WrongType {
                    field: "cart.items[1].price".into(),
                    expected: "number",
                },
            ),
            (
                with("cart", json!({"currency": "euro"})),
                Reject::InvalidValue {
                    field: "cart.currency".into(),
                    detail: "ISO 4217 code, e.g. EUR",
                },
            ),
            (
                with("converted", json!("yes")),
                Reject::WrongType {
                    field: "converted".into(),
                    expected: "boolean",
                },
            ),
            (
                with("event_id", json!("")),
                Reject::InvalidValue {
                    field: "event_id".into(),
                    detail: "1-128 printable characters",
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                validate(raw(body.clone(), None)).unwrap_err(),
                want,
                "{body}"
            );
        }
        let err = validate(raw(with("plan", json!([])), Some(4))).unwrap_err();
        assert_eq!(err.field(), Some("events[4].plan"));
    }

    #[test]
    fn unknown_fields_are_counted_at_every_level() {
        let v = serde_json::json!({"site": "d", "type": "page_view", "event_id": "x", "ip": "1.2.3.4",
            "customer": {"email": "a@b.c", "phone": "123"}, "cart": {"items": [{"sku": "s", "color": "red"}]}});
        assert_eq!(validate(raw(v, None)).unwrap().unknown_fields, 3);
    }
}
