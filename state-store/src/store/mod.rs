//! The typed [`Store`]: the facade every handler calls. Each file holds one kind of call
//! (`read`, `write`, `update`, `watch`, `migrate`); `codec` turns values into the bytes every
//! engine stores, and `trace` gives each call its span. No engine is named here: a `Store` only
//! speaks the [`Backend`] contract.

use std::fmt;
use std::sync::Arc;

use crate::backend::{Backend, Notify, WATCH_BUFFER};
use crate::id::IdArg;
use crate::key::StateKey;
use crate::rules;
use crate::{Error, Result};

mod codec;
mod journal;
mod lease;
mod migrate;
mod read;
pub(crate) mod trace;
mod update;
pub(crate) mod watch;
mod write;

pub use journal::{Consumer, Delivery, Entry, Journal};
pub use lease::{Fenced, Holder, KeepAlive, Lease};
pub use migrate::{MigrateOptions, MigrateReport};
use trace::CallSpan;
pub use update::{UpdateOptions, Updated};
pub use watch::{Change, Changes, Follow};
pub use write::{Item, SetOptions};

/// How often [`Store::update`] tries before giving up with [`Error::Conflict`](crate::Error::Conflict), by default.
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
///     // One atomic step: two concurrent visits never count as one (a `get` then a `set`
///     // would). For a plain count, a `counter` type and `incr` do it in one round trip.
///     let seen = store
///         .update::<Visits>(page.to_string(), |seen| Some(Visits(seen.map_or(0, |v| v.0) + 1)))
///         .await?;
///     Ok(seen.map_or(0, |v| v.0))
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
///
/// The calls that take an id, and those that need a capability of the state type (`incr`,
/// `check`, `watch`, `acquire`), return a [`BoxFuture`](crate::backend::BoxFuture), one
/// allocation per call: its type does not carry the call's bounds, so a wrong id or a type
/// without the capability is one compile error at the call. (Behind an `impl Future`, rustc
/// reports an unmet bound again at each use of the future: the call and its `.await`.)
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

    /// Allows every write: [`set`](Self::set), [`set_with`](Self::set_with),
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

    /// How many times [`update`](Self::update) tries before [`Error::Conflict`](crate::Error::Conflict) (default 64,
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

    /// Whether writes are on ([`enable_set`](Self::enable_set)): a rate-limit layer refuses a
    /// store whose every check would fail.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn writes_enabled(&self) -> bool {
        self.set_enabled
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The engine as OpenTelemetry's `db.system.name` names it, for the spans.
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    fn system_name(&self) -> &'static str {
        let backend = &*self.backend;
        backend
            .extensions()
            .system_name
            .unwrap_or_else(|| backend.name())
    }

    /// The full key of `S` with `id`, namespace included, as stored in the backend.
    pub fn full_key<S: StateKey>(&self, id: impl IdArg<S::Id>) -> Result<String> {
        let namespace = self.namespace_prefix()?;
        let mut key = String::with_capacity(namespace.len() + S::PREFIX.len() + 24);
        key.push_str(namespace);
        key.push_str(S::PREFIX);
        // Only engines that lay keys out by type (`KeyLayout`) are told.
        if let Some(layout) = self.backend.extensions().layout {
            layout.declare(&key, S::TTL);
        }
        key.push(':');
        id.write_id(&mut key);
        Ok(key)
    }

    /// The channel of `S`'s change feed, `{namespace}:{prefix}`, when `S` announces its writes:
    /// the start of `key`, which is one of `S`'s keys.
    fn notify<'k, S: StateKey>(&self, key: &'k str) -> Notify<'k> {
        S::NOTIFY.then(|| self.type_prefix::<S>(key))
    }

    /// How many entries `S`'s journal keeps, when `S` has one and the engine keeps journals:
    /// the `history` of `S`'s writes. An engine without journals is never handed one.
    fn history<S: StateKey>(&self) -> Option<u64> {
        match S::HISTORY {
            Some(keep) if S::NOTIFY && self.backend.extensions().journals.is_some() => Some(keep),
            _ => None,
        }
    }

    /// `{namespace}:{prefix}` of `S`: the start of `key`, which is one of `S`'s keys.
    fn type_prefix<'k, S: StateKey>(&self, key: &'k str) -> &'k str {
        let namespace = self.namespace_prefix().map_or(0, str::len);
        key.get(..namespace + S::PREFIX.len()).unwrap_or(key)
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
            && !span.span.is_disabled()
            && let Ok(key) = key
        {
            let start = self.namespace_prefix().map_or(0, str::len) + S::PREFIX.len() + 1;
            span.span
                .record("state.id", key.get(start..).unwrap_or(key));
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
        &self, enabled: bool, operation: &'static str, enable: &'static str,
    ) -> Result<()> {
        if enabled {
            Ok(())
        } else {
            Err(Error::Disabled { operation, enable })
        }
    }

    /// The full key of a write, or why the write is refused.
    fn write_key<S: StateKey>(
        &self, operation: &'static str, id: impl IdArg<S::Id>,
    ) -> Result<String> {
        self.check_enabled(self.set_enabled, operation, "enable_set")?;
        self.full_key::<S>(id)
    }

    fn full_keys<S: StateKey>(
        &self, ids: impl IntoIterator<Item = impl IdArg<S::Id>>,
    ) -> Result<Vec<String>> {
        ids.into_iter().map(|id| self.full_key::<S>(id)).collect()
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
}
