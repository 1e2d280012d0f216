//! The change feed: what `#[state(notify)]` costs a `set`, and how fast one watcher receives
//! the changes of many writers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::{Backend, Error, MemoryBackend, StateKey, Store};

use crate::Config;
use crate::common::{BoxError, MANY, Res, Session, pick, session};
use crate::stats::{Count, Series, Workload};
use crate::typed_vs_raw::typed_sets;

/// `Session` with a change feed: the same JSON, under its own prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[serde(transparent)]
#[state(prefix = "session-notify", id = u64, ttl = "30m", notify)]
pub(crate) struct NotifiedSession(Session);

/// Sets of one delivery round, all from `MANY` tasks.
pub(crate) fn delivery_sets(config: &Config) -> u64 {
    let per_task: u64 = if config.quick { 32 } else { 320 };
    per_task * MANY as u64
}

/// Typed sets of a `Session` without `notify` (`SET ... PX`).
pub(crate) fn set_plain<B: Backend>(store: &Store<B>, tasks: usize) -> Workload {
    typed_sets(store, "plain", tasks, session)
}

/// The same sets of a notified type, with nobody watching (on Redis, `SET` and `PUBLISH` in
/// one `MULTI`).
pub(crate) fn set_notify<B: Backend>(store: &Store<B>, tasks: usize) -> Workload {
    typed_sets(store, "notify", tasks, |n| NotifiedSession(session(n)))
}

/// What one watcher got in one round.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delivered {
    /// Changes received (decoded into `Change<NotifiedSession>`).
    pub(crate) received: u64,
    /// Changes the watcher's buffer dropped, from its `Error::Lagged` items.
    pub(crate) lagged: u64,
    /// `Error::Interrupted` items.
    pub(crate) interrupted: u64,
    /// Sets whose change neither arrived nor was reported lagged.
    pub(crate) lost: u64,
    /// Rounds in which every set's change arrived.
    pub(crate) complete_rounds: u64,
}

/// The delivery rounds of one backend: the watcher's receive rate, the writers' set rate
/// meanwhile, and what arrived.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) received: Series,
    pub(crate) sets: Series,
    pub(crate) delivered: Delivered,
    pub(crate) rounds: usize,
}

/// How long the watcher waits for a change before deciding the rest are not coming.
const IDLE: Duration = Duration::from_secs(2);

/// Series that are not compared round by round with any other.
static GROUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

/// `rounds` rounds of: one watcher subscribed, `sets` sets of the notified type from `MANY`
/// tasks, until the watcher has received or been told of every change (or heard nothing for
/// `IDLE`).
pub(crate) async fn delivery<B: Backend>(
    config: &Config, store: &Store<B>, side: &str, sets: u64,
) -> Res<Delivery> {
    eprintln!("  measuring: one watcher of {sets} sets from {MANY} tasks ({side})");
    delivery_round(store, sets / 10).await?;
    let group = GROUPS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let series = |name: String, unit| Series {
        name,
        unit,
        rates: Vec::new(),
        cpu_per_unit: Vec::new(),
        count: Count::default(),
        group,
    };
    let mut received = series(format!("watcher, {side}"), "changes");
    let mut set_rate = series("  sets meanwhile".to_string(), "ops");
    let mut delivered = Delivered::default();
    for _ in 0..config.rounds {
        let (round, receive_rate, write_rate) = delivery_round(store, sets).await?;
        received.rates.push(receive_rate);
        received.count.units += round.received;
        set_rate.rates.push(write_rate);
        set_rate.count.units += sets;
        delivered.received += round.received;
        delivered.lagged += round.lagged;
        delivered.interrupted += round.interrupted;
        delivered.lost += round.lost;
        delivered.complete_rounds += round.complete_rounds;
    }
    Ok(Delivery {
        received,
        sets: set_rate,
        delivered,
        rounds: config.rounds,
    })
}

/// One round: what arrived, the watcher's rate (changes received per second, from the first
/// set to the last change received) and the writers' (sets per second).
async fn delivery_round<B: Backend>(store: &Store<B>, sets: u64) -> Res<(Delivered, f64, f64)> {
    let mut changes = store.watch::<NotifiedSession>().await?;
    let start = Instant::now();
    let watcher = tokio::spawn(async move {
        let mut got = Delivered::default();
        let mut last = start;
        while got.received + got.lagged < sets {
            match tokio::time::timeout(IDLE, changes.next()).await {
                // Nothing for a while: the rest are not coming.
                Err(_) => break,
                Ok(None) => return Err::<_, BoxError>("the change feed ended".into()),
                Ok(Some(Ok(change))) => {
                    black_box(change);
                    got.received += 1;
                    last = Instant::now();
                }
                Ok(Some(Err(Error::Lagged { missed }))) => got.lagged += missed,
                Ok(Some(Err(Error::Interrupted { .. }))) => got.interrupted += 1,
                Ok(Some(Err(e))) => return Err(e.into()),
            }
        }
        Ok((got, last))
    });

    let per_task = sets.div_ceil(MANY as u64);
    let writers: Vec<_> = (0..MANY)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let value = NotifiedSession(session(t as u64));
                for i in 0..per_task {
                    store.set::<NotifiedSession>(pick(t, i), &value).await?;
                }
                Ok::<_, Error>(per_task)
            })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        written += writer.await??;
    }
    let write_rate = written as f64 / start.elapsed().as_secs_f64();

    let (mut got, last) = watcher.await??;
    got.lost = written.saturating_sub(got.received + got.lagged);
    got.complete_rounds = u64::from(got.received == written);
    let receive_rate = got.received as f64 / (last - start).as_secs_f64().max(1e-9);
    Ok((got, receive_rate, write_rate))
}

/// A memory store for the delivery rounds, with the default watch buffer or `buffer`.
pub(crate) fn memory_store(buffer: Option<usize>) -> Store<MemoryBackend> {
    let store = Store::new(MemoryBackend::new()).enable_set();
    match buffer {
        Some(changes) => store.watch_buffer(changes),
        None => store,
    }
}

/// The note of a delivery row: what arrived.
pub(crate) fn delivery_note(d: &Delivery, sets: u64) -> String {
    let x = &d.delivered;
    let mut note = format!(
        "{} sets/round from {MANY} tasks: all arrived in {} of {} rounds",
        crate::format_rate(sets as f64),
        x.complete_rounds,
        d.rounds
    );
    if x.lagged > 0 {
        note.push_str(&format!("; Lagged: {} dropped in all", x.lagged));
    }
    if x.interrupted > 0 {
        note.push_str(&format!("; Interrupted x{}", x.interrupted));
    }
    if x.lost > 0 {
        note.push_str(&format!("; {} lost", x.lost));
    }
    note
}
