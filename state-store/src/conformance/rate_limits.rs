//! Checks of rate limits: quotas, what is left, windows.

use super::*;

pub(crate) async fn allowed_of_concurrent_checks<B: Backend + Clone, S: RateLimit<Id = String>>(
    store: &Store<B>,
) -> usize {
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..5 {
                    if store
                        .check::<S>("client".to_string())
                        .await
                        .unwrap()
                        .allowed
                    {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    allowed
}

/// Checks: rate limits allow exactly the quota under concurrency.
pub async fn rate_limits_allow_exactly_the_quota_under_concurrency<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    assert_eq!(
        allowed_of_concurrent_checks::<B, HourlyFixed>(&store).await,
        100
    );
    assert_eq!(
        allowed_of_concurrent_checks::<B, HourlySmooth>(&store).await,
        100
    );

    let refused = store
        .check::<HourlyFixed>("client".to_string())
        .await
        .unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    assert!(
        refused.retry_after > Duration::from_secs(3500),
        "{refused:?}"
    );
    let refused = store
        .check::<HourlySmooth>("client".to_string())
        .await
        .unwrap();
    assert!(!refused.allowed);
    // One call is replenished every 36 s.
    assert!(
        refused.retry_after > Duration::from_secs(30)
            && refused.retry_after <= Duration::from_secs(36),
        "{refused:?}"
    );
    // Another client has its own quota.
    let other = store
        .check::<HourlyFixed>("other".to_string())
        .await
        .unwrap();
    assert!(other.allowed);
    assert_eq!(other.remaining, 99);
}

/// Checks: rate limit checks report what is left.
pub async fn rate_limit_checks_report_what_is_left<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for expected in (0..10).rev() {
        let fixed = store.check::<FastFixed>(1).await.unwrap();
        assert!(fixed.allowed);
        assert_eq!(fixed.remaining, expected);
        assert_eq!(fixed.retry_after, Duration::ZERO);
        assert!(fixed.reset_after <= Duration::from_secs(1));
        let smooth = store.check::<FastSmooth>(1).await.unwrap();
        assert!(smooth.allowed);
        assert_eq!(smooth.remaining, expected);
    }
    let fixed = store.check::<FastFixed>(1).await.unwrap();
    assert!(!fixed.allowed && fixed.retry_after > Duration::ZERO);
    let smooth = store.check::<FastSmooth>(1).await.unwrap();
    assert!(!smooth.allowed);
    assert!(
        smooth.retry_after > Duration::ZERO && smooth.retry_after <= Duration::from_millis(100),
        "{smooth:?}"
    );

    // Refused calls are not counted, and the limit's state expires with its window.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(!store.exists::<FastFixed>(1).await.unwrap(), "window over");
    assert!(
        !store.exists::<FastSmooth>(1).await.unwrap(),
        "fully replenished"
    );
    assert_eq!(store.check::<FastFixed>(1).await.unwrap().remaining, 9);
    assert_eq!(store.check::<FastSmooth>(1).await.unwrap().remaining, 9);

    let err = Store::new(backend.clone())
        .check::<FastFixed>(2)
        .await
        .unwrap_err();
    assert_disabled(&err, "check");
}

/// Values under a limit's key that are not Redis integers are errors on every backend, by the
/// same rule as `incr`, and are left as they are.
pub async fn rate_limits_refuse_values_that_are_not_counters<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for raw in [
        &b"007"[..],
        b"-0",
        b"+1",
        b"1e3",
        b"1.5",
        b"abc",
        b"99999999999999999999",
        b"",
    ] {
        for key in ["fast-fixed:1", "fast-smooth:1"] {
            backend.set(key, raw.to_vec(), None, None).await.unwrap();
        }
        let fixed = store.check::<FastFixed>(1).await.unwrap_err();
        let smooth = store.check::<FastSmooth>(1).await.unwrap_err();
        for (err, key) in [(fixed, "fast-fixed:1"), (smooth, "fast-smooth:1")] {
            assert!(
                matches!(err, Error::NotACounter { key: ref k, .. } if k == key),
                "{raw:?}: {err:?}"
            );
            assert_eq!(
                stored(&backend, key).await.as_deref(),
                Some(raw),
                "unchanged"
            );
        }
    }
    // Integers written by others count: a window already at 9 allows one more call.
    backend
        .set("fast-fixed:2", b"9".to_vec(), None, None)
        .await
        .unwrap();
    let decision = store.check::<FastFixed>(2).await.unwrap();
    assert!(decision.allowed && decision.remaining == 0, "{decision:?}");
    assert!(!store.check::<FastFixed>(2).await.unwrap().allowed);
    assert!(
        store.ttl::<FastFixed>(2).await.unwrap().is_some(),
        "a window was given"
    );
}

/// The fixed window lets a client spend one window's quota at its end and the next window's at
/// the start of the next; the smooth policy does not.
pub async fn smooth_rate_limits_have_no_window_edge<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    async fn burst<B: Backend, S: RateLimit<Id = u32>>(store: &Store<B>, calls: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..calls {
            allowed += usize::from(store.check::<S>(7).await.unwrap().allowed);
        }
        allowed
    }
    // One call opens the fixed window; the rest of its quota goes just before it ends, the next
    // window's just after.
    assert_eq!(burst::<B, FastFixed>(&store, 1).await, 1);
    assert_eq!(burst::<B, FastSmooth>(&store, 1).await, 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    // tokio's clock: the paused clock of the memory suite, real time on Redis.
    let edge_started = tokio::time::Instant::now();
    let fixed_before = burst::<B, FastFixed>(&store, 20).await;
    let smooth_before = burst::<B, FastSmooth>(&store, 20).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let fixed_after = burst::<B, FastFixed>(&store, 20).await;
    let smooth_after = burst::<B, FastSmooth>(&store, 20).await;
    let edge = edge_started.elapsed();

    assert_eq!(fixed_before, 9);
    assert_eq!(fixed_after, 10);
    // GCRA allows at most its burst plus one call per 100 ms of the span.
    let bound = 10 + (edge.as_millis() / 100) as usize + 1;
    assert!(
        smooth_before + smooth_after <= bound,
        "smooth allowed {smooth_before} + {smooth_after} in {edge:?}"
    );
    assert!(fixed_before + fixed_after > smooth_before + smooth_after);
}

// ---- compare-and-set ------------------------------------------------------------------------
