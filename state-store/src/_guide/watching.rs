//! Watching changes: the change feed of a type declared with `notify`.
//!
//! Declare a type with `notify` and its writes publish what they changed;
//! [`watch`](crate::Store::watch) streams the changes of every id of the type,
//! [`watch_id`](crate::Store::watch_id) those of one, and [`follow`](crate::Store::follow) the
//! value of one id as it changes:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! use state_store::{Change, StreamExt};   // StreamExt: `next()` on the stream, re-exported
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "job", id = String, ttl = "7d", notify)]
//! pub struct Job { pub status: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! let store = Store::new(MemoryBackend::new()).enable_set().enable_remove();
//! let mut changes = store.watch::<Job>().await?;     // subscribed once this returns
//! let watcher = tokio::spawn(async move {            // the stream is Send + 'static
//!     while let Some(change) = changes.next().await {
//!         match change {
//!             Ok(Change::Set { id, value }) => println!("job {id}: {}", value.status),
//!             Ok(Change::Removed { id }) => { println!("job {id}: removed"); break }
//!             Ok(Change::Expired { id }) => println!("job {id}: expired"),
//!             Err(e) if e.missed_changes() => { /* Lagged or Interrupted: read the state again */ }
//!             Err(e) => eprintln!("{e}"),            // e.g. a value that does not decode; goes on
//!         }
//!     }
//! });
//! let id = "import-7".to_string();
//! let one = store.watch_id::<Job>(&id).await?;       // one job's changes
//! # drop(one);
//!
//! // The job as it is now, then its value after each change (`None` once removed), with no
//! // change lost between the read and the subscription: for a page that shows a job live.
//! let mut job = store.follow::<Job>(&id).await?;
//! assert_eq!(job.next().await.transpose()?, Some(None));          // no such job yet
//! store.set::<Job>(&id, &Job { status: "running".into() }).await?;
//! let now: Option<Job> = job.next().await.transpose()?.flatten();
//! assert_eq!(now.unwrap().status, "running");
//!
//! store.remove::<Job>(&id).await?;
//! watcher.await.unwrap();                            // it saw the set, then the removal
//! # Ok(())
//! # }
//! ```
//!
//! `follow` subscribes before it reads, so a write racing the call is never lost. Each change the
//! feed announces makes it read the value again, so a value never comes after a newer one (a change
//! can reach the feed after a read that already shows it, on a Cluster over the cluster bus), a
//! burst of writes may show as fewer items, and its last item is always the value as it is; a gap
//! in the feed is one more read, never `Lagged` or `Interrupted`.
//!
//! `cargo run --example watch` runs a worker and a watcher on either backend. Watching a type
//! declared without `notify` does not compile (`` `Session` has no change feed to watch ``).
//!
//! **What publishes.** `set`, `set_with`, `set_many` (one change per item), a `set_if_absent` or
//! `update` that wrote, and `incr` (the new count as the value) publish `Change::Set` with the
//! value as written; `remove` and `remove_many` publish `Change::Removed` for keys that existed. A
//! write that does not happen (a lost `set_if_absent`, an `update` whose closure returns `None`,
//! the removal of a missing key) publishes nothing, and neither do rate-limit `check`s (the expiry
//! of their keys is announced, as that of every key of a watched type: Redis announces each key
//! that expires and cannot say who wrote it, and the memory backend does the same). The change is
//! published in the same atomic step as the write, still one round trip: on Redis `set` and
//! `set_many` send their `SET`s and `PUBLISH`es in one `MULTI` transaction, and the writes that
//! depend on what is stored (`set_if_absent`, `update`, `incr`, the removals, which announce only
//! keys that existed) run their `PUBLISH` inside one script (`EVALSHA`); on the memory backend,
//! under its lock. A watcher gets the changes of one id in the order they were stored. Types
//! without `notify` send nothing extra.
//!
//! **On Redis.** A type's channel is `{namespace}:{prefix}` (`user-service:job`; in a database
//! other than 0, `user-service:job@2`), with plain `PUBLISH` and `SUBSCRIBE`: an ACL user with
//! `&user-service:*` can write and watch, and publishing needs no `CONFIG` and no keyspace
//! notifications. A message is a JSON header, then for a set a newline and the value exactly as
//! stored: `{"op":"set","key":"user-service:job:42"}` + `\n` + `{"status":"done"}`, or
//! `{"op":"removed","key":"user-service:job:42"}`, so a service in another language can follow the
//! same feed. A user who may not publish on the channel gets an error from a notified write: `set`
//! and `set_many` are refused whole (Redis aborts the transaction), and the scripted writes check
//! first and write nothing, on Redis 7; on Redis 6, which cannot check from a script, those write
//! and then fail to announce, reporting the error. `watch_id` subscribes to the same channel and
//! keeps one id's changes. A backend and its clones share one pub/sub connection (besides the
//! command connection), opened by the first watcher; dropping a stream unsubscribes once its
//! channel has no other watcher. A subscription the server refuses is an error from `watch`.
//!
//! **Limits.**
//! - Pub/sub is at most once. Changes published while the pub/sub connection is down are lost; once
//!   it has reconnected and resubscribed, each stream yields `Error::Interrupted` and goes on.
//! - Each watcher buffers 1024 changes (`Store::watch_buffer(n)`); one that falls further behind
//!   loses the oldest and gets one `Error::Lagged { missed }`, then the newer changes.
//!   `Error::missed_changes()` is true for both: read the state again where a missed change
//!   matters.
//! - `Change::Expired` on Redis needs the server's expired-key events, `notify-keyspace-events`
//!   with `Ex`. `store.backend().enable_expiry_events().await` adds them with `CONFIG SET`, keeping
//!   the flags already set; managed services often refuse `CONFIG`, and then the flags go in the
//!   server's configuration. Without them no `Expired` arrives; nothing else changes. Redis
//!   announces an expiry when it deletes the key, on access or in its background cycle (10 times a
//!   second by default), so the event can come after the ttl. An ACL user also needs
//!   `&__keyevent@<db>__:expired` (`<db>`: the connection's database); without it `Expired` does
//!   not arrive and nothing says so.
//! - The memory backend always announces expiries, when tokio's clock passes the deadline: tests
//!   under `tokio::time::pause()` see `Expired` without waiting.
//! - Expiries reach watchers by key prefix (Redis reports only the key). A store without a
//!   namespace whose type prefix is another store's namespace, in the same database, can hear that
//!   store's expiries when their ids parse as its own; give every store a namespace.
//! - The Redis feed runs in a task on the runtime of the first `watch`; if that runtime shuts down,
//!   the streams it fed end, and the next `watch` starts a new task.
//! - A backend without a change feed answers `watch` with `Error::Unsupported`.
//!
//! **What it costs.** A type pays for `notify` only when declared with it; types without it send
//! exactly what they sent before. On Redis a notified `set` at 64 tasks ran at about half the rate
//! of a plain one (the server runs a transaction of two commands, and the client builds the
//! message), and one watcher kept up with 64 writing tasks; on the memory backend a watcher with
//! the default buffer is outrun by 64 writers and gets `Lagged`. The figures are in `BENCHMARKS.md`
//! (section 7 of `cargo run --release --example bench`).
