//! The typed change feed: [`Change`] and the [`Changes`] stream of
//! [`Store::watch`](crate::Store::watch).

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::FutureExt as _;

use super::Store;
use super::codec::decode;
use super::trace::{call_span, traced};
use crate::backend::BoxFuture;
use crate::backend::{Backend, BoxStream, Event, GetOptions, Watch};
use crate::id::IdArg;
use crate::id::id_from_key;
use crate::key::Notified;
use crate::key::StateKey;
use crate::{Error, Result};

/// One change of an `S`, as [`Store::watch`](crate::Store::watch) delivers it.
pub enum Change<S: StateKey> {
    /// `value` was stored under `id`: the value as written (not read back afterwards, which
    /// could show a later one).
    Set {
        /// The id written.
        id: S::Id,
        /// The value written.
        value: S,
    },
    /// The `S` with `id` was removed.
    Removed {
        /// The id removed.
        id: S::Id,
    },
    /// The `S` with `id` expired.
    Expired {
        /// The id that expired.
        id: S::Id,
    },
}

impl<S: StateKey> Change<S> {
    /// The id the change concerns.
    pub fn id(&self) -> &S::Id {
        match self {
            Change::Set { id, .. } | Change::Removed { id } | Change::Expired { id } => id,
        }
    }

    /// The value written, for a [`Change::Set`].
    pub fn value(&self) -> Option<&S> {
        match self {
            Change::Set { value, .. } => Some(value),
            Change::Removed { .. } | Change::Expired { .. } => None,
        }
    }
}

impl<S> fmt::Debug for Change<S>
where
    S: StateKey + fmt::Debug,
    S::Id: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Set { id, value } => f
                .debug_struct("Set")
                .field("id", id)
                .field("value", value)
                .finish(),
            Change::Removed { id } => f.debug_struct("Removed").field("id", id).finish(),
            Change::Expired { id } => f.debug_struct("Expired").field("id", id).finish(),
        }
    }
}

impl<S> Clone for Change<S>
where
    S: StateKey + Clone,
    S::Id: Clone,
{
    fn clone(&self) -> Self {
        match self {
            Change::Set { id, value } => Change::Set {
                id: id.clone(),
                value: value.clone(),
            },
            Change::Removed { id } => Change::Removed { id: id.clone() },
            Change::Expired { id } => Change::Expired { id: id.clone() },
        }
    }
}

impl<S> PartialEq for Change<S>
where
    S: StateKey + PartialEq,
    S::Id: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Change::Set { id: a, value: x }, Change::Set { id: b, value: y }) => a == b && x == y,
            (Change::Removed { id: a }, Change::Removed { id: b })
            | (Change::Expired { id: a }, Change::Expired { id: b }) => a == b,
            _ => false,
        }
    }
}

/// The stream of [`Store::watch`](crate::Store::watch) and
/// [`Store::watch_id`](crate::Store::watch_id): `Send + 'static`, and dropping it ends the
/// subscription.
///
/// Its items are `Ok(change)`, or an error that does not end the stream: [`Error::Lagged`] and
/// [`Error::Interrupted`] when changes went undelivered, [`Error::Decode`] for a value that
/// does not decode as `S`, [`Error::InvalidKey`] for a key that does not parse as an `S` id
/// (or a message on the channel that is not a change).
///
/// On Redis the stream never ends: it keeps its subscription (and the backend's pub/sub
/// connection) alive even after the store is dropped. On the memory backend it ends when the
/// backend is gone, since nothing can write to it any more.
#[must_use = "streams do nothing unless polled"]
pub struct Changes<S> {
    events: BoxStream<'static, Result<Event>>,
    /// `{channel}:`, what every key of the feed starts with.
    prefix: String,
    state: PhantomData<fn() -> S>,
}

impl<S: StateKey> Changes<S> {
    pub(crate) fn new(events: BoxStream<'static, Result<Event>>, channel: &str) -> Self {
        Changes {
            events,
            prefix: format!("{channel}:"),
            state: PhantomData,
        }
    }

    fn id(&self, key: &str) -> Result<S::Id> {
        id_of::<S>(&self.prefix, key)
    }

    fn change(&self, event: Event) -> Result<Change<S>> {
        to_change(&self.prefix, event)
    }
}

/// The id of `S` in `key`, which starts with `prefix` (`{channel}:`).
fn id_of<S: StateKey>(prefix: &str, key: &str) -> Result<S::Id> {
    let parsed = match key.strip_prefix(prefix) {
        Some(id) => id_from_key::<S::Id>(id)
            .map_err(|e| format!("not a `{}` id: {e}", std::any::type_name::<S::Id>())),
        None => Err(format!("not under `{prefix}`")),
    };
    parsed.map_err(|reason| Error::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

/// The typed change an engine's [`Event`] announces, its key under `prefix` (`{channel}:`).
pub(super) fn to_change<S: StateKey>(prefix: &str, event: Event) -> Result<Change<S>> {
    Ok(match event {
        Event::Set { key, value } => Change::Set {
            id: id_of::<S>(prefix, &key)?,
            value: super::codec::decode(&key, &value)?,
        },
        Event::Removed { key } => Change::Removed {
            id: id_of::<S>(prefix, &key)?,
        },
        Event::Expired { key } => Change::Expired {
            id: id_of::<S>(prefix, &key)?,
        },
    })
}

impl<S: StateKey> Stream for Changes<S> {
    type Item = Result<Change<S>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let item = match std::task::ready!(self.events.as_mut().poll_next(cx)) {
                // Expiries are routed by key prefix (Redis announces every key that expires, on
                // one channel): a key under the prefix that is not an id of `S` belongs to
                // someone else, such as a store whose namespace is named like this prefix.
                Some(Ok(Event::Expired { key })) if self.id(&key).is_err() => continue,
                Some(Ok(event)) => Some(self.change(event)),
                Some(Err(e)) => Some(Err(e)),
                None => None,
            };
            return Poll::Ready(item);
        }
    }
}

impl<S> fmt::Debug for Changes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("channel", &self.prefix.trim_end_matches(':'))
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Store<B> {
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
    /// What publishes: `set`, `set_with`, a winning `set_if_absent`, an `update` that wrote,
    /// `incr` (the new count as the value) and `set_many` (one change per item) publish
    /// [`Change::Set`](crate::Change::Set); `remove` and `remove_many` publish
    /// [`Change::Removed`](crate::Change::Removed) for keys that existed. Rate-limit
    /// [`check`](Self::check)s publish nothing. [`Change::Expired`](crate::Change::Expired) comes
    /// from the engine: always on the memory backend, on Redis only when the server announces
    /// expired keys (see `RedisBackend::enable_expiry_events`).
    pub fn watch<S: Notified>(&self) -> BoxFuture<'_, Result<Changes<S>>> {
        assert_announces::<S>();
        let channel = self.channel::<S>();
        let span = call_span!(self, S, "watch");
        traced(span, async move {
            let watch = Watch::new(channel?).buffer(self.watch_buffer);
            let changes = self.subscribe::<S>(&watch).await?;
            Ok(Changes::new(changes, &watch.channel))
        })
        .boxed()
    }

    /// The changes of the `S` with `id` only, as [`watch`](Self::watch) delivers them.
    pub fn watch_id<S: Notified>(
        &self, id: impl IdArg<S::Id>,
    ) -> BoxFuture<'_, Result<Changes<S>>> {
        assert_announces::<S>();
        let watch = self.channel::<S>().and_then(|channel| {
            let key = self.full_key::<S>(id)?;
            Ok(Watch::new(channel).key(key).buffer(self.watch_buffer))
        });
        let span = call_span!(self, S, "watch_id");
        traced(span, async move {
            let watch = watch?;
            let changes = self.subscribe::<S>(&watch).await?;
            Ok(Changes::new(changes, &watch.channel))
        })
        .boxed()
    }
}

impl<B: Backend> Store<B> {
    /// The value of the `S` with `id` now, then each new value: a stream whose first item is
    /// the current value (`None` when there is none) and whose later items are the value after
    /// each change (`None` after a removal or an expiry). `S` must be declared with
    /// `#[state(notify)]`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use state_store::{MemoryBackend, StateKey, Store, StreamExt};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "job", id = u64, notify)]
    /// struct Job { status: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// store.set::<Job>(7, &Job { status: "queued".into() }).await?;
    /// let mut job = store.follow::<Job>(7).await?;
    /// assert_eq!(job.next().await.transpose()?, Some(Some(Job { status: "queued".into() })));
    /// store.set::<Job>(7, &Job { status: "done".into() }).await?;
    /// assert_eq!(job.next().await.transpose()?, Some(Some(Job { status: "done".into() })));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Nothing is lost between the read and the subscription: the subscription comes first.
    /// Each change the feed announces makes the stream read the value again, so a value never
    /// comes after a newer one (a change can reach the feed after a read that already shows it,
    /// on a Cluster over the cluster bus), a burst of writes may show as fewer items, the same
    /// value never comes twice in a row, and the last item is always the value as it is. When
    /// the feed loses changes (a watcher that fell behind, a broken connection) it reads the
    /// value again as well, so it never yields [`Error::Lagged`] or [`Error::Interrupted`]. A
    /// value that does not decode is an [`Error::Decode`] item, and the stream goes on. A type
    /// declared with `cache` is read from the server, not the cache, which may lag the feed.
    pub fn follow<S: Notified>(&self, id: impl IdArg<S::Id>) -> BoxFuture<'_, Result<Follow<S>>> {
        assert_announces::<S>();
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "follow", key.as_deref());
        traced(span, async move {
            let key = key?;
            let channel = self.channel::<S>()?;
            let watch = Watch::new(channel)
                .key(key.clone())
                .buffer(self.watch_buffer);
            let changes = self.subscribe::<S>(&watch).await?;
            let first = self.backend.get(&key, GetOptions::new()).await?;
            Ok(Follow::new(self.clone(), key, first, changes))
        })
        .boxed()
    }
}

/// The stream of [`Store::follow`]: `Send + 'static`, items `Result<Option<S>>`, the current
/// value first. Dropping it ends the subscription.
#[must_use = "streams do nothing unless polled"]
pub struct Follow<S> {
    values: BoxStream<'static, Result<Option<S>>>,
}

impl<S: StateKey> Follow<S> {
    /// `first` (the bytes read after subscribing), then the value read again after each item
    /// of `changes`, each unless it is the one given last.
    fn new<B: Backend>(
        store: Store<B>, key: String, first: Option<Vec<u8>>,
        changes: BoxStream<'static, Result<Event>>,
    ) -> Self {
        let decoded = |key: &str, bytes: &Option<Vec<u8>>| -> Result<Option<S>> {
            bytes.as_deref().map(|bytes| decode(key, bytes)).transpose()
        };
        let first_item = decoded(&key, &first);
        let rest = futures_util::stream::unfold(
            (store, key, changes, first),
            move |(store, key, mut changes, mut last)| async move {
                loop {
                    // Whatever the feed says (a change, a gap, a message that is not one), the
                    // value is read again: the read is what the stream gives.
                    let _change_or_gap = futures_util::StreamExt::next(&mut changes).await?;
                    let now = store.backend.get(&key, GetOptions::new()).await;
                    let item = match now {
                        Ok(now) if now == last => continue,
                        Ok(now) => {
                            let item = decoded(&key, &now);
                            last = now;
                            item
                        }
                        Err(e) => Err(e),
                    };
                    return Some((item, (store, key, changes, last)));
                }
            },
        );
        let first = futures_util::stream::once(std::future::ready(first_item));
        Follow {
            values: Box::pin(futures_util::StreamExt::chain(first, rest)),
        }
    }
}

impl<S> Stream for Follow<S> {
    type Item = Result<Option<S>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.values.as_mut().poll_next(cx)
    }
}

impl<S> fmt::Debug for Follow<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follow").finish_non_exhaustive()
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

impl<B: Backend> Store<B> {
    /// Turns on the backend's announcements of expired keys, where they are a server setting
    /// (on Redis, `notify-keyspace-events` gets `Ex`, keeping the flags already set), so that
    /// watchers hear [`Change::Expired`]. [`Error::Unsupported`] for a backend without a
    /// change feed, or one that never announces expiries.
    pub async fn enable_expiry_events(&self) -> Result<()> {
        crate::backend::extensions::enable_expiry_events(&*self.backend).await
    }

    /// The backend's change feed of `watch`, whose missed changes the metrics count.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::extra_unused_type_parameters))]
    async fn subscribe<S: StateKey>(
        &self, watch: &Watch,
    ) -> Result<BoxStream<'static, Result<Event>>> {
        let changes = self.feed()?.watch(watch).await?;
        #[cfg(feature = "metrics")]
        let changes = {
            let (system, prefix) = (self.system_name(), S::PREFIX);
            let counted = futures_util::StreamExt::inspect(changes, move |item| {
                if let Err(Error::Lagged { missed }) = item {
                    crate::metrics::watch_missed(system, prefix, *missed);
                }
            });
            Box::pin(counted) as BoxStream<'static, Result<Event>>
        };
        Ok(changes)
    }

    /// The backend's change feed, or [`Error::Unsupported`] naming `watch`.
    fn feed(&self) -> Result<&dyn crate::backend::ChangeFeed> {
        self.backend
            .extensions()
            .feed
            .ok_or_else(|| Error::Unsupported {
                operation: "watch",
                backend: self.backend.name(),
            })
    }
}
