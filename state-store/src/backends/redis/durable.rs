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
use crate::backend::Expiry;
use crate::{Durability, Error, Result};

tokio::task_local! {
    /// The lane, while a durable write runs.
    static LANE: RedisConnection;
}

/// Opens a lane connection.
pub(super) type Connect =
    Arc<dyn Fn() -> BoxFuture<'static, Result<RedisConnection>> + Send + Sync>;

/// How many lanes durable writes take turns on: while one lane's `WAIT` is in flight (which
/// blocks that connection on the server), the next writes go out on another, so that a write
/// never queues behind a `WAIT` that cannot cover it.
const LANES: usize = 2;

/// The durable writes of a backend, shared by its clones.
pub(super) struct Durable {
    durability: Durability,
    connect: Connect,
    lanes: [Lane; LANES],
}

/// A connection of durable writes and its `WAIT` rounds.
#[derive(Default)]
struct Lane {
    conn: OnceCell<RedisConnection>,
    /// The `WAIT` rounds, per hash slot on a Cluster (slot 0 elsewhere).
    groups: Mutex<HashMap<u16, Arc<Group>>>,
}

impl Lane {
    fn group(&self, slot: u16) -> Arc<Group> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.entry(slot).or_default().clone()
    }

    /// Whether a `WAIT` of this lane's first group is in flight.
    fn waiting(&self) -> bool {
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.get(&0).is_some_and(|group| {
            group
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running
        })
    }
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

impl Round {
    /// The group is idle again.
    fn finish(&mut self) {
        self.joined.clear();
        self.running = false;
        self.key.clear();
    }
}

/// The group `key` is in on `conn`: its hash slot on a Cluster, 0 elsewhere.
fn group_of(conn: &RedisConnection, key: &str) -> u16 {
    if conn.is_cluster() {
        super::lease::slot(key.as_bytes())
    } else {
        0
    }
}

impl Durable {
    /// A new connection of the lanes' kind (the same server, following a Sentinel failover),
    /// for a task that blocks its connection (a journal reader's `XREAD BLOCK`).
    pub(super) fn connect(&self) -> BoxFuture<'static, Result<RedisConnection>> {
        (self.connect)()
    }

    pub(super) fn new(durability: Durability, connect: Connect) -> Durable {
        Durable {
            durability,
            connect,
            lanes: Default::default(),
        }
    }

    /// The lane for the next write (one whose `WAIT` is not in flight, when there is one), and
    /// its connection.
    async fn lane(&self) -> Result<(&Lane, RedisConnection)> {
        let lane = self
            .lanes
            .iter()
            .find(|lane| !lane.waiting())
            .unwrap_or(&self.lanes[0]);
        let conn = lane
            .conn
            .get_or_try_init(|| (self.connect)())
            .await
            .cloned()?;
        Ok((lane, conn))
    }

    /// Waits until the writes sent so far on `lane` for `key`'s group (`slot`, see
    /// [`group_of`]) reached the copies the durability asks for: how many did.
    async fn wait(&self, lane: &Lane, conn: &RedisConnection, key: &str, slot: u16) -> Result<u32> {
        let group = lane.group(slot);
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
            tokio::spawn(rounds(group, conn.clone(), self.durability));
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
                round.finish();
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
    let mut cmd = wait_command(durability);
    let reply = lane
        .on_key_primary(key, &mut cmd)
        .await
        .map_err(|e| e.to_string())?;
    acked(&reply, durability)
}

/// `WAIT numreplicas timeout`, or `WAITAOF numlocal numreplicas timeout`.
fn wait_command(durability: Durability) -> redis::Cmd {
    use super::millis;
    match durability {
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
    }
}

/// The copies a `WAIT` or `WAITAOF` answer says acknowledged.
fn acked(reply: &Value, durability: Durability) -> std::result::Result<u32, String> {
    let count = |value: &Value| match value {
        Value::Int(n) => Ok(u32::try_from(*n).unwrap_or(0)),
        other => Err(format!(
            "an unexpected answer to a durability wait: {other:?}"
        )),
    };
    match (reply, durability) {
        (Value::Array(parts), Durability::Persisted { local, .. }) if parts.len() == 2 => {
            let local_acked = if local { count(&parts[0])?.min(1) } else { 0 };
            Ok(local_acked + count(&parts[1])?)
        }
        (value, Durability::Replicas { .. }) => count(value),
        (other, _) => Err(format!("an unexpected answer to WAITAOF: {other:?}")),
    }
}

/// A group marked busy by a write that sends its own `WAIT` in the same pipeline as itself; when
/// it goes (answered, failed or given up), the writes that joined meanwhile get a round.
struct Solo {
    group: Arc<Group>,
    conn: RedisConnection,
    durability: Durability,
}

impl Drop for Solo {
    fn drop(&mut self) {
        let mut round = self.group.state.lock().unwrap_or_else(|e| e.into_inner());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !round.joined.is_empty() => {
                let group = self.group.clone();
                runtime.spawn(rounds(group, self.conn.clone(), self.durability));
            }
            // Nobody joined (or the runtime is gone: the joined writes' answers are dropped,
            // which they report as an error).
            _ => round.finish(),
        }
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
        let (lane, conn) = self.durable.lane().await?;
        let server = conn.generation();
        let done = LANE.scope(conn.clone(), work).await?;
        let required = self.durable.durability.required();
        // One wait per group the keys are in (a set only for a write of several keys).
        let mut waited = std::collections::BTreeSet::new();
        for key in keys {
            let key = key.as_ref();
            let group = group_of(&conn, key);
            if keys.len() > 1 && !waited.insert(group) {
                continue;
            }
            let mut acked = self.durable.wait(lane, &conn, key, group).await?;
            if conn.generation() != server {
                // The lane followed a new primary between the write and its wait: the wait
                // answered for another server, which says nothing of this write.
                acked = 0;
            }
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

    /// A durable `SET` (plain, or `NX`) when nothing else waits on its lane: the `SET` and its
    /// `WAIT` in one pipeline, one round trip. The value back when the lane's group is busy, this
    /// is a Cluster, or the wait is a `WAITAOF` on replicas: the caller takes the common path,
    /// which joins the group's next round.
    ///
    /// Not `WAITAOF` on replicas: the primary asks them for an acknowledgement (`REPLCONF GETACK`)
    /// right behind the `SET` it relays, and a replica answers it before it has synced the `SET`
    /// to its append-only file; its next acknowledgement comes a second later (seen on Valkey
    /// 8.1.8, even with `appendfsync always`), so every such write took a second and one with a
    /// timeout of a second failed `NotDurable`. Sent once the `SET` is answered (the common
    /// path), the `WAITAOF` took about a millisecond.
    pub(super) async fn durable_set(
        &self, key: &str, value: Vec<u8>, create: bool, expiry: Expiry,
    ) -> Result<std::result::Result<bool, Vec<u8>>> {
        let waitaof_on_replicas = matches!(
            self.durable.durability,
            Durability::Persisted { replicas, .. } if replicas > 0
        );
        let (lane, mut conn) = self.durable.lane().await?;
        if conn.is_cluster() || waitaof_on_replicas {
            return Ok(Err(value));
        }
        let group = lane.group(0);
        {
            let mut round = group.state.lock().unwrap_or_else(|e| e.into_inner());
            if round.running {
                return Ok(Err(value));
            }
            round.running = true;
        }
        let durability = self.durable.durability;
        let _solo = Solo {
            group,
            conn: conn.clone(),
            durability,
        };
        let mut pipe = redis::pipe();
        pipe.add_command(super::write::set_cmd(key, value, create, expiry));
        pipe.add_command(wait_command(durability));
        let forget = self.forget_key(key);
        let operation = if create { "set_if_absent" } else { "set" };
        // Not retried: after a lost reply, the write may have been made.
        let reply: Result<(Value, Value)> = self
            .writing(forget, async {
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|e| backend_error(operation, key, e))
            })
            .await;
        let (set, wait) = reply?;
        if set == Value::Nil {
            return Ok(Ok(false));
        }
        let acked = acked(&wait, durability).map_err(|reason| Error::Backend {
            operation: "wait",
            key: key.to_owned(),
            source: reason.into(),
        })?;
        let required = durability.required();
        if acked < required {
            return Err(Error::NotDurable {
                key: key.to_owned(),
                acked,
                required,
            });
        }
        Ok(Ok(true))
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
