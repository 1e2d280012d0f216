//! The checks that replace others for a difference a backend declares or the suite detects
//! (see the registry's `needs`).

use super::*;

/// Checks, for a backend that may coalesce the changes of one key (without
/// [`Capabilities::every_change_delivered`]): while 8 tasks each write their own id 25 times and
/// increment one shared counter, a watcher of the type, a watcher of one id and a watcher of the
/// counters get each key's changes in order and never twice, and each key's last value arrives.
pub async fn changes_arrive_in_order_and_converge<B: Backend + Clone>(backend: B) {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 25;
    let store = writable(&backend);
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store
        .watch_id::<Watched>("writer-0".to_string())
        .await
        .unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    for task in spawn_writers(&store, WRITERS, WRITES) {
        task.await.unwrap();
    }

    let mut last: HashMap<String, u64> = HashMap::new();
    let done = |last: &HashMap<String, u64>| {
        (0..WRITERS).all(|w| last.get(&format!("writer-{w}")) == Some(&WRITES))
    };
    while !done(&last) {
        let what = format!("coalesced changes, each writer's last so far {last:?}");
        let Change::Set { id, value } = next_change(&mut all, &what).await else {
            panic!("{what}: only sets were written");
        };
        let before = last.insert(id.clone(), value.step).unwrap_or(0);
        assert!(
            value.step > before,
            "{id}: step {} after step {before}: out of order or twice",
            value.step
        );
    }
    let of_writer = "the changes of writer-0 after step";
    rising_to(&mut one, "writer-0", WRITES, |w| w.step, of_writer).await;
    let total = (WRITERS * WRITES) as i64;
    rising_to(
        &mut counts,
        "shared",
        total,
        |c| c.0,
        "the shared count after",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut all,
        "sentinel".to_string(),
        sentinel("coalesced writes"),
        "coalesced writes, beyond their own changes,",
    )
    .await;
}

/// Reads the changes of `id` until one numbers `last` (`number` gives a value's number, from
/// 0): each a set of `id` numbered above the one before, so that coalesced changes still come
/// in order and never twice. `what` names them, followed by the number reached.
async fn rising_to<S, N>(
    changes: &mut Changes<S>, id: &str, last: N, number: impl Fn(&S) -> N, what: &str,
) where
    S: StateKey<Id = String> + fmt::Debug,
    N: Copy + Default + PartialOrd + fmt::Display,
{
    let mut before = N::default();
    while before < last {
        let what = format!("{what} {before}");
        let Change::Set { id: got, value } = next_change(changes, &what).await else {
            panic!("{what}: only sets were written");
        };
        assert_eq!(got, id, "{what}");
        let now = number(&value);
        assert!(now > before, "{what}: got {now}");
        before = now;
    }
}

/// For a backend without a change feed (detected, or declared with
/// `conformance_tests!(.., without_feed)`), instead of each change-feed check:
/// `watch` and `watch_id` are [`Error::Unsupported`] naming `watch` and the backend, and writes
/// of a notified type still work as any other.
pub async fn feed_is_unsupported<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    for err in [
        store.watch::<Watched>().await.unwrap_err(),
        store.watch_id::<Watched>(id("a")).await.unwrap_err(),
        store.watch::<WatchedCount>().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    operation: "watch",
                    backend: name,
                } if name == backend.name()
            ),
            "{err:?}"
        );
    }

    put(&store, "a", &watched("set", 1)).await;
    set_for(&store, "b", &watched("ttl", 1), Duration::from_secs(60)).await;
    assert!(
        store
            .set_if_absent::<Watched>(id("c"), &watched("absent", 1))
            .await
            .unwrap()
    );
    store
        .update::<Watched>(id("a"), |w| w.map(|w| watched("updated", w.step + 1)))
        .await
        .unwrap();
    store
        .set_many::<Watched>(vec![(id("d"), watched("many", 1))])
        .await
        .unwrap();
    assert_eq!(store.incr::<WatchedCount>(id("n"), 2).await.unwrap(), 2);
    assert_eq!(
        store
            .get_many::<Watched>([id("a"), id("b"), id("c"), id("d")])
            .await
            .unwrap(),
        vec![
            Some(watched("updated", 2)),
            Some(watched("ttl", 1)),
            Some(watched("absent", 1)),
            Some(watched("many", 1)),
        ]
    );
    assert!(
        store.ttl::<Watched>(id("a")).await.unwrap().unwrap() > Duration::from_secs(6 * 86_400)
    );
    assert!(store.remove::<Watched>(id("a")).await.unwrap());
    assert_eq!(
        store
            .remove_many::<Watched>([id("b"), id("c"), id("none")])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.get::<WatchedCount>(id("n")).await.unwrap(),
        Some(WatchedCount(2))
    );
    assert!(!store.exists::<Watched>(id("a")).await.unwrap());
}

/// Checks, for a backend without per-key expiry: `set_with_ttl` with another duration than the
/// type's, or any on a type without ttl, is [`Error::Unsupported`] naming `set_with_ttl` and
/// writes nothing; the type's own ttl is given.
pub async fn expiry_is_the_types_alone<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    for ttl in [Duration::from_secs(5), THIRTY_MINUTES * 2] {
        let err = store
            .set_with::<Session>(1, &session(1), crate::SetOptions::new().ttl(ttl))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    operation: "set_with_ttl",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(backend.name()), "{err}");
        assert_eq!(
            store.get::<Session>(1).await.unwrap(),
            None,
            "nothing written"
        );
    }
    let err = store
        .set_with::<Job>(
            ("a".to_string(), 1),
            &Job { status: "x".into() },
            crate::SetOptions::new().ttl(THIRTY_MINUTES),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    set_for(&store, 1, &session(1), THIRTY_MINUTES).await;
    store.set::<Session>(2, &session(2)).await.unwrap();
    for id in [1, 2] {
        let left = store.ttl::<Session>(id).await.unwrap().unwrap();
        assert!(left > THIRTY_MINUTES - Duration::from_secs(60), "{left:?}");
    }
}

/// Checks, for a backend whose writes cannot keep a remaining expiry: `update` and `incr` of an
/// existing value give it the type's whole ttl again.
pub async fn kept_expiry_restarts<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let window = Duration::from_secs(60);
    store.incr::<ApiCalls>("a".to_string(), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(store.incr::<ApiCalls>("a".to_string(), 1).await.unwrap(), 2);
    let left = store
        .ttl::<ApiCalls>("a".to_string())
        .await
        .unwrap()
        .unwrap();
    assert!(
        left > window - Duration::from_millis(500),
        "restarted: {left:?}"
    );
    let task = Task {
        status: "queued".into(),
        runs: 0,
    };
    store.set::<Task>(1, &task).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    store.update::<Task>(1, |t| t.map(ran_again)).await.unwrap();
    let left = store.ttl::<Task>(1).await.unwrap().unwrap();
    assert!(
        left > Duration::from_secs(3600) - Duration::from_millis(500),
        "{left:?}"
    );
}

/// Checks, for a backend that cannot announce expiries: `enable_expiry_events` says so.
pub async fn expiry_events_are_unsupported<B: Backend + Clone>(backend: B) {
    let err = feed_of(&backend).enable_expiry_events().await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

/// Checks, for a backend whose watchers each have their own subscription: a watcher that does
/// not read lags, says how many it missed, and keeps the newest changes.
pub async fn each_watcher_lags_alone<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).watch_buffer(8);
    let mut lagging = store.watch::<Watched>().await.unwrap();
    for n in 0..100 {
        put(&store, "burst", &watched("burst", n)).await;
    }
    let mut missed = 0;
    let mut last = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), lagging.next()).await {
            Ok(Some(Err(Error::Lagged { missed: m }))) => missed += m,
            Ok(Some(Ok(Change::Set { value, .. }))) => last = Some(value.step),
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
    }
    assert!(missed > 0, "the watcher lagged");
    assert_eq!(last, Some(99), "the newest change kept");
}

/// Checks, for a backend whose watchers hear every write to a type's storage (no
/// [`announced_writes_only`](Capabilities::announced_writes_only)): a write of a type without
/// `notify`, a [`BackendExt::set`](crate::BackendExt::set) without a channel, a `touch` and the rate-limit checks that
/// count (fixed window and smooth) each reach a watcher of the type as a change to the value
/// stored; `touch` as a change to the same value.
pub async fn every_write_is_heard<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let set = |key: &str, value: &[u8]| Event::Set {
        key: key.into(),
        value: value.into(),
    };
    // Declared with its ttl before the watch, as a store's first call would.
    store.full_key::<Session>(1).unwrap();
    let mut sessions = feed_of(&backend)
        .watch(&Watch::new("session"))
        .await
        .unwrap();

    store.set::<Session>(1, &session(1)).await.unwrap();
    let value = serde_json::to_vec(&session(1)).unwrap();
    let event = next_event(&mut sessions, "set of a type without `notify`").await;
    assert_eq!(event, set("session:1", &value), "set of Session");

    backend
        .set("session:2", b"raw".to_vec(), Session::TTL, None)
        .await
        .unwrap();
    let event = next_event(&mut sessions, "a write without a channel").await;
    assert_eq!(
        event,
        set("session:2", b"raw"),
        "Backend::set without a channel"
    );

    assert!(store.touch::<Session>(1).await.unwrap());
    let event = next_event(&mut sessions, "touch").await;
    assert_eq!(
        event,
        set("session:1", &value),
        "touch: the same value again"
    );

    let client = || "client".to_string();
    let mut fixed = store.watch::<WatchedFixed>().await.unwrap();
    assert!(store.check::<WatchedFixed>(client()).await.unwrap().allowed);
    let change = next_change(&mut fixed, "a fixed-window rate-limit check").await;
    assert_eq!(
        change,
        Change::Set {
            id: client(),
            value: WatchedFixed(1),
        },
        "the window's first count"
    );
    let mut smooth = store.watch::<WatchedSmooth>().await.unwrap();
    assert!(
        store
            .check::<WatchedSmooth>(client())
            .await
            .unwrap()
            .allowed
    );
    match next_change(&mut smooth, "a smooth rate-limit check").await {
        Change::Set { id, .. } => assert_eq!(id, client()),
        other => panic!("a smooth rate-limit check: expected a set, got {other:?}"),
    }
}

/// Checks, for a backend with a value size limit: values up to it round trip, a larger one is
/// an error naming the key and writes nothing.
pub async fn values_up_to_the_limit<B: Backend + Clone>(backend: B, limit: usize) {
    let store = writable(&backend);
    let big = Job {
        status: "x".repeat(limit / 2),
    };
    let id = ("big".to_string(), 1);
    store.set::<Job>(&id, &big).await.unwrap();
    assert_eq!(store.get::<Job>(&id).await.unwrap(), Some(big));
    let over = Job {
        status: "x".repeat(limit + 1),
    };
    let err = store
        .set::<Job>(("over".to_string(), 1), &over)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("job:over:1"), "{err}");
    assert_eq!(
        store.get::<Job>(("over".to_string(), 1)).await.unwrap(),
        None
    );
}

/// Checks, for a backend with a longest expiry: the derive's longest ttl is accepted and kept
/// for that limit.
pub async fn expiry_up_to_the_limit<B: Backend + Clone>(backend: B, limit: Duration) {
    let store = writable(&backend);
    store.set::<Forever>(1, &Forever(1)).await.unwrap();
    let left = store.ttl::<Forever>(1).await.unwrap().unwrap();
    assert!(
        left <= limit && left > limit - Duration::from_secs(60),
        "{left:?}"
    );
}

/// [`values_up_to_the_limit`] at the limit `capabilities` declare.
pub(crate) async fn values_up_to_the_declared_limit<B: Backend + Clone>(
    backend: B, capabilities: &Capabilities,
) {
    let limit = capabilities
        .max_value_bytes
        .expect("a declared value size limit");
    values_up_to_the_limit(backend, limit).await;
}

/// [`expiry_up_to_the_limit`] at the limit `capabilities` declare.
pub(crate) async fn expiry_up_to_the_declared_limit<B: Backend + Clone>(
    backend: B, capabilities: &Capabilities,
) {
    let limit = capabilities.max_ttl.expect("a declared expiry limit");
    expiry_up_to_the_limit(backend, limit).await;
}

/// Checks, for a backend without a compare-and-delete (no
/// [`conditional_remove`](Capabilities::conditional_remove)): `remove_if` is
/// [`Error::Unsupported`] naming `remove_if` and the backend when the check accepts the value,
/// and removes nothing; without `enable_remove` it is still [`Error::Disabled`].
pub async fn remove_if_is_unsupported<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let task = Task {
        status: "done".into(),
        runs: 1,
    };
    store.set::<Task>(1, &task).await.unwrap();
    let err = store.remove_if::<Task>(1, |_| true).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                operation: "remove_if",
                backend: name,
            } if name == backend.name()
        ),
        "{err:?}"
    );
    assert_eq!(
        store.get::<Task>(1).await.unwrap(),
        Some(task.clone()),
        "refused, yet removed"
    );
    // A check that declines needs no delete: `false`, or `Unsupported` up front.
    let declined = store.remove_if::<Task>(1, |_| false).await;
    assert!(
        matches!(declined, Ok(false) | Err(Error::Unsupported { .. })),
        "{declined:?}"
    );
    assert_eq!(store.get::<Task>(1).await.unwrap(), Some(task.clone()));
    assert!(
        !store.remove_if::<Task>(2, |_| true).await.unwrap_or(false),
        "removed a value that does not exist"
    );
    let no_remove = Store::new(backend.clone()).enable_set();
    assert!(matches!(
        no_remove.remove_if::<Task>(1, |_| true).await,
        Err(Error::Disabled { .. })
    ));
    assert!(store.exists::<Task>(1).await.unwrap());
}
