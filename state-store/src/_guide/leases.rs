//! Leases: one worker holds a piece of work for a while, and fencing tokens stop a late write.
//!
//! A lease makes one worker the holder of a piece of work for a while: a job, a nightly report, a
//! partition to consume. Declare it as a state type with a `ttl` and `lease`; its value says who
//! holds it (a `lease` type without a `ttl` does not compile):
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! #[derive(Debug, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "job-lease", id = u64, ttl = "30s", lease)]
//! struct JobLease { worker: String }
//!
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = u64)]
//! # struct Job { status: String }
//! # async fn run(id: u64) -> state_store::Result<()> { let _ = id; Ok(()) }
//! # async fn work(store: &Store<MemoryBackend>, id: u64) -> state_store::Result<()> {
//! let me = JobLease { worker: "worker-a".into() };
//! let Some(lease) = store.acquire::<JobLease>(id, &me).await? else {
//!     return Ok(());                                   // somebody holds it
//! };
//! let alive = lease.keep_alive();                      // extended every ttl/3 by a background task
//! store.fenced(&alive).update::<Job>(id, |job| job.map(|j| Job { status: "running".into(), ..j })).await?;
//! tokio::select! {
//!     done = run(id) => done?,
//!     lost = alive.lost() => return Err(lost),         // Error::LeaseLost: stop, another may take over
//! }
//! store.fenced(&alive).update::<Job>(id, |job| job.map(|j| Job { status: "done".into(), ..j })).await?;
//! alive.release().await?;                              // free now, not after the ttl
//! # Ok(())
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # store.set::<Job>(3, &Job { status: "queued".into() }).await?;
//! # work(&store, 3).await?;
//! # assert_eq!(store.get::<Job>(3).await?.unwrap().status, "done");
//! # assert!(store.holder::<JobLease>(3).await?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! - `acquire` takes the lease when nobody holds it or the last holder's expired (`None`
//!   otherwise); `acquire_within(id, &value, wait)` tries again with a jittered backoff until
//!   `wait` has passed. Both need `enable_set`. `holder::<S>(id)` reads who holds it: `Holder {
//!   value, token, expires_in }`.
//! - `lease.extend()` gives it its full `ttl` again if it is still this lease, else
//!   `Error::LeaseLost` (an expired lease is not revived); `lease.release()` frees it if it is
//!   still this one (`false` when it was already lost: another holder's lease is never removed).
//!   Dropping a `Lease` does not release it: it expires after its `ttl`.
//! - `lease.keep_alive()` (or `keep_alive_every(d)`) returns a `KeepAlive`, which dereferences to
//!   the lease; learn of a loss by polling `is_lost()` between steps of the work or by awaiting
//!   `lost()` beside it. Dropping it stops the renewals; `into_lease()` and `release()` too.
//! - `store.fenced(&lease)` has `set`, `update`, `update_with` (these need `enable_set`) and
//!   `remove` (`enable_remove`), each carrying the lease's **fencing token**, a number strictly
//!   greater than every token handed out before for the key.
//!
//! **What the token protects.** A process paused by garbage collection or a stalled VM for longer
//! than its lease still believes it holds the lock when it wakes, and writes; only a check made by
//! the storage itself, of a number that grows with every acquisition, stops that late write (Martin
//! Kleppmann, [How to do distributed
//! locking](https://martin.kleppmann.com/2016/02/08/how-to-do-distributed-locking.html)). Here the
//! engine checks the token in the same atomic step as the write and refuses it with
//! `Error::LeaseLost`, writing nothing. So a lease bounds who writes *through this store*, and only
//! through `fenced`: a plain `set` of the same key is not checked. It cannot stop side effects
//! outside the store (an email sent, a file written elsewhere): for those, pass `lease.token()` to
//! that system and have it refuse tokens older than the newest it has seen.
//!
//! | engine | a fenced write is refused |
//! |---|---|
//! | memory | as soon as the lease is lost: expired, released, removed or taken (the currency rule, which implies the fencing rule) |
//! | Redis, one server or Sentinel | the same: the write's script checks the lease's token record |
//! | Redis Cluster | once a newer token of the lease has written that key (the fencing rule only: the lease lives on another node). A written key `{g}:{id}` keeps a record `{g}#fence{T}:{id}` in its own slot, for as long as the key and at least one lease ttl after each write; the key itself stays plain JSON. (A key without expiry keeps its record as long as it lives: remove it through `fenced`, which gives the record an expiry, or the record stays after a plain `remove`.) Have a new holder write first (as `running` above): that shuts the old one out |
//! | NATS JetStream KV | not offered: fenced writes are `Error::Unsupported`, as the lease and the written key are in two buckets, which no write checks atomically. The leases themselves work, the token being the revision of the acquisition |
//! | an engine of your own | `Error::Unsupported`, unless it implements the `Leases` capability ([Writing a backend](super::writing_a_backend)) |
//!
//! **On Redis**, for a lease type whose prefix (namespace included) is `{p}`: `{p}:{id}` holds the
//! value as plain JSON with the lease's expiry (`GET svc:job-lease:3` shows who holds it),
//! `{p}#lease{T}:{id}` the holder's token and the SHA-1 of that value (`{token}:{sha1}`) with the
//! same expiry (so a plain write to the lease key ends the lease, as on every engine), and
//! `{p}#tokens{T}` the counter tokens come from, without expiry, one per hash slot (at most 16,384
//! per type). `{T}` is a short hash tag in the lease key's slot, so the three keys share a slot and
//! each call is one Lua script on one node; the names start with `{p}` (an ACL pattern for the
//! namespace covers them) and are not under `{p}:` (`ids()` does not list them).
//!
//! A key's tokens (not consecutive) grow strictly across expiry, release, removal through
//! `remove::<S>`, and a restart with AOF persistence
//! ([Persistence](super::durability#persistence)); on NATS, with file storage. Across a Sentinel
//! failover they grow for every token whose acquisition reached the promoted replica: Redis
//! replicates asynchronously, so a lease taken just before the failover may be missing on the new
//! primary and its token handed out again. To make sure of it, run with `appendonly yes` and check
//! replication after acquiring (`WAIT`, e.g. through `RedisBackend::connection()`), or declare the
//! lease type `durable` as well, which makes every lease call wait for that
//! ([durability](super::durability)).
//!
//! `cargo run --example worker_lease` runs three workers over six jobs on either backend: one is
//! paused past its lease's ttl on purpose, another takes its job over, and its late write is
//! refused (`worker-c: late write refused: the lease ... with token 7 is lost; nothing was
//! written`).
