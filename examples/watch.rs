//! Watching state change: a worker moves jobs through their statuses while a watcher, in its
//! own task, prints every change as it is stored.
//!
//!     cargo run --example watch                                   # in-memory backend
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example watch  # against Redis
//!
//! `Job` is declared with `notify`, so each write publishes what it changed in the same atomic
//! step as the write (on Redis, a `PUBLISH` from inside the write's script). The polling loop
//! this replaces reads every job over and over and still misses a status that lasted less than
//! one poll.
//!
//! On Redis the example turns on the server's expired-key events (`CONFIG SET
//! notify-keyspace-events Ex`) so that the job left to expire is announced; where `CONFIG` is
//! refused it says so and runs without them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::StreamExt;
use state_store::{AnyBackend, Backend, Change, Changes, Result, SetOptions, StateKey, Store};
use tokio::time::Instant;

/// A job's status; writes announce themselves on the `job` change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = String, ttl = "7d", notify)]
pub struct Job {
    pub status: String,
}

fn job(status: &str) -> Job {
    Job {
        status: status.into(),
    }
}

/// What the watcher saw of each job: its statuses in order, then `removed` or `expired`.
type Seen = BTreeMap<String, Vec<String>>;

/// How long the watcher waits for the changes it expects before giving up. Redis announces an
/// expiry when it actually deletes the key, which can come a little after the ttl.
const PATIENCE: Duration = Duration::from_secs(10);

/// Prints each change of a `Job` until every job in `expected` has reached its last state.
async fn watcher(
    store: Store<AnyBackend>, mut changes: Changes<Job>, expected: Seen,
) -> Result<(Seen, bool)> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Seen::new();
    let mut missed = false;
    while !finished(&seen, &expected) {
        let Ok(next) = tokio::time::timeout_at(deadline, changes.next()).await else {
            panic!("watcher: no change for {PATIENCE:?}; saw {seen:?}, expected {expected:?}");
        };
        let (id, now) = match next {
            Some(Ok(Change::Set { id, value })) => (id, value.status),
            Some(Ok(Change::Removed { id })) => (id, "removed".to_string()),
            Some(Ok(Change::Expired { id })) => (id, "expired".to_string()),
            // Changes went undelivered (the watcher fell behind its buffer, or the Redis
            // connection broke and came back): the stream goes on, and the state, read again,
            // says where each job is now.
            Some(Err(e)) if e.missed_changes() => {
                println!("watcher: {e}");
                missed = true;
                for (id, statuses) in &mut seen {
                    let now = match store.get::<Job>(id).await? {
                        Some(job) => job.status,
                        None => "gone".to_string(),
                    };
                    println!("watcher: job {id} is {now} now (read again)");
                    if statuses.last() != Some(&now) {
                        statuses.push(now);
                    }
                }
                continue;
            }
            // A value that does not decode as a `Job`, say: reported, and the stream goes on.
            Some(Err(e)) => {
                println!("watcher: {e}");
                continue;
            }
            None => panic!("the change feed ended: the backend is gone"),
        };
        let statuses = seen.entry(id.clone()).or_default();
        match statuses.last() {
            Some(before) => println!("watcher: job {id}: {before} -> {now}"),
            None => println!("watcher: job {id}: {now}"),
        }
        statuses.push(now);
    }
    Ok((seen, missed))
}

/// Whether every job has reached the last state `expected` gives it (`gone`, from reading the
/// state again after missed changes, stands for `removed` and `expired`).
fn finished(seen: &Seen, expected: &Seen) -> bool {
    expected.iter().all(|(id, want)| {
        let last = seen.get(id).and_then(|s| s.last()).map(String::as_str);
        let want = want.last().map(String::as_str);
        last == want || (last == Some("gone") && matches!(want, Some("removed" | "expired")))
    })
}

/// Claims `id` if it is still queued: compare-and-set, so that of two workers only one wins.
/// `true` when this call claimed it; a job that was not queued is left alone, and a write that
/// does not happen publishes nothing.
async fn claim(store: &Store<AnyBackend>, id: &String) -> Result<bool> {
    let mut claimed = false;
    store
        .update::<Job>(id, |current| {
            // The closure runs again if another writer got in between: decide afresh each time.
            claimed = current.is_some_and(|job| job.status == "queued");
            claimed.then(|| job("running"))
        })
        .await?;
    Ok(claimed)
}

async fn demo(store: Store<AnyBackend>) -> Result<()> {
    let ids = ["7", "8", "9"].map(String::from);
    // Leftovers of an earlier run against the same Redis, removed before anyone watches.
    store.remove_many::<Job>(&ids).await?;

    let expiry_events = match store.backend().enable_expiry_events().await {
        Ok(()) => true,
        Err(e) => {
            println!("expiry events are off, so no Expired change will arrive: {e}");
            false
        }
    };

    let history = |statuses: &[&str]| statuses.iter().map(|s| s.to_string()).collect();
    let mut expected = Seen::from([
        ("7".to_string(), history(&["queued", "running", "done"])),
        (
            "8".to_string(),
            history(&["queued", "running", "done", "removed"]),
        ),
    ]);
    expected.insert(
        "9".to_string(),
        if expiry_events {
            history(&["queued", "expired"])
        } else {
            history(&["queued"])
        },
    );

    // Subscribed once the future completes: every change stored from here on reaches it.
    let changes = store.watch::<Job>().await?;
    let watching = tokio::spawn(watcher(store.clone(), changes, expected.clone()));

    // The worker: two jobs queued at once (one change each), claimed, finished.
    store
        .set_many::<Job>([(&ids[0], &job("queued")), (&ids[1], &job("queued"))])
        .await?;
    for id in &ids[..2] {
        println!("worker: claim job {id}: {}", claim(&store, id).await?);
    }
    // Already running: the compare-and-set leaves it alone, and nothing is published.
    println!(
        "worker: claim job 7 again: {}",
        claim(&store, &ids[0]).await?
    );
    for id in &ids[..2] {
        store.set::<Job>(id, &job("done")).await?;
    }
    println!(
        "worker: remove job 8: {}",
        store.remove::<Job>(&ids[1]).await?
    );
    // Queued with a short deadline, and nobody claims it.
    store
        .set_with::<Job>(
            &ids[2],
            &job("queued"),
            SetOptions::new().ttl(Duration::from_millis(300)),
        )
        .await?;
    println!("worker: job 9 queued for 300 ms, left to expire");

    let (seen, missed) = watching.await.expect("the watcher panicked")?;
    for (id, statuses) in &seen {
        println!("job {id}: {}", statuses.join(" -> "));
    }
    if missed {
        // After a missed change the watcher knows where each job ended, not every step.
        assert!(finished(&seen, &expected));
    } else {
        assert_eq!(seen, expected);
    }

    // The watcher's stream is gone (and with it the subscription): this publishes to no one.
    store.remove::<Job>(&ids[0]).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Redis when REDIS_URL is set, else the embedded memory backend: chosen at run time, so the
    // code above is compiled once.
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    match std::env::var("REDIS_URL") {
        Ok(_) => println!("backend: {}", backend.name()),
        Err(_) => println!("backend: {} (set REDIS_URL to use Redis)", backend.name()),
    }
    demo(writable(backend)).await
}

fn writable(backend: AnyBackend) -> Store<AnyBackend> {
    Store::new(backend)
        .namespace("watch-example")
        .enable_set()
        .enable_remove()
}
