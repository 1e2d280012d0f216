//! Checks of leases with fencing tokens: mutual exclusion, tokens that only grow, lost leases,
//! and fenced writes under both rules.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::backend::FencedWrites;
use crate::{Lease, Leased};

/// A lease type of the checks: long enough not to expire while a check runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "work-lease", id = u64, ttl = "30s", lease)]
pub struct WorkLease {
    /// Who holds it.
    pub worker: String,
}

/// A lease type of the checks that expires after one second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "short-lease", id = u64, ttl = 1, lease)]
pub struct ShortLease {
    /// Who holds it.
    pub worker: String,
}

fn work(worker: &str) -> WorkLease {
    WorkLease {
        worker: worker.into(),
    }
}

fn short(worker: &str) -> ShortLease {
    ShortLease {
        worker: worker.into(),
    }
}

fn task(status: &str) -> Task {
    Task {
        status: status.into(),
        runs: 1,
    }
}

/// Asserts that `result` is [`Error::LeaseLost`] naming `lease`'s key and token.
#[track_caller]
pub(crate) fn assert_lost<T: fmt::Debug, S: Leased>(result: crate::Result<T>, lease: &Lease<S>) {
    match result {
        Err(Error::LeaseLost { key, token }) => {
            assert_eq!(key, lease.key(), "the error names the lease's key");
            assert_eq!(
                token,
                lease.token(),
                "the error names the lost lease's token"
            );
        }
        other => panic!(
            "expected Error::LeaseLost for {}, got {other:?}",
            lease.key()
        ),
    }
}

/// Waits until the lease `S` on `id` has expired (up to ten seconds, on tokio's clock, which
/// the memory engine's tests pause).
async fn until_free<S: Leased<Id = u64>>(store: &Store<impl Backend>, id: u64) {
    use tokio::time::Instant;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.holder::<S>(id).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks: 64 tasks contending for one lease for two seconds never hold it at once (an
/// in-process register of holders, keyed by token, finds no overlap), and each holder's token
/// is greater than the one before.
pub async fn leases_exclude_each_other<B: Backend + Clone>(backend: B) {
    const TASKS: usize = 64;
    const FOR: Duration = Duration::from_secs(2);
    let store = writable(&backend);
    // The tokens holding the lease now, and the last token that held it.
    let register: Arc<Mutex<(BTreeSet<u64>, u64)>> = Arc::default();
    let until = Instant::now() + FOR;
    let tasks: Vec<_> = (0..TASKS)
        .map(|n| {
            let store = store.clone();
            let register = register.clone();
            tokio::spawn(async move {
                let mut held = 0u32;
                while Instant::now() < until {
                    let Some(lease) = store
                        .acquire::<WorkLease>(7, &work(&format!("w{n}")))
                        .await
                        .unwrap()
                    else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    {
                        let mut register = register.lock().unwrap();
                        let (holding, last) = &mut *register;
                        assert!(
                            holding.is_empty(),
                            "token {} acquired while {holding:?} held the lease",
                            lease.token()
                        );
                        assert!(
                            lease.token() > *last,
                            "token {} after {last}",
                            lease.token()
                        );
                        holding.insert(lease.token());
                        *last = lease.token();
                    }
                    held += 1;
                    tokio::task::yield_now().await;
                    register.lock().unwrap().0.remove(&lease.token());
                    assert!(lease.release().await.unwrap(), "the holder's release");
                }
                held
            })
        })
        .collect();
    let mut holds = 0;
    for task in tasks {
        holds += task.await.unwrap();
    }
    assert!(holds >= 10, "only {holds} acquisitions in {FOR:?}");
}

/// Checks: over 1,000 acquisitions of one key, ended by release, removal of the key
/// (`remove::<S>`) or expiry, each token is strictly greater than every token before; an
/// acquisition while the lease is held gets `None`.
pub async fn lease_tokens_only_grow<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let mut last = 0;
    for round in 0..1_000u32 {
        let Some(lease) = store.acquire::<ShortLease>(3, &short("a")).await.unwrap() else {
            panic!("round {round}: the lease was not free");
        };
        assert!(
            lease.token() > last,
            "round {round}: {} after {last}",
            lease.token()
        );
        last = lease.token();
        assert_eq!(lease.id(), &3);
        assert_eq!(lease.value(), &short("a"));
        if round % 100 == 0 {
            assert!(
                store
                    .acquire::<ShortLease>(3, &short("b"))
                    .await
                    .unwrap()
                    .is_none()
            );
            let held = store.holder::<ShortLease>(3).await.unwrap().unwrap();
            assert_eq!((held.value, held.token), (short("a"), lease.token()));
        }
        match round % 10 {
            // Removed through the store, as any key of the type.
            3 => assert!(store.remove::<ShortLease>(3).await.unwrap()),
            // Left to expire, three times.
            5 if round % 300 == 5 => until_free::<ShortLease>(&store, 3).await,
            _ => assert!(lease.release().await.unwrap(), "round {round}"),
        }
    }
}

/// Checks: a lease that expired, was released, removed or taken is lost: `extend` is
/// [`Error::LeaseLost`] naming its key and token and does not revive it, `release` is `false`
/// and removes nobody else's lease. A held lease extends back to its full ttl.
pub async fn lost_leases_cannot_be_extended_or_released<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);

    // Extended: back to the full ttl.
    let lease = store
        .acquire::<ShortLease>(1, &short("a"))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    lease.extend().await.unwrap();
    let held = store.holder::<ShortLease>(1).await.unwrap().unwrap();
    assert!(
        held.expires_in > Duration::from_millis(800),
        "{:?}",
        held.expires_in
    );

    // Expired, and nobody took it since: lost all the same.
    until_free::<ShortLease>(&store, 1).await;
    assert_lost(lease.extend().await, &lease);
    assert!(
        store.holder::<ShortLease>(1).await.unwrap().is_none(),
        "extend revived it"
    );
    assert!(!lease.release().await.unwrap());

    // Taken by another holder after a release.
    let first = store
        .acquire::<WorkLease>(2, &work("a"))
        .await
        .unwrap()
        .unwrap();
    assert!(first.release().await.unwrap());
    assert!(!first.release().await.unwrap(), "released twice");
    let second = store
        .acquire::<WorkLease>(2, &work("b"))
        .await
        .unwrap()
        .unwrap();
    assert_lost(first.extend().await, &first);
    assert!(
        !first.release().await.unwrap(),
        "released another holder's lease"
    );
    let held = store.holder::<WorkLease>(2).await.unwrap().unwrap();
    assert_eq!((held.value, held.token), (work("b"), second.token()));
    assert!(held.expires_in <= Duration::from_secs(30));

    // Removed through the store.
    assert!(store.remove::<WorkLease>(2).await.unwrap());
    assert_lost(second.extend().await, &second);
    assert!(!second.release().await.unwrap());

    // A lease outlives the store that took it and moves between tasks.
    let third = store
        .acquire::<WorkLease>(2, &work("c"))
        .await
        .unwrap()
        .unwrap();
    drop(store);
    let released = tokio::spawn(async move { third.release().await })
        .await
        .unwrap();
    assert!(released.unwrap());
}

/// Checks: once a newer holder has written under its lease, a write of the older one (set,
/// update, remove) is [`Error::LeaseLost`] and the newer holder's value stands.
pub async fn fenced_writes_after_loss_are_refused<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let old = store
        .acquire::<ShortLease>(5, &short("old"))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced(&old)
        .set::<Task>(5, &task("running"))
        .await
        .unwrap();
    until_free::<ShortLease>(&store, 5).await;

    let new = store
        .acquire::<ShortLease>(5, &short("new"))
        .await
        .unwrap()
        .unwrap();
    assert!(new.token() > old.token());
    let by_new = store
        .fenced(&new)
        .update::<Task>(5, |t| {
            t.map(|t| Task {
                status: "taken over".into(),
                ..t
            })
        })
        .await
        .unwrap();
    assert_eq!(by_new.unwrap().status, "taken over");

    let stale = store.fenced(&old);
    assert_lost(stale.set::<Task>(5, &task("done by old")).await, &old);
    assert_lost(
        stale
            .update::<Task>(5, |_| Some(task("updated by old")))
            .await,
        &old,
    );
    assert_lost(stale.remove::<Task>(5).await, &old);
    let options = crate::UpdateOptions::new().refresh_ttl();
    let late = stale.update_with::<Task>(5, options, |_| Some(task("refreshed by old")));
    assert_lost(late.await, &old);
    // What the newer holder's update did, told as `update_with` tells it.
    let noop = store
        .fenced(&new)
        .update_with::<Task>(5, options, |_| None)
        .await
        .unwrap();
    assert_eq!(
        noop,
        crate::Updated::Unchanged(Some(Task {
            status: "taken over".into(),
            ..task("")
        }))
    );
    assert_eq!(
        store.get::<Task>(5).await.unwrap().unwrap().status,
        "taken over"
    );

    // The newer holder goes on writing, a key it never wrote included.
    store
        .fenced(&new)
        .set::<Task>(5, &task("done"))
        .await
        .unwrap();
    store
        .fenced(&new)
        .set::<Task>(6, &task("next"))
        .await
        .unwrap();
    assert!(store.fenced(&new).remove::<Task>(6).await.unwrap());
    assert_eq!(store.get::<Task>(5).await.unwrap().unwrap().status, "done");
    // Fenced writes need the store's permissions like any other.
    let read_only = Store::new(backend.clone());
    let refused = read_only
        .fenced(&new)
        .set::<Task>(5, &task("x"))
        .await
        .unwrap_err();
    assert_disabled(&refused, "set");
}

/// Checks: a lease lost with no newer holder (released, or expired) cannot write either: the
/// engine checks that the lease is the current one in the same step as the write.
pub async fn lost_leases_cannot_write_before_a_newer_holder<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Task>(8, &task("queued")).await.unwrap();

    let released = store
        .acquire::<WorkLease>(8, &work("a"))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced(&released)
        .set::<Task>(8, &task("running"))
        .await
        .unwrap();
    assert!(released.release().await.unwrap());
    assert_lost(
        store.fenced(&released).set::<Task>(8, &task("late")).await,
        &released,
    );

    let expired = store
        .acquire::<ShortLease>(8, &short("b"))
        .await
        .unwrap()
        .unwrap();
    until_free::<ShortLease>(&store, 8).await;
    assert_lost(store.fenced(&expired).remove::<Task>(8).await, &expired);

    let removed = store
        .acquire::<WorkLease>(8, &work("c"))
        .await
        .unwrap()
        .unwrap();
    assert!(store.remove::<WorkLease>(8).await.unwrap());
    assert_lost(
        store
            .fenced(&removed)
            .update::<Task>(8, |_| Some(task("late")))
            .await,
        &removed,
    );

    assert_eq!(
        store.get::<Task>(8).await.unwrap().unwrap().status,
        "running"
    );
}

/// Checks, instead of [`lost_leases_cannot_write_before_a_newer_holder`], the fencing rule
/// alone (an engine that cannot see the lease where it writes, such as Redis Cluster): a lost
/// lease still writes while no newer token has written the key, and is refused from the first
/// write of a newer one on, which then stands.
pub async fn only_newer_tokens_fence_out_lost_leases<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let leases = backend.extensions().leases.expect("leases");
    assert_eq!(leases.fenced_writes(), FencedWrites::FencingRule);

    let old = store
        .acquire::<WorkLease>(9, &work("a"))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced(&old)
        .set::<Task>(9, &task("running"))
        .await
        .unwrap();
    assert!(old.release().await.unwrap());
    // The difference: nobody newer has written, so the lost lease's write lands.
    store
        .fenced(&old)
        .set::<Task>(9, &task("late but first"))
        .await
        .unwrap();

    let new = store
        .acquire::<WorkLease>(9, &work("b"))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced(&new)
        .set::<Task>(9, &task("taken over"))
        .await
        .unwrap();
    assert_lost(store.fenced(&old).set::<Task>(9, &task("late")).await, &old);
    assert_lost(store.fenced(&old).remove::<Task>(9).await, &old);
    assert_eq!(
        store.get::<Task>(9).await.unwrap().unwrap().status,
        "taken over"
    );
    // A removal by the newer holder is fenced too: the older one cannot write the key back.
    assert!(store.fenced(&new).remove::<Task>(9).await.unwrap());
    assert_lost(store.fenced(&old).set::<Task>(9, &task("back")).await, &old);
    assert!(store.get::<Task>(9).await.unwrap().is_none());
}

/// Checks, instead of the lease checks, an engine without leases: `acquire` and `holder` are
/// [`Error::Unsupported`], and nothing is written.
pub async fn leases_are_unsupported<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let unsupported = |err: &Error, op: &str| {
        matches!(err, Error::Unsupported { operation, backend: name }
            if *operation == op && *name == backend.name())
    };
    let err = store.acquire::<WorkLease>(1, &work("a")).await.unwrap_err();
    assert!(unsupported(&err, "acquire"), "{err:?}");
    let wait = Duration::from_millis(50);
    let err = store
        .acquire_within::<WorkLease>(1, &work("a"), wait)
        .await
        .unwrap_err();
    assert!(unsupported(&err, "acquire"), "{err:?}");
    let err = store.holder::<WorkLease>(1).await.unwrap_err();
    assert!(unsupported(&err, "holder"), "{err:?}");
    assert!(
        store.get::<WorkLease>(1).await.unwrap().is_none(),
        "refused, yet written"
    );
}

/// Checks, instead of the fenced-write checks, an engine with leases but without fenced
/// writes: each is [`Error::Unsupported`] and writes nothing, and the lease works.
pub async fn fenced_writes_are_unsupported<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let lease = store
        .acquire::<WorkLease>(1, &work("a"))
        .await
        .unwrap()
        .unwrap();
    let fenced = store.fenced(&lease);
    for (err, op) in [
        (
            fenced.set::<Task>(1, &task("x")).await.unwrap_err(),
            "fenced set",
        ),
        (
            fenced
                .update::<Task>(1, |_| Some(task("x")))
                .await
                .unwrap_err(),
            "fenced update",
        ),
        (fenced.remove::<Task>(1).await.unwrap_err(), "fenced remove"),
    ] {
        assert!(
            matches!(err, Error::Unsupported { operation, .. } if operation == op),
            "{err:?}"
        );
    }
    assert!(
        store.get::<Task>(1).await.unwrap().is_none(),
        "refused, yet written"
    );
    lease.extend().await.unwrap();
    assert!(lease.release().await.unwrap());
}

/// `acquire_within` waits for a release, and gives up after its wait.
pub async fn acquire_within_waits_for_the_holder<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let held = store
        .acquire::<WorkLease>(4, &work("a"))
        .await
        .unwrap()
        .unwrap();
    // tokio's clock: the memory engine's tests pause it.
    let started = tokio::time::Instant::now();
    let wait = Duration::from_millis(300);
    let none = store
        .acquire_within::<WorkLease>(4, &work("b"), wait)
        .await
        .unwrap();
    assert!(none.is_none());
    assert!(
        started.elapsed() >= wait,
        "gave up after {:?}",
        started.elapsed()
    );

    let waiter = tokio::spawn({
        let store = store.clone();
        async move {
            let wait = Duration::from_secs(10);
            store.acquire_within::<WorkLease>(4, &work("b"), wait).await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(held.release().await.unwrap());
    let taken = waiter
        .await
        .unwrap()
        .unwrap()
        .expect("taken after the release");
    assert!(taken.token() > held.token());
    assert_eq!(taken.value(), &work("b"));
}

/// A lease kept alive outlives its ttl; dropping the keeper lets it expire, and a lease lost
/// meanwhile is reported.
pub async fn kept_leases_outlive_their_ttl<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let lease = store
        .acquire::<ShortLease>(6, &short("a"))
        .await
        .unwrap()
        .unwrap();
    let alive = lease.keep_alive();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!alive.is_lost());
    let held = store.holder::<ShortLease>(6).await.unwrap().unwrap();
    assert_eq!(held.token, alive.token());

    // Taken from under it: the keeper finds out at its next extension.
    assert!(store.remove::<ShortLease>(6).await.unwrap());
    let lost = tokio::time::timeout(Duration::from_secs(5), alive.lost()).await;
    assert!(matches!(lost, Ok(Error::LeaseLost { .. })), "{lost:?}");
    assert!(alive.is_lost());
    assert_lost(alive.extend().await, &alive);

    // Dropped: no more extensions, so it expires.
    let again = store
        .acquire::<ShortLease>(6, &short("b"))
        .await
        .unwrap()
        .unwrap();
    let token = again.token();
    drop(again.keep_alive());
    until_free::<ShortLease>(&store, 6).await;
    let next = store
        .acquire::<ShortLease>(6, &short("c"))
        .await
        .unwrap()
        .unwrap();
    assert!(next.token() > token);
}

/// A value written under a lease key by anything but `acquire` (a plain `set`) is no lease: the
/// holder's lease is lost (its `extend` fails, its `release` removes nothing), the key is taken
/// until the value expires, and `holder` does not name the lost holder's token.
pub async fn plain_writes_to_a_lease_key_end_the_lease<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let lease = store
        .acquire::<WorkLease>(11, &work("a"))
        .await
        .unwrap()
        .unwrap();
    store.set::<WorkLease>(11, &work("by hand")).await.unwrap();
    assert_lost(lease.extend().await, &lease);
    assert!(
        !lease.release().await.unwrap(),
        "released a value it does not hold"
    );
    assert_eq!(
        store.get::<WorkLease>(11).await.unwrap(),
        Some(work("by hand"))
    );
    let holder = store.holder::<WorkLease>(11).await.unwrap().unwrap();
    assert_eq!(holder.value, work("by hand"));
    assert_ne!(holder.token, lease.token());
    assert!(
        store
            .acquire::<WorkLease>(11, &work("b"))
            .await
            .unwrap()
            .is_none()
    );
    // Removed: free again, with a greater token.
    assert!(store.remove::<WorkLease>(11).await.unwrap());
    let next = store
        .acquire::<WorkLease>(11, &work("b"))
        .await
        .unwrap()
        .unwrap();
    assert!(next.token() > lease.token());
}
