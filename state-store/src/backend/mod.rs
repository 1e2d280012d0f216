//! The contract every storage engine implements: a small core, and provided methods built on it.
//!
//! # The core
//! Five methods that any key-value engine with expiry and a conditional write can provide:
//!
//! | method | does |
//! |---|---|
//! | [`get_versioned`](Backend::get_versioned) | the value under a key with an opaque [`Version`] |
//! | [`put`](Backend::put) | a write with a [`PutMode`] condition and an [`Expiry`] choice |
//! | [`remove`](Backend::remove) | deletes a key |
//! | [`ttl`](Backend::ttl) | time left before a key expires |
//! | [`list`](Backend::list) | every key under a prefix |
//!
//! Everything else ([`get_many`](Backend::get_many), [`set_many`](Backend::set_many),
//! [`incr`](Backend::incr), both rate-limit policies, the [`update`](Backend::update) retry loop
//! (and [`update_refreshing`](Backend::update_refreshing)), [`touch`](Backend::touch),
//! ...) is a provided method written once on top of the core, with the semantics the
//! [conformance suite](crate::conformance) fixes. An engine overrides one when it can do better:
//! the Redis backend keeps `MGET`, a `MULTI` pipeline and its Lua scripts; the memory backend
//! does each but `update` (whose closure is the caller's code) under one lock.
//!
//! # Versions
//! [`get_versioned`](Backend::get_versioned) returns a [`Version`] that a later
//! [`PutMode::Update`] compares against: the write lands only if the key still holds what was
//! read. What a version is depends on the engine:
//! - [`MemoryBackend`](crate::MemoryBackend): a number from a counter that every write advances,
//!   so a value written back unchanged still gets a new version.
//! - [`RedisBackend`](crate::RedisBackend): the SHA-1 of the value (hex), which the
//!   compare-and-set script checks with `redis.sha1hex`, so an update attempt sends the new
//!   value and 40 bytes, not the old value. Two equal values have the same version: writing back
//!   what was read does not make a concurrent update fail (it would change nothing it saw).
//! - An engine with revisions (NATS JetStream KV, etcd) uses its revision number.
//!
//! # Change feeds
//! Every write takes a [`Notify`]: the channel of the state type's change feed when the type is
//! declared with `#[state(notify)]`, `None` otherwise. An engine with a feed announces each
//! change the write made ([`Event`]) in the same atomic step, so that a watcher never hears of
//! a change that was not stored, and implements [`Backend::watch`] (and
//! [`Backend::enable_expiry_events`] where expiry announcements are a server setting). An
//! engine without one ignores `notify` and keeps the provided `watch`, which returns
//! [`Error::Unsupported`]. The provided methods pass `notify` on to `put` and `remove`, except
//! the rate limits, which never announce.
//!
//! # Room to grow
//! New capabilities (per-slot splitting, caching) arrive as provided methods whose default
//! either builds on the core or returns [`Error::Unsupported`] naming the operation and
//! [`Backend::name`]; [`PutMode`] and [`Expiry`] are `#[non_exhaustive]`, and an engine answers a
//! variant it does not know with `Error::Unsupported` too. A backend written against this
//! version keeps compiling.
//!
//! # Writing a backend
//! Implement the five core methods; the provided ones do the rest. This complete backend (a
//! `HashMap` behind a mutex) passes the whole [conformance suite](crate::conformance), as the
//! repository's `tests/writing_a_backend.rs` checks:
//!
//! ```
#![doc = include_str!("../../docs/writing_a_backend.rs")]
//! # use state_store::{StateKey, Store};
//! # #[derive(serde::Serialize, serde::Deserialize, StateKey)]
//! # #[state(prefix = "visits", id = String, counter)]
//! # struct Visits(i64);
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! let store = Store::new(MapBackend::default()).enable_set();
//! assert_eq!(store.incr::<Visits>("/home".to_string(), 1).await?, 1);
//! assert_eq!(store.incr::<Visits>("/home".to_string(), 1).await?, 2);
//! # Ok(())
//! # }
//! ```
//!
//! Rules the suite holds every backend to, beyond what each method's documentation says:
//! - Expiry follows tokio's clock (`tokio::time::Instant`) if the backend keeps time itself, so
//!   that tests with a paused clock see keys expire. Such a backend runs the suite with a paused
//!   clock only if it also overrides [`Backend::now`] with tokio's clock (the provided `gcra`
//!   reads `now`), as `MemoryBackend` does; the example above keeps the wall clock and runs the
//!   suite in real time, as an engine whose server keeps time does.
//! - Nothing happens before the returned future is polled: do the work inside
//!   `Box::pin(async move { ... })`, so that a future dropped unpolled changes nothing.
//! - Errors name the full key (`Error::Backend { key, .. }`); a value of a kind the engine cannot
//!   return as bytes is [`Error::InvalidKey`].
//! - Each method is one atomic step; the provided methods combine them safely (conditional
//!   writes, retried on a lost race).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;

use crate::rate_limit::{self, Decision};
use crate::{Error, Result};

pub(crate) mod expiry;
pub mod kit;
mod provided;
pub(crate) mod usage;

pub use expiry::Expiry;
pub(crate) use expiry::{ceil_millis, micros_i64};
use kit::Backoff;
use kit::incr_step;
pub(crate) use provided::counter_step;
use provided::{COUNTER_ATTEMPTS, update_loop};
use usage::{Usage, UsageOptions};

/// A boxed future of a [`Backend`] method: `Send`, borrowing the backend and the arguments.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed stream of a [`Backend`] method, such as the keys of [`Backend::list`].
pub type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;

/// A value kept decoded by a client-side cache (see [`Backend::get_cached`]): the typed value,
/// behind `Any` so that one cache holds every type.
pub type Decoded = Arc<dyn std::any::Any + Send + Sync>;

/// How [`Backend::get_cached`] decodes stored bytes into a [`Decoded`] value.
pub type Decode<'a> = dyn Fn(&[u8]) -> Result<Decoded> + Send + Sync + 'a;

/// Which write [`Backend::put`] makes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutMode {
    /// Write whatever the key holds.
    Overwrite,
    /// Write only if the key holds nothing (a missing or expired key).
    Create,
    /// Write only if the key still holds the value that [`Backend::get_versioned`] returned
    /// with this version.
    Update(Version),
}

/// An opaque token for the state of one key, returned by [`Backend::get_versioned`] and
/// compared by [`PutMode::Update`]. See [the module docs](self#versions) for what it is on each
/// engine.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version(VersionRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum VersionRepr {
    Number(u64),
    Text(Box<str>),
}

impl Version {
    /// A version that is a number, such as a revision or a write counter.
    pub fn from_number(number: u64) -> Version {
        Version(VersionRepr::Number(number))
    }

    /// A version that is text, such as a digest or an entity tag.
    pub fn from_text(text: impl Into<Box<str>>) -> Version {
        Version(VersionRepr::Text(text.into()))
    }

    /// The number, if it is one.
    pub fn as_number(&self) -> Option<u64> {
        match self.0 {
            VersionRepr::Number(n) => Some(n),
            VersionRepr::Text(_) => None,
        }
    }

    /// The text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match &self.0 {
            VersionRepr::Number(_) => None,
            VersionRepr::Text(text) => Some(text),
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            VersionRepr::Number(n) => write!(f, "{n}"),
            VersionRepr::Text(text) => f.write_str(text),
        }
    }
}

/// A value with its [`Version`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Versioned {
    /// The bytes stored.
    pub value: Vec<u8>,
    /// Their version, for a later [`PutMode::Update`].
    pub version: Version,
}

impl Versioned {
    /// A value and its version.
    pub fn new(value: Vec<u8>, version: Version) -> Versioned {
        Versioned { value, version }
    }
}

/// The channel of a state type's change feed, passed to every write of a type declared with
/// `#[state(notify)]` (`None` for other types): `{namespace}:{prefix}`, or `{prefix}` without a
/// namespace. The keys of the feed are exactly the keys under `{channel}:`.
///
/// A backend with a change feed announces each change such a write made, in the same atomic
/// step as the write ([`Event`]); a backend without one ignores it.
pub type Notify<'a> = Option<&'a str>;

/// How many changes a watcher buffers by default before it starts dropping the oldest and
/// reports [`Error::Lagged`].
pub const WATCH_BUFFER: usize = 1024;

/// One change on a change feed, as [`Backend::watch`] delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `value` was written under `key` (as written: for a counter, the new count).
    Set {
        /// The full key.
        key: Arc<str>,
        /// The bytes written.
        value: Arc<[u8]>,
    },
    /// `key` was removed.
    Removed {
        /// The full key.
        key: Arc<str>,
    },
    /// `key` expired.
    Expired {
        /// The full key.
        key: Arc<str>,
    },
}

impl Event {
    /// The full key the change concerns.
    pub fn key(&self) -> &str {
        match self {
            Event::Set { key, .. } | Event::Removed { key } | Event::Expired { key } => key,
        }
    }
}

/// What [`Backend::watch`] subscribes to: one channel, or one key of it, with a buffer bound.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Watch {
    /// The feed's channel (see [`Notify`]).
    pub channel: String,
    /// Only the changes of this full key, which is under `{channel}:`; `None` for every key.
    pub key: Option<String>,
    /// How many undelivered changes the watcher may hold; past that the oldest are dropped and
    /// the watcher's next item is [`Error::Lagged`] (at least 1).
    pub buffer: usize,
}

impl Watch {
    /// Every change on `channel`, with the default buffer of [`WATCH_BUFFER`] changes.
    pub fn new(channel: impl Into<String>) -> Watch {
        Watch {
            channel: channel.into(),
            key: None,
            buffer: WATCH_BUFFER,
        }
    }

    /// Only the changes of `key`.
    pub fn key(mut self, key: impl Into<String>) -> Watch {
        self.key = Some(key.into());
        self
    }

    /// Buffers at most `buffer` changes (at least 1).
    pub fn buffer(mut self, buffer: usize) -> Watch {
        self.buffer = buffer.max(1);
        self
    }
}

/// The change [`Backend::update`] applies: given the current bytes (`None`: no value), the new
/// bytes to write, `None` to leave the key as it is, or an error that ends the update.
pub type UpdateFn<'a> = dyn FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>> + Send + 'a;

/// The check of [`Backend::remove_if`]: given the bytes stored, whether to remove them.
pub type RemoveFn<'a> = dyn FnMut(&[u8]) -> Result<bool> + Send + 'a;

/// Storage under a [`Store`](crate::Store): bytes under full string keys, with expiry.
///
/// The typed API lives in `Store`, so a backend only moves bytes. It is used as a trait object
/// too ([`AnyBackend`](crate::AnyBackend)), so methods return boxed futures: write
/// `Box::pin(async move { ... })`. See [the module docs](self) for the contract as a whole and a
/// complete example.
///
/// Errors name the key they concern (see [`Error`]).
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    // ---- the core ------------------------------------------------------------------------

    /// The value under `key` and its version, or `None` when there is none or it has expired.
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>>;

    /// Writes `value` under `key` if `mode` allows, with the given expiry, in one atomic step;
    /// `true` when it was written, `false` when the condition did not hold (nothing changed).
    /// A write that happened is announced as [`Event::Set`] on `notify`'s feed, in the same
    /// step.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        mode: PutMode,
        expiry: Expiry,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Removes `key`; `true` when it existed, and then announced as [`Event::Removed`] on
    /// `notify`'s feed in the same step.
    fn remove<'a>(&'a self, key: &'a str, notify: Notify<'a>) -> BoxFuture<'a, Result<bool>>;

    /// Time left before `key` expires, in whole milliseconds; `None` when it is missing or has no
    /// expiry.
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>>;

    /// Every key that starts with `prefix`, each once, in no particular order. Keys written
    /// while the stream runs may or may not appear. The stream owns what it needs (it outlives
    /// the call).
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>>;

    // ---- provided ------------------------------------------------------------------------

    /// A short name for errors such as [`Error::Unsupported`]: the type's name by default.
    fn name(&self) -> &'static str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// The engine, as OpenTelemetry's `db.system.name` names it (`redis`), for the spans of
    /// the `tracing` feature: [`name`](Self::name) by default.
    fn system_name(&self) -> &'static str {
        self.name()
    }

    /// Tells the engine that `prefix` (`{namespace}:{prefix}`, or `{prefix}`: the channel form
    /// of [`Notify`]) is a state type's key prefix, whose keys are `{prefix}:{id}` and whose
    /// writes carry `ttl` (for a rate limit, the longest a check keeps its key). The
    /// [`Store`](crate::Store) declares every type it computes a key of, before the call.
    ///
    /// For an engine that lays keys out by type, such as one bucket per type with a
    /// bucket-wide expiry (NATS JetStream KV): the declaration says where the type prefix ends
    /// (an id may hold `:`) and what expiry to give the type's storage. A declaration of
    /// `None` adds the prefix but does not replace a ttl declared before. By default nothing:
    /// engines with per-key expiry need no declaration.
    fn declare(&self, prefix: &str, ttl: Option<Duration>) {
        let _ = (prefix, ttl);
    }

    /// The value under `key`, without its version (which some engines compute).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move { Ok(self.get_versioned(key).await?.map(|v| v.value)) })
    }

    /// The value under `key` of a type declared with `cache`, decoded by `decode`: from the
    /// engine's client-side cache when it keeps one and holds the key, else read and decoded
    /// (and kept, if the engine can be told when the key changes). `prefix` is the start of
    /// every key of the type (`{namespace}:{prefix}:`), which an engine that tracks changes by
    /// prefix registers. The provided method keeps nothing: it is `get`, then `decode`.
    fn get_cached<'a>(
        &'a self,
        key: &'a str,
        prefix: &'a str,
        decode: &'a Decode<'a>,
    ) -> BoxFuture<'a, Result<Option<Decoded>>> {
        let _ = prefix;
        Box::pin(async move {
            match self.get(key).await? {
                Some(bytes) => decode(&bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Whether `key` holds a value.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.get(key).await?.is_some()) })
    }

    /// Stores `value` under `key`, replacing any value, with the given expiry (`None` clears any
    /// earlier one): a `put` with [`PutMode::Overwrite`].
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.put(
                key,
                value,
                PutMode::Overwrite,
                Expiry::from_ttl(ttl),
                notify,
            )
            .await
            .map(drop)
        })
    }

    /// Stores `value` under `key` with the given expiry only if `key` holds nothing; `true`
    /// when it was written: a `put` with [`PutMode::Create`].
    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.put(key, value, PutMode::Create, Expiry::from_ttl(ttl), notify)
    }

    /// The values under `keys`, in the same order. By default one `get` per key, all in flight
    /// at once.
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(futures_util::future::try_join_all(
            keys.iter().map(|key| self.get(key)),
        ))
    }

    /// Stores every `(key, value)` with the same expiry. By default one `set` per key, in order,
    /// stopping at the first error; the built-in backends override it to write all or nothing.
    fn set_many<'a>(
        &'a self,
        items: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for (key, value) in items {
                self.set(&key, value, ttl, notify).await?;
            }
            Ok(())
        })
    }

    /// Removes `keys`; how many existed. By default one `remove` per key.
    fn remove_many<'a>(
        &'a self,
        keys: &'a [String],
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut removed = 0;
            for key in keys {
                removed += u64::from(self.remove(key, notify).await?);
            }
            Ok(removed)
        })
    }

    /// Adds `by` to the integer under `key` (a missing key counts as 0) and returns the new
    /// value. A key it creates gets `ttl_if_created`; an existing key keeps its expiry. A value
    /// that is not an integer by Redis's rule (the exact decimal form of an `i64`), or a result
    /// out of the `i64` range, is [`Error::InvalidKey`] and changes nothing.
    ///
    /// By default a read and a conditional write, retried on a lost race.
    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl_if_created: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(counter_step(self, key, false, notify, move |current, _| {
            let (next, expiry) = incr_step(key, current, by, ttl_if_created)?;
            Ok((next, Some((next, expiry))))
        }))
    }

    /// One fixed-window rate-limit check: allows the call and counts it when fewer than `limit`
    /// calls were counted in the window, which starts with its first call and lasts `window`.
    /// The count is a counter under `key`, as [`incr`](Self::incr) keeps it.
    ///
    /// By default reads, then writes conditionally, retried on a lost race.
    fn fixed_window<'a>(
        &'a self,
        key: &'a str,
        limit: u64,
        window: Duration,
    ) -> BoxFuture<'a, Result<Decision>> {
        // Rate-limit checks never announce: their counts are bookkeeping, not state changes.
        Box::pin(counter_step(self, key, true, None, move |count, left| {
            Ok(rate_limit::fixed_window(count, left, limit, window))
        }))
    }

    /// One GCRA rate-limit check: calls spaced `interval` apart on average, with up to `burst`
    /// at once. The key holds the theoretical arrival time in microseconds of
    /// [`now`](Self::now)'s clock, and expires when it has passed.
    ///
    /// By default reads, then writes conditionally, retried on a lost race.
    fn gcra<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        burst: u32,
    ) -> BoxFuture<'a, Result<Decision>> {
        Box::pin(counter_step(self, key, false, None, move |tat, _| {
            let now = micros_i64(self.now());
            let (decision, write) = rate_limit::gcra(tat, now, interval, burst);
            Ok((
                decision,
                write.map(|(new_tat, keep)| (new_tat, Expiry::After(keep))),
            ))
        }))
    }

    /// The clock of the provided [`gcra`](Self::gcra): time since the Unix epoch. Every process
    /// sharing the engine must agree on it (wall clocks kept in sync), as Redis's `TIME` does
    /// for the Redis backend's script.
    fn now(&self) -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }

    /// Changes the value under `key` atomically: `change` sees the current bytes and returns
    /// the new ones (or `None` to leave the key as it is), and the write lands only if the key
    /// still holds what `change` saw. On a lost race `change` runs again on the newer value, up
    /// to `attempts` times in all, then [`Error::Conflict`]. `true` when it wrote.
    ///
    /// A replaced value keeps the key's remaining expiry; a created one gets `ttl_if_created`.
    /// By default [`get_versioned`](Self::get_versioned) then a
    /// [`PutMode::Update`] (or [`PutMode::Create`]) per attempt, with a random backoff between
    /// attempts so that contenders stop colliding in lockstep.
    fn update<'a>(
        &'a self,
        key: &'a str,
        change: &'a mut UpdateFn<'_>,
        ttl_if_created: Option<Duration>,
        attempts: u32,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(update_loop(
            self,
            key,
            change,
            Expiry::Keep,
            ttl_if_created,
            attempts,
            notify,
        ))
    }

    /// [`update`](Self::update), except that a replaced value gets `ttl` too (a new expiry from
    /// now, or none), as a created one does: for sliding expiry, where each change extends the
    /// key's life. By default the same loop as `update`, with that expiry on the conditional
    /// `put`.
    fn update_refreshing<'a>(
        &'a self,
        key: &'a str,
        change: &'a mut UpdateFn<'_>,
        ttl: Option<Duration>,
        attempts: u32,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(update_loop(
            self,
            key,
            change,
            Expiry::from_ttl(ttl),
            ttl,
            attempts,
            notify,
        ))
    }

    /// Removes `key` only if it still holds the value that [`get_versioned`](Self::get_versioned)
    /// returned with `version`, in one atomic step; `true` when it did. By default
    /// [`Error::Unsupported`]: a conditional delete needs the engine's own compare-and-delete,
    /// which the core cannot express.
    fn remove_version<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, version, notify);
        Box::pin(async move {
            Err(Error::Unsupported {
                operation: "remove_if",
                backend: self.name(),
            })
        })
    }

    /// Removes `key` if `check` accepts the value it holds, atomically: the removal lands only
    /// if the value is still the one `check` saw; on a lost race `check` runs again on the newer
    /// value, up to `attempts` times in all, then [`Error::Conflict`]. `true` when it removed.
    /// By default [`get_versioned`](Self::get_versioned) then
    /// [`remove_version`](Self::remove_version) per attempt.
    fn remove_if<'a>(
        &'a self,
        key: &'a str,
        check: &'a mut RemoveFn<'_>,
        attempts: u32,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut backoff = Backoff::new(attempts);
            loop {
                let Some(current) = self.get_versioned(key).await? else {
                    return Ok(false);
                };
                if !check(&current.value)? {
                    return Ok(false);
                }
                if self.remove_version(key, &current.version, notify).await? {
                    return Ok(true);
                }
                backoff.wait(key).await?;
            }
        })
    }

    /// The value under `key`, with its expiry reset to `expiry` in the same step (`None` when
    /// there is no key, which stays absent). Not a change of the value: nothing is announced.
    /// By default a compare-and-set of the value read onto itself with the new expiry
    /// ([`get_versioned`](Self::get_versioned), then [`PutMode::Update`]), again on a lost race.
    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        expiry: Expiry,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let mut backoff = Backoff::new(COUNTER_ATTEMPTS);
            loop {
                let Some(current) = self.get_versioned(key).await? else {
                    return Ok(None);
                };
                let Versioned { value, version } = current;
                let mode = PutMode::Update(version);
                if self.put(key, value.clone(), mode, expiry, None).await? {
                    return Ok(Some(value));
                }
                backoff.wait(key).await?;
            }
        })
    }

    /// Resets the expiry of `key` to `expiry` without changing its value; `true` when the key
    /// exists. By default [`get_and_touch`](Self::get_and_touch).
    fn touch<'a>(&'a self, key: &'a str, expiry: Expiry) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.get_and_touch(key, expiry).await?.is_some()) })
    }

    /// Subscribes to a change feed: every change announced on `watch.channel` (or only those of
    /// `watch.key`) once the returned future has completed, in the order they were stored for
    /// any one key.
    ///
    /// The stream is `'static` and buffers at most `watch.buffer` undelivered changes: past that
    /// it drops the oldest and yields one [`Error::Lagged`] with their number before going on.
    /// When the engine loses its subscription and gets it back, it yields
    /// [`Error::Interrupted`]. Dropping the stream ends the subscription.
    ///
    /// By default [`Error::Unsupported`]: an engine without a change feed ignores the
    /// [`Notify`] of writes, and cannot be watched.
    fn watch<'a>(
        &'a self,
        watch: &'a Watch,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
        let _ = watch;
        Box::pin(async move {
            Err(Error::Unsupported {
                operation: "watch",
                backend: self.name(),
            })
        })
    }

    /// Turns on the engine's announcements of expired keys ([`Event::Expired`]), where they are
    /// a server setting. On Redis this sets `notify-keyspace-events` to include `Ex`, keeping
    /// the flags already set.
    ///
    /// By default [`Error::Unsupported`]; an engine that always announces expiries returns `Ok`.
    fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            Err(Error::Unsupported {
                operation: "enable_expiry_events",
                backend: self.name(),
            })
        })
    }

    /// What the keys that start with `prefix` (`{namespace}:`, or empty for every key) hold,
    /// per prefix: key counts, estimated bytes, keys without expiry and the spread of remaining
    /// times, within the bounds of `options` (batch size, sample size, time limit; see
    /// [`Usage`]). Reads only.
    ///
    /// By default [`list`](Self::list), then per key [`ttl`](Self::ttl) (and
    /// [`exists`](Self::exists) when it has none), and [`get`](Self::get) for a bounded sample
    /// of keys per prefix, whose size is taken as key length plus value length. An engine that
    /// overrides it counts with a [`UsageTally`](crate::UsageTally).
    fn usage<'a>(
        &'a self,
        prefix: &'a str,
        options: &'a UsageOptions,
    ) -> BoxFuture<'a, Result<Usage>> {
        Box::pin(provided::by_listing(self, prefix, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_show_what_they_hold() {
        assert_eq!(Version::from_number(7).as_number(), Some(7));
        assert_eq!(Version::from_text("ab").as_text(), Some("ab"));
        assert_ne!(Version::from_number(1), Version::from_text("1"));
        assert_eq!(format!("{:?}", Version::from_text("ab")), "Version(ab)");
    }
}
