//! The contract every storage engine implements: a small core, and provided methods built on it.
//!
//! # The core
//! Five methods that any key-value engine with expiry and a conditional write can provide:
//!
//! | method | does |
//! |---|---|
//! | [`get_versioned`](Backend::get_versioned) | the value under a key with an opaque [`Version`] |
//! | [`put`](Backend::put) | a write, as [`PutOptions`] say: a [`PutMode`] condition, an [`Expiry`], a [`Notify`] channel |
//! | [`remove`](Backend::remove) | deletes a key, as [`RemoveOptions`] say: unconditionally or only a given [`Version`] |
//! | [`ttl`](Backend::ttl) | time left before a key expires |
//! | [`list`](Backend::list) | every key under a prefix |
//!
//! Seven more are provided, written once on top of the core with the semantics the conformance
//! suite (`state_store::conformance`, feature `conformance`) fixes: [`name`](Backend::name),
//! [`get`](Backend::get) (a read, optionally resetting the expiry), [`get_many`](Backend::get_many),
//! [`write_many`](Backend::write_many), [`count`](Backend::count) (increments and both rate-limit
//! policies, one method over [`CountOp`]), [`update`](Backend::update) (the read, change and
//! conditional-write loop) and [`extensions`](Backend::extensions). An engine overrides one when
//! it can do better: the Redis engine keeps `MGET`, a `MULTI` pipeline and its Lua scripts; the
//! memory engine does each but `update` (whose closure is the caller's code) under one lock.
//!
//! # Growing
//! The contract grows without new methods:
//! - a new kind of write is a field of an option struct ([`PutOptions`], [`RemoveOptions`],
//!   [`UpdateOptions`], [`CountOptions`], [`GetOptions`]), each `#[non_exhaustive]` with a
//!   default that means what the contract meant before;
//! - a new counter is a variant of [`CountOp`]; a new expiry rule a variant of [`Expiry`];
//! - a capability that not every engine has is a trait of its own ([`ChangeFeed`],
//!   [`ClientCache`], [`UsageScan`], [`KeyLayout`], [`Leases`], [`Journals`]), reached through
//!   [`extensions`](Backend::extensions): an engine without it implements nothing.
//!
//! An engine answers a variant or option it does not know with [`Error::Unsupported`] naming the
//! operation and [`Backend::name`], never by ignoring it.
//!
//! # Versions
//! [`get_versioned`](Backend::get_versioned) returns a [`Version`] that a later
//! [`PutMode::Update`] or [`RemoveOptions::if_version`] compares against: the write lands only if
//! the key still holds what was read. What a version is depends on the engine:
//! - a number from a counter that every write advances (the memory engine), so a value written
//!   back unchanged still gets a new version;
//! - a digest of the value (the Redis engine: the SHA-1, which its compare-and-set script checks
//!   with `redis.sha1hex`, so an update attempt sends the new value and 40 bytes). Two equal
//!   values then have the same version: writing back what was read does not make a concurrent
//!   update fail (it would change nothing it saw);
//! - the engine's revision number (NATS JetStream KV, etcd).
//!
//! # Rules
//! The contract's own words, which every engine keeps (Redis is one engine that keeps them, not
//! their definition):
//! - **Time.** Expiries are whole milliseconds, at least one (the [`Store`](crate::Store) rounds
//!   up). A key lives through its deadline and is gone after it. An engine keeps time on one
//!   clock: its server's, or, for an engine in this process, tokio's
//!   ([`tokio::time::Instant`], which a test can pause) or the wall clock. A deadline that must
//!   survive a restart of the process is kept as wall-clock time (a `tokio` instant does not
//!   outlive its process). The rate limiters of the provided [`count`](Backend::count) read the
//!   wall clock (microseconds since the Unix epoch), so that every process sharing the engine
//!   agrees; an engine that keeps time on tokio's clock overrides `count`, and passes a closure
//!   reading that clock to [`kit::count`] (or, as the memory engine does, runs the same step
//!   functions under its own lock).
//! - **Counters** are the exact decimal text of an `i64`: no sign on zero, no `+`, no space, no
//!   leading zero ([`kit::parse_counter`]). A value that is not one, or a result out of range,
//!   is [`Error::NotACounter`] naming the key, and changes nothing.
//! - **Nothing happens before the returned future is polled**, so that a future dropped
//!   unpolled changes nothing: do the work inside `Box::pin(async move { ... })`, and return a
//!   stream (of [`list`](Backend::list), of a feed) that reads only when polled.
//! - **Errors name the full key** (`Error::Backend { key, .. }`); a value of a kind the engine
//!   cannot return as bytes is [`Error::InvalidKey`].
//! - **Each method is one atomic step**; the provided methods combine them safely (conditional
//!   writes, retried on a lost race, with [`kit::Backoff`] between tries).
//! - **Fences.** A write carries a [`Fence`] ([`PutOptions::fence`], [`RemoveOptions::fence`],
//!   [`UpdateOptions::fence`]) only when the engine's [`Leases`] answer
//!   [`fenced_writes`](Leases::fenced_writes) with a rule: the [`Store`](crate::Store) never
//!   hands one to an engine that would ignore it. An engine that checks fences does so in the
//!   same atomic step as the write and refuses with [`Error::LeaseLost`] ([`Fence::lost`]),
//!   writing nothing.
//! - **Durability.** Every write of a `#[state(durable)]` type carries `durable: true` in its
//!   options: an engine that replicates answers only once the write got as far as its
//!   [`Durability`] asks, else [`Error::NotDurable`] (the write was applied and may be lost in a
//!   failover); an engine that keeps one copy (the memory engine, a process of its own)
//!   answers as for any write.
//! - **Change feeds.** Every write carries a [`Notify`]: the channel of the state type's feed
//!   when the type is declared with `#[state(notify)]`, `None` otherwise. An engine with a feed
//!   ([`ChangeFeed`]) announces each change a write made ([`Event`]) in the same atomic step; an
//!   engine without one ignores `notify`, and the `Store` answers `watch` with
//!   [`Error::Unsupported`].
//!
//! # Writing a backend
//! Implement the five core methods; the provided ones do the rest. This complete backend (a
//! `HashMap` behind a mutex; its crate depends on `state-store` and, for the stream of `list`,
//! `futures-util`) passes the whole conformance suite, as the repository's
//! `tests/writing_a_backend.rs` checks, and as a crate of its own does with the test below:
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
//! Its tests are one line, with tokio (features `macros` and `rt-multi-thread`) and
//! `state-store = { version = "0.2", default-features = false, features = ["conformance"] }`
//! among the dev-dependencies (`default-features = false` keeps the Redis client out of an
//! engine that does not need it):
//!
//! ```ignore
//! state_store::conformance_tests!(
//!     tokio::test(flavor = "multi_thread", worker_threads = 2),
//!     async { ((), MapBackend::default()) } // (a guard kept alive for the test, the backend)
//! );
//! ```
//!
//! What the engine lacks (here: a change feed, a compare-and-delete, leases) is detected and the
//! checks of the difference run instead, named in the test output; a difference that cannot be
//! detected (an engine with a bucket-wide expiry) is declared with `capabilities = ...`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;

#[cfg(doc)]
use crate::Error;
use crate::Result;

mod durability;
pub(crate) mod expiry;
pub(crate) mod extensions;
mod journal;
pub(crate) use extensions::inherent_enable_expiry_events;
pub mod kit;
mod lease;
mod options;
pub(crate) mod provided;
pub(crate) mod usage;

pub use durability::Durability;
pub use expiry::Expiry;
pub(crate) use expiry::{ceil_millis, micros_i64};
pub use extensions::{ChangeFeed, ClientCache, Decode, Decoded, Extensions, KeyLayout, UsageScan};
pub use journal::{
    Ack, ConsumeOptions, Cursor, JournalRecord, Journals, ParseCursorError, Position,
};
pub use lease::{Fence, FencedWrites, HeldLease, LeaseKey, Leases};
pub use options::{
    CountOp, CountOptions, Counted, GetOptions, PutMode, PutOptions, RemoveOptions, UpdateOptions,
    WriteMany,
};

/// A boxed future of a [`Backend`] method: `Send`, borrowing the backend and the arguments.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed stream of a [`Backend`] method, such as the keys of [`Backend::list`].
pub type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;

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

/// One change on a change feed, as [`ChangeFeed::watch`] delivers it.
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

/// What [`ChangeFeed::watch`] subscribes to: one channel, or one key of it, with a buffer bound.
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

/// Storage under a [`Store`](crate::Store): bytes under full string keys, with expiry.
///
/// The typed API lives in `Store`, so a backend only moves bytes. It is used as a trait object
/// too ([`AnyBackend`](crate::AnyBackend), `Arc<dyn Backend>`), so methods return boxed futures:
/// write `Box::pin(async move { ... })`. See [the module docs](self) for the contract as a
/// whole, its rules and a complete example.
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    // ---- the core ------------------------------------------------------------------------

    /// The value under `key` and its version, or `None` when there is none or it has expired.
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>>;

    /// Writes `value` under `key` if `options.mode` allows, with `options.expiry`, in one atomic
    /// step; `true` when it was written, `false` when the condition did not hold (nothing
    /// changed). A write that happened is announced as [`Event::Set`] on `options.notify`'s
    /// feed, in the same step.
    fn put<'a>(
        &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Removes `key` (only if it holds `options.if_version`, when set, in the same step);
    /// `true` when it was removed, and then announced as [`Event::Removed`] on
    /// `options.notify`'s feed in the same step. An engine without a compare-and-delete answers
    /// [`Error::Unsupported`] (operation `remove_if`) when `if_version` is set.
    fn remove<'a>(
        &'a self, key: &'a str, options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Time left before `key` expires, in whole milliseconds; `None` when it is missing or has no
    /// expiry.
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>>;

    /// Every key that starts with `prefix`, each once, in no particular order. Keys written
    /// while the stream runs may or may not appear. The stream owns what it needs (it outlives
    /// the call) and reads nothing before it is polled.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>>;

    // ---- provided ------------------------------------------------------------------------

    /// A short name for errors such as [`Error::Unsupported`]: the type's name by default.
    fn name(&self) -> &'static str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// The value under `key`, without its version (which some engines compute); with
    /// [`GetOptions::touch`], its expiry reset in the same step (`None` when there is no key,
    /// which stays absent; nothing is announced).
    ///
    /// By default [`get_versioned`](Self::get_versioned); a touch is a compare-and-set of the
    /// value read onto itself with the new expiry, again on a lost race. An engine that can
    /// reset an expiry alone (Redis's `GETEX`) overrides it.
    fn get<'a>(
        &'a self, key: &'a str, options: GetOptions,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(provided::get(self, key, options))
    }

    /// The values under `keys`, in the same order. By default one [`get`](Self::get) per key,
    /// all in flight at once.
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(futures_util::future::try_join_all(
            keys.iter().map(|key| self.get(key, GetOptions::new())),
        ))
    }

    /// Writes or removes many keys ([`WriteMany`]); how many were written, or how many existed.
    /// By default one [`put`](Self::put) or [`remove`](Self::remove) per key, in order, stopping
    /// at the first error; the built-in engines override it to write all or nothing.
    fn write_many<'a>(&'a self, batch: WriteMany<'a>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(kit::write_each(self, batch))
    }

    /// Counts under `key` as `op` says: an increment or a rate-limit check
    /// ([`CountOp`]). By default a read and a conditional write with the step functions every
    /// engine shares, retried on a lost race ([`kit::count`] on the wall clock).
    fn count<'a>(
        &'a self, key: &'a str, op: CountOp, options: CountOptions<'a>,
    ) -> BoxFuture<'a, Result<Counted>> {
        Box::pin(kit::count(self, key, op, options, kit::unix_time))
    }

    /// Changes the value under `key` atomically: `change` sees the current bytes and returns
    /// the new ones (or `None` to leave the key as it is), and the write lands only if the key
    /// still holds what `change` saw. On a lost race `change` runs again on the newer value, up
    /// to `options.attempts` times in all, then [`Error::Conflict`]. `true` when it wrote. A
    /// replaced value gets `options.replaced`, a created one `options.created`.
    ///
    /// By default [`get_versioned`](Self::get_versioned) then a [`PutMode::Update`] (or
    /// [`PutMode::Create`]) per attempt, with [`kit::Backoff`] between attempts.
    fn update<'a>(
        &'a self, key: &'a str, change: &'a mut UpdateFn<'_>, options: UpdateOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(provided::update(self, key, change, options))
    }

    /// What the engine offers beyond the core ([`Extensions`]): a change feed, a client cache,
    /// a usage walk, a key layout. None by default.
    fn extensions(&self) -> Extensions<'_> {
        Extensions::new()
    }
}

/// Conveniences over any [`Backend`], for tests and tools that write raw bytes: each is one call
/// of the contract with its options spelled out. Not part of the contract: an engine cannot
/// override them, so they mean the same on every engine.
pub trait BackendExt: Backend {
    /// Stores `value` under `key`, replacing any value, expiring after `ttl` (`None`: never, an
    /// earlier expiry cleared), announced on `notify`'s feed: a [`put`](Backend::put) with
    /// [`PutMode::Overwrite`].
    fn set<'a>(
        &'a self, key: &'a str, value: Vec<u8>, ttl: Option<Duration>, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        let options = PutOptions::new()
            .expiry(Expiry::from_ttl(ttl))
            .notify(notify);
        Box::pin(async move { self.put(key, value, options).await.map(drop) })
    }

    /// The value under `key`: a plain [`get`](Backend::get).
    fn value<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        self.get(key, GetOptions::new())
    }

    /// Whether `key` holds a value: a [`get`](Backend::get).
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        let options = GetOptions::new().exists_only();
        Box::pin(async move { Ok(self.get(key, options).await?.is_some()) })
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

/// Implements [`Backend`] for a wrapper by forwarding every method, provided ones included, to
/// the engine inside, so that its overrides are the ones that run: `forward_backend!([generics]
/// Wrapper, |this| expression of the inner engine)`. `clippy::missing_trait_methods`, denied on
/// the impl, fails `cargo clippy` (run with `-D warnings` in `.ci/run`) when a method added to
/// `Backend` is not forwarded here.
macro_rules! forward_backend {
    ([$($generics:tt)*] $wrapper:ty, |$this:ident| $inner:expr) => {
        #[deny(clippy::missing_trait_methods)]
        impl<$($generics)*> $crate::backend::Backend for $wrapper {
            fn get_versioned<'a>(
                &'a self,
                key: &'a str,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<Option<$crate::backend::Versioned>>> {
                let $this = self;
                $inner.get_versioned(key)
            }

            fn put<'a>(
                &'a self,
                key: &'a str,
                value: Vec<u8>,
                options: $crate::backend::PutOptions<'a>,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<bool>> {
                let $this = self;
                $inner.put(key, value, options)
            }

            fn remove<'a>(
                &'a self,
                key: &'a str,
                options: $crate::backend::RemoveOptions<'a>,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<bool>> {
                let $this = self;
                $inner.remove(key, options)
            }

            fn ttl<'a>(
                &'a self,
                key: &'a str,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<Option<std::time::Duration>>> {
                let $this = self;
                $inner.ttl(key)
            }

            fn list(&self, prefix: &str) -> $crate::backend::BoxStream<'static, $crate::Result<String>> {
                let $this = self;
                $inner.list(prefix)
            }

            fn name(&self) -> &'static str {
                let $this = self;
                $inner.name()
            }

            fn get<'a>(
                &'a self,
                key: &'a str,
                options: $crate::backend::GetOptions,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<Option<Vec<u8>>>> {
                let $this = self;
                $inner.get(key, options)
            }

            fn get_many<'a>(
                &'a self,
                keys: &'a [String],
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<Vec<Option<Vec<u8>>>>> {
                let $this = self;
                $inner.get_many(keys)
            }

            fn write_many<'a>(
                &'a self,
                batch: $crate::backend::WriteMany<'a>,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<u64>> {
                let $this = self;
                $inner.write_many(batch)
            }

            fn count<'a>(
                &'a self,
                key: &'a str,
                op: $crate::backend::CountOp,
                options: $crate::backend::CountOptions<'a>,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<$crate::backend::Counted>> {
                let $this = self;
                $inner.count(key, op, options)
            }

            fn update<'a>(
                &'a self,
                key: &'a str,
                change: &'a mut $crate::backend::UpdateFn<'_>,
                options: $crate::backend::UpdateOptions<'a>,
            ) -> $crate::backend::BoxFuture<'a, $crate::Result<bool>> {
                let $this = self;
                $inner.update(key, change, options)
            }

            fn extensions(&self) -> $crate::backend::Extensions<'_> {
                let $this = self;
                $inner.extensions()
            }
        }
    };
}
pub(crate) use forward_backend;

// A shared engine is an engine: `Store::new(Arc::new(engine))`, and `Arc<dyn Backend>` for one
// chosen at run time.
forward_backend!([B: Backend + ?Sized] Arc<B>, |this| (**this));

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
