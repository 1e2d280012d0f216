//! The memory backend: the conformance suite on a paused tokio clock, and expiry on that clock.

use std::time::Duration;

use state_store::conformance::{Marker, Session, session};
use state_store::{MemoryBackend, SetOptions, Store, UpdateOptions};

// Paused time: the suite's sleeps advance the clock at once and deterministically.
state_store::conformance_tests!(tokio::test(start_paused = true), async {
    ((), state_store::MemoryBackend::new())
});

#[tokio::test(start_paused = true)]
async fn expiry_follows_tokios_clock() {
    let store = Store::new(MemoryBackend::new()).enable_set();
    store
        .set_with::<Session>(
            1,
            &session(1),
            SetOptions::new().ttl(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(store.exists::<Session>(1).await.unwrap());
    assert_eq!(
        store.ttl::<Session>(1).await.unwrap(),
        Some(Duration::from_millis(1))
    );
    // As in Redis, a key lives through its deadline and is gone just after it.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(store.exists::<Session>(1).await.unwrap());
    tokio::time::advance(Duration::from_micros(1)).await;
    assert!(!store.exists::<Session>(1).await.unwrap());
}

/// Sliding expiry on the clock: a session (`ttl = "30m"`) that is touched, read with
/// `get_and_touch` or changed with `update_and_touch` every 20 minutes lives on; left alone for
/// 30 minutes it is gone.
#[tokio::test(start_paused = true)]
async fn a_session_kept_active_outlives_its_first_deadline() {
    let store = Store::new(MemoryBackend::new()).enable_set();
    let twenty = Duration::from_secs(20 * 60);
    store.set::<Session>(1, &session(1)).await.unwrap();
    tokio::time::advance(twenty).await;
    assert!(store.touch::<Session>(1).await.unwrap());
    tokio::time::advance(twenty).await;
    assert_eq!(
        store.get_and_touch::<Session>(1).await.unwrap(),
        Some(session(1))
    );
    tokio::time::advance(twenty).await;
    store
        .update_with::<Session>(1, UpdateOptions::new().refresh_ttl(), |s| {
            s.map(|_| session(2))
        })
        .await
        .unwrap();
    tokio::time::advance(twenty).await;
    // 80 minutes after it was written, 20 after its last activity.
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(2)));
    tokio::time::advance(Duration::from_secs(10 * 60) + Duration::from_millis(1)).await;
    assert_eq!(store.get::<Session>(1).await.unwrap(), None);
    // `update` alone does not slide it.
    store.set::<Session>(2, &session(2)).await.unwrap();
    tokio::time::advance(twenty).await;
    store
        .update::<Session>(2, |s| s.map(|_| session(3)))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(10 * 60) + Duration::from_millis(1)).await;
    assert_eq!(store.get::<Session>(2).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_purged_not_hidden() {
    let backend = MemoryBackend::new();
    let store = Store::new(backend.clone()).enable_set();
    // Heavy short-lived writes: each round's keys have expired by the next round, and the writes
    // themselves purge them, so what is held stays at one round's worth.
    for round in 0..50u64 {
        for n in 0..1_000u64 {
            store
                .set_with::<Session>(
                    round * 1_000 + n,
                    &session(0),
                    SetOptions::new().ttl(Duration::from_millis(10)),
                )
                .await
                .unwrap();
        }
        let (entries, expiries) = backend.held();
        assert!(
            entries <= 1_000 && expiries <= 1_000,
            "round {round}: {entries} held"
        );
        tokio::time::advance(Duration::from_millis(11)).await;
    }
    // Expired but not yet purged: nothing has run since the clock moved.
    assert_eq!(backend.held(), (1_000, 1_000));
    // Any operation purges them.
    assert!(!store.exists::<Session>(0).await.unwrap());
    assert_eq!(backend.held(), (0, 0));

    // Overwriting a key many times leaves one entry and one expiry, which goes when it expires.
    for n in 0..1_000 {
        store
            .set_with::<Session>(
                1,
                &session(n),
                SetOptions::new().ttl(Duration::from_secs(1)),
            )
            .await
            .unwrap();
    }
    assert_eq!(backend.held(), (1, 1));
    store.set::<Session>(1, &session(0)).await.unwrap();
    assert_eq!(
        backend.held(),
        (1, 1),
        "the type's ttl replaced the custom one"
    );
    store.set::<Marker>(1, &Marker(1)).await.unwrap();
    assert_eq!(
        backend.held(),
        (2, 1),
        "a key without expiry has no deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_million_short_lived_writes_leave_nothing_behind() {
    let backend = MemoryBackend::new();
    let store = Store::new(backend.clone()).enable_set();
    let ttl = Duration::from_secs(1);
    for n in 0..1_000_000u64 {
        store
            .set_with::<Marker>(n, &Marker(n), SetOptions::new().ttl(ttl))
            .await
            .unwrap();
    }
    assert_eq!(backend.held(), (1_000_000, 1_000_000));
    tokio::time::advance(Duration::from_millis(1_001)).await;
    assert!(!store.exists::<Marker>(0).await.unwrap());
    assert_eq!(
        backend.held(),
        (0, 0),
        "every expired entry and deadline was purged"
    );
}

#[tokio::test]
async fn clones_share_data() {
    let a = Store::new(MemoryBackend::new()).enable_set();
    let b = a.clone();
    a.set::<Session>(1, &session(1)).await.unwrap();
    assert_eq!(b.get::<Session>(1).await.unwrap(), Some(session(1)));
}

#[tokio::test]
async fn a_future_dropped_unpolled_changes_nothing() {
    use state_store::backend::{CountOp, CountOptions, PutOptions, RemoveOptions, WriteMany};
    use state_store::{Backend, BackendExt, StreamExt};
    let backend = MemoryBackend::new();
    backend
        .set("kept", b"1".to_vec(), None, None)
        .await
        .unwrap();
    // Futures (and the listing stream) do nothing until polled, as the Redis backend's send
    // nothing.
    drop(backend.put("k", b"1".to_vec(), PutOptions::new()));
    let increment = CountOp::Increment {
        by: 1,
        ttl_if_created: None,
    };
    drop(backend.count("n", increment, CountOptions::new()));
    drop(backend.remove("kept", RemoveOptions::new()));
    let items = vec![("m".to_string(), b"1".to_vec())];
    drop(backend.write_many(WriteMany::Put {
        items,
        options: PutOptions::new(),
    }));
    let window = CountOp::FixedWindow {
        limit: 1,
        window: Duration::from_secs(1),
    };
    drop(backend.count("w", window, CountOptions::new()));
    let listing = backend.list("");
    backend
        .set("later", b"1".to_vec(), None, None)
        .await
        .unwrap();
    assert_eq!(backend.len(), 2);
    assert!(backend.exists("kept").await.unwrap());
    // The listing read the keys when first polled, so it sees the one written after the call.
    let mut keys: Vec<String> = listing.map(Result::unwrap).collect().await;
    keys.sort();
    assert_eq!(keys, ["kept", "later"]);
}

/// `Debug` of an error is what `fn main() -> Result<(), Error>` and `unwrap` print: the message
/// and the variant, not a nest of structs.
#[tokio::test]
async fn errors_debug_as_their_message_and_variant() {
    let store = Store::new(MemoryBackend::new());
    let e = store.set::<Session>(1, &session(1)).await.unwrap_err();
    assert_eq!(
        format!("{e:?}"),
        "`set` is disabled on this store; turn it on with `Store::enable_set()` (Error::Disabled)"
    );
    let e = Store::new(MemoryBackend::new())
        .try_namespace("bad space")
        .unwrap_err();
    let shown = format!("{e:?}");
    assert!(
        shown.starts_with("invalid namespace `bad space`: "),
        "{shown}"
    );
    assert!(shown.ends_with("(Error::InvalidNamespace)"), "{shown}");
}

/// `Arc<B>` and `Arc<dyn Backend>` are backends: every method, the engine's extensions
/// included, reaches the engine inside.
#[tokio::test]
async fn a_shared_engine_is_a_backend() {
    use std::sync::Arc;

    use state_store::Backend;
    let shared: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let store = Store::new(shared.clone()).enable_set();
    store.set::<Session>(1, &session(1)).await.unwrap();
    assert_eq!(
        Store::new(shared.clone()).get::<Session>(1).await.unwrap(),
        Some(session(1))
    );
    assert_eq!(shared.name(), "MemoryBackend");
    let extensions = store.backend().extensions();
    assert_eq!(extensions.system_name, Some("memory"));
    assert!(extensions.feed.is_some(), "the memory engine's change feed");
}
