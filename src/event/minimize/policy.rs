//! policy: what minimization does to each field, compiled at config load. A profile maps every field Tollgate
//! knows ([`Field`], a closed list) to one [`Action`]; profiles start from the built-in defaults (the table in
//! the README) and a config overrides per field. Compilation checks that each action fits its field's type and
//! that a strict profile (used for `Sec-GPC: 1`, `DNT: 1` and `consent: false`) keeps no identifier at all.

use super::detect::{DetectorKind, Detectors};

/// The kind of value a field holds, which decides the actions that fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Url,
    EventId,
    Age,
    Count,
    Money,
    Timestamp,
    Bool,
    ClientIp,
    Country,
    UserAgent,
}

macro_rules! fields {
    ($($variant:ident => $path:literal, $kind:ident, $default:expr, $identifier:literal;)*) => {
        /// Every field a policy can name; its path is the config key and the `field` metric label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field { $($variant),* }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];
            pub const COUNT: usize = Field::ALL.len();

            pub fn path(self) -> &'static str {
                match self { $(Field::$variant => $path),* }
            }

            pub fn kind(self) -> ValueKind {
                match self { $(Field::$variant => ValueKind::$kind),* }
            }

            /// The built-in default action (DESIGN.md's minimization table).
            pub fn default_action(self) -> Action {
                match self { $(Field::$variant => $default),* }
            }

            /// Fields that identify a person, directly or as a join key; a strict profile must drop them.
            pub fn is_identifier(self) -> bool {
                match self { $(Field::$variant => $identifier),* }
            }
        }
    };
}

fields! {
    EventId => "event_id", EventId, Action::Redact, false;
    Ts => "ts", Timestamp, Action::Keep, false;
    PageUrl => "page_url", Url, Action::ScrubUrl, false;
    CustomerEmail => "customer.email", Text, Action::Hash, true;
    CustomerFirstName => "customer.first_name", Text, Action::Drop, true;
    CustomerAge => "customer.age", Age, Action::AgeBand, false;
    CartValue => "cart.value", Money, Action::Keep, false;
    CartCurrency => "cart.currency", Text, Action::Keep, false;
    ItemSku => "cart.items.sku", Text, Action::Redact, false;
    ItemName => "cart.items.name", Text, Action::Redact, false;
    ItemQty => "cart.items.qty", Count, Action::Keep, false;
    ItemPrice => "cart.items.price", Money, Action::Keep, false;
    TransactionId => "transaction.id", Text, Action::Redact, true;
    TransactionTotal => "transaction.total", Money, Action::Keep, false;
    TransactionCurrency => "transaction.currency", Text, Action::Keep, false;
    PlanId => "plan.id", Text, Action::Redact, false;
    PlanName => "plan.name", Text, Action::Redact, false;
    ShippingFirstName => "shipping.first_name", Text, Action::Drop, true;
    ShippingLastName => "shipping.last_name", Text, Action::Drop, true;
    ShippingStreet => "shipping.street", Text, Action::Drop, true;
    ShippingPostalCode => "shipping.postal_code", Text, Action::Prefix(2), false;
    ShippingRegion => "shipping.region", Text, Action::Redact, false;
    ShippingCountry => "shipping.country", Text, Action::Redact, false;
    Converted => "converted", Bool, Action::Keep, false;
    ClientIp => "client.ip", ClientIp, Action::Drop, true;
    ClientCountry => "client.country", Country, Action::Keep, false;
    UserAgent => "user_agent", UserAgent, Action::Keep, false;
}

impl Field {
    pub fn parse(path: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.path() == path)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Keep,
    Drop,
    /// HMAC-SHA256 with the tenant's active key over the NFKC, trimmed, lower-cased value → `<name>_hash`.
    Hash,
    /// Run the detectors, then keep the first n characters, never splitting a `[redacted:…]` marker.
    Truncate(usize),
    /// Run the detectors and replace what they find.
    Redact,
    /// Keep scheme, host and path (redacted), allowlisted query keys; drop userinfo and fragment.
    ScrubUrl,
    /// Age → `<name>_band` (`18-24` … `65+`).
    AgeBand,
    /// Text → `<name>_prefix`: its first n non-space characters, upper-cased.
    Prefix(usize),
    /// Timestamp floored to the hour or the day.
    Hour,
    Day,
    /// Money rounded to the nearest multiple of the step.
    Round(f64),
    /// Client IP → `client.ip_network`: its /24 (IPv4) or /48 (IPv6).
    Network,
}

pub const FIELD_COUNT: usize = Field::COUNT;

/// The `action` metric label: one of a closed set.
pub const ACTION_LABELS: &[&str] = &[
    "keep",
    "drop",
    "hash",
    "truncate",
    "redact",
    "scrub_url",
    "generalize",
];

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::Hash => "hash",
            Action::Truncate(_) => "truncate",
            Action::Redact => "redact",
            Action::ScrubUrl => "scrub_url",
            Action::AgeBand
            | Action::Prefix(_)
            | Action::Hour
            | Action::Day
            | Action::Round(_)
            | Action::Network => "generalize",
        }
    }

    pub fn label_index(self) -> usize {
        ACTION_LABELS
            .iter()
            .position(|l| *l == self.label())
            .unwrap_or(0)
    }

    /// `keep`, `drop`, `hash`, `redact`, `scrub_url`, `truncate:N`, `generalize:age_band`,
    /// `generalize:prefix:N`, `generalize:hour`, `generalize:day`, `generalize:round:STEP`, `generalize:network`.
    pub fn parse(text: &str) -> Result<Action, String> {
        let number = |n: &str| n.parse::<usize>().ok().filter(|n| (1..=2048).contains(n));
        let parts: Vec<&str> = text.split(':').collect();
        let action = match parts.as_slice() {
            ["keep"] => Action::Keep,
            ["drop"] => Action::Drop,
            ["hash"] => Action::Hash,
            ["redact"] => Action::Redact,
            ["scrub_url"] => Action::ScrubUrl,
            ["truncate", n] => Action::Truncate(number(n).ok_or("truncate:N needs N in 1..=2048")?),
            ["generalize", "age_band"] => Action::AgeBand,
            ["generalize", "prefix", n] => {
                Action::Prefix(number(n).ok_or("generalize:prefix:N needs N in 1..=2048")?)
            }
            ["generalize", "hour"] => Action::Hour,
            ["generalize", "day"] => Action::Day,
            ["generalize", "round", step] => Action::Round(
                step.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or("generalize:round:STEP needs a positive number")?,
            ),
            ["generalize", "network"] => Action::Network,
            _ => return Err(format!("unknown action {text:?}")),
        };
        Ok(action)
    }

    /// Whether this action can apply to a value of `kind`.
    pub fn fits(self, kind: ValueKind) -> bool {
        use ValueKind as K;
        match (self, kind) {
            (Action::Drop, K::EventId) => false,
            (Action::Keep | Action::Drop, K::ClientIp) => self == Action::Drop,
            (Action::Network, K::ClientIp) => true,
            (Action::Keep | Action::Drop, _) => true,
            (Action::Hash | Action::Truncate(_) | Action::Redact | Action::Prefix(_), K::Text) => {
                true
            }
            (Action::Truncate(_) | Action::Redact | Action::ScrubUrl | Action::Hash, K::Url) => {
                true
            }
            (Action::Redact, K::EventId) => true,
            (Action::AgeBand, K::Age) => true,
            (Action::Hour | Action::Day, K::Timestamp) => true,
            (Action::Round(_), K::Money) => true,
            _ => false,
        }
    }
}

/// A compiled profile: one action per field, the detectors that `redact` runs, the query keys `scrub_url` keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    actions: Vec<Action>,
    pub detectors: Detectors,
    /// Query keys kept by `scrub_url`; a trailing `*` matches any suffix (`utm_*`).
    pub url_query_allow: Vec<String>,
}

impl Profile {
    /// The built-in `default` profile.
    pub fn builtin_default() -> Profile {
        Profile {
            name: "default".into(),
            actions: Field::ALL.iter().map(|f| f.default_action()).collect(),
            detectors: Detectors::all(),
            url_query_allow: vec!["utm_*".into()],
        }
    }

    /// The built-in `strict` profile: the default with every identifier dropped.
    pub fn builtin_strict() -> Profile {
        let mut p = Profile::builtin_default();
        p.name = "strict".into();
        for f in Field::ALL.iter().filter(|f| f.is_identifier()) {
            p.actions[f.index()] = Action::Drop;
        }
        p
    }

    pub fn action(&self, field: Field) -> Action {
        self.actions[field.index()]
    }

    pub fn set(&mut self, field: Field, action: Action) {
        self.actions[field.index()] = action;
    }

    /// Problems that make this profile unfit to be a strict profile (no identifiers, hashed or not).
    pub fn strict_violations(&self) -> Vec<String> {
        Field::ALL
            .iter()
            .filter_map(|&f| {
                let a = self.action(f);
                if f.is_identifier() && a != Action::Drop {
                    Some(format!(
                        "{}: identifier must be \"drop\" in a strict profile",
                        f.path()
                    ))
                } else if a == Action::Hash {
                    Some(format!(
                        "{}: \"hash\" keeps an identifier; not allowed in a strict profile",
                        f.path()
                    ))
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn query_key_allowed(&self, key: &str) -> bool {
        self.url_query_allow
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => key == p,
            })
    }
}

/// Parses a list of detector labels.
pub fn detectors(labels: &[String]) -> Result<Detectors, String> {
    labels.iter().try_fold(Detectors::none(), |d, l| {
        DetectorKind::parse(l)
            .map(|k| d.with(k))
            .ok_or_else(|| format!("unknown detector {l:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_parsing_table() {
        let ok = [
            ("keep", Action::Keep),
            ("drop", Action::Drop),
            ("hash", Action::Hash),
            ("redact", Action::Redact),
            ("scrub_url", Action::ScrubUrl),
            ("truncate:8", Action::Truncate(8)),
            ("generalize:age_band", Action::AgeBand),
            ("generalize:prefix:3", Action::Prefix(3)),
            ("generalize:hour", Action::Hour),
            ("generalize:day", Action::Day),
            ("generalize:round:10", Action::Round(10.0)),
            ("generalize:network", Action::Network),
        ];
        for (text, want) in ok {
            assert_eq!(Action::parse(text), Ok(want), "{text}");
        }
        for bad in [
            "hsah",
            "truncate",
            "truncate:0",
            "truncate:x",
            "generalize",
            "generalize:round:-1",
            "keep:1",
        ] {
            assert!(Action::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_fit_their_fields_and_strict_is_strict() {
        for &f in Field::ALL {
            assert!(f.default_action().fits(f.kind()), "{}", f.path());
            assert_eq!(Field::parse(f.path()), Some(f));
        }
        assert!(!Profile::builtin_default().strict_violations().is_empty());
        assert_eq!(
            Profile::builtin_strict().strict_violations(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn client_ip_can_never_be_kept() {
        assert!(!Action::Keep.fits(ValueKind::ClientIp));
        assert!(!Action::Hash.fits(ValueKind::ClientIp));
        assert!(Action::Network.fits(ValueKind::ClientIp));
        assert!(!Action::Drop.fits(ValueKind::EventId));
        assert!(!Action::AgeBand.fits(ValueKind::Text));
    }
}
