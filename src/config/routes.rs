//! Routing and residency: which sinks each tenant's events go to. A tenant names its sinks, or gets every
//! sink its region allows; a tenant with a region may only route to sinks of that same region, so EU data
//! cannot be configured onto non-EU storage. The result is fixed into each record at ingest.

use std::collections::HashMap;
use std::sync::Arc;

use super::file::TenantFile;
use super::sinks::SinkConfig;
use super::validate::Errors;
use super::Tenant;
use crate::spool::Route;

pub(super) fn routes(
    files: &[TenantFile],
    mut tenants: HashMap<String, Tenant>,
    sinks: &[SinkConfig],
    errs: &mut Errors,
) -> HashMap<String, Tenant> {
    for (i, t) in files.iter().enumerate() {
        let at = format!("tenants[{i}]");
        let region = t.region.as_deref();
        let names: Vec<String> = match &t.sinks {
            Some(names) => {
                for (j, name) in names.iter().enumerate() {
                    let path = format!("{at}.sinks[{j}]");
                    match sinks.iter().find(|s| &s.name == name) {
                        None => errs.push(path, format!("no sink named {name:?}")),
                        Some(s) if region.is_some() && s.region.as_deref() != region => errs.push(
                            path,
                            format!(
                                "tenant region {:?} may not route to sink {name:?} in region {:?} (data residency)",
                                region.unwrap_or_default(),
                                s.region.as_deref().unwrap_or("none")
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                names.clone()
            }
            None => sinks
                .iter()
                .filter(|s| region.is_none() || s.region.as_deref() == region)
                .map(|s| s.name.clone())
                .collect(),
        };
        if names.is_empty() && !sinks.is_empty() {
            errs.push(
                format!("{at}.sinks"),
                format!(
                    "no sink accepts this tenant's events (region {:?})",
                    region.unwrap_or("none")
                ),
            );
        }
        if let Some(tenant) = tenants.get_mut(&t.site) {
            tenant.route = Arc::new(Route::Only(names));
        }
    }
    tenants
}
