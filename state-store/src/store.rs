//! The typed [`Store`].

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::id::StateId;
use crate::key::StateKey;
use crate::{Error, Result};

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

    /// Allows [`set`](Self::set) and [`set_with_ttl`](Self::set_with_ttl).
    pub fn enable_set(mut self) -> Self {
        self.set_enabled = true;
        self
    }

    /// Allows [`remove`](Self::remove).
    pub fn enable_remove(mut self) -> Self {
        self.remove_enabled = true;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The full key of `S` with `id`, namespace included, as stored in the backend.
    pub fn full_key<S: StateKey>(&self, id: impl Borrow<S::Id>) -> Result<String> {
        let namespace = self.namespace_prefix()?;
        let mut key = String::with_capacity(namespace.len() + S::PREFIX.len() + 24);
        key.push_str(namespace);
        key.push_str(S::PREFIX);
        key.push(':');
        id.borrow().write_key(&mut key);
        Ok(key)
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

    fn check_enabled(&self, enabled: bool, operation: &'static str, enable: &'static str) -> Result<()> {
        if enabled {
            Ok(())
        } else {
            Err(Error::Disabled { operation, enable })
        }
    }

    /// The `S` with `id`, or `None` when there is none (or it expired).
    ///
    /// A value that is not valid JSON for `S` gives [`Error::Decode`] with the key and serde's
    /// message; the stored value is left as it is.
    pub fn get<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
    ) -> impl Future<Output = Result<Option<S>>> + Send + '_ {
        // The key is built before the future so that the id is not held across an await: the
        // future is `Send` whatever the caller passes.
        let key = self.full_key::<S>(id);
        async move {
            let key = key?;
            match self.backend.get(&key).await? {
                Some(bytes) => decode(&key, &bytes).map(Some),
                None => Ok(None),
            }
        }
    }

    /// Stores `value` under `id` with the type's `ttl` (no expiry, clearing any earlier one, when
    /// the type has none). Needs [`enable_set`](Self::enable_set).
    pub fn set<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
        value: &S,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        self.write(id, value, S::TTL)
    }

    /// Stores `value` under `id`, expiring after `ttl` instead of the type's `ttl`. Redis counts
    /// expiry in milliseconds: a `ttl` with a fraction of a millisecond is rounded up. Needs
    /// [`enable_set`](Self::enable_set).
    pub fn set_with_ttl<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
        value: &S,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        self.write(id, value, Some(ttl))
    }

    fn write<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
        value: &S,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        let prepared = self
            .check_enabled(self.set_enabled, "set", "enable_set")
            .and_then(|()| self.full_key::<S>(id))
            .and_then(|key| {
                let ttl = ttl.map(|ttl| check_ttl(&key, ttl)).transpose()?;
                let value = encode(&key, value)?;
                Ok((key, value, ttl))
            });
        async move {
            let (key, value, ttl) = prepared?;
            self.backend.set(&key, value, ttl).await
        }
    }

    /// Removes the `S` with `id`; `true` when there was one. Needs
    /// [`enable_remove`](Self::enable_remove).
    pub fn remove<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
    ) -> impl Future<Output = Result<bool>> + Send + '_ {
        let key = self
            .check_enabled(self.remove_enabled, "remove", "enable_remove")
            .and_then(|()| self.full_key::<S>(id));
        async move { self.backend.remove(&key?).await }
    }

    /// Whether there is an `S` with `id`.
    pub fn exists<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
    ) -> impl Future<Output = Result<bool>> + Send + '_ {
        let key = self.full_key::<S>(id);
        async move { self.backend.exists(&key?).await }
    }

    /// Time left before the `S` with `id` expires, in whole milliseconds; `None` when there is no
    /// such value or it does not expire.
    pub fn ttl<S: StateKey>(
        &self,
        id: impl Borrow<S::Id>,
    ) -> impl Future<Output = Result<Option<Duration>>> + Send + '_ {
        let key = self.full_key::<S>(id);
        async move { self.backend.ttl(&key?).await }
    }
}

/// Checks a namespace (or prefix): non-empty, ASCII letters, digits, `_`, `-`, `.`.
fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it is empty".into());
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(format!(
            "invalid character {c:?}; use ASCII letters, digits, `_`, `-` and `.`"
        )),
        None => Ok(()),
    }
}

/// The largest expiry Redis accepts without overflowing its clock, with room to spare.
const MAX_TTL_MS: u128 = (i64::MAX / 4) as u128;

/// Rounds `ttl` up to whole milliseconds and checks that Redis accepts it.
fn check_ttl(key: &str, ttl: Duration) -> Result<Duration> {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    let reason = if ms == 0 {
        "an expiry must be at least one millisecond"
    } else if ms > MAX_TTL_MS {
        "the expiry is too far in the future for Redis"
    } else {
        return Ok(Duration::from_millis(ms as u64));
    };
    Err(Error::InvalidTtl {
        key: key.to_owned(),
        ttl,
        reason,
    })
}

fn encode<S: StateKey>(key: &str, value: &S) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| Error::Encode {
        key: key.to_owned(),
        source,
    })
}

fn decode<S: StateKey>(key: &str, bytes: &[u8]) -> Result<S> {
    serde_json::from_slice(bytes).map_err(|source| Error::Decode {
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
        assert_eq!(check_ttl("k", Duration::from_micros(1500)).unwrap(), Duration::from_millis(2));
        assert_eq!(check_ttl("k", Duration::from_secs(5)).unwrap(), Duration::from_secs(5));
        assert!(check_ttl("k", Duration::ZERO).is_err());
        assert!(check_ttl("k", Duration::MAX).is_err());
    }
}
