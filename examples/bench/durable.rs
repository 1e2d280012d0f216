//! Durable writes: `set` of a type declared `durable` against `set` of the same value shape
//! without, through the same store, on the bench's server with one replica of its own.
//!
//! A durable `set` is `SET PX` on the backend's durable lane (a connection of its own), then,
//! once answered, a `WAIT 1 1000` (the default `Durability`) that concurrent durable writes share:
//! at 1 task that is one more round trip per write, at 64 tasks one `WAIT` per round of writes
//! (group commit). How many the server ran per write is counted from `INFO commandstats`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use state_store::{RedisBackend, StateKey, Store};

use crate::common::{Res, Session, session};
use crate::journal::{ServerCost, costing};
use crate::stats::Workload;
use crate::support::RedisServer;
use crate::typed_vs_raw::typed_sets;

/// `Session`, declared `durable`: every write waits for the backend's durability (one replica).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "dsession", id = u64, ttl = "30m", durable)]
pub(crate) struct DurableSession {
    pub(crate) user: String,
    pub(crate) cart: Vec<String>,
    pub(crate) locale: String,
    pub(crate) updated_at: i64,
    pub(crate) flags: u32,
}

pub(crate) fn durable_session(id: u64) -> DurableSession {
    let Session {
        user,
        cart,
        locale,
        updated_at,
        flags,
    } = session(id);
    DurableSession {
        user,
        cart,
        locale,
        updated_at,
        flags,
    }
}

/// A `redis-server` replicating `primary`, once its link to the primary is up.
pub(crate) async fn replica_of(primary: &RedisServer) -> Res<RedisServer> {
    let mut on_primary = primary.client().get_multiplexed_async_connection().await?;
    // Diskless full syncs start after `repl-diskless-sync-delay` (5 s by default), in case more
    // replicas come: this one is all there will be.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-diskless-sync-delay")
        .arg(0)
        .query_async(&mut on_primary)
        .await?;
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut on_replica = replica.client().get_multiplexed_async_connection().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut on_replica)
            .await?;
        if info.lines().any(|l| l.trim() == "master_link_status:up") {
            return Ok(replica);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the replica on port {} did not sync with 127.0.0.1:{port} within 20 s: {info}",
                replica.port()
            )
            .into());
        }
        // Polling: the link comes up once the primary has sent its data set.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One durable `set` through `store`, then its value read on the replica at once: a write that
/// answered `Ok` must already be there.
pub(crate) async fn check_on_replica(
    store: &Store<RedisBackend>, replica: &RedisServer,
) -> Res<()> {
    let id = 0;
    let value = durable_session(id);
    store.set::<DurableSession>(id, &value).await?;
    let mut on_replica = replica.client().get_multiplexed_async_connection().await?;
    let key = format!("{}:{id}", DurableSession::PREFIX);
    let there: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut on_replica)
        .await?;
    let there: Option<DurableSession> = there.map(|b| serde_json::from_slice(&b)).transpose()?;
    if there.as_ref() != Some(&value) {
        return Err(format!(
            "a durable set of {key} was acknowledged but the replica has {there:?}"
        )
        .into());
    }
    Ok(())
}

/// Durable `set`s of `DurableSession`, as `typed_set` writes `Session`s (same ids and values).
pub(crate) fn durable_set(store: &Store<RedisBackend>, tasks: usize) -> Workload {
    typed_sets(store, "durable", tasks, durable_session)
}

/// What the server ran during the rounds of a workload (a [`ServerCost`]), read for its
/// `WAIT`s and `SET`s.
#[derive(Debug)]
pub(crate) struct Waits(Arc<ServerCost>);

impl Waits {
    /// `WAIT`s per `SET`, with the counts, for the table's notes.
    pub(crate) fn note(&self) -> String {
        let (waits, sets) = (self.0.calls("wait"), self.0.calls("set"));
        if sets == 0 {
            return "no SET counted".into();
        }
        format!(
            "{:.3} WAIT per write ({waits} WAITs / {sets} SETs)",
            waits as f64 / sets as f64
        )
    }
}

/// `workload`, with the server's statistics reset before each of its rounds and its `WAIT` and
/// `SET` calls added up after (see [`costing`]): the other side's rounds, which alternate with
/// these, are not counted. Both happen outside the timed round.
pub(crate) fn counting_waits(
    workload: Workload, admin: &MultiplexedConnection,
) -> (Workload, Waits) {
    let (workload, cost) = costing(workload, admin);
    (workload, Waits(cost))
}
