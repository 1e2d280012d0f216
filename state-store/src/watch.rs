//! The typed change feed: [`Change`] and the [`Changes`] stream of
//! [`Store::watch`](crate::Store::watch).

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::backend::{BoxStream, Event};
use crate::id::id_from_key;
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
        let parsed = match key.strip_prefix(self.prefix.as_str()) {
            Some(id) => id_from_key::<S::Id>(id)
                .map_err(|e| format!("not a `{}` id: {e}", std::any::type_name::<S::Id>())),
            None => Err(format!("not under `{}`", self.prefix)),
        };
        parsed.map_err(|reason| Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    }

    fn change(&self, event: Event) -> Result<Change<S>> {
        Ok(match event {
            Event::Set { key, value } => Change::Set {
                id: self.id(&key)?,
                value: crate::store::decode(&key, &value)?,
            },
            Event::Removed { key } => Change::Removed { id: self.id(&key)? },
            Event::Expired { key } => Change::Expired { id: self.id(&key)? },
        })
    }
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
