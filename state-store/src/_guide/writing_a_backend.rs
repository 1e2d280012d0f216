//! Writing a backend: the [`Backend`](crate::Backend) contract, what each engine overrides, and the
//! conformance suite.
//!
//! The reference, with a complete backend that passes the whole suite, is the
//! [`backend`](crate::backend) module.
//!
//! # The contract
//!
//! `Backend` is a small core that any key-value engine with expiry and a conditional write can
//! provide, plus provided methods built on it (the model is object_store's `put_opts`):
//!
//! | core method | does |
//! |---|---|
//! | `get_versioned(key)` | the value and an opaque `Version` |
//! | `put(key, value, PutOptions { mode, expiry, notify, .. })` | `PutMode::{Overwrite, Create, Update(version)}`, `Expiry::{Never, After(d), Keep, AtLeast(d)}`; `true` when written |
//! | `remove(key, RemoveOptions { if_version, notify, .. })` | `true` when it removed (only that version, when `if_version` is set) |
//! | `ttl(key)` | time left, in whole milliseconds |
//! | `list(prefix)` | a stream of the keys under a prefix, read when polled |
//!
//! Seven more are provided, and overridden where an engine does better: `name`, `get(key,
//! GetOptions { touch, exists_only, .. })` (a touch is a compare-and-set of the value onto itself
//! with a new expiry), `get_many`, `write_many(WriteMany::{Put, Remove})`, `count(key,
//! CountOp::{Increment, FixedWindow, Gcra}, ..)` (the rate-limit algorithms, written once in Rust),
//! `update(key, change, UpdateOptions { replaced, created, attempts, notify, .. })` (the
//! compare-and-set retry loop) and `extensions()`, which returns what the engine has beyond the
//! core: a `ChangeFeed` (`watch`, `enable_expiry_events`), a `ClientCache`, a `UsageScan` (else
//! `usage` walks `list`, then `ttl` per key and `get` for a bounded sample per prefix), a
//! `KeyLayout` (`declare`, for engines that lay keys out by type) and `Leases` (`acquire`,
//! `holder`, `extend`, `release`, and `fenced_writes()`: which rules its fenced writes check, as
//! `FencedWrites`). An engine with fenced writes checks the `fence` of every `put`, `remove` and
//! `update` it is given in the same atomic step as the write; the `Store` never gives a fence to an
//! engine without them, which should answer `Error::Unsupported` if it gets one. A new capability
//! is a field of an option struct, a variant of a `#[non_exhaustive]` enum or a trait of its own,
//! never a new method; an engine answers a variant it does not know with `Error::Unsupported`.
//! `backend::kit` holds the building blocks the built-in engines use (`Backoff`, the counter rules,
//! `count` on another clock, the watcher queues of a feed). What each engine overrides:
//!
//! | | overrides | extensions | a `Version` is |
//! |---|---|---|---|
//! | `MemoryBackend` | `get`, `get_many`, `write_many`, `count` (each one step under its lock; `count` on tokio's clock); not `update`, whose closure must not run under the lock | feed, usage, leases | a counter every write advances |
//! | `NatsBackend` | none (a `put` names `set_with_ttl` when refusing another expiry; `Expiry::AtLeast` fits a bucket that keeps values at least as long) | feed (the bucket's own watch), layout (records the type's ttl), leases (by revision; no fenced writes) | the KV revision (`Version::from_number`) |
//! | `RedisBackend` | `get` (no digest; batched; `EXISTS`, `GETEX`, `PEXPIRE`), `get_many` (`MGET`), `write_many` (`MULTI` pipeline, `DEL`), `count` (Lua scripts) | feed, cache, usage (`SCAN`, pipelined `PTTL` and sampled `MEMORY USAGE`), leases (Lua scripts) | the SHA-1 of the value, compared by `redis.sha1hex` in the compare-and-set script, so an update attempt does not send the old value back |
//!
//! # The conformance suite
//!
//! The [`backend`](crate::backend#writing-a-backend) module docs hold a complete backend, a
//! `HashMap` behind a mutex with only the five core methods
//! (`state-store/docs/writing_a_backend.rs` in the repository), and `tests/writing_a_backend.rs`
//! runs the whole exported conformance suite against it, in this one form. Your own backend does
//! the same with the `conformance` feature (`state-store = { version = "0.2", default-features =
//! false, features = ["conformance"] }` and tokio with `macros` and `rt-multi-thread` among your
//! dev-dependencies):
//!
//! ```
//! # #[cfg(feature = "conformance")]
//! # mod tests {
//! # struct MyBackend;
//! # impl MyBackend {
//! #     async fn connect(_url: &str) -> state_store::Result<state_store::MemoryBackend> {
//! #         Ok(state_store::MemoryBackend::new())
//! #     }
//! # }
//! // tests/conformance.rs of your crate
//! state_store::conformance_tests!(
//!     tokio::test(flavor = "multi_thread", worker_threads = 2),
//!     async { ((), MyBackend::connect("...").await.unwrap()) }   // (guard kept alive, backend)
//! );
//! # }
//! ```
//!
//! The suite detects a backend without a change feed (`extensions().feed` is `None`) or without a
//! compare-and-delete (`remove` with `if_version` answers `Error::Unsupported`), and runs for each
//! check that needs one the check of the difference instead, saying so on stderr (`cargo test --
//! --nocapture` shows it); what cannot be detected is declared with `capabilities = ...`
//! (`conformance::Capabilities`). The table of checks, what each needs and what replaces it is
//! `conformance::CHECKS`. The checks use tokio's clock; `tokio::test(start_paused = true)` (tokio's
//! `test-util` feature) makes the expiry checks instant for an engine that keeps time on that
//! clock, in `get`, `ttl` and `count` alike, as `MemoryBackend` does.
//!
//! `notify` is the channel of a `#[state(notify)]` type's change feed (`None` for other types): an
//! engine with a feed announces the write on it in the same step; one without ignores it, and
//! `Store::watch` answers `Error::Unsupported`.
