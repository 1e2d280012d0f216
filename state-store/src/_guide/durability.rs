//! Durability: what survives a restart (persistence) and what survives a failover
//! (`#[state(durable)]`).
//!
//! # Persistence
//!
//! Redis holds state in memory; whether and when it reaches the disk is configuration. State that
//! must survive a restart needs the append-only file:
//!
//! ```text
//! appendonly yes
//! appendfsync everysec   # a crash loses up to about the last second of writes
//! ```
//!
//! `appendfsync always` loses no acknowledged write, at a large cost per write (each is fsynced
//! before it is answered); `tests/faults.rs` checks that acknowledged writes survive a SIGKILL with
//! it. RDB snapshots alone (`save`) lose everything written since the last snapshot. Sessions and
//! caches, which users can recreate, may not need any of this; job status and last-processed
//! markers do.
//!
//! # Durable writes
//!
//! Redis replicates asynchronously: a write is acknowledged once the primary has it, and a failover
//! to a replica that had not received it yet loses it, while the application was told it succeeded.
//! Declare state that must not be lost that way `durable`:
//!
//! ```no_run
//! # #[cfg(feature = "sentinel")]
//! # mod durable {
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use state_store::{Durability, RedisBackend, RedisOptions, StateKey, Store};
//!
//! #[derive(Serialize, Deserialize, StateKey)]
//! #[state(prefix = "payment", id = u64, durable)]
//! struct Payment { amount: u64, status: String }
//!
//! # pub async fn pay(sentinels: &[&str]) -> state_store::Result<()> {
//! # let payment = Payment { amount: 100, status: "paid".into() };
//! let options = RedisOptions::default()
//!     .durability(Durability::Replicas { count: 1, timeout: Duration::from_secs(1) }); // the default
//! let store = Store::new(RedisBackend::sentinel_with(sentinels, "mymaster", options).await?).enable_set();
//! store.set::<Payment>(7, &payment).await?; // Ok once a replica has it
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! Every write of a durable type (`set`, `set_many`, `set_if_absent`, `update`, `incr`, `remove`,
//! `touch`, fenced writes, lease calls of a durable lease type, `migrate`) returns `Ok` only after
//! it reached what the backend's `Durability` asks; otherwise `Error::NotDurable { key, acked,
//! required }`: the write was applied on the primary and may be lost in a failover (writing it
//! again is safe). `Durability::Replicas { count, timeout }` waits with `WAIT`;
//! `Durability::Persisted { local, replicas, timeout }` with `WAITAOF`, for the write to be in the
//! append-only file of the primary (`local`, which needs `appendonly yes`) and of `replicas`
//! replicas. `WAITAOF` needs Redis 7.2+ or Valkey 8+: a backend configured with `Persisted` refuses
//! to connect to an older server (`Error::Unsupported`) rather than downgrade. A replica with
//! `appendfsync everysec` (the default) acknowledges a write in its file only after its
//! once-a-second fsync: with `replicas` above 0, a round waits up to about a second there (0.87 s
//! per lone write, measured on Valkey 8.1.8), so give such a `Persisted` a timeout above a second,
//! or run the replicas with `appendfsync always` (a round then takes about a millisecond on
//! loopback).
//!
//! The cost is one round trip per *batch*, not per write: durable writes go over a connection of
//! their own, and each, once the server answered it, joins the next `WAIT` on that connection,
//! which covers every write sent before it; concurrent durable writes share one `WAIT`. Writes of
//! other types stay on the main connection and never queue behind a `WAIT` (`tests/durable.rs`
//! holds plain writes under 300 ms while a durable one waits on a stalled replica). On a Cluster
//! the `WAIT` goes to the primary that took the write, for each slot a `set_many` touched. The
//! memory backend acknowledges durable writes as any write: the process is its own only copy.
//!
//! **Measured** (`tests/sentinel.rs`,
//! `acknowledged_durable_writes_survive_a_stalled_replica_and_a_failover`: one primary, one
//! replica, three sentinels; 8 writers of a durable type and 8 of a plain type through one store;
//! the replica stalled with SIGSTOP for 3 s, then the primary SIGKILLed and the replica resumed and
//! promoted):
//!
//! | run | durable: acknowledged / lost / `NotDurable` / other errors | plain: acknowledged / lost / errors | writes resumed after the kill |
//! |---|---|---|---|
//! | 1 | 3,290 / **0** / 25 / 25 | 128,376 / **109,096** / 24 | 4.3 s |
//! | 2 | 2,760 / **0** / 20 / 30 | 108,738 / **78,935** / 24 | 4.3 s |
//! | 3 | 3,431 / **0** / 26 / 25 | 125,809 / **84,022** / 24 | 4.8 s |
//!
//! The plain writes the primary acknowledged during the stall are gone from the promoted replica;
//! every acknowledged durable write is there (those the stalled replica could not take failed with
//! `NotDurable`, within their timeout). With no replica left after the promotion, durable writes
//! answer `NotDurable` until the old primary rejoins as a replica, then succeed again.
//!
//! **What `WAIT` does not promise.** `WAIT 1` proves that *one* replica has the write, not that the
//! replica Sentinel promotes has it: Sentinel picks the replica with the lowest `replica-priority`,
//! then the greatest replication offset, among those not disconnected too long, so a replica with a
//! lower priority number is promoted even if it is behind. Bound this by running a single replica
//! (every acknowledged durable write is then on the only candidate), or by giving every replica the
//! same `replica-priority` and asking `count` equal to the number of replicas. A durable write is
//! also not an atomic commit: a write that failed with `NotDurable` stands on the primary and may
//! survive or not. Tested with Redis 7.0.15 (`WAIT`) and Valkey 8.1.8 (`WAIT` and `WAITAOF`).
//!
//! What durable writes cost against plain ones, at 1 and 64 tasks, is in `BENCHMARKS.md` (section
//! 12 of the benchmark). On NATS JetStream KV a durable type is a matter of the bucket's replicas
//! instead: see [nats](super::nats#durable-types).
