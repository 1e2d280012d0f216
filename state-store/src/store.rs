//! The typed [`Store`].

use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use futures_util::future::Either;

use crate::backend::{Backend, Decoded, Expiry, Notify, WATCH_BUFFER, Watch, ceil_millis};
use crate::id::{IdArg, id_from_key};
use crate::key::{Counter, Notified, StateKey};
use crate::rate_limit::{Decision, Policy, RateLimit};
use crate::rules;
use crate::trace::{self, CallSpan, call_span, traced};
use crate::usage::{Usage, UsageOptions};
use crate::watch::Changes;
use crate::{Error, Result};

mod migrate;
pub use migrate::{MigrateOptions, MigrateReport};

/// How often [`Store::update`] tries before giving up with [`Error::Conflict`], by default.
const UPDATE_ATTEMPTS: u32 = 64;

/// Typed state over a [`Backend`]: every key and value is checked against its [`StateKey`] type.
///
/// Reads are always on; writes ([`enable_set`](Self::enable_set)) and deletes
/// ([`enable_remove`](Self::enable_remove)) are opt-in. Cloning is cheap and clones share the
/// backend (and its connection); a `Store` is `Send + Sync`, and the futures of its methods are
/// `Send`, so a handler generic over the backend can be spawned:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use state_store::{Backend, MemoryBackend, Result, StateKey, Store};
///
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "visits", id = String)]
/// struct Visits(u64);
///
/// async fn visit<B: Backend>(store: &Store<B>, page: &str) -> Result<u64> {
///     let seen = store.get::<Visits>(page.to_string()).await?.map_or(0, |v| v.0);
///     store.set::<Visits>(page.to_string(), &Visits(seen + 1)).await?;
///     Ok(seen + 1)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let store = Store::new(MemoryBackend::new()).enable_set();
/// let handle = tokio::spawn({
///     let store = store.clone();
///     async move { visit(&store, "/home").await }
/// });
/// assert_eq!(handle.await.unwrap()?, 1);
/// # Ok(())
/// # }
/// ```
pub struct Store<B> {
    backend: Arc<B>,
    /// `"{namespace}:"`, or empty.
    namespace: Result<Arc<str>, Arc<NamespaceError>>,
    set_enabled: bool,
    remove_enabled: bool,
    update_attempts: u32,
    watch_buffer: usize,
    /// Whether the spans of the `tracing` feature record ids.
    trace_ids: bool,
}

#[derive(Debug)]
struct NamespaceError {
    namespace: String,
    reason: String,
}

impl<B: Backend> Store<B> {
    /// A store over `backend`, without namespace, with writes and deletes off.
    pub fn new(backend: B) -> Self {
        Store {
            backend: Arc::new(backend),
            namespace: Ok(Arc::from("")),
            set_enabled: false,
            remove_enabled: false,
            update_attempts: UPDATE_ATTEMPTS,
            watch_buffer: WATCH_BUFFER,
            trace_ids: false,
        }
    }

    /// Puts every key of this store under `namespace`: `{namespace}:{prefix}:{id}`, so that
    /// services sharing one Redis cannot collide.
    ///
    /// A namespace follows the rules of a prefix: non-empty, ASCII letters, digits, `_`, `-` and
    /// `.`. An invalid one is not written anywhere: every operation of the store returns
    /// [`Error::InvalidNamespace`] before touching a key. Use [`try_namespace`](Self::try_namespace)
    /// to get the error here instead.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        self.namespace = match check_segment(&namespace) {
            Ok(()) => Ok(Arc::from(format!("{namespace}:"))),
            Err(reason) => Err(Arc::new(NamespaceError { namespace, reason })),
        };
        self
    }

    /// Like [`namespace`](Self::namespace), but returns an invalid namespace as an error.
    pub fn try_namespace(self, namespace: impl Into<String>) -> Result<Self> {
        let store = self.namespace(namespace);
        store.namespace_prefix()?;
        Ok(store)
    }

    /// Allows every write: [`set`](Self::set), [`set_with_ttl`](Self::set_with_ttl),
    /// [`set_if_absent`](Self::set_if_absent), [`set_many`](Self::set_many),
    /// [`update`](Self::update), [`incr`](Self::incr) and [`check`](Self::check).
    pub fn enable_set(mut self) -> Self {
        self.set_enabled = true;
        self
    }

    /// Allows [`remove`](Self::remove) and [`remove_many`](Self::remove_many).
    pub fn enable_remove(mut self) -> Self {
        self.remove_enabled = true;
        self
    }

    /// How many times [`update`](Self::update) tries before [`Error::Conflict`] (default 64,
    /// at least 1).
    pub fn update_attempts(mut self, attempts: u32) -> Self {
        self.update_attempts = attempts.max(1);
        self
    }

    /// How many undelivered changes each watcher of this store buffers (default 1024, at least
    /// 1): past that it drops the oldest, and its next item is [`Error::Lagged`] saying how many.
    pub fn watch_buffer(mut self, changes: usize) -> Self {
        self.watch_buffer = changes.max(1);
        self
    }

    /// Whether the spans of the `tracing` feature record the id of each call, as `state.id`
    /// (the id as it is written in the key). Off by default: ids are often personal data (user
    /// ids, email addresses) that traces should not carry. Without the feature it changes
    /// nothing.
    pub fn trace_ids(mut self, record: bool) -> Self {
        self.trace_ids = record;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The full key of `S` with `id`, namespace included, as stored in the backend.
    pub fn full_key<S: StateKey>(&self, id: impl IdArg<S::Id>) -> Result<String> {
        let namespace = self.namespace_prefix()?;
        let mut key = String::with_capacity(namespace.len() + S::PREFIX.len() + 24);
        key.push_str(namespace);
        key.push_str(S::PREFIX);
        // No-op but for engines that lay keys out by type (`Backend::declare`).
        self.backend.declare(&key, S::TTL);
        key.push(':');
        id.write_id(&mut key);
        Ok(key)
    }

    /// The channel of `S`'s change feed, `{namespace}:{prefix}`, when `S` announces its writes:
    /// the start of `key`, which is one of `S`'s keys.
    fn notify<'k, S: StateKey>(&self, key: &'k str) -> Notify<'k> {
        if !S::NOTIFY {
            return None;
        }
        let namespace = self.namespace_prefix().map_or(0, str::len);
        key.get(..namespace + S::PREFIX.len())
    }

    /// The channel of `S`'s change feed.
    fn channel<S: StateKey>(&self) -> Result<String> {
        Ok(format!("{}{}", self.namespace_prefix()?, S::PREFIX))
    }

    /// The namespace as spans show it: without its `:`, empty without one (or an invalid one).
    #[cfg(feature = "tracing")]
    fn namespace_name(&self) -> &str {
        self.namespace
            .as_deref()
            .map_or("", |prefix| prefix.trim_end_matches(':'))
    }

    /// Records on `span` the id in `key` (a key of `S`), when this store records ids.
    #[cfg_attr(not(feature = "tracing"), allow(clippy::extra_unused_type_parameters))]
    fn record_id<S: StateKey>(&self, span: &CallSpan, key: Result<&str, &Error>) {
        #[cfg(feature = "tracing")]
        if self.trace_ids
            && !span.is_disabled()
            && let Ok(key) = key
        {
            let start = self.namespace_prefix().map_or(0, str::len) + S::PREFIX.len() + 1;
            span.record("state.id", key.get(start..).unwrap_or(key));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (span, key);
    }

    fn namespace_prefix(&self) -> Result<&str> {
        match &self.namespace {
            Ok(prefix) => Ok(prefix),
            Err(e) => Err(Error::InvalidNamespace {
                namespace: e.namespace.clone(),
                reason: e.reason.clone(),
            }),
        }
    }

    fn check_enabled(
        &self,
        enabled: bool,
        operation: &'static str,
        enable: &'static str,
    ) -> Result<()> {
        if enabled {
            Ok(())
        } else {
            Err(Error::Disabled { operation, enable })
        }
    }

    /// The full key of a write, or why the write is refused.
    fn write_key<S: StateKey>(
        &self,
        operation: &'static str,
        id: impl IdArg<S::Id>,
    ) -> Result<String> {
        self.check_enabled(self.set_enabled, operation, "enable_set")?;
        self.full_key::<S>(id)
    }

    /// The `S` with `id`, or `None` when there is none (or it expired).
    ///
    /// A value that is not valid JSON for `S` gives [`Error::Decode`] with the key and serde's
    /// message; the stored value is left as it is.
    pub fn get<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<Option<S>>> + Send + '_ {
        // The key is built before the future so that the id is not held across an await: the
        // future is `Send` whatever the caller passes.
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "get", key.as_deref());
        traced(span, async move {
            let key = key?;
            if S::CACHE {
                return self.get_cached::<S>(&key).await;
            }
            match self.backend.get(&key).await? {
                Some(bytes) => decode(&key, &bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    /// `get` of a type declared with `cache`: through the backend's client-side cache, which
    /// keeps the decoded value and hands out clones of it.
    async fn get_cached<S: StateKey>(&self, key: &str) -> Result<Option<S>> {
        // `{namespace}{prefix}:`, the start of every key of `S` (see `full_key`).
        let prefix = &key[..self.namespace_prefix()?.len() + S::PREFIX.len() + 1];
        let decode = |bytes: &[u8]| -> Result<Decoded> { Ok(Arc::new(decode::<S>(key, bytes)?)) };
        let Some(value) = self.backend.get_cached(key, prefix, &decode).await? else {
            return Ok(None);
        };
        let value = value.downcast::<S>().map_err(|_| Error::Backend {
            operation: "get",
            key: key.to_owned(),
            source: "the client-side cache held a value of another type under this key".into(),
        })?;
        Ok(Some(value.__cached_clone().ok_or_else(|| {
            Error::Backend {
                operation: "get",
                key: key.to_owned(),
                source: "a cached type that cannot be cloned (implement `StateKey` through the \
                     derive, which implements its copy with `Clone`)"
                    .into(),
            }
        })?))
    }

    /// Stores `value` under `id` with the type's `ttl` (no expiry, clearing any earlier one, when
    /// the type has none). Needs [`enable_set`](Self::enable_set).
    pub fn set<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
        value: &S,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        self.write(call_span!(self, S, "set"), id, value, S::TTL)
    }

    /// Stores `value` under `id`, expiring after `ttl` instead of the type's `ttl`. Redis counts
    /// expiry in milliseconds: a `ttl` with a fraction of a millisecond is rounded up. Needs
    /// [`enable_set`](Self::enable_set).
    pub fn set_with_ttl<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
        value: &S,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        self.write(call_span!(self, S, "set_with_ttl"), id, value, Some(ttl))
    }

    fn write<S: StateKey>(
        &self,
        span: CallSpan,
        id: impl IdArg<S::Id>,
        value: &S,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        let prepared = self.write_key::<S>("set", id).and_then(|key| {
            let ttl = ttl.map(|ttl| check_ttl(&key, ttl)).transpose()?;
            let value = encode(&key, value)?;
            Ok((key, value, ttl))
        });
        self.record_id::<S>(&span, prepared.as_ref().map(|p| p.0.as_str()));
        traced(span, async move {
            let (key, value, ttl) = prepared?;
            let notify = self.notify::<S>(&key);
            self.backend.set(&key, value, ttl, notify).await
        })
    }

    /// Removes the `S` with `id`; `true` when there was one. Needs
    /// [`enable_remove`](Self::enable_remove).
    ///
    /// Not retried when the connection breaks under it: the server may have removed the key
    /// without the answer arriving, and a second try would then report `false`. The error says
    /// so; calling again is safe.
    pub fn remove<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<bool>> + Send + '_ {
        let key = self
            .check_enabled(self.remove_enabled, "remove", "enable_remove")
            .and_then(|()| self.full_key::<S>(id));
        let span = call_span!(self, S, "remove", key.as_deref());
        traced(span, async move {
            let key = key?;
            self.backend.remove(&key, self.notify::<S>(&key)).await
        })
    }

    /// Whether there is an `S` with `id`.
    pub fn exists<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<bool>> + Send + '_ {
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "exists", key.as_deref());
        traced(span, async move { self.backend.exists(&key?).await })
    }

    /// Time left before the `S` with `id` expires, in whole milliseconds; `None` when there is no
    /// such value or it does not expire.
    pub fn ttl<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<Option<Duration>>> + Send + '_ {
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "ttl", key.as_deref());
        traced(span, async move { self.backend.ttl(&key?).await })
    }

    /// Stores `value` under `id` with the type's `ttl`, only if there is no value there yet:
    /// `true` when it was written. One `SET NX PX` command. Needs
    /// [`enable_set`](Self::enable_set).
    pub fn set_if_absent<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
        value: &S,
    ) -> impl Future<Output = Result<bool>> + Send + '_ {
        let prepared = self
            .write_key::<S>("set_if_absent", id)
            .and_then(|key| Ok((encode(&key, value)?, type_ttl::<S>(&key)?, key)));
        let span = call_span!(
            self,
            S,
            "set_if_absent",
            prepared.as_ref().map(|p| p.2.as_str())
        );
        traced(span, async move {
            let (value, ttl, key) = prepared?;
            let notify = self.notify::<S>(&key);
            self.backend.set_if_absent(&key, value, ttl, notify).await
        })
    }

    /// Changes the `S` with `id` atomically: `change` sees the current value (`None` when there
    /// is none) and returns the new one, or `None` to leave it as it is. Returns the value stored
    /// after the call.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store};
    /// #[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "job", id = u64)]
    /// struct Job { status: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set();
    /// # store.set::<Job>(7, &Job { status: "queued".into() }).await?;
    /// // Claim the job only if it is still queued.
    /// let now = store
    ///     .update::<Job>(7, |current| match current {
    ///         Some(mut job) if job.status == "queued" => {
    ///             job.status = "running".into();
    ///             Some(job)
    ///         }
    ///         _ => None,
    ///     })
    ///     .await?;
    /// assert_eq!(now, Some(Job { status: "running".into() }));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The write only lands if the value is still the one `change` saw (a compare-and-set in one
    /// server-side step, not `WATCH`, which is unsafe on a shared connection). When another writer
    /// got there first, `change` runs again on the newer value, so keep it free of side effects.
    /// After [`update_attempts`](Self::update_attempts) lost races the call fails with
    /// [`Error::Conflict`] and has written nothing.
    ///
    /// An updated key keeps its remaining expiry; a key it creates gets the type's `ttl`. Each
    /// attempt costs two round trips (read, then compare-and-set). Needs
    /// [`enable_set`](Self::enable_set).
    pub fn update<'a, S: StateKey>(
        &'a self,
        id: impl IdArg<S::Id>,
        change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> impl Future<Output = Result<Option<S>>> + Send + 'a {
        let span = call_span!(self, S, "update");
        let updated = self.update_with::<S>(span, "update", id, change, false);
        async move { Ok(updated.await?.into_value()) }
    }

    /// [`update`](Self::update), saying what happened: [`Updated::Written`] with the value
    /// stored when `change` returned one and it was written, [`Updated::Unchanged`] with the
    /// value as it is when `change` returned `None`. No comparing of values to find out.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store, Updated};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "job", id = u64)]
    /// # struct Job { status: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set();
    /// # store.set::<Job>(7, &Job { status: "queued".into() }).await?;
    /// let claim = |job: Option<Job>| match job {
    ///     Some(job) if job.status == "queued" => Some(Job { status: "running".into() }),
    ///     _ => None,
    /// };
    /// match store.update_outcome::<Job>(7, claim).await? {
    ///     Updated::Written(job) => assert_eq!(job.status, "running"), // this worker has it
    ///     Updated::Unchanged(current) => panic!("another worker has it: {current:?}"),
    /// }
    /// assert!(!store.update_outcome::<Job>(7, claim).await?.is_written());
    /// # Ok(())
    /// # }
    /// ```
    pub fn update_outcome<'a, S: StateKey>(
        &'a self,
        id: impl IdArg<S::Id>,
        change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> impl Future<Output = Result<Updated<S>>> + Send + 'a {
        self.update_with::<S>(
            call_span!(self, S, "update_outcome"),
            "update",
            id,
            change,
            false,
        )
    }

    /// [`update`](Self::update), except that a value it replaces gets the type's `ttl` again,
    /// counted from this write: sliding expiry, for a session that should end after 30 minutes
    /// without changes rather than 30 minutes after it began. When `change` returns `None`
    /// nothing is written and the expiry is left as it is (use [`touch`](Self::touch) to extend
    /// it without a change). Needs [`enable_set`](Self::enable_set).
    pub fn update_and_touch<'a, S: StateKey>(
        &'a self,
        id: impl IdArg<S::Id>,
        change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> impl Future<Output = Result<Updated<S>>> + Send + 'a {
        let span = call_span!(self, S, "update_and_touch");
        self.update_with::<S>(span, "update_and_touch", id, change, true)
    }

    /// Resets the expiry of the `S` with `id` to the type's `ttl`, counted from now (or clears
    /// it, for a type without `ttl`), without changing the value: one `PEXPIRE` on Redis
    /// (`PERSIST` and `EXISTS` in one round trip for a type without `ttl`).
    /// `false` when there is no such value. Announces nothing on the change feed, since the
    /// value did not change. Needs [`enable_set`](Self::enable_set).
    pub fn touch<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<bool>> + Send + '_ {
        let key = self.write_key::<S>("touch", id);
        let span = call_span!(self, S, "touch", key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            self.backend.touch(&key, Expiry::from_ttl(ttl)).await
        })
    }

    /// The `S` with `id`, its expiry reset to the type's `ttl` in the same step (`GETEX ... PX`
    /// on Redis 6.2+: one round trip): a read that keeps a session alive. `None` when there is
    /// no such value. Needs [`enable_set`](Self::enable_set), since it changes the expiry.
    pub fn get_and_touch<S: StateKey>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<Option<S>>> + Send + '_ {
        let key = self.write_key::<S>("get_and_touch", id);
        let span = call_span!(self, S, "get_and_touch", key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            match self
                .backend
                .get_and_touch(&key, Expiry::from_ttl(ttl))
                .await?
            {
                Some(bytes) => decode(&key, &bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Removes the `S` with `id` only if `check` accepts it, atomically: the removal lands only
    /// if the value is still the one `check` saw (a compare-and-delete on the server); when
    /// another writer changed it first, `check` runs again on the newer value. `true` when it
    /// removed; `false` when there was no value or `check` declined. After
    /// [`update_attempts`](Self::update_attempts) lost races, [`Error::Conflict`].
    /// Needs [`enable_remove`](Self::enable_remove).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "job", id = u64)]
    /// # struct Job { status: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set().enable_remove();
    /// # store.set::<Job>(7, &Job { status: "done".into() }).await?;
    /// // Clean up a job only once it is done, never one a worker just restarted.
    /// let removed = store.remove_if::<Job>(7, |job| job.status == "done").await?;
    /// assert!(removed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove_if<'a, S: StateKey>(
        &'a self,
        id: impl IdArg<S::Id>,
        mut check: impl FnMut(&S) -> bool + Send + 'a,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        let key = self
            .check_enabled(self.remove_enabled, "remove_if", "enable_remove")
            .and_then(|()| self.full_key::<S>(id));
        let span = call_span!(self, S, "remove_if", key.as_deref());
        traced(span, async move {
            let key = key?;
            let mut accept =
                |bytes: &[u8]| -> Result<bool> { Ok(check(&decode::<S>(&key, bytes)?)) };
            let notify = self.notify::<S>(&key);
            self.backend
                .remove_if(&key, &mut accept, self.update_attempts, notify)
                .await
        })
    }

    /// `update` and `update_and_touch`: `refresh` gives a replaced value the type's `ttl`.
    fn update_with<'a, S: StateKey>(
        &'a self,
        span: CallSpan,
        operation: &'static str,
        id: impl IdArg<S::Id>,
        mut change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
        refresh: bool,
    ) -> impl Future<Output = Result<Updated<S>>> + Send + 'a {
        let key = self.write_key::<S>(operation, id);
        self.record_id::<S>(&span, key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            // What the call returns: the value written by the winning attempt, or the one the
            // closure declined to change.
            let mut outcome: Option<S> = None;
            let mut tries = 0u32;
            let mut attempt = |current: Option<&[u8]>| -> Result<Option<Vec<u8>>> {
                tries += 1;
                let seen = current.map(|bytes| decode::<S>(&key, bytes)).transpose()?;
                match change(seen) {
                    Some(new) => {
                        let bytes = encode(&key, &new)?;
                        outcome = Some(new);
                        Ok(Some(bytes))
                    }
                    None => {
                        // The closure consumed the value it saw; decoding again spares
                        // `S: Clone`.
                        outcome = current.map(|bytes| decode(&key, bytes)).transpose()?;
                        Ok(None)
                    }
                }
            };
            let notify = self.notify::<S>(&key);
            let attempts = self.update_attempts;
            let written = if refresh {
                self.backend
                    .update_refreshing(&key, &mut attempt, ttl, attempts, notify)
                    .await
            } else {
                self.backend
                    .update(&key, &mut attempt, ttl, attempts, notify)
                    .await
            };
            trace::record_attempts(tries);
            let written = written?;
            Ok(match (written, outcome) {
                (true, Some(value)) => Updated::Written(value),
                (_, outcome) => Updated::Unchanged(outcome),
            })
        })
    }

    /// Adds `by` to the counter with `id` and returns its new value, atomically (on Redis, one
    /// round trip; see [`Backend::incr`] for other engines). A missing counter starts at 0 and
    /// gets the type's `ttl` (the window); later increments do not extend it, whatever the
    /// value.
    ///
    /// Needs [`enable_set`](Self::enable_set). A value under the key that is not an integer, or a
    /// result out of the `i64` range, gives [`Error::InvalidKey`] and changes nothing.
    pub fn incr<S: Counter>(
        &self,
        id: impl IdArg<S::Id>,
        by: i64,
    ) -> impl Future<Output = Result<i64>> + Send + '_ {
        let key = self.write_key::<S>("incr", id);
        let span = call_span!(self, S, "incr", key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            self.backend
                .incr(&key, by, ttl, self.notify::<S>(&key))
                .await
        })
    }

    /// Checks one call against the rate limit `S` for `id`, counting it if it is allowed.
    /// Atomic (on Redis, one round trip), so concurrent callers never get more than the quota.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, Policy, Quota, RateLimit, StateKey, Store};
    /// #[derive(Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "login-attempts", id = String, counter)]
    /// struct LoginAttempts(i64);
    ///
    /// impl RateLimit for LoginAttempts {
    ///     const QUOTA: Quota = Quota::per_minute(3);
    ///     const POLICY: Policy = Policy::FixedWindow;
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// for _ in 0..3 {
    ///     assert!(store.check::<LoginAttempts>("alice".to_string()).await?.allowed);
    /// }
    /// let refused = store.check::<LoginAttempts>("alice".to_string()).await?;
    /// assert!(!refused.allowed);
    /// assert!(refused.retry_after <= std::time::Duration::from_secs(60));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Needs [`enable_set`](Self::enable_set), since a check writes. A check announces nothing
    /// on the change feed, even for a type declared with `notify`: its count is bookkeeping.
    pub fn check<S: RateLimit>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<Decision>> + Send + '_ {
        let key = self.write_key::<S>("check", id);
        let span = call_span!(self, S, "check", key.as_deref());
        traced(span, async move {
            let key = key?;
            // The longest a check keeps its key: the window, or a full burst's worth of spacing.
            let keep = match S::POLICY {
                Policy::FixedWindow => S::QUOTA.period(),
                _ => S::QUOTA
                    .emission_interval()
                    .saturating_mul(S::QUOTA.burst()),
            };
            let channel = self.namespace_prefix().map_or(0, str::len) + S::PREFIX.len();
            self.backend.declare(
                &key[..channel],
                Some(Duration::from_millis(ceil_millis(keep))),
            );
            match S::POLICY {
                Policy::FixedWindow => {
                    let window = check_ttl(&key, S::QUOTA.period())?;
                    self.backend
                        .fixed_window(&key, u64::from(S::QUOTA.count()), window)
                        .await
                }
                Policy::Smooth => {
                    self.backend
                        .gcra(&key, S::QUOTA.emission_interval(), S::QUOTA.burst())
                        .await
                }
            }
        })
    }

    /// The values with `ids`, in the order asked (`None` where there is none): on Redis in one
    /// round trip (`MGET`). A value that does not decode gives [`Error::Decode`] naming its key.
    pub fn get_many<S: StateKey>(
        &self,
        ids: impl IntoIterator<Item = impl IdArg<S::Id>>,
    ) -> impl Future<Output = Result<Vec<Option<S>>>> + Send + '_ {
        let keys = self.full_keys::<S>(ids);
        let span = call_span!(self, S, "get_many");
        trace::record_batch(&span, keys.as_ref().map_or(0, Vec::len));
        traced(span, async move {
            let keys = keys?;
            let values = self.backend.get_many(&keys).await?;
            keys.iter()
                .zip(values)
                .map(|(key, value)| value.map(|bytes| decode(key, &bytes)).transpose())
                .collect()
        })
    }

    /// Stores every `(id, value)` with the type's `ttl`: all or nothing on the built-in
    /// backends (on Redis one `MULTI` pipeline, one round trip); a backend that keeps the
    /// provided [`Backend::set_many`] writes one key at a time.
    /// `items` may yield pairs or references to pairs, so `&vec_of_pairs` works. Needs
    /// [`enable_set`](Self::enable_set); nothing is written if any value fails to encode.
    pub fn set_many<S: StateKey>(
        &self,
        items: impl IntoIterator<Item = impl Item<S>>,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        let prepared = self
            .check_enabled(self.set_enabled, "set_many", "enable_set")
            .and_then(|()| {
                items
                    .into_iter()
                    .map(|item| {
                        let key = self.full_key::<S>(item.id())?;
                        let value = encode(&key, item.value())?;
                        Ok((key, value))
                    })
                    .collect::<Result<Vec<_>>>()
            });
        let span = call_span!(self, S, "set_many");
        trace::record_batch(&span, prepared.as_ref().map_or(0, Vec::len));
        traced(span, async move {
            let items = prepared?;
            let (ttl, notify) = match items.first() {
                Some((key, _)) => (type_ttl::<S>(key)?, self.notify::<S>(key).map(String::from)),
                None => return Ok(()),
            };
            self.backend.set_many(items, ttl, notify.as_deref()).await
        })
    }

    /// Removes the values with `ids` (on Redis, one `DEL`); how many there were. Needs
    /// [`enable_remove`](Self::enable_remove).
    pub fn remove_many<S: StateKey>(
        &self,
        ids: impl IntoIterator<Item = impl IdArg<S::Id>>,
    ) -> impl Future<Output = Result<u64>> + Send + '_ {
        let keys = self
            .check_enabled(self.remove_enabled, "remove_many", "enable_remove")
            .and_then(|()| self.full_keys::<S>(ids));
        let span = call_span!(self, S, "remove_many");
        trace::record_batch(&span, keys.as_ref().map_or(0, Vec::len));
        traced(span, async move {
            let keys = keys?;
            let notify = keys.first().and_then(|key| self.notify::<S>(key));
            self.backend.remove_many(&keys, notify).await
        })
    }

    /// The changes of every `S` in this store's namespace, from the moment the returned future
    /// completes: a [`Change`](crate::Change) for each write, removal and expiry, in the order
    /// they were stored for any one id. `S` must be declared with `#[state(notify)]`.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # use serde::{Deserialize, Serialize};
    /// use state_store::{Change, MemoryBackend, StateKey, Store};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "job", id = String, ttl = "7d", notify)]
    /// struct Job { status: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// let mut changes = store.watch::<Job>().await?;
    /// store.set::<Job>("j1".to_string(), &Job { status: "done".into() }).await?;
    /// match changes.next().await.unwrap()? {
    ///     Change::Set { id, value } => assert_eq!((id.as_str(), value.status.as_str()), ("j1", "done")),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The stream is `Send + 'static`: move it into a spawned task. Each watcher buffers up to
    /// [`watch_buffer`](Self::watch_buffer) changes; a watcher that falls further behind gets
    /// one [`Error::Lagged`] item and goes on with the newer changes. On Redis the feed is
    /// pub/sub, which is at most once: after a reconnection the stream yields
    /// [`Error::Interrupted`], and changes stored while the connection was down are not
    /// delivered. Where a change must not be missed, treat both errors
    /// ([`Error::missed_changes`]) as a cue to read the state again. A value that does not
    /// decode is an [`Error::Decode`] item naming its key, and the stream goes on.
    ///
    /// What publishes: `set`, `set_with_ttl`, a winning `set_if_absent`, an `update` that wrote,
    /// `incr` (the new count as the value) and `set_many` (one change per item) publish
    /// [`Change::Set`](crate::Change::Set); `remove` and `remove_many` publish
    /// [`Change::Removed`](crate::Change::Removed) for keys that existed. Rate-limit
    /// [`check`](Self::check)s publish nothing. [`Change::Expired`](crate::Change::Expired) comes
    /// from the engine: always on the memory backend, on Redis only when the server announces
    /// expired keys (see `RedisBackend::enable_expiry_events`).
    pub fn watch<S: Notified>(&self) -> impl Future<Output = Result<Changes<S>>> + Send + '_ {
        assert_announces::<S>();
        let channel = self.channel::<S>();
        let span = call_span!(self, S, "watch");
        traced(span, async move {
            let watch = Watch::new(channel?).buffer(self.watch_buffer);
            let changes = self.backend.watch(&watch).await?;
            Ok(Changes::new(changes, &watch.channel))
        })
    }

    /// The changes of the `S` with `id` only, as [`watch`](Self::watch) delivers them.
    pub fn watch_id<S: Notified>(
        &self,
        id: impl IdArg<S::Id>,
    ) -> impl Future<Output = Result<Changes<S>>> + Send + '_ {
        assert_announces::<S>();
        let watch = self.channel::<S>().and_then(|channel| {
            let key = self.full_key::<S>(id)?;
            Ok(Watch::new(channel).key(key).buffer(self.watch_buffer))
        });
        let span = call_span!(self, S, "watch_id");
        traced(span, async move {
            let watch = watch?;
            let changes = self.backend.watch(&watch).await?;
            Ok(Changes::new(changes, &watch.channel))
        })
    }

    /// The ids of every `S` in this store's namespace, each once, in no particular order.
    ///
    /// On Redis this walks the key space with `SCAN MATCH` (never `KEYS`, which blocks the
    /// server), a batch at a time. A key under the prefix that does not parse as an `S::Id` (a
    /// key written by something else) yields an [`Error::InvalidKey`] item naming it, and the
    /// stream goes on.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store};
    /// use state_store::StreamExt; // `next()`, re-exported from futures-util
    /// # #[derive(Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "job", id = u64)]
    /// # struct Job { status: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set();
    /// # store.set::<Job>(7, &Job { status: "queued".into() }).await?;
    /// let mut ids = std::pin::pin!(store.ids::<Job>());
    /// while let Some(id) = ids.next().await {
    ///     let id: u64 = id?;
    /// #   assert_eq!(id, 7);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn ids<S: StateKey>(&self) -> impl Stream<Item = Result<S::Id>> + Send + use<S, B> {
        let prefix = match self.namespace_prefix() {
            Ok(namespace) => format!("{namespace}{}:", S::PREFIX),
            Err(e) => return Either::Left(futures_util::stream::iter([Err(e)])),
        };
        let keys = self.backend.list(&prefix);
        Either::Right(keys.map(move |key| {
            let key = key?;
            let parsed = match key.strip_prefix(prefix.as_str()) {
                Some(id) => id_from_key::<S::Id>(id)
                    .map_err(|e| format!("not a `{}` id: {e}", std::any::type_name::<S::Id>())),
                None => Err(format!("not under `{prefix}`")),
            };
            parsed.map_err(|reason| Error::InvalidKey { key, reason })
        }))
    }

    /// What this store's namespace holds, per prefix: key counts, estimated bytes, keys
    /// without expiry and the spread of remaining times, with the default [`UsageOptions`]
    /// (`SCAN COUNT 1000`, 200 keys measured per prefix, 30 s at most). Reads only: no
    /// [`enable_set`](Self::enable_set) needed. Without a namespace, every key of the database
    /// is counted, each under its first segment.
    ///
    /// A row is the key segment after `{namespace}:` up to the next `:`, which for the keys
    /// this crate writes is a [`StateKey`] type's prefix; keys of the namespace written by
    /// other clients without a further `:` are counted under [`PrefixUsage::NO_PREFIX`].
    ///
    /// On Redis it is built to run against a large production server: `SCAN` with a `COUNT`
    /// (never `KEYS`), one pipeline of `PTTL` per batch so that key counts and keys without
    /// expiry are exact, `MEMORY USAGE` only for a bounded random sample of each prefix's keys
    /// (bytes are the sample's mean times the count), and a time limit after which the walk
    /// stops with [`Usage::complete`] false. The memory backend's figures are exact, its bytes
    /// being key plus value lengths.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use state_store::{MemoryBackend, StateKey, Store};
    /// # #[derive(Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "session", id = u64, ttl = "30m")]
    /// # struct Session { cart: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).namespace("shop").enable_set();
    /// store.set::<Session>(1, &Session { cart: vec![] }).await?;
    /// let usage = store.usage().await?;
    /// let sessions = usage.prefix("session").unwrap();
    /// assert_eq!((sessions.keys, sessions.without_expiry), (1, 0));
    /// assert!(usage.complete);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`PrefixUsage::NO_PREFIX`]: crate::PrefixUsage::NO_PREFIX
    pub fn usage(&self) -> impl Future<Output = Result<Usage>> + Send + '_ {
        self.usage_with(UsageOptions::new())
    }

    /// [`usage`](Self::usage) with other options: batch size, sample size, time limit, and a
    /// progress callback (for a progress bar).
    pub fn usage_with(
        &self,
        options: UsageOptions,
    ) -> impl Future<Output = Result<Usage>> + Send + '_ {
        let prefix = self.namespace_prefix().map(str::to_owned);
        let span = call_span!(@span self, "", "usage");
        traced(
            span,
            async move { self.backend.usage(&prefix?, &options).await },
        )
    }

    fn full_keys<S: StateKey>(
        &self,
        ids: impl IntoIterator<Item = impl IdArg<S::Id>>,
    ) -> Result<Vec<String>> {
        ids.into_iter().map(|id| self.full_key::<S>(id)).collect()
    }
}

/// What [`Store::update_outcome`] and [`Store::update_and_touch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated<S> {
    /// The closure returned a value and it was written: the value stored now.
    Written(S),
    /// The closure returned `None`, so nothing was written: the value it saw last (`None` when
    /// there was none).
    Unchanged(Option<S>),
}

impl<S> Updated<S> {
    /// Whether the closure's value was written.
    pub fn is_written(&self) -> bool {
        matches!(self, Updated::Written(_))
    }

    /// The value stored after the call, written or not.
    pub fn value(&self) -> Option<&S> {
        match self {
            Updated::Written(value) => Some(value),
            Updated::Unchanged(value) => value.as_ref(),
        }
    }

    /// The value stored after the call, written or not: what [`Store::update`] returns.
    pub fn into_value(self) -> Option<S> {
        match self {
            Updated::Written(value) => Some(value),
            Updated::Unchanged(value) => value,
        }
    }
}

/// One `(id, value)` pair for [`Store::set_many`]: a pair of anything that borrows as the id
/// and the value, or a reference to such a pair.
pub trait Item<S: StateKey> {
    /// The id.
    fn id(&self) -> &S::Id;
    /// The value.
    fn value(&self) -> &S;
}

impl<S: StateKey, I: Borrow<S::Id>, V: Borrow<S>> Item<S> for (I, V) {
    fn id(&self) -> &S::Id {
        self.0.borrow()
    }
    fn value(&self) -> &S {
        self.1.borrow()
    }
}

impl<S: StateKey, I: Borrow<S::Id>, V: Borrow<S>> Item<S> for &(I, V) {
    fn id(&self) -> &S::Id {
        self.0.borrow()
    }
    fn value(&self) -> &S {
        self.1.borrow()
    }
}

/// A hand-written [`Notified`] whose writes do not announce (`NOTIFY` left `false`) could only
/// be watched in silence: a compile error instead, where `watch` is used with it.
fn assert_announces<S: Notified>() {
    const {
        assert!(
            S::NOTIFY,
            "a `Notified` type must set `StateKey::NOTIFY = true` (the derive does)"
        )
    }
}

/// Checks a namespace by the rule of a prefix (one definition, shared with the derive).
fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it is empty".into());
    }
    match segment.chars().find(|&c| !rules::is_segment_char(c)) {
        Some(c) => Err(format!(
            "invalid character {c:?}; use {}",
            rules::SEGMENT_CHARS
        )),
        None => Ok(()),
    }
}

/// The type's expiry, checked like any other: a hand-written `StateKey` may hold any duration.
fn type_ttl<S: StateKey>(key: &str) -> Result<Option<Duration>> {
    S::TTL.map(|ttl| check_ttl(key, ttl)).transpose()
}

/// Rounds `ttl` up to whole milliseconds and checks that Redis accepts it.
fn check_ttl(key: &str, ttl: Duration) -> Result<Duration> {
    let ms = ceil_millis(ttl);
    let reason = if ms == 0 {
        "an expiry must be at least one millisecond"
    } else if ms > rules::MAX_TTL_MILLIS {
        "the expiry is too far in the future for Redis"
    } else {
        return Ok(Duration::from_millis(ms));
    };
    Err(Error::InvalidTtl {
        key: key.to_owned(),
        ttl,
        reason,
    })
}

fn encode<S: StateKey>(key: &str, value: &S) -> Result<Vec<u8>> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let failed = |source| Error::Encode {
        key: key.to_owned(),
        source,
    };
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let encoded = serde_json::to_writer(&mut *buffer, value).map(|()| buffer.to_vec());
            if buffer.capacity() > SCRATCH_KEPT {
                *buffer = Vec::new();
            }
            encoded.map_err(failed)
        }
        // A `Serialize` impl that encodes a state value itself, on this thread.
        Err(_) => serde_json::to_vec(value).map_err(failed),
    })
}

/// A value is encoded into a buffer kept per thread and copied out at its exact size.
/// `serde_json::to_vec` starts at 128 bytes and grows by `realloc`, and under concurrent writes
/// those reallocations contend in glibc's allocator: at 64 tasks, with the benchmark's 195-byte
/// session, a typed `set` went from 0.85x to 0.90x of the raw calls (medians of five alternating
/// runs). The exact-size copy is also what the memory backend keeps, without spare capacity. A
/// buffer grown past this many bytes is let go rather than kept.
const SCRATCH_KEPT: usize = 64 * 1024;

/// `bytes` as an `S`: in the current shape, else in the type's `previous` shape converted.
/// Every read decodes through here (the change feed too).
pub(crate) fn decode<S: StateKey>(key: &str, bytes: &[u8]) -> Result<S> {
    // One UTF-8 check of the whole value, then a parse that need not check each string again:
    // `from_slice` checks string by string, which costs more (12 % of a memory-backend `get` of
    // the benchmark's session). Bytes that are not UTF-8 go to `from_slice`, whose error says
    // where.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    // The current shape first, exactly as without `previous`: a current value pays nothing.
    match parsed {
        Ok(value) => Ok(value),
        Err(current) => decode_previous(key, bytes, current),
    }
}

/// The previous shape, once the current one failed with `current`.
#[cold]
#[inline(never)]
fn decode_previous<S: StateKey>(key: &str, bytes: &[u8], current: serde_json::Error) -> Result<S> {
    let source = match S::__decode_previous(bytes) {
        None => current,
        Some((_, Ok(value))) => return Ok(value),
        Some((name, Err(previous))) => serde::de::Error::custom(format_args!(
            "{current}; as the previous shape `{name}`: {previous}"
        )),
    };
    Err(Error::Decode {
        key: key.to_owned(),
        source,
    })
}

impl<B> Clone for Store<B> {
    fn clone(&self) -> Self {
        Store {
            backend: self.backend.clone(),
            namespace: self.namespace.clone(),
            set_enabled: self.set_enabled,
            remove_enabled: self.remove_enabled,
            update_attempts: self.update_attempts,
            watch_buffer: self.watch_buffer,
            trace_ids: self.trace_ids,
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for Store<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let namespace = match &self.namespace {
            Ok(prefix) => prefix.trim_end_matches(':'),
            Err(e) => &e.namespace,
        };
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("namespace", &namespace)
            .field("set_enabled", &self.set_enabled)
            .field("remove_enabled", &self.remove_enabled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert!(check_segment("user-service_1.v2").is_ok());
        for bad in ["", "a:b", "a*", "{a}", "a b", "é"] {
            assert!(check_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(
            check_ttl("k", Duration::from_micros(1500)).unwrap(),
            Duration::from_millis(2)
        );
        assert_eq!(
            check_ttl("k", Duration::from_secs(5)).unwrap(),
            Duration::from_secs(5)
        );
        assert!(check_ttl("k", Duration::ZERO).is_err());
        assert!(check_ttl("k", Duration::MAX).is_err());
        let ceiling = Duration::from_millis(rules::MAX_TTL_MILLIS);
        assert_eq!(check_ttl("k", ceiling).unwrap(), ceiling);
        assert!(check_ttl("k", ceiling + Duration::from_nanos(1)).is_err());
    }
}
