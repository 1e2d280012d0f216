//! The memory backend against serde_json alone.

use std::hint::black_box;

use state_store::{MemoryBackend, Store};

use crate::common::{Session, pick, session};
use crate::stats::{Count, Workload, workload};

pub(crate) fn memory_get(store: &Store<MemoryBackend>) -> Workload {
    let store = store.clone();
    workload("memory get", "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let session = store.get::<Session>(pick(0, i)).await?;
                black_box(session.ok_or("a seeded session is missing")?);
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn memory_set(store: &Store<MemoryBackend>) -> Workload {
    let store = store.clone();
    workload("memory set", "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let value = session(0);
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                store.set::<Session>(pick(0, i), &value).await?;
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

pub(crate) fn json_decode() -> Workload {
    workload(
        "serde_json decode",
        "ops",
        1,
        move |_, mut ticker| async move {
            let bytes = serde_json::to_vec(&session(0))?;
            let mut n = 0;
            while ticker.tick().is_some() {
                let s: Session = serde_json::from_slice(black_box(&bytes))?;
                black_box(s);
                n += 1;
            }
            Ok(Count::units(n))
        },
    )
}

pub(crate) fn json_encode() -> Workload {
    workload(
        "serde_json encode",
        "ops",
        1,
        move |_, mut ticker| async move {
            let value = session(0);
            let mut n = 0;
            while ticker.tick().is_some() {
                black_box(serde_json::to_vec(black_box(&value))?);
                n += 1;
            }
            Ok(Count::units(n))
        },
    )
}
