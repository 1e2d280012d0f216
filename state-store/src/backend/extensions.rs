//! What an engine offers beyond the core, each a trait of its own, reached through
//! [`Backend::extensions`](super::Backend::extensions). An engine without one implements
//! nothing, and the [`Store`](crate::Store) answers [`Error::Unsupported`](crate::Error) by
//! itself (a feed) or does without (a cache, a usage walk, a key layout).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::journal::Journals;
use super::lease::Leases;
use super::usage::{Usage, UsageOptions};
use super::{BoxFuture, BoxStream, Event, Watch};
use crate::Result;
use crate::setters::setters;

/// A value kept decoded by a client-side cache (see [`ClientCache`]): the typed value, behind
/// `Any` so that one cache holds every type.
pub type Decoded = Arc<dyn std::any::Any + Send + Sync>;

/// How [`ClientCache::get_cached`] decodes stored bytes into a [`Decoded`] value.
pub type Decode<'a> = dyn Fn(&[u8]) -> Result<Decoded> + Send + Sync + 'a;

/// The optional parts of an engine, as [`Backend::extensions`](super::Backend::extensions)
/// returns them. `Extensions::new()` has none; add each the engine has:
///
/// ```ignore
/// fn extensions(&self) -> Extensions<'_> {
///     Extensions::new().system_name("myengine").feed(self)
/// }
/// ```
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub struct Extensions<'a> {
    /// The engine as OpenTelemetry's `db.system.name` names it (`redis`), for the spans of the
    /// `tracing` feature; [`Backend::name`](super::Backend::name) when `None`.
    pub system_name: Option<&'static str>,
    /// A change feed: the watchers of `#[state(notify)]` types.
    pub feed: Option<&'a dyn ChangeFeed>,
    /// A client-side cache for `#[state(cache)]` types.
    pub cache: Option<&'a dyn ClientCache>,
    /// A usage walk of the engine's own; without one, `Store::usage` walks
    /// [`Backend::list`](super::Backend::list).
    pub usage: Option<&'a dyn UsageScan>,
    /// An engine that lays keys out by type, told of each type before it is used.
    pub layout: Option<&'a dyn KeyLayout>,
    /// Leases with fencing tokens, for `#[state(lease)]` types; without them,
    /// `Store::acquire` answers [`Error::Unsupported`](crate::Error::Unsupported).
    pub leases: Option<&'a dyn Leases>,
    /// Journals of changes, for `#[state(notify, history = N)]` types; without them, writes
    /// carry no `history` and `Store::journal` and `Store::consume` answer
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    pub journals: Option<&'a dyn Journals>,
}

impl<'a> Extensions<'a> {
    /// None at all.
    pub fn new() -> Extensions<'a> {
        Extensions::default()
    }
}

setters! {
    impl['a] Extensions<'a> {
        /// The name of `db.system.name`.
        system_name(name: &'static str) = Some(name);
        /// A change feed.
        feed(feed: &'a dyn ChangeFeed) = Some(feed);
        /// A client-side cache.
        cache(cache: &'a dyn ClientCache) = Some(cache);
        /// A usage walk of the engine's own.
        usage(usage: &'a dyn UsageScan) = Some(usage);
        /// A key layout by type.
        layout(layout: &'a dyn KeyLayout) = Some(layout);
        /// Leases with fencing tokens.
        leases(leases: &'a dyn Leases) = Some(leases);
        /// Journals of changes.
        journals(journals: &'a dyn Journals) = Some(journals);
    }
}

impl fmt::Debug for Extensions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("system_name", &self.system_name)
            .field("feed", &self.feed.is_some())
            .field("cache", &self.cache.is_some())
            .field("usage", &self.usage.is_some())
            .field("layout", &self.layout.is_some())
            .field("leases", &self.leases.is_some())
            .field("journals", &self.journals.is_some())
            .finish()
    }
}

/// A change feed: what the writes of `#[state(notify)]` types announce (their
/// [`Notify`](super::Notify) channel), delivered to watchers.
///
/// An engine with a feed announces each change a write made ([`Event`]) in the same atomic step
/// as the write, so that a watcher never hears of a change that was not stored.
/// [`kit::feed`](super::kit::feed) holds the watcher queues with lag accounting that the
/// built-in engines use, so that a feed of your own behaves exactly like theirs.
pub trait ChangeFeed: Send + Sync {
    /// Subscribes: every change announced on `watch.channel` (or only those of `watch.key`)
    /// once the returned future has completed, in the order they were stored for any one key.
    ///
    /// The stream is `'static` and buffers at most `watch.buffer` undelivered changes: past that
    /// it drops the oldest and yields one [`Error::Lagged`](crate::Error::Lagged) with their
    /// number before going on. When the engine loses its subscription and gets it back, it
    /// yields [`Error::Interrupted`](crate::Error::Interrupted). Dropping the stream ends the
    /// subscription.
    fn watch<'a>(
        &'a self, watch: &'a Watch,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>>;

    /// Turns on the announcements of expired keys ([`Event::Expired`]), where they are a server
    /// setting. On Redis this sets `notify-keyspace-events` to include `Ex`, keeping the flags
    /// already set. An engine that always announces expiries answers `Ok`; one that never can
    /// answers [`Error::Unsupported`](crate::Error::Unsupported).
    fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>>;
}

/// [`ChangeFeed::enable_expiry_events`] of `backend`'s feed, or [`Error::Unsupported`] naming
/// `enable_expiry_events` when it has none.
pub(crate) async fn enable_expiry_events<B: super::Backend + ?Sized>(backend: &B) -> Result<()> {
    match backend.extensions().feed {
        Some(feed) => feed.enable_expiry_events().await,
        None => Err(crate::Error::Unsupported {
            operation: "enable_expiry_events",
            backend: backend.name(),
        }),
    }
}

/// `ChangeFeed::enable_expiry_events` as an inherent method of an engine, so that
/// `store.backend().enable_expiry_events()` works without importing the trait, as in 0.1.
macro_rules! inherent_enable_expiry_events {
    ($engine:ty) => {
        impl $engine {
            /// [`ChangeFeed::enable_expiry_events`](crate::backend::ChangeFeed::enable_expiry_events),
            /// callable without importing the trait.
            pub async fn enable_expiry_events(&self) -> $crate::Result<()> {
                $crate::backend::ChangeFeed::enable_expiry_events(self).await
            }
        }
    };
}
pub(crate) use inherent_enable_expiry_events;

/// A client-side cache of decoded values, for types declared with `cache`.
pub trait ClientCache: Send + Sync {
    /// The value under `key`, decoded by `decode`: from the cache when it holds the key, else
    /// read and decoded (and kept, if the engine can be told when the key changes). `prefix` is
    /// the start of every key of the type (`{namespace}:{prefix}:`), which an engine that tracks
    /// changes by prefix registers.
    fn get_cached<'a>(
        &'a self, key: &'a str, prefix: &'a str, decode: &'a Decode<'a>,
    ) -> BoxFuture<'a, Result<Option<Decoded>>>;
}

/// A usage walk of the engine's own (the Redis engine's `SCAN` with `MEMORY USAGE` samples).
pub trait UsageScan: Send + Sync {
    /// What the keys that start with `prefix` (`{namespace}:`, or empty for every key) hold,
    /// per prefix, within the bounds of `options` (see [`Usage`]). Reads only. Counted with a
    /// [`UsageTally`](crate::UsageTally), as the walk over `list` is.
    fn usage<'a>(
        &'a self, prefix: &'a str, options: &'a UsageOptions,
    ) -> BoxFuture<'a, Result<Usage>>;
}

/// An engine that lays keys out by type, such as one bucket per type with a bucket-wide expiry
/// (NATS JetStream KV).
pub trait KeyLayout: Send + Sync {
    /// Tells the engine that `prefix` (`{namespace}:{prefix}`, or `{prefix}`: the channel form
    /// of [`Notify`](super::Notify)) is a state type's key prefix, whose keys are
    /// `{prefix}:{id}` and whose writes carry `ttl` (for a rate limit, the longest a check keeps
    /// its key). The [`Store`](crate::Store) declares every type it computes a key of, before
    /// the call. The declaration says where the type prefix ends (an id may hold `:`) and what
    /// expiry to give the type's storage. A declaration of `None` adds the prefix but does not
    /// replace a ttl declared before.
    fn declare(&self, prefix: &str, ttl: Option<Duration>);
}
