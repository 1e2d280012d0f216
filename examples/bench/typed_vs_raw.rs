//! Typed `Store` get and set against the raw `redis` crate doing the same work.

use std::hint::black_box;

use redis::aio::ConnectionManager;
use state_store::{Backend, RedisBackend, StateKey, Store};

use crate::common::{CachedSession, SESSION_TTL_MS, Session, pick, session};
use crate::stats::{Count, Workload, workload};

/// Typed gets through `store`; `side` names it in the table (`typed`, or `any` for a store over
/// `AnyBackend`).
pub(crate) fn typed_get<B: Backend>(store: &Store<B>, side: &str, tasks: usize) -> Workload {
    typed_gets::<B, Session>(store, side, tasks)
}

/// Typed gets of the cached copy of the sessions: after the first round every read is a hit.
pub(crate) fn cached_get<B: Backend>(store: &Store<B>, tasks: usize) -> Workload {
    typed_gets::<B, CachedSession>(store, "cached", tasks)
}

/// Typed gets of `S` over the seeded pool through `store`.
pub(crate) fn typed_gets<B: Backend, S: StateKey<Id = u64>>(
    store: &Store<B>, side: &str, tasks: usize,
) -> Workload {
    let store = store.clone();
    workload(
        format!("get  {side:<6} {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let store = store.clone();
            async move {
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let value = store.get::<S>(pick(t, i)).await?;
                    black_box(value.ok_or("a seeded session is missing")?);
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

pub(crate) fn raw_get(conn: &ConnectionManager, tasks: usize) -> Workload {
    let conn = conn.clone();
    workload(
        format!("get  raw    {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let mut conn = conn.clone();
            async move {
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = format!("session:{}", pick(t, i));
                    let bytes: Option<Vec<u8>> =
                        redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                    let session: Option<Session> =
                        bytes.map(|b| serde_json::from_slice(&b)).transpose()?;
                    black_box(session.ok_or("a seeded session is missing")?);
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

pub(crate) fn typed_set(store: &Store<RedisBackend>, tasks: usize) -> Workload {
    typed_sets(store, "typed", tasks, session)
}

/// Typed sets of `S` (the `value` of each task) through `store`; `side` names it in the table.
pub(crate) fn typed_sets<B: Backend, S: StateKey<Id = u64>>(
    store: &Store<B>, side: &str, tasks: usize, value: fn(u64) -> S,
) -> Workload {
    let store = store.clone();
    workload(
        format!("set  {side:<6} {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let store = store.clone();
            async move {
                let value = value(t as u64);
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    store.set::<S>(pick(t, i), &value).await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

pub(crate) fn raw_set(conn: &ConnectionManager, tasks: usize) -> Workload {
    let conn = conn.clone();
    workload(
        format!("set  raw    {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let mut conn = conn.clone();
            async move {
                let value = session(t as u64);
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = format!("session:{}", pick(t, i));
                    let bytes = serde_json::to_vec(&value)?;
                    let () = redis::cmd("SET")
                        .arg(&key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(SESSION_TTL_MS)
                        .query_async(&mut conn)
                        .await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}
