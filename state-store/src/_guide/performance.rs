//! Performance: what makes the Redis backend faster than the `redis` crate called by hand, and what
//! each call sends.
//!
//! Two things make the Redis backend faster than the `redis` crate called by hand, with nothing to
//! change in handlers: read batching and the client-side cache.
//!
//! # Read batching
//!
//! On by default. Concurrent `get`s of one backend (any types) that arrive while another read is in
//! flight wait for it and then go out together as one `MGET`, up to `RedisOptions::read_batch` keys
//! (128; `read_batch(0)` turns it off). A `get` that finds no read in flight goes out at once as a
//! plain `GET`: a lone caller waits for nothing, and there is no timer. A key asked twice in a
//! batch is fetched once. Each caller still gets what a `GET` would have answered: its value,
//! `None`, its own decode error, or `InvalidKey` for a key holding a hash (`MGET` says nil for
//! those, so the keys a batch finds nil are asked their `TYPE`: one more round trip, only for the
//! missing keys of a batch). When the connection breaks under a read, the reads queued behind it
//! fail with it. On a Cluster batching is off: a batch would span nodes, and one failing primary
//! would fail the reads of the healthy ones.
//!
//! # Client-side cache
//!
//! For types declared with `cache`, on a single server (not a Cluster nor Sentinel). For state read
//! often and written rarely (feature flags, configuration, a tenant's settings):
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! #[derive(Clone, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "config", id = String, cache)]
//! pub struct FeatureFlags { pub checkout_v2: bool }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # // On the memory backend `cache` is accepted and every read goes to the engine.
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # store.set::<FeatureFlags>("shop", &FeatureFlags { checkout_v2: true }).await?;
//! # assert!(store.get::<FeatureFlags>("shop").await?.unwrap().checkout_v2);
//! # Ok(())
//! # }
//! ```
//!
//! The backend keeps the decoded value (a hit is a clone, with no round trip and no JSON decode)
//! and drops it when the server says the key changed: a dedicated RESP3 connection runs `CLIENT
//! TRACKING ON BCAST NOLOOP PREFIX {namespace}:config:`, so a write by any client anywhere
//! invalidates every cached copy.
//!
//! - A value read after the invalidation of a write has arrived is never the older value: a read is
//!   kept only if no invalidation of its key arrived while it was in flight.
//! - A task never reads back a value older than its own completed write: this backend's writes of a
//!   cached key drop it before they are sent and again when answered, without waiting for the
//!   server (and go through the tracking connection, so the server sends no invalidation for them).
//! - When the tracking connection breaks, or the server restarts or flushes, everything is dropped,
//!   and nothing is kept until tracking is on again. A tracking connection that falls silent
//!   without closing (a NAT or a load balancer that forgot the flow) is found by a `PING` every 5
//!   s: unanswered within the larger of the connect and response timeouts (2 s each by default), it
//!   counts as broken. So a lost invalidation keeps a stale value for at most about 5 s plus that
//!   timeout (`a_silent_tracking_connection_is_found_by_its_keep_alive`, through a proxy that
//!   swallows the connection's bytes).
//! - An entry lives at most as long as its key's remaining ttl; at most
//!   `RedisOptions::client_cache` entries (10,000; 0 turns the cache off), the oldest dropped
//!   first. Missing keys are not cached.
//! - Written by another client, a key is stale in this client for as long as the invalidation takes
//!   to arrive (a round trip on loopback). Reads that must see the newest value everywhere use a
//!   type without `cache`.
//! - On a Cluster, through Sentinel and on the memory backend, `cache` is accepted and reads go to
//!   the engine as for any type.
//!
//! Built on the connection's push messages rather than the `redis` crate's own `cache-aio`, whose
//! 1.8 release is experimental and can keep a value read while its invalidation arrived.
//! `tests/cache.rs` checks each rule against a real server.
//!
//! # What one call sends
//!
//! What one call costs (checked by a test with `MONITOR`, `every_call_is_one_round_trip`):
//!
//! | call | round trips | commands sent |
//! |---|---|---|
//! | `get`, `set`, `set_if_absent`, `remove`, `ttl` | 1 | `GET`; `SET PX`; `SET NX PX`; `DEL`; `PTTL` |
//! | `get_many(ids)` | 1 | one `MGET` |
//! | `set_many(items)` | 1 | `MULTI`, one `SET PX` per item, `EXEC`, written as one pipeline |
//! | `incr`, `check` | 1 | `EVALSHA` (the script's commands run inside it) |
//! | `set`, `set_many` of a `notify` type | 1 | `MULTI`, `SET PX` and `PUBLISH` per item, `EXEC` |
//! | `set_if_absent`, `remove`, `remove_many` of a `notify` type | 1 | `EVALSHA` (write and `PUBLISH` inside it) |
//! | `update` | 2 per attempt | `GET`, then `EVALSHA` (compare-and-set on the value's SHA-1: the old value is not sent back); `GET`, then `SET NX PX` when it creates the key |
//! | the first script call after a server restart or `SCRIPT FLUSH` | 3 | `EVALSHA` (fails with `NOSCRIPT`), `SCRIPT LOAD`, `EVALSHA` |
//!
//! The measured throughput of each (against the raw `redis` crate, `redis-benchmark`, and with and
//! without these two) is in `BENCHMARKS.md`, with how to reproduce it.
