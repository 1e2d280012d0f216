//! Leases with fencing tokens: `acquire`, `acquire_within`, `holder` and `fenced` on the
//! [`Store`], and the [`Lease`] they hand out, which can keep itself alive ([`KeepAlive`]).

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::{decode, encode, type_ttl};
use super::trace::{call_span, traced};
use super::{Store, UpdateOptions, Updated};
use crate::backend::BoxFuture;
use crate::backend::{
    Backend, Expiry, Fence, FencedWrites, LeaseKey, Leases, PutOptions, RemoveOptions,
};
use crate::id::{IdArg, id_from_key};
use crate::key::{Leased, StateKey};
use crate::{Error, Result};

/// A lease's key and token, and its type's ttl: what a fenced write carries.
pub(super) struct FenceOf {
    key: String,
    /// Whether the lease type is durable.
    durable: bool,
    /// The lease type's journal, when the engine keeps one.
    history: Option<u64>,
    /// Where `{namespace}:{prefix}` ends in `key`.
    prefix_len: usize,
    token: u64,
    ttl: Duration,
}

impl FenceOf {
    fn lease_key(&self) -> LeaseKey<'_> {
        LeaseKey::new(&self.key, &self.key[..self.prefix_len])
            .durable(self.durable)
            .history(self.history)
    }

    /// The fence of a write to a key of the type whose prefix is `prefix`.
    pub(super) fn fence<'a>(&'a self, prefix: &'a str) -> Fence<'a> {
        Fence::new(self.lease_key(), self.token, self.ttl, prefix)
    }

    fn lost(&self) -> Error {
        Error::LeaseLost {
            key: self.key.clone(),
            token: self.token,
        }
    }
}

/// What a [`Lease`] and its [`KeepAlive`] task share.
struct Shared {
    fence: FenceOf,
    /// Whether the lease type announces its writes (its release is then announced).
    notify: bool,
    backend: Arc<dyn Backend>,
    /// When the last successful acquisition or extension was sent: the lease lives at least
    /// until this plus the ttl.
    renewed: Mutex<Instant>,
}

/// The leases of `backend`, or [`Error::Unsupported`] naming `operation` when it has none.
fn leases_of<'b, B: Backend + ?Sized>(
    backend: &'b B, operation: &'static str,
) -> Result<&'b dyn Leases> {
    backend
        .extensions()
        .leases
        .ok_or_else(|| Error::Unsupported {
            operation,
            backend: backend.name(),
        })
}

impl Shared {
    fn leases(&self, operation: &'static str) -> Result<&dyn Leases> {
        leases_of(&*self.backend, operation)
    }

    async fn extend(&self) -> Result<()> {
        let started = Instant::now();
        let fence = &self.fence;
        let extended = self
            .leases("extend")?
            .extend(fence.lease_key(), fence.token, fence.ttl)
            .await?;
        if !extended {
            return Err(fence.lost());
        }
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = started;
        Ok(())
    }

    /// Until when the lease is surely held, as this process counts: from the moment the last
    /// successful renewal was sent.
    fn held_until(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) + self.fence.ttl
    }
}

/// A lease on the `S` with [`id`](Lease::id): taken with [`Store::acquire`], it is this
/// holder's until its type's `ttl` passes without an [`extend`](Lease::extend), or until it is
/// [`release`](Lease::release)d. Its [`token`](Lease::token) is strictly greater than that of
/// every lease handed out before on the same key; writes made through
/// [`Store::fenced`] carry it, and the engine refuses them once a newer holder has written (or,
/// on engines that check it, once this lease is lost), so a holder that paused past its ttl
/// cannot overwrite the work of the one that took over.
///
/// Dropping a `Lease` does not release it: it expires after its ttl. It is `Send + Sync +
/// 'static`, so it can move into a spawned task.
// `StateKey`, not `Leased`: `acquire`'s future names `Lease<S>`, and a bound here would report
// an `acquire` of a type that is not a lease a second and a third time.
pub struct Lease<S: StateKey> {
    id: S::Id,
    value: S,
    shared: Arc<Shared>,
}

impl<S: Leased> Lease<S> {
    /// The id of the state the lease is on.
    pub fn id(&self) -> &S::Id {
        &self.id
    }

    /// The value stored with the lease: who holds it.
    pub fn value(&self) -> &S {
        &self.value
    }

    /// The fencing token: strictly greater than every token handed out earlier for this key.
    pub fn token(&self) -> u64 {
        self.shared.fence.token
    }

    /// The full key of the lease, namespace included.
    pub fn key(&self) -> &str {
        &self.shared.fence.key
    }

    /// The lease type's `ttl`: how long the lease lives after its acquisition or its last
    /// [`extend`](Self::extend).
    pub fn ttl(&self) -> Duration {
        self.shared.fence.ttl
    }

    /// Extends the lease to its full `ttl` from now, in one atomic step that checks it is
    /// still this lease. [`Error::LeaseLost`] when it is not: it expired (even if nobody took it
    /// since: an expired lease is not revived), was released, removed, or taken.
    pub async fn extend(&self) -> Result<()> {
        self.shared.extend().await
    }

    /// Releases the lease if it is still this one, so another holder can take it at once:
    /// `true` when it was released, `false` when it was already lost. Never removes another
    /// holder's lease.
    pub async fn release(&self) -> Result<bool> {
        let shared = &self.shared;
        let fence = &shared.fence;
        let notify = shared.notify.then(|| fence.lease_key().prefix);
        shared
            .leases("release")?
            .release(fence.lease_key(), fence.token, notify)
            .await
    }

    /// Keeps the lease alive in the background: a task extends it every third of its `ttl`
    /// (retrying sooner after an error) until it is lost or the [`KeepAlive`] is dropped. See
    /// [`KeepAlive`] for how the holder learns of a loss.
    ///
    /// Needs a tokio runtime (the task is spawned on the current one).
    pub fn keep_alive(self) -> KeepAlive<S> {
        let every = (self.ttl() / 3).max(Duration::from_millis(1));
        self.keep_alive_every(every)
    }

    /// [`keep_alive`](Self::keep_alive), extending every `every` (at most the ttl).
    pub fn keep_alive_every(self, every: Duration) -> KeepAlive<S> {
        let every = every.clamp(Duration::from_millis(1), self.ttl());
        let (lost_tx, lost_rx) = watch::channel(false);
        let task = Renewals(tokio::spawn(renew(self.shared.clone(), every, lost_tx)));
        KeepAlive {
            lease: self,
            lost: lost_rx,
            task,
        }
    }
}

/// The renewals of a [`KeepAlive`]: `true` goes out on `lost` when the lease is lost, or when
/// renewals failed until the lease may have expired.
async fn renew(shared: Arc<Shared>, every: Duration, lost: watch::Sender<bool>) {
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        match shared.extend().await {
            Ok(()) => wait = every,
            Err(Error::LeaseLost { .. }) => break,
            Err(error) => {
                // The engine did not answer: try again soon, while the lease may still be ours.
                let left = shared
                    .held_until()
                    .saturating_duration_since(Instant::now());
                crate::backend::kit::warn_event!(
                    key = %shared.fence.key,
                    token = shared.fence.token,
                    error = %error,
                    left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                    "a lease could not be extended; retrying"
                );
                let _ = &error;
                if left.is_zero() {
                    break;
                }
                wait = (every / 4).clamp(Duration::from_millis(1), left);
            }
        }
    }
    let _ = lost.send(true);
}

impl<S: Leased + fmt::Debug> fmt::Debug for Lease<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.shared.fence.key)
            .field("token", &self.shared.fence.token)
            .field("value", &self.value)
            .finish()
    }
}

/// A [`Lease`] kept alive by a background task ([`Lease::keep_alive`]), which extends it until
/// it is lost. The holder learns of a loss by polling [`is_lost`](Self::is_lost) between steps
/// of its work, or by awaiting [`lost`](Self::lost) beside the work (`tokio::select!`). It
/// dereferences to the lease, so `store.fenced(&alive)` writes under it.
///
/// Dropping it stops the renewals (the lease then expires after its ttl);
/// [`release`](Self::release) stops them and releases the lease at once.
pub struct KeepAlive<S: Leased> {
    lease: Lease<S>,
    lost: watch::Receiver<bool>,
    task: Renewals,
}

impl<S: Leased> KeepAlive<S> {
    /// The lease.
    pub fn lease(&self) -> &Lease<S> {
        &self.lease
    }

    /// Whether the lease is lost: an extension found it taken or expired, or extensions failed
    /// until it may have expired.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Completes when the lease is lost, with [`Error::LeaseLost`] to return from the work it
    /// guarded; never while the lease is kept.
    pub fn lost(&self) -> impl Future<Output = Error> + Send + 'static {
        let mut lost = self.lost.clone();
        let error = self.lease.shared.fence.lost();
        async move {
            // The sender lives as long as the task, which only ends by sending `true` (or when
            // this `KeepAlive` is dropped, which ends this future's use too).
            if lost.wait_for(|lost| *lost).await.is_err() {
                std::future::pending::<()>().await;
            }
            error
        }
    }

    /// Stops the renewals and hands the lease back.
    pub fn into_lease(self) -> Lease<S> {
        let KeepAlive { lease, task, .. } = self;
        drop(task);
        lease
    }

    /// Stops the renewals and releases the lease: `true` when it was released, `false` when it
    /// was already lost.
    pub async fn release(self) -> Result<bool> {
        self.into_lease().release().await
    }
}

impl<S: Leased> std::ops::Deref for KeepAlive<S> {
    type Target = Lease<S>;

    fn deref(&self) -> &Lease<S> {
        &self.lease
    }
}

/// The renewal task, stopped when its [`KeepAlive`] goes.
struct Renewals(JoinHandle<()>);

impl Drop for Renewals {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S: Leased + fmt::Debug> fmt::Debug for KeepAlive<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepAlive")
            .field("lease", &self.lease)
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// Who holds a lease now ([`Store::holder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder<S> {
    /// The value stored with the lease.
    pub value: S,
    /// The holder's fencing token.
    pub token: u64,
    /// Time left before the lease expires, unless extended.
    pub expires_in: Duration,
}

/// Writes made under a lease ([`Store::fenced`]): `set`, `update`, `update_with` and `remove` as on the
/// [`Store`], each carrying the lease's token to the engine, which checks it in the same
/// atomic step as the write and refuses with [`Error::LeaseLost`] (writing nothing):
///
/// - **the fencing rule** (every engine with fenced writes): the written key has already
///   accepted a fenced write from a newer token of the same lease key;
/// - **the currency rule** (the memory engine; Redis on one server or under Sentinel): the lease
///   is no longer the current one, even before a newer holder wrote.
///
/// An engine without fenced writes (NATS JetStream KV, whose lease and written key are in two
/// buckets) answers [`Error::Unsupported`]. See [`FencedWrites`] for what each engine checks.
pub struct Fenced<'s, B, S: Leased> {
    store: &'s Store<B>,
    lease: &'s Lease<S>,
}

impl<B: Backend, S: Leased> Fenced<'_, B, S> {
    /// [`Store::set`] under the lease. Needs [`enable_set`](Store::enable_set).
    pub fn set<T: StateKey>(&self, id: impl IdArg<T::Id>, value: &T) -> BoxFuture<'_, Result<()>> {
        let store = self.store;
        let span = call_span!(store, T, "fenced_set");
        let prepared = store.write_key::<T>("set", id).and_then(|key| {
            let ttl = type_ttl::<T>(&key)?;
            let value = encode(&key, value)?;
            Ok((key, value, ttl))
        });
        store.record_id::<T>(&span, prepared.as_ref().map(|p| p.0.as_str()));
        traced(span, async move {
            let (key, value, ttl) = prepared?;
            store.check_fenced("fenced set")?;
            let fence = &self.lease.shared.fence;
            let put = PutOptions::new()
                .expiry(Expiry::from_ttl(ttl))
                .notify(store.notify::<T>(&key))
                .durable(T::DURABLE)
                .history(store.history::<T>())
                .fence(fence.fence(store.type_prefix::<T>(&key)));
            store.backend.put(&key, value, put).await.map(drop)
        })
        .boxed()
    }

    /// [`Store::update`] under the lease: every attempt's write carries the fence. Needs
    /// [`enable_set`](Store::enable_set).
    pub fn update<'a, T: StateKey>(
        &'a self, id: impl IdArg<T::Id>, change: impl FnMut(Option<T>) -> Option<T> + Send + 'a,
    ) -> BoxFuture<'a, Result<Option<T>>> {
        let store = self.store;
        let span = call_span!(store, T, "fenced_update");
        let supported = store.check_fenced("fenced update");
        let fence = &self.lease.shared.fence;
        let updated = store.update_inner::<T>(span, "update", id, change, false, Some(fence));
        async move {
            supported?;
            Ok(updated.await?.into_value())
        }
        .boxed()
    }

    /// [`Store::update_with`] under the lease: what happened ([`Updated`]), every attempt's write
    /// carrying the fence. Needs [`enable_set`](Store::enable_set).
    pub fn update_with<'a, T: StateKey>(
        &'a self, id: impl IdArg<T::Id>, options: UpdateOptions,
        change: impl FnMut(Option<T>) -> Option<T> + Send + 'a,
    ) -> BoxFuture<'a, Result<Updated<T>>> {
        let store = self.store;
        let span = call_span!(store, T, "fenced_update_with");
        let supported = store.check_fenced("fenced update");
        let fence = &self.lease.shared.fence;
        let refresh = options.refresh_ttl;
        let updated = store.update_inner::<T>(span, "update", id, change, refresh, Some(fence));
        async move {
            supported?;
            updated.await
        }
        .boxed()
    }

    /// [`Store::remove`] under the lease: `true` when there was a value. Needs
    /// [`enable_remove`](Store::enable_remove).
    pub fn remove<T: StateKey>(&self, id: impl IdArg<T::Id>) -> BoxFuture<'_, Result<bool>> {
        let store = self.store;
        let key = store
            .check_enabled(store.remove_enabled, "remove", "enable_remove")
            .and_then(|()| store.full_key::<T>(id));
        let span = call_span!(store, T, "fenced_remove", key.as_deref());
        traced(span, async move {
            let key = key?;
            store.check_fenced("fenced remove")?;
            let fence = &self.lease.shared.fence;
            let remove = RemoveOptions::new()
                .notify(store.notify::<T>(&key))
                .durable(T::DURABLE)
                .history(store.history::<T>())
                .fence(fence.fence(store.type_prefix::<T>(&key)));
            store.backend.remove(&key, remove).await
        })
        .boxed()
    }
}

impl<B, S: Leased> fmt::Debug for Fenced<'_, B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fenced")
            .field("lease", &self.lease.shared.fence.key)
            .field("token", &self.lease.shared.fence.token)
            .finish()
    }
}

/// A lease call's key and what it writes, prepared before the future.
struct Prepared {
    key: String,
    prefix_len: usize,
    ttl: Duration,
    value: Vec<u8>,
}

impl<B: Backend> Store<B> {
    /// Takes the lease `S` on `id` with `value` (who holds it) when it is free: nobody holds
    /// it, or the last holder's lease expired. `None` when somebody holds it. The lease lives
    /// for the type's `ttl` unless [`extend`](Lease::extend)ed; its token is strictly greater
    /// than every token handed out before for this key. Needs [`enable_set`](Self::enable_set).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store};
    /// #[derive(Debug, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "report-lease", id = u64, ttl = "30s", lease)]
    /// struct ReportLease { worker: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// let mine = store.acquire::<ReportLease>(42, &ReportLease { worker: "a".into() }).await?;
    /// let lease = mine.expect("nobody held it");
    /// // Another worker finds it taken.
    /// assert!(store.acquire::<ReportLease>(42, &ReportLease { worker: "b".into() }).await?.is_none());
    /// assert!(lease.release().await?);
    /// let again = store.acquire::<ReportLease>(42, &ReportLease { worker: "b".into() }).await?;
    /// assert!(again.unwrap().token() > lease.token());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// On an engine without leases (an engine of your own without the [`Leases`] capability)
    /// the call is [`Error::Unsupported`]. NATS JetStream KV has leases (the token is the
    /// revision of the acquisition) but no fenced writes.
    pub fn acquire<S: Leased>(
        &self, id: impl IdArg<S::Id>, value: &S,
    ) -> BoxFuture<'_, Result<Option<Lease<S>>>> {
        let span = call_span!(self, S, "acquire");
        let prepared = self.prepare_lease::<S>(id, value);
        self.record_id::<S>(&span, prepared.as_ref().map(|p| p.key.as_str()));
        traced(span, async move { self.try_acquire::<S>(&prepared?).await }).boxed()
    }

    /// [`acquire`](Self::acquire), trying again until `wait` has passed: after a random
    /// backoff that grows from a few milliseconds to a quarter of the type's ttl (at most
    /// 250 ms), so that waiting workers do not retry in lockstep. `None` when the lease was
    /// still held at the end of `wait`. Needs [`enable_set`](Self::enable_set).
    pub fn acquire_within<S: Leased>(
        &self, id: impl IdArg<S::Id>, value: &S, wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Lease<S>>>> {
        let span = call_span!(self, S, "acquire_within");
        let prepared = self.prepare_lease::<S>(id, value);
        self.record_id::<S>(&span, prepared.as_ref().map(|p| p.key.as_str()));
        traced(span, async move {
            let prepared = prepared?;
            let deadline = Instant::now() + wait;
            let ceiling = (prepared.ttl / 4).clamp(Duration::from_millis(2), MAX_ACQUIRE_WAIT);
            let jitter = std::collections::hash_map::RandomState::new();
            let mut round = 0u32;
            loop {
                if let Some(lease) = self.try_acquire::<S>(&prepared).await? {
                    return Ok(Some(lease));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                round += 1;
                let grown = Duration::from_millis(2)
                    .saturating_mul(1 << round.min(16))
                    .min(ceiling);
                // Between half and all of `grown`.
                let micros = u64::try_from(grown.as_micros()).unwrap_or(u64::MAX).max(2);
                let pause = micros / 2 + jitter.hash_one(round) % (micros / 2);
                tokio::time::sleep(Duration::from_micros(pause).min(left)).await;
            }
        })
        .boxed()
    }

    /// Who holds the lease `S` on `id` now: its value, token and time left; `None` when it is
    /// free. A read: needs no permission.
    pub fn holder<S: Leased>(
        &self, id: impl IdArg<S::Id>,
    ) -> BoxFuture<'_, Result<Option<Holder<S>>>> {
        let key = self.full_key::<S>(id);
        let span = call_span!(self, S, "holder", key.as_deref());
        traced(span, async move {
            let key = key?;
            let leases = self.leases("holder")?;
            let prefix = self.type_prefix::<S>(&key);
            let lease = LeaseKey::new(&key, prefix).durable(S::DURABLE);
            let Some(held) = leases.holder(lease).await? else {
                return Ok(None);
            };
            Ok(Some(Holder {
                value: decode::<S>(&key, &held.value)?,
                token: held.token,
                expires_in: held.expires_in,
            }))
        })
        .boxed()
    }

    /// Writes made under `lease`: `set`, `update` and `remove` that the engine refuses with
    /// [`Error::LeaseLost`] once the lease is superseded (see [`Fenced`] for the rules each
    /// engine checks).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{Error, MemoryBackend, StateKey, Store};
    /// # #[derive(Debug, Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "report-lease", id = u64, ttl = "30s", lease)]
    /// # struct ReportLease { worker: String }
    /// #[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "report", id = u64)]
    /// struct Report { status: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set().enable_remove();
    /// let lease = store.acquire::<ReportLease>(42, &ReportLease { worker: "a".into() }).await?.unwrap();
    /// store.fenced(&lease).set::<Report>(42, &Report { status: "running".into() }).await?;
    /// lease.release().await?;
    /// // Once the lease is gone, its holder can no longer write.
    /// let late = store.fenced(&lease).set::<Report>(42, &Report { status: "done".into() }).await;
    /// assert!(matches!(late, Err(Error::LeaseLost { .. })));
    /// assert_eq!(store.get::<Report>(42).await?.unwrap().status, "running");
    /// # Ok(())
    /// # }
    /// ```
    pub fn fenced<'s, S: Leased>(&'s self, lease: &'s Lease<S>) -> Fenced<'s, B, S> {
        Fenced { store: self, lease }
    }

    fn leases(&self, operation: &'static str) -> Result<&dyn Leases> {
        leases_of(&*self.backend, operation)
    }

    /// `Ok` when the engine checks fences; [`Error::Unsupported`] naming `operation` otherwise
    /// (a fence must never be handed to an engine that would ignore it).
    fn check_fenced(&self, operation: &'static str) -> Result<()> {
        match self.leases(operation)?.fenced_writes() {
            FencedWrites::Unsupported => Err(Error::Unsupported {
                operation,
                backend: self.backend.name(),
            }),
            _ => Ok(()),
        }
    }

    fn prepare_lease<S: Leased>(&self, id: impl IdArg<S::Id>, value: &S) -> Result<Prepared> {
        let key = self.write_key::<S>("acquire", id)?;
        let Some(ttl) = type_ttl::<S>(&key)? else {
            return Err(Error::InvalidTtl {
                key,
                ttl: Duration::ZERO,
                reason: "a lease type needs a ttl: declare it with `ttl = ...`",
            });
        };
        let value = encode(&key, value)?;
        let prefix_len = self.type_prefix::<S>(&key).len();
        Ok(Prepared {
            key,
            prefix_len,
            ttl,
            value,
        })
    }

    async fn try_acquire<S: Leased>(&self, prepared: &Prepared) -> Result<Option<Lease<S>>> {
        let Prepared {
            key,
            prefix_len,
            ttl,
            value,
        } = prepared;
        let leases = self.leases("acquire")?;
        let lease_key = LeaseKey::new(key, &key[..*prefix_len])
            .durable(S::DURABLE)
            .history(self.history::<S>());
        let started = Instant::now();
        let notify = self.notify::<S>(key);
        let Some(token) = leases
            .acquire(lease_key, value.clone(), *ttl, notify)
            .await?
        else {
            return Ok(None);
        };
        let id = id_from_key::<S::Id>(lease_key.id()).map_err(|e| Error::InvalidKey {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let backend: Arc<dyn Backend> = self.backend.clone();
        Ok(Some(Lease {
            id,
            value: decode::<S>(key, value)?,
            shared: Arc::new(Shared {
                fence: FenceOf {
                    key: key.clone(),
                    durable: S::DURABLE,
                    history: self.history::<S>(),
                    prefix_len: *prefix_len,
                    token,
                    ttl: *ttl,
                },
                notify: S::NOTIFY,
                backend,
                renewed: Mutex::new(started),
            }),
        }))
    }
}

/// The longest pause between two tries of [`Store::acquire_within`].
const MAX_ACQUIRE_WAIT: Duration = Duration::from_millis(250);
