//! Writes: set, remove, conditional create, bulk writes, counters and rate-limit checks.

use std::borrow::Borrow;
use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt as _;

use super::Store;
use super::codec::{check_ttl, encode, type_ttl};
use super::trace::{self, CallSpan, call_span, traced};
use crate::backend::BoxFuture;
use crate::backend::{
    Backend, CountOp, CountOptions, Counted, Expiry, PutMode, PutOptions, RemoveOptions, WriteMany,
    ceil_millis,
};
use crate::id::IdArg;
use crate::key::{Counter, StateKey};
use crate::rate_limit::{Decision, Policy, RateLimit};
use crate::{Error, Result};
impl<B: Backend> Store<B> {
    /// Stores `value` under `id` with the type's `ttl` (no expiry, clearing any earlier one, when
    /// the type has none). Needs [`enable_set`](Self::enable_set).
    pub fn set<S: StateKey>(&self, id: impl IdArg<S::Id>, value: &S) -> BoxFuture<'_, Result<()>> {
        self.write(call_span!(self, S, "set"), id, value, S::TTL)
            .boxed()
    }

    /// Stores `value` under `id` as [`SetOptions`] say: with `ttl` set, expiring after that
    /// instead of the type's `ttl`. Redis counts expiry in milliseconds: a `ttl` with a fraction
    /// of a millisecond is rounded up. Needs [`enable_set`](Self::enable_set).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, SetOptions, StateKey, Store};
    /// # #[derive(Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "otp", id = u64, ttl = "10m")]
    /// # struct Otp(String);
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set();
    /// let short = SetOptions::new().ttl(Duration::from_secs(60));
    /// store.set_with::<Otp>(42, &Otp("123456".into()), short).await?;
    /// assert!(store.ttl::<Otp>(42).await?.unwrap() <= Duration::from_secs(60));
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_with<S: StateKey>(
        &self, id: impl IdArg<S::Id>, value: &S, options: SetOptions,
    ) -> BoxFuture<'_, Result<()>> {
        let ttl = options.ttl.or(S::TTL);
        self.write(call_span!(self, S, "set_with"), id, value, ttl)
            .boxed()
    }

    /// [`set_with`](Self::set_with) with [`SetOptions::ttl`].
    #[deprecated(
        since = "0.2.0",
        note = "use `set_with(id, value, SetOptions::new().ttl(ttl))`"
    )]
    pub fn set_with_ttl<S: StateKey>(
        &self, id: impl IdArg<S::Id>, value: &S, ttl: Duration,
    ) -> BoxFuture<'_, Result<()>> {
        self.write(call_span!(self, S, "set_with_ttl"), id, value, Some(ttl))
            .boxed()
    }

    pub(super) fn write<S: StateKey>(
        &self, span: CallSpan, id: impl IdArg<S::Id>, value: &S, ttl: Option<Duration>,
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
            let put = PutOptions::new()
                .expiry(Expiry::from_ttl(ttl))
                .notify(notify)
                .durable(S::DURABLE)
                .history(self.history::<S>());
            self.backend.put(&key, value, put).await.map(drop)
        })
    }

    /// Removes the `S` with `id`; `true` when there was one. Needs
    /// [`enable_remove`](Self::enable_remove).
    ///
    /// Not retried when the connection breaks under it: the server may have removed the key
    /// without the answer arriving, and a second try would then report `false`. The error says
    /// so; calling again is safe.
    pub fn remove<S: StateKey>(&self, id: impl IdArg<S::Id>) -> BoxFuture<'_, Result<bool>> {
        let key = self
            .check_enabled(self.remove_enabled, "remove", "enable_remove")
            .and_then(|()| self.full_key::<S>(id));
        let span = call_span!(self, S, "remove", key.as_deref());
        traced(span, async move {
            let key = key?;
            let remove = RemoveOptions::new()
                .notify(self.notify::<S>(&key))
                .durable(S::DURABLE)
                .history(self.history::<S>());
            self.backend.remove(&key, remove).await
        })
        .boxed()
    }

    /// Stores `value` under `id` with the type's `ttl`, only if there is no value there yet:
    /// `true` when it was written. One `SET NX PX` command. Needs
    /// [`enable_set`](Self::enable_set).
    pub fn set_if_absent<S: StateKey>(
        &self, id: impl IdArg<S::Id>, value: &S,
    ) -> BoxFuture<'_, Result<bool>> {
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
            let put = PutOptions::new()
                .mode(PutMode::Create)
                .expiry(Expiry::from_ttl(ttl))
                .notify(notify)
                .durable(S::DURABLE)
                .history(self.history::<S>());
            self.backend.put(&key, value, put).await
        })
        .boxed()
    }

    /// Stores every `(id, value)` with the type's `ttl`: all or nothing on the built-in
    /// backends (on Redis one `MULTI` pipeline, one round trip); a backend that keeps the
    /// provided [`Backend::write_many`](crate::Backend::write_many) writes one key at a time.
    /// `items` may yield pairs or references to pairs, so `&vec_of_pairs` works. Needs
    /// [`enable_set`](Self::enable_set); nothing is written if any value fails to encode.
    pub fn set_many<S: StateKey>(
        &self, items: impl IntoIterator<Item = impl Item<S>>,
    ) -> BoxFuture<'_, Result<()>> {
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
            let options = PutOptions::new()
                .expiry(Expiry::from_ttl(ttl))
                .notify(notify.as_deref())
                .durable(S::DURABLE)
                .history(self.history::<S>());
            self.backend
                .write_many(WriteMany::Put { items, options })
                .await
                .map(drop)
        })
        .boxed()
    }

    /// Removes the values with `ids` (on Redis, one `DEL`); how many there were. Needs
    /// [`enable_remove`](Self::enable_remove).
    pub fn remove_many<S: StateKey>(
        &self, ids: impl IntoIterator<Item = impl IdArg<S::Id>>,
    ) -> BoxFuture<'_, Result<u64>> {
        let keys = self
            .check_enabled(self.remove_enabled, "remove_many", "enable_remove")
            .and_then(|()| self.full_keys::<S>(ids));
        let span = call_span!(self, S, "remove_many");
        trace::record_batch(&span, keys.as_ref().map_or(0, Vec::len));
        traced(span, async move {
            let keys = keys?;
            let notify = keys.first().and_then(|key| self.notify::<S>(key));
            let options = RemoveOptions::new()
                .notify(notify)
                .durable(S::DURABLE)
                .history(self.history::<S>());
            self.backend
                .write_many(WriteMany::Remove {
                    keys: &keys,
                    options,
                })
                .await
        })
        .boxed()
    }

    /// Adds `by` to the counter with `id` and returns its new value, atomically (on Redis, one
    /// round trip; see [`Backend::count`](crate::Backend::count) for other engines). A missing counter starts at 0 and
    /// gets the type's `ttl` (the window); later increments do not extend it, whatever the
    /// value.
    ///
    /// Needs [`enable_set`](Self::enable_set). A value under the key that is not an integer, or a
    /// result out of the `i64` range, gives [`Error::NotACounter`] and changes nothing.
    pub fn incr<S: Counter>(&self, id: impl IdArg<S::Id>, by: i64) -> BoxFuture<'_, Result<i64>> {
        let key = self.write_key::<S>("incr", id);
        let span = call_span!(self, S, "incr", key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            let op = CountOp::Increment {
                by,
                ttl_if_created: ttl,
            };
            let options = CountOptions::new()
                .notify(self.notify::<S>(&key))
                .durable(S::DURABLE)
                .history(self.history::<S>());
            match self.backend.count(&key, op, options).await? {
                Counted::Value(value) => Ok(value),
                other => Err(unexpected_count(&key, "incr", &other)),
            }
        })
        .boxed()
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
    pub fn check<S: RateLimit>(&self, id: impl IdArg<S::Id>) -> BoxFuture<'_, Result<Decision>> {
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
            if let Some(layout) = self.backend.extensions().layout {
                layout.declare(
                    &key[..channel],
                    Some(Duration::from_millis(ceil_millis(keep))),
                );
            }
            let op = match S::POLICY {
                Policy::FixedWindow => CountOp::FixedWindow {
                    limit: u64::from(S::QUOTA.count()),
                    window: check_ttl(&key, S::QUOTA.period())?,
                },
                _ => CountOp::Gcra {
                    interval: S::QUOTA.emission_interval(),
                    burst: S::QUOTA.burst(),
                },
            };
            let options = CountOptions::new().durable(S::DURABLE);
            match self.backend.count(&key, op, options).await? {
                Counted::Decision(decision) => Ok(decision),
                other => Err(unexpected_count(&key, "check", &other)),
            }
        })
        .boxed()
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

/// How [`Store::set_with`] writes. `SetOptions::new()` is what [`Store::set`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SetOptions {
    /// The expiry of this write instead of the type's `ttl`; `None` for the type's.
    pub ttl: Option<Duration>,
}

impl SetOptions {
    /// The defaults: the type's `ttl`.
    pub fn new() -> SetOptions {
        SetOptions::default()
    }

    /// Expires `ttl` after the write, instead of the type's `ttl`.
    pub fn ttl(mut self, ttl: Duration) -> SetOptions {
        self.ttl = Some(ttl);
        self
    }
}

/// An engine's `count` answered with the wrong kind of answer for the operation.
fn unexpected_count(key: &str, operation: &'static str, answer: &Counted) -> Error {
    Error::Backend {
        operation,
        key: key.to_owned(),
        source: format!("the engine's count answered {answer:?}").into(),
    }
}
