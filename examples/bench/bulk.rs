//! `get_many` and `set_many` against the same keys one call at a time.

use std::hint::black_box;

use state_store::{RedisBackend, Store};

use crate::common::{BATCH, POOL, Session, session};
use crate::stats::{Count, Workload, workload};

fn batch_ids(i: u64) -> Vec<u64> {
    let start = (i * BATCH) % POOL;
    (start..start + BATCH).map(|id| id % POOL).collect()
}

pub(crate) fn get_many(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("get_many(100)", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let sessions = store.get_many::<Session>(batch_ids(i)).await?;
                if sessions.iter().any(Option::is_none) {
                    return Err("a seeded session is missing".into());
                }
                black_box(sessions);
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn get_sequential(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("100 sequential gets", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                for id in batch_ids(i) {
                    let session = store.get::<Session>(id).await?;
                    black_box(session.ok_or("a seeded session is missing")?);
                }
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn set_many(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("set_many(100)", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let items: Vec<(u64, Session)> = batch_ids(i)
                    .into_iter()
                    .map(|id| (id, session(id)))
                    .collect();
                store.set_many::<Session>(&items).await?;
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn set_sequential(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("100 sequential sets", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let items: Vec<(u64, Session)> = batch_ids(i)
                    .into_iter()
                    .map(|id| (id, session(id)))
                    .collect();
                for (id, value) in &items {
                    store.set::<Session>(id, value).await?;
                }
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}
