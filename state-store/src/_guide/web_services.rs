//! In a web service: sessions, a rate limit and jobs behind HTTP, and the tower layer.
//!
//! `examples/axum_service.rs` is an axum service with the three uses of
//! [patterns](super::patterns): a session per user (login, reading the cart with
//! [`get_and_touch`](crate::Store::get_and_touch), adding to it with
//! [`update`](crate::Store::update)), a per-client rate limit, and jobs (created with
//! [`set_if_absent`](crate::Store::set_if_absent), moved queued -> running -> done by a background
//! worker with `update`). It picks the backend at run time (memory, or Redis when `REDIS_URL` is
//! set); `tests/axum_service.rs` drives it over HTTP on both.
//!
//! ```sh
//! cargo run --example axum_service                                  # 127.0.0.1:3000 (PORT), memory
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_service
//! ```
//!
//! Handlers take `&Store<AnyBackend>` (or a `Store<B>` generic over the backend), cloned into the
//! router's state: clones share one backend and, on Redis, one connection.
//!
//! With the feature `axum`, a handler returns `Result<_, state_store::Error>` and `?` turns a store
//! error into a response: 409 for a lost race or lease, 503 with `Retry-After` when the store is
//! unreachable, 500 otherwise, with a short `{"error": ...}` body that never shows a key or a
//! password (the table is on `Error`'s `IntoResponse` impl; the error itself rides in the
//! response's extensions, for a logging layer). The example's `GET /jobs/{id}/events` streams a
//! job as server-sent events from [`follow`](crate::Store::follow): the job as it is, then each new
//! status, with nothing lost between the read and the subscription.
//!
//! # The rate-limit layer
//!
//! Its rate limit is `RateLimitLayer` (feature `tower`), for any tower stack: a
//! [`RateLimit`](crate::RateLimit) type, the store, and a closure that takes the key from the
//! request's parts (`None`: not limited).
//!
//! ```
//! # #[cfg(feature = "tower")]
//! # mod layer {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use serde::{Deserialize, Serialize};
//! use state_store::{MemoryBackend, OnError, Policy, Quota, RateLimit, RateLimitLayer, StateKey, Store};
//! use tower::ServiceBuilder;
//!
//! #[derive(Serialize, Deserialize, StateKey)]
//! #[state(prefix = "api-rate", id = String, counter)]
//! struct ApiRate(i64);
//!
//! impl RateLimit for ApiRate {
//!     const QUOTA: Quota = Quota::per_second(10).allow_burst(20);
//!     const POLICY: Policy = Policy::Smooth;
//! }
//!
//! # pub fn build() {
//! let store = Store::new(MemoryBackend::new()).namespace("api").enable_set();
//! let limit = RateLimitLayer::<ApiRate, _, _>::new(store.clone(), |request| {
//!     let key = request.headers.get("x-api-key")?.to_str().ok()?;
//!     Some(key.to_string())
//! })
//! .on_error(OnError::FailClosed);   // the default: 503 when the store fails; or FailOpen
//! // With axum: `Router::new().route("/jobs", post(create_job)).layer(limit)`.
//! let service = ServiceBuilder::new().layer(limit).service_fn(|_: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new("hello".to_string()))
//! });
//! # let _ = service;
//! # }
//! # }
//! # #[cfg(feature = "tower")]
//! # layer::build();
//! ```
//!
//! A refused request gets `429 Too Many Requests` with `Retry-After` and never reaches the handler;
//! every checked response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
//! (the IETF draft "RateLimit header fields for HTTP"; seconds, rounded up). Unlike
//! `tower_governor`, whose counts live in each process, the counts live in the store: on Redis
//! every instance of the service shares one limit, at one round trip per request. The layer's own
//! docs (`RateLimitLayer`, feature `tower`) show a request refused, and the headers.
