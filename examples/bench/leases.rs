//! Leases with fencing tokens against the raw `redis` crate doing the usual lock by hand, and a
//! fenced `set` against a plain one.
//!
//! - `acquire` + `release` (each one `EVALSHA`: the acquire script checks the lease key, takes a
//!   token from its slot's counter and writes the lease and its token record; the release script
//!   checks the token and deletes both) against `SET key token NX PX ttl` and a compare-and-delete
//!   script by `EVALSHA`, with a unique token per acquisition. Each task has its own lease id, so
//!   both sides always get their lease.
//! - `fenced(&lease).set` (one `EVALSHA` with 3 keys: it checks the lease and its token record,
//!   then `SET PX`) against `set` (`SET PX`) of the same `Session` to the same ids, on the same
//!   store, each task under a lease it took before the rounds.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use state_store::{Lease, RedisBackend, StateKey, Store};

use crate::common::{Res, Session, pick, session};
use crate::stats::{Count, Workload, workload};

/// The lease the `acquire` + `release` workload takes, one id per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job-lease", id = u64, ttl = "30s", lease)]
pub(crate) struct JobLease {
    pub(crate) worker: String,
}

/// The lease the fenced writes are made under: taken once per task before the rounds, with a
/// ttl longer than any run, so that it is never extended while measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "writer-lease", id = u64, ttl = "1h", lease)]
pub(crate) struct WriterLease {
    pub(crate) worker: String,
}

/// Who holds the lease of task `task`.
pub(crate) fn worker(task: usize) -> String {
    format!("bench-worker-{task:02}")
}

/// The raw side's release: delete the key only if it still holds our token.
static COMPARE_AND_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) \
         else return 0 end",
    )
});

/// The raw side's `PX`: `JobLease`'s ttl, as the store sends it.
fn job_lease_ttl_ms() -> u64 {
    JobLease::TTL.map_or(30_000, |ttl| ttl.as_millis() as u64)
}

/// `acquire` then `release` of task `t`'s own lease, one pair per unit.
pub(crate) fn acquire_release(store: &Store<RedisBackend>, tasks: usize) -> Workload {
    let store = store.clone();
    workload(
        format!("lease typed  {tasks:>2} task(s)"),
        "leases",
        tasks,
        move |t, mut ticker| {
            let store = store.clone();
            async move {
                let holder = JobLease { worker: worker(t) };
                let mut n = 0;
                while ticker.tick().is_some() {
                    let lease = store
                        .acquire::<JobLease>(t as u64, &holder)
                        .await?
                        .ok_or("a task's own lease was held")?;
                    if !lease.release().await? {
                        return Err("a task's own lease was lost before its release".into());
                    }
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

/// The same by hand: `SET key token NX PX ttl`, then the compare-and-delete script (`EVALSHA`),
/// with a token unique to each acquisition (random per process, then task and count).
pub(crate) fn raw_acquire_release(conn: &ConnectionManager, tasks: usize) -> Workload {
    let conn = conn.clone();
    let ttl_ms = job_lease_ttl_ms();
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    workload(
        format!("lease raw    {tasks:>2} task(s)"),
        "leases",
        tasks,
        move |t, mut ticker| {
            let mut conn = conn.clone();
            async move {
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = format!("raw-lease:{t}");
                    let token = format!("{:016x}{:04x}{:012x}", seed, t, i);
                    let taken: Option<()> = redis::cmd("SET")
                        .arg(&key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut conn)
                        .await?;
                    taken.ok_or("a task's own raw lease was held")?;
                    let released: i64 = COMPARE_AND_DELETE
                        .key(&key)
                        .arg(&token)
                        .invoke_async(&mut conn)
                        .await?;
                    if released != 1 {
                        return Err("a task's own raw lease was lost before its release".into());
                    }
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

/// Lease ids for the fenced workloads: fresh for each, as their leases are never released.
static NEXT_WRITER_ID: AtomicU64 = AtomicU64::new(0);

/// `tasks` leases, one per task, taken now: the fenced workloads write under them.
async fn writer_leases(
    store: &Store<RedisBackend>, tasks: usize,
) -> Res<Arc<Vec<Lease<WriterLease>>>> {
    let mut leases = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let id = NEXT_WRITER_ID.fetch_add(1, Ordering::Relaxed);
        let holder = WriterLease { worker: worker(t) };
        let lease = store
            .acquire::<WriterLease>(id, &holder)
            .await?
            .ok_or("a fresh writer lease was held")?;
        leases.push(lease);
    }
    Ok(Arc::new(leases))
}

/// `fenced(&lease).set` of `Session`s, as `typed_set` writes them (same ids and values), each
/// task under its own lease, taken before the rounds.
pub(crate) async fn fenced_set(store: &Store<RedisBackend>, tasks: usize) -> Res<Workload> {
    let leases = writer_leases(store, tasks).await?;
    let store = store.clone();
    Ok(workload(
        format!("set  fenced {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let store = store.clone();
            let leases = leases.clone();
            async move {
                let lease = &leases[t];
                let value = session(t as u64);
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    store
                        .fenced(lease)
                        .set::<Session>(pick(t, i), &value)
                        .await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    ))
}
