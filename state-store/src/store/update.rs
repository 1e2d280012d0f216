//! Read-modify-write: `update` and its variants, `touch`, and `remove_if`.

use std::future::Future;

use futures_util::FutureExt as _;

use super::Store;
use super::codec::{decode, encode, type_ttl};
use super::lease::FenceOf;
use super::trace::{self, CallSpan, call_span, traced};
use crate::Result;
use crate::backend::BoxFuture;
use crate::backend::provided::remove_if;
use crate::backend::{Backend, Expiry, GetOptions, RemoveOptions, UpdateOptions as BackendUpdate};
use crate::id::IdArg;
use crate::key::StateKey;
impl<B: Backend> Store<B> {
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
    /// [`Error::Conflict`](crate::Error::Conflict) and has written nothing.
    ///
    /// An updated key keeps its remaining expiry; a key it creates gets the type's `ttl`. Each
    /// attempt costs two round trips (read, then compare-and-set). Needs
    /// [`enable_set`](Self::enable_set).
    pub fn update<'a, S: StateKey>(
        &'a self, id: impl IdArg<S::Id>, change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> BoxFuture<'a, Result<Option<S>>> {
        let span = call_span!(self, S, "update");
        let updated = self.update_inner::<S>(span, "update", id, change, false, None);
        async move { Ok(updated.await?.into_value()) }.boxed()
    }

    /// [`update`](Self::update) with [`UpdateOptions`], saying what happened:
    /// [`Updated::Written`] with the value stored when `change` returned one and it was
    /// written, [`Updated::Unchanged`] with the value as it is when `change` returned `None`. No
    /// comparing of values to find out.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store, UpdateOptions, Updated};
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
    /// match store.update_with::<Job>(7, UpdateOptions::new(), claim).await? {
    ///     Updated::Written(job) => assert_eq!(job.status, "running"), // this worker has it
    ///     Updated::Unchanged(current) => panic!("another worker has it: {current:?}"),
    /// }
    /// assert!(!store.update_with::<Job>(7, UpdateOptions::new(), claim).await?.is_written());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// With [`UpdateOptions::refresh_ttl`], a value it replaces gets the type's `ttl` again,
    /// counted from this write: sliding expiry, for a session that should end after 30 minutes
    /// without changes rather than 30 minutes after it began. When `change` returns `None`
    /// nothing is written and the expiry is left as it is (use [`touch`](Self::touch) to extend
    /// it without a change). Needs [`enable_set`](Self::enable_set).
    pub fn update_with<'a, S: StateKey>(
        &'a self, id: impl IdArg<S::Id>, options: UpdateOptions,
        change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> BoxFuture<'a, Result<Updated<S>>> {
        let span = call_span!(self, S, "update_with");
        let operation = if options.refresh_ttl {
            "update_and_touch"
        } else {
            "update"
        };
        self.update_inner::<S>(span, operation, id, change, options.refresh_ttl, None)
            .boxed()
    }

    /// [`update_with`](Self::update_with) with the default [`UpdateOptions`].
    #[deprecated(
        since = "0.2.0",
        note = "use `update_with(id, UpdateOptions::new(), change)`"
    )]
    pub fn update_outcome<'a, S: StateKey>(
        &'a self, id: impl IdArg<S::Id>, change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> BoxFuture<'a, Result<Updated<S>>> {
        let span = call_span!(self, S, "update_outcome");
        self.update_inner::<S>(span, "update", id, change, false, None)
            .boxed()
    }

    /// [`update_with`](Self::update_with) with [`UpdateOptions::refresh_ttl`]: sliding expiry.
    #[deprecated(
        since = "0.2.0",
        note = "use `update_with(id, UpdateOptions::new().refresh_ttl(), change)`"
    )]
    pub fn update_and_touch<'a, S: StateKey>(
        &'a self, id: impl IdArg<S::Id>, change: impl FnMut(Option<S>) -> Option<S> + Send + 'a,
    ) -> BoxFuture<'a, Result<Updated<S>>> {
        let span = call_span!(self, S, "update_and_touch");
        self.update_inner::<S>(span, "update_and_touch", id, change, true, None)
            .boxed()
    }

    /// Resets the expiry of the `S` with `id` to the type's `ttl`, counted from now (or clears
    /// it, for a type without `ttl`), without changing the value: one `PEXPIRE` on Redis
    /// (`PERSIST` and `EXISTS` in one round trip for a type without `ttl`).
    /// `false` when there is no such value. Announces nothing on the change feed, since the
    /// value did not change. Needs [`enable_set`](Self::enable_set).
    pub fn touch<S: StateKey>(&self, id: impl IdArg<S::Id>) -> BoxFuture<'_, Result<bool>> {
        let key = self.write_key::<S>("touch", id);
        let span = call_span!(self, S, "touch", key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            let touch = GetOptions::new()
                .touch(Expiry::from_ttl(ttl))
                .exists_only()
                .durable(S::DURABLE);
            Ok(self.backend.get(&key, touch).await?.is_some())
        })
        .boxed()
    }

    /// The `S` with `id`, its expiry reset to the type's `ttl` in the same step (`GETEX ... PX`
    /// on Redis 6.2+: one round trip): a read that keeps a session alive. `None` when there is
    /// no such value. Needs [`enable_set`](Self::enable_set), since it changes the expiry.
    pub fn get_and_touch<S: StateKey>(
        &self, id: impl IdArg<S::Id>,
    ) -> BoxFuture<'_, Result<Option<S>>> {
        let key = self.write_key::<S>("get_and_touch", id);
        let span = call_span!(self, S, "get_and_touch", key.as_deref());
        traced(span, async move {
            let key = key?;
            let ttl = type_ttl::<S>(&key)?;
            let touch = GetOptions::new()
                .touch(Expiry::from_ttl(ttl))
                .durable(S::DURABLE);
            match self.backend.get(&key, touch).await? {
                Some(bytes) => decode(&key, &bytes).map(Some),
                None => Ok(None),
            }
        })
        .boxed()
    }

    /// Removes the `S` with `id` only if `check` accepts it, atomically: the removal lands only
    /// if the value is still the one `check` saw (a compare-and-delete on the server); when
    /// another writer changed it first, `check` runs again on the newer value. `true` when it
    /// removed; `false` when there was no value or `check` declined. After
    /// [`update_attempts`](Self::update_attempts) lost races, [`Error::Conflict`](crate::Error::Conflict).
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
        &'a self, id: impl IdArg<S::Id>, mut check: impl FnMut(&S) -> bool + Send + 'a,
    ) -> BoxFuture<'a, Result<bool>> {
        let key = self
            .check_enabled(self.remove_enabled, "remove_if", "enable_remove")
            .and_then(|()| self.full_key::<S>(id));
        let span = call_span!(self, S, "remove_if", key.as_deref());
        traced(span, async move {
            let key = key?;
            let mut accept =
                |bytes: &[u8]| -> Result<bool> { Ok(check(&decode::<S>(&key, bytes)?)) };
            let options = RemoveOptions::new()
                .notify(self.notify::<S>(&key))
                .durable(S::DURABLE)
                .history(self.history::<S>());
            remove_if(
                &*self.backend,
                &key,
                &mut accept,
                self.update_attempts,
                options,
            )
            .await
        })
        .boxed()
    }

    /// `update` and `update_and_touch`: `refresh` gives a replaced value the type's `ttl`.
    pub(super) fn update_inner<'a, S: StateKey>(
        &'a self, span: CallSpan, operation: &'static str, id: impl IdArg<S::Id>,
        mut change: impl FnMut(Option<S>) -> Option<S> + Send + 'a, refresh: bool,
        fence: Option<&'a FenceOf>,
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
            let replaced = if refresh {
                Expiry::from_ttl(ttl)
            } else {
                Expiry::Keep
            };
            let options = BackendUpdate::new()
                .replaced(replaced)
                .created(Expiry::from_ttl(ttl))
                .attempts(self.update_attempts)
                .notify(self.notify::<S>(&key))
                .durable(S::DURABLE)
                .history(self.history::<S>());
            let options = match fence {
                Some(fence) => options.fence(fence.fence(self.type_prefix::<S>(&key))),
                None => options,
            };
            let written = self.backend.update(&key, &mut attempt, options).await;
            trace::record_attempts(tries);
            let written = written?;
            Ok(match (written, outcome) {
                (true, Some(value)) => Updated::Written(value),
                (_, outcome) => Updated::Unchanged(outcome),
            })
        })
    }
}

/// How [`Store::update_with`] writes. `UpdateOptions::new()` is what [`Store::update`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct UpdateOptions {
    /// A value the update replaces gets the type's `ttl` again, from this write (sliding
    /// expiry); otherwise it keeps its remaining expiry. A value the update creates gets the
    /// type's `ttl` either way.
    pub refresh_ttl: bool,
}

impl UpdateOptions {
    /// The defaults: a replaced value keeps its remaining expiry.
    pub fn new() -> UpdateOptions {
        UpdateOptions::default()
    }

    /// Sliding expiry: see [`refresh_ttl`](UpdateOptions#structfield.refresh_ttl).
    pub fn refresh_ttl(mut self) -> UpdateOptions {
        self.refresh_ttl = true;
        self
    }
}

/// What [`Store::update_with`] did.
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

impl<S> trace::Outcome for Updated<S> {
    fn outcome(&self) -> &'static str {
        if self.is_written() {
            "written"
        } else {
            "unchanged"
        }
    }
}
