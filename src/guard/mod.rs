//! guard: who may enter. On accept, before TLS: `lists` (global and per listener), `bans` and the per-address
//! cap (`conns`), on the client address `connmeta`/`proxy` establish. Per request: the ban check (`jail`), the
//! route's `lists`, `access` (tenant, origin, server credential, the tenant's `lists`), `screen` (the `anomaly`
//! engine), `limit` (`ratelimit`), and after the answer the `behaviour` windows, whose crossed bounds and
//! anomaly blocks become bans in `jail`.

pub mod access;
pub mod admin;
pub mod anomaly;
pub mod bans;
pub mod behaviour;
pub mod connmeta;
pub mod conns;
pub mod jail;
pub mod limit;
pub mod lists;
pub mod proxy;
pub mod ratelimit;
pub mod screen;
