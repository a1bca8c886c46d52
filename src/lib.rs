//! # The path of a beacon through Tollgate
//!
//! A shop's page sends a cart or checkout event with `navigator.sendBeacon`. This is everything that happens
//! to it, in order, and the module that does it:
//!
//! 1. [`listener`] accepts the TCP connection, holding one of `limits.max_connections` permits, reads a PROXY
//!    protocol v2 header where enabled ([`guard::proxy`]) into a [`guard::connmeta::ConnMeta`], and refuses the
//!    connection before any TLS work if [`guard::lists`] (global and that listener's) refuse its address, the
//!    address is banned ([`guard::bans`]) or [`guard::conns`] finds it at its connection cap. It wraps the stream in [`http::idle`] so a
//!    silent peer cannot hold it, and watches it with [`http::activity`] so a peer that talks (HTTP/2 PINGs)
//!    but asks for nothing cannot either.
//! 2. [`tls`] terminates TLS 1.2/1.3 (rustls, AEAD suites, ALPN `h2` + `http/1.1`) within
//!    `timeouts.tls_handshake_ms`, with the certificate the snapshot's [`tls::sni`] table picks for the client's
//!    SNI (counted by kind in [`tls::metrics`], never logged). Plain HTTP only ever reaches [`http::redirect`]: `308` to HTTPS or `403`.
//! 3. [`http::public`] routes `POST /v1/events` (HTTP/1.1 or HTTP/2, header and stream bounds from config)
//!    once the request's client is not banned ([`guard::jail`]) and the route's [`guard::lists`] admit it,
//!    reads the body within its size and time bounds ([`http::body`]) and stamps HSTS on every answer. The
//!    same pipeline serves the pixel ([`http::pixel`], the body in `?d=`); [`http::cors`] answers preflights
//!    and grants allowed origins; [`http::script`] serves `beacon.js`, the script a shop pastes.
//! 4. [`event::decode`] turns the bytes into [`event::RawEvent`]s: UTF-8 JSON, depth, string, key and batch
//!    bounds, three body shapes (one event, an array, `{"events": [...]}`). While it parses it marks the
//!    string values a payload rule could match and notes a duplicated key. [`guard::screen`] then scores
//!    those strings, the user agent and the header facts with the [`guard::anomaly`] engine: `403
//!    anomaly_detected` at the threshold, and a ban ([`guard::jail`]).
//! 5. [`event::validate`] checks schema v1 into a typed [`event::ValidEvent`]; unknown keys are dropped and
//!    counted.
//! 6. [`guard::access`] admits the event only for a configured tenant: a browser (an `Origin`, or a `Referer`)
//!    from one of its allowed origins, or a server-side caller with the tenant's bearer secret from one of
//!    its server networks, and from the tenant's own networks. [`guard::limit`] then applies the rate limits
//!    of [`guard::ratelimit`] once per request and tenant (per address, per tenant, per address × tenant):
//!    `429` with `Retry-After`.
//! 7. [`event::minimize`] removes personal data: the e-mail becomes a keyed hash ([`keys`]), names and street
//!    go, age and postal code are generalized, the URL is scrubbed; the client IP is never an input. Only a
//!    [`event::MinimizedEvent`] can be built here, and only that type can be written.
//! 8. [`spool`] appends the request's events as one unit to the write-ahead log, each record with a header
//!    (site, event id, received time, route) and sealed with AES-256-GCM; the group-commit writer fsyncs,
//!    and only then does the request get its `204`. A full spool answers `503`, never drops.
//! 9. [`sink`] tasks, one per configured sink ([`sink::file`], `clickhouse`, `http`, `nats`), each read the
//!    spool with their own [`spool::Reader`] (only fsynced records, only those routed to them), send a batch,
//!    and only once the downstream said it is stored move their durable cursor; a failure is retried with
//!    backoff or, if refused for good, dead-lettered ([`sink::outcome`] decides). The spool deletes a segment
//!    once every sink has passed it.
//!
//! Anything refused on the way is a [`reject::Reject`], which picks the status, the JSON reason and the
//! metric label ([`metrics`]); 4xx answers, unknown sites and accepted event counts feed the address's
//! [`guard::behaviour`] windows, whose crossed bounds become bans. [`config`] turns the operator's TOML into
//! the runtime snapshot that [`app`] holds in an `ArcSwap` and hands to every stage; [`reload`] swaps in a new
//! snapshot on `SIGHUP`, `POST /admin/reload` or a changed file, one at a time and numbered; [`audit`] keeps a
//! hash-chained log of every state change (start, stop, reloads, bans, sinks); [`clock`] is injected so tests
//! control time.
//!
//! Beside the path: the admin listener ([`http::admin`], on its own thread and runtime so it answers while the
//! public side is saturated) serves `/healthz`, `/readyz` ([`readiness`]), `/admin/status`, `/metrics`,
//! reload and bans, behind [`guard::admin`] (source allow list, bearer token, `Host` check).

#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod event;
pub mod guard;
pub mod http;
pub mod keys;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod readiness;
pub mod reject;
pub mod reload;
pub mod sink;
pub mod spool;
pub mod tls;
