//! A job worker on the journal: workers share the jobs' changes through a worker group
//! (`consume_with`) instead of re-reading every job in a loop. A second worker joins; the first
//! gets stuck on a job and is killed, and what it held is delivered again to the other once it
//! has been left unacknowledged for `claim_after`.
//!
//!     cargo run --example job_worker                                   # in-memory backend
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example job_worker  # against Redis
//!
//! Deliveries are at least once: a worker acknowledges a change after it handled it, and a
//! change it got but did not acknowledge (it crashed, hung, lost its connection) goes to another
//! worker of the group. So the handler checks the job is not done already before it runs it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{
    AnyBackend, Backend, Change, ConsumeOptions, Consumer, Error, Result, StateKey, Store,
    StreamExt,
};
use tokio::sync::mpsc;

/// A job. `notify, history` journal its every change, which is what the workers consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, ttl = "1h", notify, history = 10_000)]
struct Job {
    status: Status,
    worker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Queued,
    Done,
}

const JOBS: std::ops::RangeInclusive<u64> = 1..=12;
const WORK: Duration = Duration::from_millis(50);
const GROUP: &str = "job-workers";

/// What a worker tells the demo.
#[derive(Debug)]
enum Report {
    Runs {
        worker: &'static str,
        id: u64,
    },
    Stuck {
        worker: &'static str,
        id: u64,
    },
    Done {
        worker: &'static str,
        id: u64,
        deliveries: u64,
    },
}

/// A worker: runs each queued job it is handed, then acknowledges the change. With `stuck_on`,
/// it hangs on its job of that rank (a dependency that never answers) until it is killed.
async fn worker(
    store: Store<AnyBackend>, me: &'static str, mut changes: Consumer<Job>,
    reports: mpsc::UnboundedSender<Report>, stuck_on: Option<usize>,
) -> Result<()> {
    let mut ran = 0;
    while let Some(delivery) = changes.next().await {
        let delivery = delivery?;
        // Only queued jobs are work: the workers' own `done` writes come through too.
        if let Change::Set { id, value } = delivery.change()
            && value.status == Status::Queued
        {
            let id = *id;
            // Done already? Then this is a delivery again of a job whose ack was lost.
            let job = store.get::<Job>(id).await?;
            if job.is_some_and(|job| job.status == Status::Queued) {
                ran += 1;
                if stuck_on == Some(ran) {
                    let _ = reports.send(Report::Stuck { worker: me, id });
                    std::future::pending::<()>().await;
                }
                let _ = reports.send(Report::Runs { worker: me, id });
                tokio::time::sleep(WORK).await;
                let done = Job {
                    status: Status::Done,
                    worker: Some(me.into()),
                };
                store.set::<Job>(id, &done).await?;
                let deliveries = delivery.deliveries();
                let _ = reports.send(Report::Done {
                    worker: me,
                    id,
                    deliveries,
                });
            }
        }
        delivery.ack().await?;
    }
    Ok(())
}

async fn demo(store: Store<AnyBackend>) -> Result<()> {
    // Handed back after 500 ms without an ack (30 s by default), 4 changes at a time.
    let options = ConsumeOptions::new()
        .claim_after(Duration::from_millis(500))
        .batch(4);
    // A group starts with the changes made after it was created: worker-a joins before the jobs
    // are queued. (An engine without journals, NATS JetStream KV, stops the example here.)
    let changes_a = match store.consume_with::<Job>(GROUP, "worker-a", options).await {
        Err(unsupported @ Error::Unsupported { .. }) => {
            println!("{unsupported}");
            return Ok(());
        }
        changes => changes?,
    };
    let queued = Job {
        status: Status::Queued,
        worker: None,
    };
    let items: Vec<_> = JOBS.map(|id| (id, queued.clone())).collect();
    store.set_many::<Job>(&items).await?;
    println!("queued jobs {JOBS:?}");

    let (reports, mut reported) = mpsc::unbounded_channel();
    let worker_a = tokio::spawn(worker(
        store.clone(),
        "worker-a",
        changes_a,
        reports.clone(),
        Some(3),
    ));
    let mut worker_b = None;
    let mut done_by = BTreeMap::new();
    let mut stuck = None;
    while done_by.len() < JOBS.count() {
        let report = tokio::time::timeout(Duration::from_secs(10), reported.recv())
            .await
            .expect("no worker made progress for 10 s")
            .expect("the workers are gone");
        match report {
            Report::Runs { worker: me, id } => {
                println!("{me}: runs job {id}");
                // worker-b joins the group while worker-a is busy: the jobs not yet handed
                // out are shared from then on.
                if worker_b.is_none() {
                    let changes_b = store.consume_with::<Job>(GROUP, "worker-b", options);
                    let changes_b = changes_b.await?;
                    println!("worker-b: joins");
                    let b = worker(store.clone(), "worker-b", changes_b, reports.clone(), None);
                    worker_b = Some(tokio::spawn(b));
                }
            }
            Report::Stuck { worker: me, id } => {
                println!("{me}: stuck on job {id}; killed");
                worker_a.abort();
                stuck = Some(id);
            }
            Report::Done {
                worker: me,
                id,
                deliveries,
            } => {
                println!("{me}: job {id} done (delivery {deliveries})");
                assert!(
                    done_by.insert(id, (me, deliveries)).is_none(),
                    "job {id} ran twice"
                );
            }
        }
    }
    if let Some(b) = worker_b {
        b.abort();
    }

    // Every job ran once, and the one worker-a was killed on was taken over by worker-b.
    let stuck = stuck.expect("worker-a got stuck");
    let (by, deliveries) = done_by[&stuck];
    println!("job {stuck}: taken over by {by} (delivered {deliveries} times)");
    assert_eq!(by, "worker-b");
    assert!(deliveries >= 2);
    let ids: Vec<u64> = JOBS.collect();
    for (id, job) in JOBS.zip(store.get_many::<Job>(&ids).await?) {
        let job = job.expect("every job is still stored");
        assert_eq!(job.status, Status::Done);
        assert_eq!(job.worker.as_deref(), Some(done_by[&id].0), "job {id}");
    }
    let by_a = done_by.values().filter(|(by, _)| *by == "worker-a").count();
    println!(
        "summary: {} jobs, each run once: {by_a} by worker-a, {} by worker-b",
        done_by.len(),
        done_by.len() - by_a
    );
    store.remove_many::<Job>(&ids).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Redis when REDIS_URL is set, else the embedded memory backend: chosen at run time, so the
    // workers above are compiled once.
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    match std::env::var("REDIS_URL") {
        Ok(_) => println!("backend: {}", backend.name()),
        Err(_) => println!("backend: {} (set REDIS_URL to use Redis)", backend.name()),
    }
    let store = Store::new(backend)
        .namespace("job-worker-example")
        .enable_set()
        .enable_remove();
    demo(store).await
}
