//! NATS JetStream KV as the engine: connecting, how state is laid out, durable types, and how it
//! differs from Redis.
//!
//! The block that connects is compiled, not run (`no_run`): it needs a `nats-server -js` and the
//! `nats` feature.
//!
//! ```no_run
//! # #[cfg(feature = "nats")]
//! # async fn connect() -> state_store::Result<()> {
//! use state_store::{AnyBackend, NatsBackend, Store};
//!
//! let store = Store::new(NatsBackend::connect("nats://127.0.0.1:4222").await?)   // feature `nats`
//!     .namespace("user-service")
//!     .enable_set();
//! let backend = AnyBackend::connect("nats://127.0.0.1:4222").await?;   // or chosen at run time
//! # let _ = (store, backend);
//! # Ok(())
//! # }
//! ```
//!
//! `NatsBackend::connect_with(url, NatsOptions::new().connect_timeout(..).request_timeout(..)
//! .durable_replicas(..).client_options(async_nats::ConnectOptions::...))` takes timeouts,
//! credentials (user and password or a token in the URL, or `async-nats` options) and the replicas
//! of durable types; `NatsBackend::from_client` wraps a connected `async_nats::Client`. The servers
//! of a cluster go in one URL, comma-separated (`nats://a:4222,nats://b:4222,nats://c:4222`): the
//! client connects to one and moves to another when it is lost. The server must run JetStream
//! (`nats-server -js`).
//!
//! # Layout
//!
//! One bucket per state type and namespace, with history 1 and file storage: `user-service:session`
//! is bucket `user-service__session` (`:` as `__`, `_` as `_u`, `.` as `_d`), and the escaped id is
//! the key in it, with every byte outside `[-/_a-zA-Z0-9]` written `=XX` and the empty id as `=`
//! (`job:a%3Ab:7` is key `a=253Ab=3A7` of bucket `job`). The mapping is reversible, so `ids()`
//! parses every id back and two ids never share a key. `Store` tells the backend each type's prefix
//! and ttl before a call (`KeyLayout::declare`, which other engines do not have).
//!
//! # Durable types
//!
//! JetStream acknowledges a write once a majority of its stream's replicas stored it, so on NATS
//! `#[state(durable)]` is a matter of replicas: a durable type's bucket is created with
//! `NatsOptions::durable_replicas(n)` replicas, by default 3 when the server connected to is part
//! of a cluster (its `INFO` names one) and 1 on a server alone; other types' buckets have one. With
//! several replicas the bucket answers no direct gets, so reads go to the stream's leader: with
//! them any replica answers, and on NATS 2.9.10 10 of 3,000 reads right after their write were
//! stale or missing. A durable type's bucket found with fewer replicas (made before the type was
//! durable) has them raised, and direct gets turned off, at its first durable write or removal (the
//! stream moves to a new group of servers for about 150 ms, which that write waits out); reads
//! never change a bucket, and no bucket loses replicas. A count the servers cannot give (above 1 on
//! a server alone, more than the cluster's JetStream servers, more than 5) is `Error::Backend`
//! (`create bucket` or `raise bucket replicas`) and writes nothing. There is no `NotDurable` on
//! NATS: a write a majority did not store is not acknowledged at all (a timeout, which may or may
//! not stand, or "no stream found" while the stream has no leader).
//!
//! Measured by `tests/nats_cluster.rs` (three `nats-server` 2.9.10 on one machine, debug build; 8
//! writers of a durable type through one store connected to all three; after 1 s the bucket's
//! stream leader, moved off the server the client is connected to, is SIGKILLed; writing goes on
//! until writes sent after the kill have been acknowledged for 2 s, then every acknowledged write
//! is read back):
//!
//! | run | acknowledged | lost | failed (of them timed out / stored all the same) | writes acknowledged again after the kill |
//! |---|---|---|---|---|
//! | 1 | 16,874 | **0** | 1,577 (0 / 0) | 4.5 s |
//! | 2 | 13,841 | **0** | 2,798 (0 / 0) | 7.9 s |
//! | 3 | 15,918 | **0** | 1,411 (7 / 3) | 5.7 s |
//! | 4 | 15,770 | **0** | 1,328 (8 / 1) | 5.8 s |
//! | 5 | 13,762 | **0** | 968 (8 / 0) | 4.8 s |
//! | 6 | 10,365 | **0** | 2,403 (0 / 0) | 6.9 s |
//!
//! Every acknowledged write was there; the failures are the leader change (`no stream found for
//! given subject` until a new leader is elected, about 4 to 8 s with NATS 2.9's election timeouts,
//! and the few writes in flight at the kill timing out, some of which stood). A plain type's
//! bucket, with one replica, is on one server: its writes fail while that server is down.
//!
//! # Differences from Redis
//!
//! On NATS 2.9; each difference is a declared capability of the conformance suite
//! (`tests/nats.rs`):
//!
//! | | Redis | NATS JetStream KV |
//! |---|---|---|
//! | expiry | per key, in milliseconds | the bucket's `max_age`: a type's `ttl`; `set_with_ttl` with another duration, or no expiry under a type with one, is `Error::Unsupported` (`set_with_ttl`, `NatsBackend`) and writes nothing |
//! | `update`, `incr`, a fixed window's later counts | keep the time left | restart the type's whole `ttl` (`max_age` counts from each write): a fixed window runs from its last counted call |
//! | changing a type's `ttl` | applies to new writes | changes the bucket's `max_age`, for every value in it |
//! | longest `ttl` | the derive's ceiling | about 292 years (`max_age` is `i64` nanoseconds) |
//! | value size | 512 MB | the server's `max_payload`, 1 MB by default |
//! | `Change::Expired` | with `enable_expiry_events` | never: `max_age` removes values silently (`enable_expiry_events` is `Unsupported`) |
//! | what a watcher hears | writes of `notify` types, in one subscription per backend | every write to the bucket (also of types without `notify`, `touch`, which rewrites the value, and rate-limit checks), one consumer per watcher |
//! | a key written faster than a watcher reads | every change arrives, in order (or the watcher gets `Error::Lagged`) | changes may be coalesced: the bucket keeps one revision per key, so a watcher may get only the newer value; each key's changes still arrive in order, never twice, and its last value always |
//! | `ids`, `usage`, `migrate` | `SCAN`: every key that exists throughout, even one rewritten meanwhile | the bucket's last message per key: a key rewritten while the listing runs may be missed (run `migrate` again once writes have stopped) |
//! | `set_many`, `remove_many` | one `MULTI` / `DEL`, all or nothing | one write per key, in order, stopping at the first error |
//! | `get_many` | one `MGET` | concurrent gets |
//! | `remove` | `DEL` | a read, then a delete expecting its revision (retried on a lost race), leaving a delete marker |
//! | `#[state(durable)]` ([Durability](super::durability)) | a `WAIT` (or `WAITAOF`) after the write; `Error::NotDurable` when it falls short | the bucket's replicas (3 on a cluster by default), read from the stream's leader; a write is acknowledged once a majority stored it, never `NotDurable` |
//! | leases ([Leases](super::leases)) | fencing tokens, fenced writes | tokens (the acquisition's revision; an extension rewrites the value, which a watcher hears); fenced writes are `Error::Unsupported` |
//!
//! # NATS 2.11 and later
//!
//! NATS 2.11 and later have per-message TTL (`Nats-TTL`, with `allow_msg_ttl` and limit markers on
//! the bucket), which would give each key its own expiry, make `set_with_ttl` work with any
//! duration, and announce expiries as markers on the watch. `NatsBackend::server_has_per_key_ttl()`
//! reports whether the server has it; this version keeps to bucket `max_age` on every server.
