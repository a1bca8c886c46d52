//! `[guard]`: the rate limits, validated into their runtime form.

use std::num::NonZeroU32;

use super::file::{QuotaFile, RateLimitFile};
use super::validate::Errors;
use crate::guard::ratelimit::{Mode, Quota, RateLimits};

pub(super) fn ratelimit(f: &RateLimitFile, errs: &mut Errors) -> RateLimits {
    let mode = match f.mode.as_str() {
        "enforce" => Mode::Enforce,
        "detect" => Mode::Detect,
        other => {
            errs.push(
                "guard.ratelimit.mode",
                format!("{other:?} is not \"enforce\" or \"detect\""),
            );
            Mode::Enforce
        }
    };
    if f.max_keys > 10_000_000 {
        errs.push(
            "guard.ratelimit.max_keys",
            format!("{} is out of range 0..=10000000", f.max_keys),
        );
    }
    RateLimits {
        per_address: quota("per_address", f.per_address.as_ref(), errs),
        per_tenant: quota("per_tenant", f.per_tenant.as_ref(), errs),
        per_address_tenant: quota("per_address_tenant", f.per_address_tenant.as_ref(), errs),
        max_keys: f.max_keys as usize,
        mode,
    }
}

fn quota(name: &str, q: Option<&QuotaFile>, errs: &mut Errors) -> Option<Quota> {
    let q = q?;
    let mut field = |key: &str, v: u64| {
        let n = u32::try_from(v)
            .ok()
            .and_then(NonZeroU32::new)
            .filter(|n| n.get() <= 10_000_000);
        if n.is_none() {
            errs.push(
                format!("guard.ratelimit.{name}.{key}"),
                format!("{v} is out of range 1..=10000000"),
            );
        }
        n
    };
    let (rate, burst) = (field("rate_per_s", q.rate_per_s), field("burst", q.burst));
    Some(Quota {
        rate_per_s: rate?,
        burst: burst?,
    })
}
