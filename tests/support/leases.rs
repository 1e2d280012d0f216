//! Lease scenarios that each topology's tests run (single server, Cluster, Sentinel).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{Backend, Error, Lease, StateKey, Store};

/// A lease that expires one second after its last extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "report-lease", id = u64, ttl = 1, lease)]
pub struct ReportLease {
    pub worker: String,
}

/// A lease that lives long enough to outlast a restart or a failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "long-lease", id = u64, ttl = "10m", lease)]
pub struct LongLease {
    pub worker: String,
}

/// The state the leases guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "report", id = u64)]
pub struct Report {
    pub status: String,
    pub by: String,
}

pub fn worker(name: &str) -> ReportLease {
    ReportLease {
        worker: name.into(),
    }
}

pub fn report(status: &str, by: &str) -> Report {
    Report {
        status: status.into(),
        by: by.into(),
    }
}

/// Asserts `result` is `Error::LeaseLost` naming `lease`.
#[track_caller]
pub fn assert_lost<T: std::fmt::Debug, S: state_store::Leased>(
    result: state_store::Result<T>, lease: &Lease<S>,
) {
    match result {
        Err(Error::LeaseLost { key, token }) => {
            assert_eq!((key.as_str(), token), (lease.key(), lease.token()));
        }
        other => panic!("expected LeaseLost for {}: {other:?}", lease.key()),
    }
}

/// Holder `a` writes under its lease, then pauses past the lease's ttl (a GC pause, a stalled
/// VM) while holder `b` takes the lease and writes; `a` wakes and writes: refused, and `b`'s
/// value stands.
pub async fn a_paused_holder_is_fenced_out<B: Backend>(store: &Store<B>, id: u64) {
    let a = store
        .acquire::<ReportLease>(id, &worker("a"))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced(&a)
        .set::<Report>(id, &report("running", "a"))
        .await
        .unwrap();
    let b = tokio::spawn({
        let store = store.clone();
        async move {
            let wait = Duration::from_secs(10);
            let b = store
                .acquire_within::<ReportLease>(id, &worker("b"), wait)
                .await
                .unwrap()
                .expect("b never got the lease");
            store
                .fenced(&b)
                .update::<Report>(id, |r| {
                    assert_eq!(r.unwrap().by, "a");
                    Some(report("done", "b"))
                })
                .await
                .unwrap();
            b
        }
    });
    // `a` is paused: no extension, and past its ttl.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let b = b.await.unwrap();
    assert!(b.token() > a.token());
    // `a` wakes and goes on as if it still held the lease.
    assert_lost(
        store
            .fenced(&a)
            .set::<Report>(id, &report("done", "a"))
            .await,
        &a,
    );
    assert_lost(store.fenced(&a).remove::<Report>(id).await, &a);
    assert_lost(a.extend().await, &a);
    assert!(!a.release().await.unwrap());
    assert_eq!(
        store.get::<Report>(id).await.unwrap(),
        Some(report("done", "b"))
    );
    let holder = store.holder::<ReportLease>(id).await.unwrap().unwrap();
    assert_eq!((holder.value, holder.token), (worker("b"), b.token()));
    assert!(b.release().await.unwrap());
}

/// A holder whose lease expired, with nobody newer: its write is refused all the same (the
/// currency rule, checked in the same script as the write).
pub async fn a_lost_holder_cannot_write<B: Backend>(store: &Store<B>, id: u64) {
    let a = store
        .acquire::<ReportLease>(id, &worker("a"))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced(&a)
        .set::<Report>(id, &report("running", "a"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(store.holder::<ReportLease>(id).await.unwrap().is_none());
    assert_lost(
        store
            .fenced(&a)
            .set::<Report>(id, &report("done", "a"))
            .await,
        &a,
    );
    assert_eq!(
        store.get::<Report>(id).await.unwrap(),
        Some(report("running", "a"))
    );
}

/// Takes and releases the lease on `id` `times` times, each token greater than the one before;
/// returns the last.
pub async fn churn<B: Backend>(store: &Store<B>, id: u64, times: u32, after: u64) -> u64 {
    let mut last = after;
    for _ in 0..times {
        let lease = store
            .acquire::<LongLease>(id, &LongLease { worker: "c".into() })
            .await
            .unwrap()
            .expect("the lease is free");
        assert!(lease.token() > last, "{} after {last}", lease.token());
        last = lease.token();
        assert!(lease.release().await.unwrap());
    }
    last
}

/// Acquires the lease on `id`, retrying while the store fails (a server restarting, a
/// failover), for up to 30 seconds.
pub async fn acquire_when_back<B: Backend>(store: &Store<B>, id: u64) -> Lease<LongLease> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store
            .acquire::<LongLease>(id, &LongLease { worker: "d".into() })
            .await
        {
            Ok(Some(lease)) => return lease,
            Ok(None) => panic!("the lease on {id} is held"),
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "never back: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
