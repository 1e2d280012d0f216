//! Durable writes on Redis: a write of a `#[state(durable)]` type answers once it reached the
//! copies [`RedisOptions::durability`](crate::RedisOptions::durability) asks for (`WAIT`, or
//! `WAITAOF` for [`Durability::Persisted`]), else [`Error::NotDurable`].
//!
//! **Group commit.** `WAIT` blocks the connection it is sent on and covers every write sent
//! before it on that connection. So durable writes go over a connection of their own (the
//! *lane*, opened at the first durable write), and a write, once answered, joins the next
//! `WAIT` of its group: the first to arrive sends it, and every write answered while it is in
//! flight joins the one after. Concurrent durable writes share one `WAIT` per round trip, and
//! writes of other types, on the backend's main connection, never wait behind one. On a Cluster
//! a group is a hash slot, and its `WAIT` goes to the primary of that slot: the node that took
//! the write.
//!
//! A write is routed to the lane by a task-local set around the call (see
//! [`RedisBackend::durably`]): every path that picks a connection (`conn_for`) looks at it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::Value;
use tokio::sync::{OnceCell, oneshot};

use super::RedisBackend;
use super::conn::{RedisConnection, backend_error};
use crate::backend::BoxFuture;
use crate::{Durability, Error, Result};

tokio::task_local! {
    /// The lane, while a durable write runs.
    static LANE: RedisConnection;
}

/// Opens a lane connection.
pub(super) type Connect =
    Arc<dyn Fn() -> BoxFuture<'static, Result<RedisConnection>> + Send + Sync>;

/// The durable writes of a backend, shared by its clones.
pub(super) struct Durable {
    durability: Durability,
    connect: Connect,
    lane: OnceCell<RedisConnection>,
    /// The `WAIT` rounds, per hash slot on a Cluster (slot 0 elsewhere).
    groups: Mutex<HashMap<u16, Arc<Group>>>,
}

/// One group's rounds: whether a `WAIT` is in flight, and the writes that joined the next.
#[derive(Default)]
struct Group {
    state: Mutex<Round>,
}

#[derive(Default)]
struct Round {
    running: bool,
    /// Each joined write's answer: the copies acknowledged, or why the wait failed.
    joined: Vec<oneshot::Sender<std::result::Result<u32, String>>>,
    /// A key of the group, to route its `WAIT` on a Cluster.
    key: String,
}

impl Durable {
    pub(super) fn new(durability: Durability, connect: Connect) -> Durable {
        Durable {
            durability,
            connect,
            lane: OnceCell::new(),
            groups: Mutex::new(HashMap::new()),
        }
    }

    async fn lane(&self) -> Result<RedisConnection> {
        self.lane
            .get_or_try_init(|| (self.connect)())
            .await
            .cloned()
    }

    /// Waits until the writes sent so far on `lane` for `key`'s group reached the copies the
    /// durability asks for: how many did.
    async fn wait(&self, lane: &RedisConnection, key: &str) -> Result<u32> {
        let slot = if lane.is_cluster() {
            super::lease::slot(key.as_bytes())
        } else {
            0
        };
        let group = {
            let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            groups.entry(slot).or_default().clone()
        };
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut round = group.state.lock().unwrap_or_else(|e| e.into_inner());
            round.joined.push(answer);
            if round.key.is_empty() {
                round.key = key.to_owned();
            }
            !std::mem::replace(&mut round.running, true)
        };
        if lead {
            // A task of its own, so that the rounds go on when this call is given up.
            tokio::spawn(rounds(group, lane.clone(), self.durability));
        }
        match answered.await {
            Ok(Ok(acked)) => Ok(acked),
            Ok(Err(reason)) => Err(Error::Backend {
                operation: "wait",
                key: key.to_owned(),
                source: reason.into(),
            }),
            Err(_) => Err(Error::Backend {
                operation: "wait",
                key: key.to_owned(),
                source: "the durability wait ended without an answer (its runtime shut down)"
                    .into(),
            }),
        }
    }
}

/// Sends one `WAIT` (or `WAITAOF`) per round for the writes that joined it, until none joins.
async fn rounds(group: Arc<Group>, mut lane: RedisConnection, durability: Durability) {
    loop {
        let (joined, key) = {
            let mut round = group.state.lock().unwrap_or_else(|e| e.into_inner());
            if round.joined.is_empty() {
                round.running = false;
                round.key.clear();
                return;
            }
            (std::mem::take(&mut round.joined), round.key.clone())
        };
        let acked = wait_once(&mut lane, &key, durability).await;
        for answer in joined {
            let _ = answer.send(acked.clone());
        }
    }
}

/// One `WAIT numreplicas timeout` or `WAITAOF numlocal numreplicas timeout` on the primary of
/// `key`: the copies that acknowledged.
async fn wait_once(
    lane: &mut RedisConnection, key: &str, durability: Durability,
) -> std::result::Result<u32, String> {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut cmd = match durability {
        Durability::Replicas { count, timeout } => {
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(count).arg(millis(timeout));
            cmd
        }
        Durability::Persisted {
            local,
            replicas,
            timeout,
        } => {
            let mut cmd = redis::cmd("WAITAOF");
            cmd.arg(u32::from(local)).arg(replicas).arg(millis(timeout));
            cmd
        }
    };
    let reply = lane
        .on_key_primary(key, &mut cmd)
        .await
        .map_err(|e| e.to_string())?;
    let count = |value: &Value| match value {
        Value::Int(n) => Ok(u32::try_from(*n).unwrap_or(0)),
        other => Err(format!(
            "an unexpected answer to a durability wait: {other:?}"
        )),
    };
    match (&reply, durability) {
        (Value::Array(parts), Durability::Persisted { local, .. }) if parts.len() == 2 => {
            let local_acked = if local { count(&parts[0])?.min(1) } else { 0 };
            Ok(local_acked + count(&parts[1])?)
        }
        (value, Durability::Replicas { .. }) => count(value),
        (other, _) => Err(format!("an unexpected answer to WAITAOF: {other:?}")),
    }
}

impl RedisBackend {
    /// Runs the write `work` on the durable lane when `durable`, then waits until it reached
    /// the copies the durability asks for: [`Error::NotDurable`] when it did not within the
    /// timeout. A write that failed is not waited for.
    pub(super) async fn durably<T>(
        &self, durable: bool, key: &str, work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.durably_all(durable, std::slice::from_ref(&key), work)
            .await
    }

    /// [`durably`](Self::durably) for a write of several keys: on a Cluster, one wait per hash
    /// slot they are in (each on its own primary); the first key short of copies is the error.
    pub(super) async fn durably_all<T, K: AsRef<str>>(
        &self, durable: bool, keys: &[K], work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if !durable {
            return work.await;
        }
        let lane = self.durable.lane().await?;
        let done = LANE.scope(lane.clone(), work).await?;
        let mut waited = std::collections::HashSet::new();
        for key in keys {
            let key = key.as_ref();
            let group = if lane.is_cluster() {
                super::lease::slot(key.as_bytes())
            } else {
                0
            };
            if !waited.insert(group) {
                continue;
            }
            let acked = self.durable.wait(&lane, key).await?;
            let required = self.durable.durability.required();
            if acked < required {
                return Err(Error::NotDurable {
                    key: key.to_owned(),
                    acked,
                    required,
                });
            }
        }
        Ok(done)
    }

    /// The durable lane, when the current call is a durable write.
    pub(super) fn lane() -> Option<RedisConnection> {
        LANE.try_with(RedisConnection::clone).ok()
    }
}

/// Whether the server has `WAITAOF` (Redis 7.2+, Valkey 8+), which
/// [`Durability::Persisted`] needs: asked once at connect.
pub(super) async fn check_durability(
    conn: &mut RedisConnection, durability: Durability, target: &str,
) -> Result<()> {
    if !matches!(durability, Durability::Persisted { .. }) {
        return Ok(());
    }
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("INFO").arg("WAITAOF");
    let info: Value = cmd
        .query_async(conn)
        .await
        .map_err(|e| backend_error("connect", target, e))?;
    let known = matches!(&info, Value::Array(entries) if entries.iter().any(|e| *e != Value::Nil));
    if known {
        Ok(())
    } else {
        Err(Error::Unsupported {
            operation: "Durability::Persisted (WAITAOF needs Redis 7.2+ or Valkey 8+)",
            backend: "RedisBackend",
        })
    }
}
