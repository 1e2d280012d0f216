//! Checks of the limits a backend must take: the longest ttl, large values and ids.

use super::*;

/// Checks: invalid ttls are rejected.
pub async fn invalid_ttls_are_rejected<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for ttl in [Duration::ZERO, Duration::MAX] {
        let err = store
            .set_with::<Session>(3, &session(3), crate::SetOptions::new().ttl(ttl))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTtl { .. }), "{ttl:?}: {err:?}");
        assert!(err.to_string().contains("session:3"), "{err}");
    }
    assert!(
        !store.exists::<Session>(3).await.unwrap(),
        "nothing written"
    );
    // The derive's ceiling is the store's: the longest ttl that compiles is written.
    store.set::<Forever>(1, &Forever(1)).await.unwrap();
    let left = expiry_left::<Forever>(&store, 1, "expires").await;
    assert!(
        left > Duration::from_secs(2_305_843_009_213_693 - 60),
        "{left:?}"
    );
    // A fraction of a millisecond rounds up instead of becoming "no expiry" or an error.
    set_for(&store, 3, &session(3), Duration::from_micros(10)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store.exists::<Session>(3).await.unwrap());
}

/// Checks: large values and ids round trip.
pub async fn large_values_and_ids_round_trip<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let big = Session {
        cart: vec!["x".repeat(10 * 1024 * 1024)],
        updated_at: 1,
    };
    store.set::<Session>(1, &big).await.unwrap();
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(big));

    // A 10 KB id full of characters that must be escaped.
    let long_id = (
        format!("{}:{}", "a".repeat(5_000), "*{} ".repeat(1_250)),
        7u32,
    );
    let job = Job {
        status: "long".into(),
    };
    store.set::<Job>(&long_id, &job).await.unwrap();
    assert_eq!(store.get::<Job>(&long_id).await.unwrap(), Some(job));
    let (ids, errors) = collect_ids::<B, Job>(&store).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, vec![long_id]);
}

// ---- change feeds ---------------------------------------------------------------------------
