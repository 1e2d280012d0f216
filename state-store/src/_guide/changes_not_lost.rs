//! Changes that are not lost: the journal (`history = N`), `journal` and `consume`.
//!
//! A change feed ([`watch`](crate::Store::watch), see [`watching`](super::watching)) rides
//! pub/sub: it is fast and atomic with the write, but what happens while a watcher is
//! disconnected, restarting or slow is gone, and it says so ([`Error::Lagged`](crate::Error::Lagged),
//! [`Error::Interrupted`](crate::Error::Interrupted)). A service that must see every change (a
//! worker that acts on each job, an index kept in step, an audit trail) declares a **journal**:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::StateKey;
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "job", id = u64, notify, history = 100_000)]   // keeps about the last 100,000 changes
//! pub struct Job { pub status: String }
//! ```
//!
//! Every change of the type is then appended to its journal **in the same atomic step as the
//! write** (on Redis: a stream entry written in the write's own `MULTI` or script; in memory:
//! under the same lock), so an entry exists if and only if the write happened. The journal keeps
//! about the last `N` changes: at least `N`, at most `2N`.
//!
//! # Three ways to follow changes
//!
//! | | [`watch`](crate::Store::watch) | [`journal`](crate::Store::journal) | [`consume`](crate::Store::consume) |
//! |---|---|---|---|
//! | declared with | `notify` | `notify, history = N` | `notify, history = N` |
//! | who gets a change | every watcher | every reader | one consumer of each group |
//! | while away (restart, disconnect) | lost: `Lagged` / `Interrupted` | kept: resume after your last cursor | kept: pending for the group |
//! | delivery | at most once | exactly once from a cursor, in order | at least once, until `ack` |
//! | a slow reader | drops the oldest (`Lagged`) | reads at its pace; past the last `N`, `Trimmed` | others take the work |
//! | cost per write | one `PUBLISH` | `PUBLISH` + `XADD` | `PUBLISH` + `XADD` |
//! | use it for | live views, cache invalidation | projections, audit, catch-up after restart | work queues, one handler per change |
//!
//! # Reading a journal, and resuming
//!
//! [`Store::journal`](crate::Store::journal) takes a [`Position`](crate::Position): `Start` (the
//! oldest change kept), `Now` (only changes made after the call returned) or `After(cursor)`
//! (exactly the changes after that one). It first delivers what the journal holds, then goes on
//! live, with nothing missed or repeated at the seam. Each [`Entry`](crate::Entry) has a
//! [`Cursor`](crate::Cursor): store it with the work it produced, and a restarted process
//! resumes right after it.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! use state_store::{Change, Cursor, MemoryBackend, Position, StateKey, Store, StreamExt};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = u64, notify, history = 100_000)]
//! # pub struct Job { pub status: String }
//!
//! /// Where the projection got to: a state type of its own.
//! #[derive(Serialize, Deserialize, StateKey)]
//! #[state(prefix = "projection-cursor", id = String)]
//! struct Progress { cursor: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! let store = Store::new(MemoryBackend::new()).enable_set();
//! store.set::<Job>(1, &Job { status: "queued".into() }).await?;
//! store.set::<Job>(1, &Job { status: "done".into() }).await?;
//!
//! // Where the last run stopped, or the start of what is kept.
//! let from = match store.get::<Progress>("jobs".to_string()).await? {
//!     Some(p) => Position::After(p.cursor.parse::<Cursor>().expect("a stored cursor")),
//!     None => Position::Start,
//! };
//! let mut journal = store.journal::<Job>(from).await?;
//! # let mut seen = 0;
//! while let Some(entry) = journal.next().await {
//!     let entry = match entry {
//!         Ok(entry) => entry,
//!         // Fell behind the trimming: read the state to catch up, the stream goes on.
//!         Err(e) if e.missed_changes() => continue,
//!         Err(e) => return Err(e),
//!     };
//!     if let Change::Set { id, value } = entry.change() {
//!         println!("job {id} is {}", value.status);
//!     }
//!     // Handled: remember where we are.
//!     let cursor = entry.cursor().to_string();
//!     store.set::<Progress>("jobs".to_string(), &Progress { cursor }).await?;
//! #   seen += 1;
//! #   if seen == 2 { break }
//! }
//! # assert_eq!(seen, 2);
//! # Ok(())
//! # }
//! ```
//!
//! A cursor older than the oldest change kept makes `journal` fail with
//! [`Error::Trimmed`](crate::Error::Trimmed)` { cursor, resume }`: the changes in between are
//! gone. Read the state to catch up, then resume with `Position::After(resume)`. A reader that
//! falls behind the trimming while it reads gets that error once as an item and goes on with
//! the oldest change kept. Choose `N` for the longest time a reader may be away: writes per
//! second times seconds away, with room to spare.
//!
//! # Worker groups
//!
//! [`Store::consume`](crate::Store::consume) shares a journal among the consumers of a group:
//! each change goes to one of them, and stays pending for the group until its
//! [`Delivery`](crate::Delivery) is acknowledged ([`ack`](crate::Delivery::ack)). A change left
//! unacknowledged for [`claim_after`](crate::ConsumeOptions::claim_after) (30 seconds by
//! default) is delivered again to a live consumer: a worker that dies mid-job loses nothing.
//! Delivery is at least once, so handling a change must be safe to repeat
//! ([`deliveries`](crate::Delivery::deliveries) says how many times it came). A group is created
//! by the first `consume` that names it and starts with the changes made after that call
//! returned; a consumer that restarts under the same name first gets back what it held.
//!
//! ```
//! # use std::time::Duration;
//! # use serde::{Deserialize, Serialize};
//! use state_store::{ConsumeOptions, MemoryBackend, StateKey, Store, StreamExt};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = u64, notify, history = 100_000)]
//! # pub struct Job { pub status: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! let store = Store::new(MemoryBackend::new()).enable_set();
//! let options = ConsumeOptions::new().claim_after(Duration::from_secs(60));
//! let mut worker = store.consume_with::<Job>("mailer", "worker-1", options).await?;
//!
//! store.set::<Job>(7, &Job { status: "queued".into() }).await?;
//! let delivery = worker.next().await.expect("the stream goes on")?;
//! if delivery.change().value().is_some_and(|job| job.status == "queued") {
//!     // ... send the mail (safe to repeat: at least once) ...
//! }
//! delivery.ack().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What each engine gives
//!
//! - **Memory**: everything above, in process, under the data lock. Expiries are journaled when
//!   their deadline passes while a journal is being read, else at the latest by the next call.
//! - **Redis (one server, Sentinel)**: a stream per type, `{namespace}:{prefix}#journal`, with
//!   plain fields `op` (`set`, `removed`, `expired`), `key` and `value`, which any client can
//!   read with `XRANGE`. Entries are numbered `0-1`, `0-2`, ... without gaps (`XADD ... 0-*`,
//!   Redis 7.0 or newer), so a reader knows exactly what the trimming took. Worker groups are
//!   stream consumer groups (`XREADGROUP`, `XACK`, `XAUTOCLAIM`). Readers and consumers each
//!   hold a connection of their own. The journal is as durable as the server: with
//!   `appendonly yes` it survives a restart; through Sentinel, a failover can lose the last
//!   writes and their entries together (declare the type `durable` to wait for a replica).
//! - **Redis expiries**: a key's expiry is journaled from the server's keyspace events
//!   (turn them on with [`enable_expiry_events`](crate::Store::enable_expiry_events)) by a
//!   listener that each process writing or reading the type runs; a script appends it once,
//!   however many listeners heard it. **An expiry is missing from the journal** when no such
//!   listener was connected at that moment: no process of the type running, or every one of
//!   them reconnecting. `RedisBackend::journal_expiry_gaps` counts the moments this process's
//!   listener was not connected (its start and each reconnection), and each reconnection is a
//!   `WARN` event with the `tracing` feature.
//! - **Redis Cluster**: no journal (`journal` and `consume` are
//!   [`Error::Unsupported`](crate::Error::Unsupported), writes are not journaled). A stream and
//!   the keys it records sit in different slots, so the append could not be atomic with the
//!   write; a journal per slot would need a merged reader whose cursor is not one position.
//! - **NATS JetStream KV**: no journal yet (`Unsupported`).
//! - **Your own engine**: implement [`Journals`](crate::backend::Journals) and append in
//!   `put`/`remove` when the options carry `history`; [`kit::journal`](crate::backend::kit::journal)
//!   is the memory engine's log, ready to reuse. The conformance suite checks replay, the seam,
//!   trimming, expiries and worker groups.
