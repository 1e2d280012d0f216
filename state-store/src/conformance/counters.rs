//! Checks of counters: `incr`.

use super::*;

/// Checks: incr counts and starts the window once.
pub async fn incr_counts_and_starts_the_window_once<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let user = "alice".to_string();
    assert_eq!(store.incr::<ApiCalls>(&user, 1).await.unwrap(), 1);
    let first = expiry_left::<ApiCalls>(&store, &user, "window started").await;
    assert!(
        first <= Duration::from_secs(60) && first > Duration::from_secs(59),
        "{first:?}"
    );
    assert_eq!(
        store.get::<ApiCalls>(&user).await.unwrap(),
        Some(ApiCalls(1))
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.incr::<ApiCalls>(&user, 4).await.unwrap(), 5);
    assert_eq!(store.incr::<ApiCalls>(&user, -5).await.unwrap(), 0);
    // Back at zero is not a new window: the expiry keeps running down.
    assert_eq!(store.incr::<ApiCalls>(&user, 1).await.unwrap(), 1);
    let later = store.ttl::<ApiCalls>(&user).await.unwrap().unwrap();
    assert!(
        later <= first - Duration::from_millis(40),
        "{first:?} then {later:?}"
    );
    assert_eq!(
        store.get::<ApiCalls>(&user).await.unwrap(),
        Some(ApiCalls(1))
    );

    // A counter type without ttl never expires.
    assert_eq!(store.incr::<Total>(1, 7).await.unwrap(), 7);
    assert_eq!(store.ttl::<Total>(1).await.unwrap(), None);
}

/// Checks: incr is a write.
pub async fn incr_is_a_write<B: Backend + Clone>(backend: B) {
    let err = Store::new(backend.clone())
        .incr::<Total>(1, 1)
        .await
        .unwrap_err();
    assert_disabled(&err, "incr");
    assert!(!backend.exists("total:1").await.unwrap());
}

/// Checks: incr refuses non integers and overflow.
pub async fn incr_refuses_non_integers_and_overflow<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for (raw, by) in [
        (&b"{\"a\":1}"[..], 1),
        (b"1.5", 1),
        (b" 7", 1),
        (b"007", 1),
        (b"9223372036854775807", 1),
        (b"-9223372036854775808", -1),
    ] {
        backend
            .set("total:2", raw.to_vec(), None, None)
            .await
            .unwrap();
        let err = store.incr::<Total>(2, by).await.unwrap_err();
        let Error::NotACounter { key, .. } = &err else {
            panic!("{raw:?}: expected NotACounter, got {err:?}");
        };
        assert_eq!(key, "total:2");
        assert_eq!(
            stored(&backend, "total:2").await.as_deref(),
            Some(raw),
            "unchanged"
        );
    }
}

/// Checks: concurrent increments are exact.
pub async fn concurrent_increments_are_exact<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    store.incr::<Total>(3, 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.get::<Total>(3).await.unwrap(), Some(Total(64 * 50)));
}

// ---- rate limits ----------------------------------------------------------------------------
