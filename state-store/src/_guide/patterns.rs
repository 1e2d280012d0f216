//! Patterns done right: each is one atomic step on the server, so concurrent callers cannot lose
//! updates.
//!
//! The examples `rate_limit` and `job_status` run them (`cargo run --example rate_limit`), and
//! every block below runs on the memory backend as it is. The rule behind them all: never read a
//! value, change it in the client and write it back in a second call. Between the two, another
//! caller can write, and one of the two writes is lost.
//!
//! # Counters
//!
//! Racy: `get`, add one, `set`. Concurrent requests read the same value and increments are lost,
//! and the window's expiry is reset or forgotten. Right: declare the type a `counter` and call
//! [`incr`](crate::Store::incr), one atomic `INCRBY` whose first increment starts the type's `ttl`
//! (later ones never extend it).
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "ratelimit", id = String, ttl = "1m", counter)]
//! pub struct ApiCalls(pub i64);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # let user = "alice".to_string();
//! let n: i64 = store.incr::<ApiCalls>(&user, 1).await?;
//! # assert_eq!(n, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Rate limits
//!
//! Racy: a counter checked and bumped in two calls lets every concurrent caller through. Right:
//! declare the limit as a type with a [`Quota`](crate::Quota) (the `governor` crate's vocabulary)
//! and a [`Policy`](crate::Policy), then [`check`](crate::Store::check) it: one atomic step that
//! decides and counts (on Redis, one round trip). `FixedWindow` counts calls per window; `Smooth`
//! is GCRA (as in `governor` and redis-cell), which has no window edge at which a client can spend
//! two windows' quota at once.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! use state_store::{Policy, Quota, RateLimit};
//!
//! #[derive(Serialize, Deserialize, StateKey)]
//! #[state(prefix = "api-rate", id = String, counter)]
//! struct ApiRate(i64);
//!
//! impl RateLimit for ApiRate {
//!     const QUOTA: Quota = Quota::per_second(10).allow_burst(20);
//!     const POLICY: Policy = Policy::Smooth;
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # let client = "client-1".to_string();
//! let decision = store.check::<ApiRate>(&client).await?;
//! if !decision.allowed {
//!     println!("429: retry in {:?}", decision.retry_after);
//! }
//! # assert!(decision.allowed);
//! # Ok(())
//! # }
//! ```
//!
//! In an HTTP service the tower layer does this per request ([web services](super::web_services)).
//!
//! # Compare-and-set (job status)
//!
//! Racy: `get` the job, see `queued`, `set` it `running`: two workers both see `queued`. Right:
//! [`update`](crate::Store::update) runs your closure on the current value and writes the result
//! only if the value is still the one it saw (a server-side compare-and-set, not `WATCH`, which is
//! unsafe on a shared connection); on a lost race the closure runs again on the newer value, so
//! keep it free of side effects. An updated key keeps its remaining expiry
//! ([`update_with`](crate::Store::update_with) and
//! [`UpdateOptions::refresh_ttl`](crate::UpdateOptions::refresh_ttl), below, give it a fresh one).
//! [`set_if_absent`](crate::Store::set_if_absent) is `SET NX PX`.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = String, ttl = "7d")]
//! # pub struct Job { pub status: String }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # let id = "import-7".to_string();
//! # let job = Job { status: "queued".into() };
//! let created: bool = store.set_if_absent::<Job>(&id, &job).await?;
//! let now: Option<Job> = store.update::<Job>(&id, |current| match current {
//!     Some(mut j) if j.status == "queued" => { j.status = "running".into(); Some(j) }
//!     _ => None,   // leave it as it is
//! }).await?;
//! # assert!(created);
//! # assert_eq!(now.unwrap().status, "running");
//! # Ok(())
//! # }
//! ```
//!
//! To know whether your change was written without comparing values,
//! [`update_with`](crate::Store::update_with) returns [`Updated::Written(value)`](crate::Updated)
//! or `Updated::Unchanged(current)`. To delete only a job in a given state (a compare-and-delete on
//! the server, retried like `update` when the value changed under it),
//! [`remove_if`](crate::Store::remove_if) (needs `enable_remove`):
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! use state_store::{UpdateOptions, Updated};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = String, ttl = "7d")]
//! # pub struct Job { pub status: String }
//! # async fn run(job: Job) { let _ = job; }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set().enable_remove();
//! # let id = "import-7".to_string();
//! # store.set::<Job>(&id, &Job { status: "queued".into() }).await?;
//! let claim = |job: Option<Job>| match job {
//!     Some(j) if j.status == "queued" => Some(Job { status: "running".into() }),
//!     _ => None,
//! };
//! match store.update_with::<Job>(&id, UpdateOptions::new(), claim).await? {
//!     Updated::Written(job) => run(job).await,        // this worker has the job
//!     Updated::Unchanged(_) => {}                     // another worker had it first
//! }
//! # store.set::<Job>(&id, &Job { status: "done".into() }).await?;
//! let removed: bool = store.remove_if::<Job>(&id, |job| job.status == "done").await?;
//! # assert!(removed);
//! # Ok(())
//! # }
//! ```
//!
//! When a worker must own a job for the length of its work, not for one write, take a lease on it
//! and write under it ([leases](super::leases)).
//!
//! # Sliding expiry (sessions)
//!
//! Wrong: `ttl = "30m"` and nothing else, so a session ends 30 minutes after it was written however
//! active its user is; or a `get` then `EXPIRE`, two round trips. Right:
//! [`get_and_touch`](crate::Store::get_and_touch) reads and resets the expiry to the type's `ttl`
//! in one `GETEX ... PX` (Redis 6.2+), [`touch`](crate::Store::touch) resets it alone (one
//! `PEXPIRE`; `false` when the session is gone), and `update_with` with
//! `UpdateOptions::new().refresh_ttl()` is `update` that also gives the value it writes a fresh
//! `ttl`. All three are writes (`enable_set`) and announce nothing on a change feed unless the
//! value changed.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store, UpdateOptions};
//! # #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "session", id = u64, ttl = "30m")]
//! # pub struct Session { pub cart: Vec<String> }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # let (user_id, item) = (42, "book".to_string());
//! # store.set::<Session>(user_id, &Session::default()).await?;
//! let session: Option<Session> = store.get_and_touch::<Session>(user_id).await?; // 30 more minutes
//! let alive: bool = store.touch::<Session>(user_id).await?;
//! let sliding = UpdateOptions::new().refresh_ttl();
//! store.update_with::<Session>(user_id, sliding, |s| s.map(|mut s| { s.cart.push(item.clone()); s })).await?;
//! # assert!(session.is_some() && alive);
//! # Ok(())
//! # }
//! ```
//!
//! # Bulk reads and writes
//!
//! Racy and slow: a loop of `get`s, one round trip each. Right:
//! [`get_many`](crate::Store::get_many) (one `MGET`, results in the order asked),
//! [`set_many`](crate::Store::set_many) (one atomic `MULTI`/`EXEC` pipeline, each key with the
//! type's ttl) and [`remove_many`](crate::Store::remove_many) (one `DEL`).
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! # #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "session", id = u64, ttl = "30m")]
//! # pub struct Session { pub cart: Vec<String> }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set().enable_remove();
//! # let ids = [1, 2, 3];
//! # let items: Vec<(u64, Session)> = vec![(1, Session::default()), (2, Session::default())];
//! store.set_many::<Session>(&items).await?;   // items: Vec<(u64, Session)>, or any iterator of pairs
//! let sessions: Vec<Option<Session>> = store.get_many::<Session>(&ids).await?;
//! let removed: u64 = store.remove_many::<Session>(&ids).await?;
//! # assert_eq!(sessions.iter().filter(|s| s.is_some()).count(), 2);
//! # assert_eq!(removed, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Listing ids
//!
//! Wrong: `KEYS session:*`, which blocks Redis and treats `*` in ids as a glob. Right:
//! [`ids`](crate::Store::ids) streams typed ids from `SCAN MATCH`, a batch at a time; a key under
//! the prefix that does not parse yields an error item naming it and the stream goes on.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! # #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "session", id = u64, ttl = "30m")]
//! # pub struct Session { pub cart: Vec<String> }
//! use state_store::StreamExt;   // `next()`, re-exported from futures-util
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # store.set::<Session>(7, &Session::default()).await?;
//! let mut ids = std::pin::pin!(store.ids::<Session>());
//! while let Some(id) = ids.next().await {
//!     let id: u64 = id?;
//! #   assert_eq!(id, 7);
//! }
//! # Ok(())
//! # }
//! ```
