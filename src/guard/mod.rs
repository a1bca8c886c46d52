//! guard: who may enter. `access` checks the tenant and the browser origin; rate limits and anomaly scoring
//! join here as their own stages.

pub mod access;
pub mod anomaly;
pub mod connmeta;
pub mod conns;
pub mod limit;
pub mod lists;
pub mod proxy;
pub mod ratelimit;
pub mod screen;
