//! The memory backend against serde_json alone, and the `Store` layer against the backend
//! under it.

use std::hint::black_box;

use state_store::backend::GetOptions;
use state_store::{Backend, MemoryBackend, Store};

use crate::common::{POOL, Session, pick, session};
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

/// What `memory get` does without the `Store` layer: `Backend::get` of a key built beforehand,
/// and the same decode. The difference is the layer's own work: the key, and the span and
/// metrics hooks of the `tracing` and `metrics` features when they are built in.
pub(crate) fn memory_backend_get(store: &Store<MemoryBackend>) -> Workload {
    let store = store.clone();
    workload(
        "memory Backend::get + decode",
        "ops",
        1,
        move |_, mut ticker| {
            let store = store.clone();
            async move {
                let keys = (0..POOL)
                    .map(|id| store.full_key::<Session>(id))
                    .collect::<Result<Vec<_>, _>>()?;
                let backend = store.backend();
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = &keys[pick(0, i) as usize];
                    let bytes = backend.get(key, GetOptions::new()).await?;
                    let session: Session =
                        serde_json::from_slice(&bytes.ok_or("a seeded session is missing")?)?;
                    black_box(session);
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

/// Which instrumentation this build has, for the `Store` layer's row.
pub(crate) fn instrumentation() -> String {
    let on = |yes: bool| if yes { "on" } else { "off" };
    format!(
        "built with metrics {} (no recorder), tracing {} (no subscriber)",
        on(cfg!(feature = "metrics")),
        on(cfg!(feature = "tracing"))
    )
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
