//! Typed service state in Redis: declare a state type once, and the compiler checks every key and
//! value your handlers read and write.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use state_store::{MemoryBackend, StateKey, Store};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "session", id = u64, ttl = "30m")]
//! pub struct Session {
//!     pub cart: Vec<String>,
//!     pub updated_at: i64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! // The in-memory backend here; `RedisBackend::connect(url).await?` in production.
//! let store = Store::new(MemoryBackend::new())
//!     .namespace("user-service")
//!     .enable_set()
//!     .enable_remove();
//!
//! let session = Session { cart: vec!["book".into()], updated_at: 1 };
//! store.set::<Session>(42, &session).await?; // stored at `user-service:session:42`, 30 min ttl
//! assert_eq!(store.get::<Session>(42).await?, Some(session));
//! assert!(store.ttl::<Session>(42).await?.is_some());
//! assert!(store.remove::<Session>(42).await?);
//! # Ok(())
//! # }
//! ```
//!
//! `store.get::<Session>("42")` or `store.set::<Session>(42, &other_type)` does not compile: the
//! id type and the value type come from the `#[state]` declaration.
//!
//! # Pieces
//! - [`StateKey`] (trait and derive): a type's prefix, id type and ttl.
//! - [`Store`]: the typed API. Reads are on; writes ([`Store::enable_set`]) and deletes
//!   ([`Store::enable_remove`]) are opt-in. An optional namespace prefixes every key.
//! - [`Backend`]: where bytes live, a small core of five methods with everything else built on
//!   it ([`backend`] says how to write one). [`MemoryBackend`] (embedded, same semantics,
//!   tokio's clock) and `RedisBackend` (feature `redis`: JSON values, expiry in the same `SET`
//!   command as the value, one reconnecting multiplexed connection, timeouts in seconds).
//! - [`AnyBackend`]: a backend chosen at run time, from a URL or the environment, so handlers
//!   are written once for `Store<AnyBackend>`.
//! - [`Store::watch`]: the typed change feed of a type declared with `#[state(notify)]`, a
//!   stream of [`Change`]s (Redis pub/sub, or in process on the memory backend).
//! - [`Store::usage`]: what a namespace holds, per prefix ([`Usage`]): keys, estimated bytes,
//!   keys without expiry and the spread of remaining ttls, walked with `SCAN` within a time
//!   limit.
//! - [`Error`]: one error type; decode errors carry the key and serde's message.
//!
//! The [guide](_guide) has a chapter per topic: declaring state, patterns, watching, leases,
//! changing types, production Redis, durability, NATS, writing a backend, and more.
//!
//! # Features
//! - `redis` (default): `RedisBackend`, through the `redis` crate. Without it
//!   (`default-features = false`) the typed API and the memory backend build alone.
//! - `tls`: `rediss://` URLs, a private CA and client certificates (`RedisOptions::tls_root_cert`,
//!   `tls_client_cert`), through rustls with the `ring` provider; no OpenSSL.
//! - `cluster`: `RedisBackend::cluster`, for a Redis Cluster (multi-key operations split per hash
//!   slot, `ids` over every primary, expiry events from every node).
//! - `sentinel`: `RedisBackend::sentinel`, for a primary found through Redis Sentinel and found
//!   again after a failover.
//! - `redis-full`: `tls`, `cluster` and `sentinel` together.
//! - `nats`: `NatsBackend`, state in NATS JetStream key-value buckets through `async-nats`.
//! - `uuid`: `uuid::Uuid` as an id type (`id = Uuid`), hyphenated lowercase in the key.
//! - `tower`: `RateLimitLayer`, a tower layer that checks a [`RateLimit`] type per HTTP
//!   request and answers 429 with `Retry-After` and the `RateLimit-*` headers.
//! - `axum`: [`Error`] implements axum's `IntoResponse` (409, 500, or 503 with `Retry-After`;
//!   a short JSON body that never shows a key or a password).
//! - `metrics`: call durations, cache hits and misses, read batch sizes, missed changes and
//!   reconnections through the `metrics` crate's facade, for any exporter (the `metrics` module).
//! - `conformance`: the conformance suite (`state_store::conformance`), for testing a backend of
//!   your own.
//!
//! # Keys
//! A value is stored at `{namespace}:{prefix}:{id}`, or `{prefix}:{id}` without namespace.
//! Integers are written in decimal, tuple parts are joined by `:`, and in strings `%`, `:`, `*`,
//! `?`, `[`, `]`, `\`, `{`, `}`, space and ASCII control characters are percent-encoded
//! (`%3A`), so ids never collide and never act as glob patterns. See [`StateId`].
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derive's generated code names `::state_store`; this lets the crate's own state types (the
// conformance suite's) use the derive too.
extern crate self as state_store;

// Docs only: compiled for rustdoc and its doctests, never into a user's build.
#[cfg(any(doc, doctest))]
pub mod _guide;
mod any;
#[cfg(feature = "axum")]
mod axum;
pub mod backend;
mod backends;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
mod id;
mod key;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod rate_limit;
mod setters;
mod store;
#[cfg(feature = "tower")]
mod tower;

/// The prefix and namespace character set and the ttl ceiling: the same source the derive
/// checks with, so that a type that compiles is a type every write accepts.
#[allow(dead_code)]
mod rules {
    state_store_derive::__rules!();
}

pub use any::AnyBackend;
pub use backend::usage::{
    MAX_PREFIXES, PrefixUsage, ProgressFn, SampleSlot, TtlSpread, Usage, UsageOptions,
    UsageProgress, UsageTally,
};
pub use backend::{
    Backend, BackendExt, ConsumeOptions, Cursor, Durability, Expiry, ParseCursorError, Position,
    PutMode, Version, Versioned,
};
pub use backends::memory::MemoryBackend;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use backends::nats::{NatsBackend, NatsOptions};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use backends::redis::{RedisBackend, RedisConnection, RedisOptions};
pub use error::{BoxError, Error, Result};
pub use id::{IdArg, IdError, KeyParts, StateId, id_from_key, id_to_key};
pub use key::{Counter, Journaled, Key, Leased, Notified, StateKey};
pub use rate_limit::{Decision, Policy, Quota, RateLimit};
pub use state_store_derive::StateKey;
pub use store::{Change, Changes, Follow};
pub use store::{Consumer, Delivery, Entry, Journal};
pub use store::{Fenced, Holder, KeepAlive, Lease};
pub use store::{Item, MigrateOptions, MigrateReport, SetOptions, Store, UpdateOptions, Updated};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use tower::{OnError, RateLimitLayer, RateLimitService};

/// Re-exported so that reading [`Store::ids`] and [`Store::watch`] streams needs no other
/// crate: `use state_store::StreamExt;` brings `next()`.
pub use futures_core::Stream;
pub use futures_util::StreamExt;

/// Re-exported so that `RedisBackend::from_client` callers use the same `redis` version.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;

/// Re-exported so that `NatsBackend::from_client` callers use the same `async-nats` version.
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use async_nats;

/// Paths for the code `#[derive(StateKey)]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::key::{Counter, Journaled, Key, Leased, Notified, StateKey};
    pub use core::clone::Clone;
    pub use core::convert::From;
    pub use core::option::Option::{self, None, Some};
    pub use core::result::Result;
    pub use core::time::Duration;
    pub use serde_json::{Error as JsonError, from_slice};
}
