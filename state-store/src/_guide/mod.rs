//! The guide: how to use `state-store`, one chapter per topic.
//!
//! The reference is the rest of these docs ([`Store`](crate::Store), [`StateKey`](crate::StateKey),
//! [`Backend`](crate::Backend), ...); the chapters here say how the pieces fit and which one a task
//! needs. Every code block is a doctest: those on the embedded memory backend run as they are, and
//! those that need a Redis or NATS server are compiled but not run (each says so).
//!
//! # Ten lines
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{AnyBackend, StateKey, Store};
//! #[derive(Debug, Clone, Default, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "session", id = u64, ttl = "30m")]            // key `session:{id}`, 30 min expiry
//! pub struct Session { pub cart: Vec<String> }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # // SAFETY of the example: a doctest runs alone in its process.
//! # unsafe { std::env::remove_var("REDIS_URL") };
//! let store = Store::new(AnyBackend::from_env("REDIS_URL").await?) // Redis when set, else memory
//!     .namespace("user-service")                                    // user-service:session:42
//!     .enable_set();                                                // writes are opt-in
//! store.set::<Session>(42, &Session::default()).await?;             // SET ... PX 1800000
//! let session: Option<Session> = store.get::<Session>(42).await?;   // `get::<Session>("42")`: compile error
//! store.update::<Session>(42, |s| s.map(|mut s| { s.cart.push("book".into()); s })).await?; // compare-and-set
//! # assert!(session.is_some());
//! # assert_eq!(store.get::<Session>(42).await?.unwrap().cart, ["book"]);
//! # Ok(())
//! # }
//! ```
//!
//! `update`, not a `get` then a `set`: a read-modify-write in two calls loses a concurrent change.
//! [`patterns`] shows the atomic way to do counters, rate limits, job status, sliding expiry and
//! bulk calls.
//!
//! # Chapters
//!
//! Using the store:
//! - [`declaring_state`]: the `#[state(...)]` attribute, keys, ids, choosing the backend at run
//!   time, errors.
//! - [`coming_from_redis`]: the same task with raw `redis` calls, with `redis-macros`, and here.
//! - [`patterns`]: counters, rate limits, compare-and-set, sliding expiry, bulk calls, listing ids:
//!   each one atomic step, where a `get` then a `set` would lose updates.
//! - [`web_services`]: sessions, rate limits and jobs in an HTTP service; the tower layer.
//! - [`watching`]: change feeds (`#[state(notify)]`, `watch`, `follow`).
//! - [`changes_not_lost`]: journals (`history = N`) that a reader resumes from a cursor, and
//!   worker groups that share every change (`journal`, `consume`); `watch`, `journal` and
//!   `consume` side by side.
//! - [`leases`]: one worker holds a piece of work; fencing tokens stop a late write.
//! - [`changing_types`]: adding and renaming fields, `previous` types and `migrate`.
//!
//! Running it:
//! - [`production_redis`]: one server, TLS, Cluster, Sentinel, connecting, ACL users, memory
//!   limits, what is in Redis, Valkey.
//! - [`durability`]: persistence, and `#[state(durable)]` writes that survive a failover.
//! - [`performance`]: read batching, the client-side cache, what each call sends.
//! - [`observability`]: the spans and events of the `tracing` feature.
//! - [`nats`]: NATS JetStream key-value buckets as the engine, and how they differ from Redis.
//!
//! Extending it:
//! - [`writing_a_backend`]: the `Backend` contract, what each engine overrides, the conformance
//!   suite.
//!
//! Benchmark figures are in `BENCHMARKS.md` in the repository (`cargo run --release --example
//! bench` reproduces them).

// A chapter is a file of `//!` docs only, compiled for rustdoc and its doctests and never into a
// user's build. A new chapter: a file here, a `pub mod` line below, a line in the list above.

pub mod changes_not_lost;
pub mod changing_types;
pub mod coming_from_redis;
pub mod declaring_state;
pub mod durability;
pub mod leases;
pub mod nats;
pub mod observability;
pub mod patterns;
pub mod performance;
pub mod production_redis;
pub mod watching;
pub mod web_services;
pub mod writing_a_backend;
