//! Counters, rate limits and compare-and-set, against raw commands doing the same.

use std::hint::black_box;

use redis::aio::ConnectionManager;
use state_store::{Error, RateLimit, RedisBackend, Store};

use crate::common::{Calls, SESSION_TTL_MS, Session};
use crate::stats::{Count, Workload, workload};

pub(crate) fn incr(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("incr (Calls)", "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while ticker.tick().is_some() {
                black_box(store.incr::<Calls>(1, 1).await?);
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn raw_incr(conn: &ConnectionManager) -> Workload {
    let conn = conn.clone();
    workload("raw INCR", "ops", 1, move |_, mut ticker| {
        let mut conn = conn.clone();
        async move {
            let mut n = 0;
            while ticker.tick().is_some() {
                let value: i64 = redis::cmd("INCR")
                    .arg("calls:raw")
                    .query_async(&mut conn)
                    .await?;
                black_box(value);
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn check<S: RateLimit<Id = u64>>(store: &Store<RedisBackend>, name: &str) -> Workload {
    let store = store.clone();
    workload(name, "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while ticker.tick().is_some() {
                let decision = store.check::<S>(1).await?;
                if !decision.allowed {
                    return Err(format!("a check was refused: {decision:?}").into());
                }
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

/// `update` on `id` from `tasks` tasks, counting lost races and give-ups.
pub(crate) fn update(store: &Store<RedisBackend>, name: &str, tasks: usize, id: u64) -> Workload {
    let store = store.clone();
    workload(name, "updates", tasks, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut count = Count::default();
            while let Some(i) = ticker.tick() {
                let mut attempts = 0u64;
                let result = store
                    .update::<Session>(id, |current| {
                        attempts += 1;
                        current.map(|mut s| {
                            s.updated_at = i as i64;
                            s.flags = s.flags.wrapping_add(1);
                            s
                        })
                    })
                    .await;
                match result {
                    Ok(Some(_)) => {
                        count.units += 1;
                        count.retries += attempts - 1;
                    }
                    Ok(None) => return Err("the updated session is missing".into()),
                    Err(Error::Conflict { .. }) => {
                        count.conflicts += 1;
                        count.retries += attempts;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(count)
        }
    })
}

/// The same read-modify-write by hand (GET, decode, encode, SET PX): two round trips, like
/// `update`, but not atomic.
pub(crate) fn raw_read_modify_write(conn: &ConnectionManager, id: u64) -> Workload {
    let conn = conn.clone();
    workload("raw GET + SET PX", "updates", 1, move |_, mut ticker| {
        let mut conn = conn.clone();
        async move {
            let key = format!("session:{id}");
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let bytes: Option<Vec<u8>> =
                    redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                let mut s: Session =
                    serde_json::from_slice(&bytes.ok_or("the updated session is missing")?)?;
                s.updated_at = i as i64;
                s.flags = s.flags.wrapping_add(1);
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(serde_json::to_vec(&s)?)
                    .arg("PX")
                    .arg(SESSION_TTL_MS)
                    .query_async(&mut conn)
                    .await?;
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}
