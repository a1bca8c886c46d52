//! The `clickhouse` sink: each batch is one `INSERT … FORMAT JSONEachRow` over ClickHouse's HTTP interface,
//! gzip-compressed, over one kept-alive connection ([`super::client`]). Works with ClickHouse 18.16 (the
//! Debian 12 package) and later.
//!
//! What it guarantees: a batch counts as stored only when ClickHouse answered `2xx` **and** reported no
//! exception — neither in `X-ClickHouse-Exception-Code` (newer servers) nor as a `Code: N` text in the body
//! (18.16 sends no such header, and an error after the status line arrives as a `200` whose body names it).
//! [`outcome::classify`] is the one place that maps exception codes: rows ClickHouse cannot parse are
//! dead-lettered; a busy server, a missing table or database and refused credentials are retried (an
//! operator fixes those, and dead-lettering every batch meanwhile would be wrong); other statuses follow
//! [`super::outcome::classify_http`]. A retried batch is the same rows again, and the table collapses them:
//!
//! ```sql
//! CREATE TABLE tollgate.events (
//!     site        String,
//!     event_id    String,
//!     received_ms Int64,
//!     type        String,
//!     record      String   -- the whole minimized event as JSON text, so new fields never break inserts
//! ) ENGINE = ReplacingMergeTree()
//! PARTITION BY toYYYYMM(toDate(intDiv(received_ms, 1000)))
//! ORDER BY (site, event_id)
//! ```
//!
//! Duplicates of a retried batch collapse at merge time; `SELECT … FINAL` collapses them at read time.
//! Each row is `{"site", "event_id", "received_ms", "type", "record"}`; the insert sets
//! `input_format_skip_unknown_fields=1`, so a table without `type` (or with extra columns that have
//! defaults) still accepts it. Credentials go in `X-ClickHouse-User` / `X-ClickHouse-Key`, never in the URL.

mod config;
mod encode;
pub mod outcome;
mod service;

pub use config::{insert_target, SETTINGS};
pub use encode::rows;
pub use service::ClickHouseSink;
