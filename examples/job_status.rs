//! Job status with compare-and-set: workers claim queued jobs without stepping on each other.
//!
//!     cargo run --example job_status                                   # in-memory backend
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example job_status  # against Redis
//!
//! The racy version this replaces reads the job, checks it is queued and writes it back with a
//! plain `set`: two workers can both see "queued" and both run the job.

use serde::{Deserialize, Serialize};
use state_store::StreamExt;
use state_store::{AnyBackend, Backend, Result, StateKey, Store};

/// A job's status. It expires a day after it is created (the `update`s that move it along keep
/// the time it has left), so finished jobs do not pile up forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = (String, u32), ttl = "1d")]
struct Job {
    status: Status,
    worker: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Queued,
    Running,
    Done,
}

/// Claims the job for `worker` if it is still queued; `true` when this worker got it.
async fn claim(store: &Store<AnyBackend>, id: &(String, u32), worker: u32) -> Result<bool> {
    let now = store
        .update::<Job>(id, |current| match current {
            Some(job) if job.status == Status::Queued => Some(Job {
                status: Status::Running,
                worker: Some(worker),
            }),
            _ => None,
        })
        .await?;
    Ok(now.is_some_and(|job| job.worker == Some(worker)))
}

async fn demo(store: Store<AnyBackend>) -> Result<()> {
    let queue = "reports".to_string();
    let queued = Job {
        status: Status::Queued,
        worker: None,
    };
    // set_if_absent: enqueueing twice does not reset a job that already started.
    let items: Vec<_> = (1..=5)
        .map(|n| ((queue.clone(), n), queued.clone()))
        .collect();
    store.set_many::<Job>(&items).await?;
    let again = store
        .set_if_absent::<Job>((queue.clone(), 1), &queued)
        .await?;
    println!(
        "enqueue job 1 again: {}",
        if again { "written" } else { "already there" }
    );

    // Eight workers race for five jobs; each job is claimed exactly once.
    let mut tasks = Vec::new();
    for worker in 0..8u32 {
        let store = store.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            for n in 1..=5 {
                if claim(&store, &(queue.clone(), n), worker).await? {
                    claimed.push(n);
                }
            }
            Result::Ok((worker, claimed))
        }));
    }
    let mut total = 0;
    for task in tasks {
        let (worker, claimed) = task.await.expect("task")?;
        total += claimed.len();
        if !claimed.is_empty() {
            println!("worker {worker} claimed jobs {claimed:?}");
        }
    }
    println!("{total} claims for 5 jobs");
    assert_eq!(total, 5);

    for n in 1..=5 {
        store
            .update::<Job>((queue.clone(), n), |job| {
                job.map(|job| Job {
                    status: Status::Done,
                    ..job
                })
            })
            .await?;
    }
    let ids: Vec<_> = (1..=5).map(|n| (queue.clone(), n)).collect();
    let jobs = store.get_many::<Job>(&ids).await?;
    println!(
        "statuses: {:?}",
        jobs.iter()
            .map(|job| job.as_ref().map(|job| job.status))
            .collect::<Vec<_>>()
    );

    let mut listed: Vec<(String, u32)> = Vec::new();
    let mut ids_stream = std::pin::pin!(store.ids::<Job>());
    while let Some(id) = ids_stream.next().await {
        listed.push(id?);
    }
    listed.sort();
    println!("listed ids: {listed:?}");

    let removed = store.remove_many::<Job>(&ids).await?;
    println!("removed {removed} jobs");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Redis when REDIS_URL is set, else the embedded memory backend: chosen at run time, so the
    // handlers above are compiled once.
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    match std::env::var("REDIS_URL") {
        Ok(_) => println!("backend: {}", backend.name()),
        Err(_) => println!("backend: {} (set REDIS_URL to use Redis)", backend.name()),
    }
    demo(writable(backend)).await
}

fn writable(backend: AnyBackend) -> Store<AnyBackend> {
    Store::new(backend)
        .namespace("example")
        .enable_set()
        .enable_remove()
}
