//! The memory backend: the conformance suite on a paused tokio clock, and expiry on that clock.

mod conformance;

use std::time::Duration;

use conformance::{Session, session};
use state_store::{MemoryBackend, Store};

// Paused time: the suite's sleeps advance the clock at once and deterministically.
conformance_tests!(tokio::test(start_paused = true), async {
    ((), state_store::MemoryBackend::new())
});

#[tokio::test(start_paused = true)]
async fn expiry_follows_tokios_clock() {
    let store = Store::new(MemoryBackend::new()).enable_set();
    store
        .set_with_ttl::<Session>(1, &session(1), Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(store.exists::<Session>(1).await.unwrap());
    assert_eq!(
        store.ttl::<Session>(1).await.unwrap(),
        Some(Duration::from_millis(1))
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!store.exists::<Session>(1).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_purged_not_hidden() {
    let backend = MemoryBackend::new();
    let store = Store::new(backend.clone()).enable_set();
    // Heavy short-lived writes: each round's keys have expired by the next round, so what is held
    // stays at one round's worth however many are written.
    for round in 0..50u64 {
        for n in 0..1_000u64 {
            store
                .set_with_ttl::<Session>(round * 1_000 + n, &session(0), Duration::from_millis(10))
                .await
                .unwrap();
        }
        assert!(
            backend.len() <= 1_000,
            "round {round}: {} held",
            backend.len()
        );
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert_eq!(backend.len(), 0);

    // Overwriting a key many times leaves one entry and one expiry, which goes when it expires.
    for n in 0..1_000 {
        store
            .set_with_ttl::<Session>(1, &session(n), Duration::from_secs(1))
            .await
            .unwrap();
    }
    assert_eq!(backend.len(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(backend.is_empty());
}

#[tokio::test]
async fn clones_share_data() {
    let a = Store::new(MemoryBackend::new()).enable_set();
    let b = a.clone();
    a.set::<Session>(1, &session(1)).await.unwrap();
    assert_eq!(b.get::<Session>(1).await.unwrap(), Some(session(1)));
}

#[tokio::test(start_paused = true)]
async fn a_million_short_lived_writes_leave_nothing_behind() {
    let backend = MemoryBackend::new();
    let store = Store::new(backend.clone()).enable_set();
    let ttl = Duration::from_secs(1);
    for n in 0..1_000_000u64 {
        store
            .set_with_ttl::<conformance::Marker>(n, &conformance::Marker(n), ttl)
            .await
            .unwrap();
    }
    assert_eq!(backend.len(), 1_000_000, "all live before the clock moves");
    tokio::time::advance(Duration::from_millis(1_001)).await;
    assert_eq!(backend.len(), 0, "every expired entry was purged");
    assert_eq!(backend.expiry_queue_len(), 0, "and its expiry with it");
}
