//! Declaring state: the `#[state(...)]` attribute, keys and ids, the store, choosing the backend at
//! run time, errors.
//!
//! # A tour
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use state_store::{MemoryBackend, SetOptions, StateKey, Store};
//!
//! #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "session", id = u64, ttl = "30m")]
//! pub struct Session { pub cart: Vec<String>, pub updated_at: i64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "job", id = (String, u32))]   // composite id, no expiry
//! pub struct Job { pub status: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! // Embedded; in production `RedisBackend::connect("redis://127.0.0.1:6379").await?`.
//! let store = Store::new(MemoryBackend::new())
//!     .namespace("user-service")   // keys become user-service:session:42
//!     .enable_set()                // writes are opt-in
//!     .enable_remove();            // so are deletes
//!
//! let session = Session { cart: vec!["book".into()], updated_at: 1 };
//! store.set::<Session>(42, &session).await?;                             // SET ... PX 1800000
//! let s: Option<Session> = store.get::<Session>(&42).await?;
//! assert_eq!(s, Some(session.clone()));
//! store.set_with::<Session>(42, &session, SetOptions::new().ttl(Duration::from_secs(5))).await?;
//! let left: Option<Duration> = store.ttl::<Session>(42).await?;          // None: missing or no expiry
//! assert!(left.is_some_and(|left| left <= Duration::from_secs(5)));
//! let existed: bool = store.remove::<Session>(42).await?;
//! let there: bool = store.exists::<Session>(42).await?;
//! assert!(existed && !there);
//!
//! store.set::<Job>(("import".to_string(), 7), &Job { status: "queued".into() }).await?;
//! assert_eq!(store.full_key::<Job>(("import".to_string(), 7))?, "user-service:job:import:7");
//! # Ok(())
//! # }
//! ```
//!
//! The same code runs on the embedded [`MemoryBackend`](crate::MemoryBackend) (tests, development)
//! and on Redis (production): see [choosing the backend at run
//! time](#choosing-the-backend-at-run-time) below.
//!
//! # The attribute
//!
//! `#[state(...)]` takes:
//!
//! | key | | |
//! |---|---|---|
//! | `prefix = "session"` | required | ASCII letters, digits, `_`, `-`, `.` |
//! | `id = Type` | required | any [`StateId`](crate::StateId): integers, `String`, tuples of up to 4 ids, your own newtypes |
//! | `ttl = "30m"` | optional | `s`, `m`, `h`, `d` units, combined in that order (`"1h30m"`), or integer seconds (`ttl = 90`) |
//! | `counter` | optional | a tuple struct of one integer: [`Store::incr`](crate::Store::incr) and rate limits ([patterns](super::patterns)) |
//! | `notify` | optional | writes announce themselves: [`Store::watch`](crate::Store::watch) ([watching](super::watching)) |
//! | `cache` | optional | reads are kept decoded in the client, invalidated by the server ([performance](super::performance)); the type must be `Clone` |
//! | `lease` | optional, with a `ttl` | the type's values are leases with fencing tokens: [`Store::acquire`](crate::Store::acquire) ([leases](super::leases)) |
//! | `durable` | optional | every write answers once it reached the backend's [`Durability`](crate::Durability) (replicas, append-only files), else [`Error::NotDurable`](crate::Error::NotDurable) ([durability](super::durability)) |
//! | `previous = Type` | optional | the older shape stored values may have: read converted with `From`, rewritten by [`Store::migrate`](crate::Store::migrate) ([changing types](super::changing_types)) |
//!
//! `Session::key(&42)` is the typed key (`session:42`). A type without `ttl` is stored without
//! expiry, and `set` clears an expiry set earlier by `set_with`. A wrong id type or value type does
//! not compile; a bad prefix or ttl is a compile error pointing at it.
//!
//! Your own id type implements [`StateId`](crate::StateId) by delegating to the id it wraps:
//!
//! ```
//! use state_store::{IdError, KeyParts, StateId};
//!
//! pub struct UserId(u64);
//!
//! impl StateId for UserId {
//!     fn write_key(&self, out: &mut String) { self.0.write_key(out) }
//!     fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> { u64::read_key(parts).map(UserId) }
//! }
//! ```
//!
//! # Keys
//!
//! Stored key: `{namespace}:{prefix}:{id}` with a namespace, else `{prefix}:{id}`. Integers are
//! decimal; tuple parts are joined by `:`; in strings, `%`, `:`, `*`, `?`, `[`, `]`, `\`, `{`, `}`,
//! space and ASCII control characters are written as `%XX`. So `("a:b".to_string(), 7)` is stored
//! at `job:a%3Ab:7`. The encoding is reversible, and two different ids never share a key.
//!
//! Methods take the id, a reference to it, or, for an `id = String` type, a `&str`:
//! `store.get::<User>("alice")`. Another type is a compile error at the argument that names the
//! state's id type ("`&str` is not an id of this state type: its id is `u64`").
//!
//! A namespace follows the prefix rules. [`namespace()`](crate::Store::namespace) keeps the builder
//! chain simple, so an invalid one is reported by every operation of that store
//! ([`Error::InvalidNamespace`](crate::Error::InvalidNamespace)) before any key is read or written;
//! [`try_namespace()`](crate::Store::try_namespace) returns the error at once.
//!
//! # Choosing the backend at run time
//!
//! [`AnyBackend`](crate::AnyBackend) is any backend behind one type, so handlers are written once,
//! without generics, and the backend comes from configuration:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use state_store::{AnyBackend, Backend, MemoryBackend, StateKey, Store};
//!
//! #[derive(Debug, Clone, Default, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "session", id = u64, ttl = "30m")]
//! pub struct Session { pub cart: Vec<String> }
//!
//! async fn add_to_cart(store: &Store<AnyBackend>, user: u64, item: &str) -> state_store::Result<()> {
//!     // `update`, not `get` then `set`: two concurrent requests must not lose an item.
//!     store.update::<Session>(user, |session| {
//!         let mut session = session.unwrap_or_default();
//!         session.cart.push(item.to_string());
//!         Some(session)
//!     }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # // SAFETY of the example: a doctest runs alone in its process.
//! # unsafe { std::env::remove_var("REDIS_URL") };
//! let backend = AnyBackend::from_env("REDIS_URL").await?;   // Redis when set, else memory
//! let backend = AnyBackend::connect("memory://").await?;     // or `redis://127.0.0.1:6379`
//! let backend = AnyBackend::new(MemoryBackend::new());       // any `Backend`, your own too
//! let store = Store::new(backend).namespace("user-service").enable_set();
//! add_to_cart(&store, 42, "book").await?;
//! add_to_cart(&store, 42, "pen").await?;
//! assert_eq!(store.get::<Session>(42).await?.unwrap().cart, ["book", "pen"]);
//!
//! // A shared backend is a backend too.
//! let shared = std::sync::Arc::new(MemoryBackend::new()) as std::sync::Arc<dyn Backend>;
//! let store = Store::new(shared);
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! An engine of your own is reachable from a URL as a built-in one is, once its scheme is
//! registered ([`AnyBackend::register`](crate::AnyBackend::register)):
//!
//! ```
//! use state_store::{AnyBackend, MemoryBackend};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! // Here the memory engine under another name; yours opens its connection from `url`.
//! AnyBackend::register("myengine", |_url| Box::pin(async move { Ok(AnyBackend::new(MemoryBackend::new())) }));
//! let backend = AnyBackend::connect("myengine://somewhere").await?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! Every call goes to the chosen backend's own methods, so a `Store<AnyBackend>` sends exactly the
//! commands a `Store<RedisBackend>` sends; the benchmark measures the indirection
//! (`BENCHMARKS.md`). Code generic over `B: Backend` works too. The futures are `Send`, so handlers
//! can be `tokio::spawn`ed; `Store` is `Clone + Send + Sync` and its clones share one backend (on
//! Redis, one connection). `AnyBackend::from_env` falls back to memory when the variable is unset:
//! see [connecting](super::production_redis#connecting) before relying on it in production.
//!
//! # Errors
//!
//! One [`Error`](crate::Error) (`#[non_exhaustive]`): `Disabled` (write or delete not enabled),
//! `Decode` (the key and serde's message; for a type with `previous`, both shapes' messages),
//! `Encode`, `InvalidNamespace`, `InvalidKey` (e.g. a Redis hash under a state key), `NotACounter`
//! (`incr` or a rate-limit check on a value that is not a counter, or an overflow), `InvalidTtl`,
//! `Conflict` (an `update` lost every race), `LeaseLost` (a write under a lease, or its `extend`,
//! after the lease was lost: nothing written), `NotDurable` (a write of a `durable` type applied on
//! the primary but not acknowledged by the copies its durability asks for in time: it may be lost
//! in a failover), `Unsupported` (an operation a backend cannot do, naming both), `Lagged` and
//! `Interrupted` (items of a change feed, which goes on), `Connect` and `Backend` (the key and the
//! driver's error as `source`). `Debug` prints the message and the variant, so `fn main() ->
//! Result<(), Error>` and `unwrap` show ``Error: cannot decode the value under `session:1`:
//! expected value at line 1 column 1 (Error::Decode)``.
