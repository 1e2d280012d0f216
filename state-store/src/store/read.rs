//! Reads: one value, many, whether and how long a key lives, the ids of a type, and usage.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_util::FutureExt as _;
use futures_util::StreamExt;
use futures_util::future::Either;

use super::Store;
use super::codec::decode;
use super::trace::{self, call_span, traced};
use crate::backend::BoxFuture;
use crate::backend::provided::usage_by_listing;
use crate::backend::usage::{Usage, UsageOptions};
use crate::backend::{Backend, Decoded, GetOptions};
use crate::id::{IdArg, id_from_key};
use crate::key::StateKey;
use crate::{Error, Result};
impl<B: Backend> Store<B> {
    /// The `S` with `id`, or `None` when there is none (or it expired).
    ///
    /// A value that is not valid JSON for `S` gives [`Error::Decode`] with the key and serde's
    /// message; the stored value is left as it is.
    pub fn get<S: StateKey>(&self, id: impl IdArg<S::Id>) -> BoxFuture<'_, Result<Option<S>>> {
        // The key is built before the future so that the id is not held across an await: the
        // future is `Send` whatever the caller passes.
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "get", key.as_deref());
        traced(span, async move {
            let key = key?;
            if S::CACHE {
                return self.get_cached::<S>(&key).await;
            }
            match self.backend.get(&key, GetOptions::new()).await? {
                Some(bytes) => decode(&key, &bytes).map(Some),
                None => Ok(None),
            }
        })
        .boxed()
    }

    /// `get` of a type declared with `cache`: through the backend's client-side cache, which
    /// keeps the decoded value and hands out clones of it.
    pub(super) async fn get_cached<S: StateKey>(&self, key: &str) -> Result<Option<S>> {
        // `{namespace}{prefix}:`, the start of every key of `S` (see `full_key`).
        let prefix = &key[..self.namespace_prefix()?.len() + S::PREFIX.len() + 1];
        // A value the engine had to decode was read from the server: a cache miss.
        #[cfg(feature = "metrics")]
        let read = std::sync::atomic::AtomicBool::new(false);
        let decode = |bytes: &[u8]| -> Result<Decoded> {
            #[cfg(feature = "metrics")]
            read.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(Arc::new(decode::<S>(key, bytes)?))
        };
        let cached = match self.backend.extensions().cache {
            Some(cache) => {
                let cached = cache.get_cached(key, prefix, &decode).await?;
                #[cfg(feature = "metrics")]
                {
                    let hit = cached.is_some() && !read.load(std::sync::atomic::Ordering::Relaxed);
                    crate::metrics::cache_read(self.system_name(), S::PREFIX, hit);
                }
                cached
            }
            None => match self.backend.get(key, GetOptions::new()).await? {
                Some(bytes) => Some(decode(&bytes)?),
                None => None,
            },
        };
        let Some(value) = cached else {
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

    /// Whether there is an `S` with `id`.
    pub fn exists<S: StateKey>(&self, id: impl IdArg<S::Id>) -> BoxFuture<'_, Result<bool>> {
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "exists", key.as_deref());
        traced(span, async move {
            let key = key?;
            let exists = GetOptions::new().exists_only();
            Ok(self.backend.get(&key, exists).await?.is_some())
        })
        .boxed()
    }

    /// Time left before the `S` with `id` expires, in whole milliseconds; `None` when there is no
    /// such value or it does not expire.
    pub fn ttl<S: StateKey>(
        &self, id: impl IdArg<S::Id>,
    ) -> BoxFuture<'_, Result<Option<Duration>>> {
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "ttl", key.as_deref());
        traced(span, async move { self.backend.ttl(&key?).await }).boxed()
    }

    /// The values with `ids`, in the order asked (`None` where there is none): on Redis in one
    /// round trip (`MGET`). A value that does not decode gives [`Error::Decode`] naming its key.
    pub fn get_many<S: StateKey>(
        &self, ids: impl IntoIterator<Item = impl IdArg<S::Id>>,
    ) -> BoxFuture<'_, Result<Vec<Option<S>>>> {
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
        .boxed()
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
        &self, options: UsageOptions,
    ) -> impl Future<Output = Result<Usage>> + Send + '_ {
        let prefix = self.namespace_prefix().map(str::to_owned);
        let span = call_span!(@span self, "", "usage");
        traced(span, async move {
            let prefix = prefix?;
            match self.backend.extensions().usage {
                Some(usage) => usage.usage(&prefix, &options).await,
                None => usage_by_listing(&*self.backend, &prefix, &options).await,
            }
        })
    }
}
