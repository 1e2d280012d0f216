//! Leases with fencing tokens: three workers share six queued jobs, and a worker paused past its
//! lease cannot overwrite the work of the one that took its job over.
//!
//!     cargo run --example worker_lease                                   # in-memory backend
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example worker_lease  # against Redis
//!
//! A worker claims a job by acquiring its lease, keeps the lease alive while it works, and moves
//! the job queued -> running -> done with writes fenced by the lease's token. worker-c stalls on
//! job 3 for twice the lease's ttl, as a GC pause or a stalled VM would, with no keep-alive;
//! worker-a or worker-b takes the job over, and when worker-c wakes, still believing the job is
//! its own, the engine refuses its late write with `Error::LeaseLost`. (NATS JetStream KV has
//! leases but no fenced writes: there the example says so and stops.)

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{AnyBackend, Backend, Error, Lease, Result, StateKey, Store};

/// The lease on a job: who works on it. Lost one second after its last extension.
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "job-lease", id = u64, ttl = "1s", lease)]
struct JobLease {
    worker: String,
}

/// A job: queued, running or done, and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, ttl = "1h")]
struct Job {
    status: String,
    worker: Option<String>,
}

fn new_job(status: &str, worker: Option<&str>) -> Job {
    Job {
        status: status.into(),
        worker: worker.map(Into::into),
    }
}

const JOBS: std::ops::RangeInclusive<u64> = 1..=6;
/// How long one job takes: longer than a third of the ttl, so the keep-alive extends the lease.
const WORK: Duration = Duration::from_millis(400);

/// Moves the lease's job to running, unless it is done: the job, when this worker got it. A job
/// found `running` was abandoned by a worker whose lease was lost.
async fn claim(store: &Store<AnyBackend>, lease: &Lease<JobLease>) -> Result<Option<Job>> {
    let me = &lease.value().worker;
    let mut seen = None;
    let now = store
        .fenced(lease)
        .update::<Job>(lease.id(), |job| {
            seen.clone_from(&job);
            job.filter(|job| job.status != "done")
                .map(|_| new_job("running", Some(me)))
        })
        .await?;
    let now = now.filter(|job| job.worker.as_ref() == Some(me) && job.status == "running");
    let from = seen
        .filter(|job| job.status == "running")
        .and_then(|job| job.worker);
    if let (Some(_), Some(from)) = (&now, from) {
        println!(
            "{me}: takes job {} over from {from}, whose lease is lost",
            lease.id()
        );
    }
    Ok(now)
}

/// Marks the job done. No check of `worker` in the closure: holding the lease is what makes the
/// job ours, and the engine checks the lease's token in the same step as the write.
async fn finish(store: &Store<AnyBackend>, lease: &Lease<JobLease>) -> Result<()> {
    let me = &lease.value().worker;
    store
        .fenced(lease)
        .update::<Job>(lease.id(), |job| job.map(|_| new_job("done", Some(me))))
        .await?;
    Ok(())
}

/// Claims, runs and finishes one job under `lease`: `true` when this worker finished it.
async fn run(store: &Store<AnyBackend>, lease: Lease<JobLease>) -> Result<bool> {
    let (me, n, token) = (lease.value().worker.clone(), *lease.id(), lease.token());
    let alive = lease.keep_alive();
    if claim(store, &alive).await?.is_none() {
        alive.release().await?; // done meanwhile by someone else
        return Ok(false);
    }
    println!("{me}: runs job {n} (token {token})");
    // The work, given up as soon as the keep-alive reports the lease lost.
    tokio::select! {
        () = tokio::time::sleep(WORK) => {}
        lost = alive.lost() => {
            println!("{me}: gave job {n} up: {lost}");
            return Ok(false);
        }
    }
    finish(store, &alive).await?;
    println!("{me}: job {n} done");
    alive.release().await?;
    Ok(true)
}

/// Takes any job that is not done and whose lease is free, until every job is done.
async fn worker(store: Store<AnyBackend>, me: &'static str) -> Result<(&'static str, Vec<u64>)> {
    let mut finished = Vec::new();
    let ids: Vec<u64> = JOBS.collect();
    loop {
        let jobs = store.get_many::<Job>(&ids).await?;
        let open: Vec<u64> = JOBS
            .zip(jobs)
            .filter(|(_, job)| job.as_ref().is_some_and(|job| job.status != "done"))
            .map(|(n, _)| n)
            .collect();
        if open.is_empty() {
            return Ok((me, finished));
        }
        for n in open {
            let mine = JobLease { worker: me.into() };
            if let Some(lease) = store.acquire::<JobLease>(n, &mine).await?
                && run(&store, lease).await?
            {
                finished.push(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// worker-c takes job 3 and moves it to running (waiting for a lease an earlier run left).
async fn take_job_3(store: &Store<AnyBackend>) -> Result<Lease<JobLease>> {
    let mine = JobLease {
        worker: "worker-c".into(),
    };
    let wait = Duration::from_secs(2);
    let lease = store.acquire_within::<JobLease>(3, &mine, wait).await?;
    let lease = lease.expect("job 3 is free");
    claim(store, &lease).await?.expect("job 3 is queued");
    Ok(lease)
}

/// worker-c after it claimed job 3: paused past the lease's ttl, then its late write.
async fn stalled(
    store: Store<AnyBackend>, lease: Lease<JobLease>,
) -> Result<(&'static str, Vec<u64>)> {
    tokio::time::sleep(2 * lease.ttl()).await;
    match finish(&store, &lease).await {
        Err(lost @ Error::LeaseLost { .. }) => println!("worker-c: late write refused: {lost}"),
        other => panic!("worker-c's late write was not refused: {other:?}"),
    }
    let job = store.get::<Job>(3).await?.expect("job 3");
    assert_ne!(job.worker.as_deref(), Some("worker-c"), "the new holder's");
    println!("worker-c: job 3 is {job:?}");
    worker(store, "worker-c").await
}

async fn demo(store: Store<AnyBackend>) -> Result<()> {
    let ids: Vec<u64> = JOBS.collect();
    let items: Vec<_> = JOBS.map(|n| (n, new_job("queued", None))).collect();
    store.set_many::<Job>(&items).await?;

    // worker-c takes job 3, then stalls without keeping its lease alive. An engine without
    // leases, or without fenced writes (NATS JetStream KV), stops the example here.
    let lease = match take_job_3(&store).await {
        Err(unsupported @ Error::Unsupported { .. }) => {
            println!("{unsupported}");
            return Ok(());
        }
        lease => lease?,
    };
    println!(
        "worker-c: runs job 3 (token {}), then pauses for {:?}",
        lease.token(),
        2 * lease.ttl()
    );
    if let Some(holder) = store.holder::<JobLease>(3).await? {
        println!(
            "job 3: lease held by {} with token {}, expires in {:?}",
            holder.value.worker, holder.token, holder.expires_in
        );
    }
    let tasks = [
        tokio::spawn(stalled(store.clone(), lease)),
        tokio::spawn(worker(store.clone(), "worker-a")),
        tokio::spawn(worker(store.clone(), "worker-b")),
    ];

    let mut done_by = BTreeMap::new();
    for task in tasks {
        let (me, finished) = task.await.expect("worker task")?;
        for n in finished {
            assert!(done_by.insert(n, me).is_none(), "job {n} was done twice");
        }
    }
    println!("summary:");
    for (n, job) in JOBS.zip(store.get_many::<Job>(&ids).await?) {
        let job = job.expect("every job is still stored");
        let by = job.worker.as_deref().unwrap_or("nobody");
        println!("  job {n}: {} by {by}", job.status);
        assert_eq!(job.status, "done");
        assert_eq!(job.worker.as_deref(), done_by.get(&n).copied());
    }
    assert_eq!(done_by.len(), ids.len(), "every job done exactly once");
    store.remove_many::<Job>(&ids).await?;
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
        .namespace("lease-example")
        .enable_set()
        .enable_remove()
}
