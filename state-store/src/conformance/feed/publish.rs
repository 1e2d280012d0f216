//! Change-feed checks: what each write publishes, and what publishes nothing.

use super::*;

/// Every write that stores something announces it as [`Change::Set`] with the value written:
/// `set`, `set_with_ttl`, a winning `set_if_absent`, an `update` that wrote (replacing or
/// creating), `set_many` (one change per item), and `incr` (the new count). `remove` and
/// `remove_many` announce [`Change::Removed`] for each key that existed. Ids that need escaping
/// and a large value arrive as written.
///
/// `capabilities` size the check to the backend: without
/// [`per_key_expiry`](Capabilities::per_key_expiry), `set_with_ttl` is given the type's own
/// ttl (any other is refused, [`expiry_is_the_types_alone`]); the large value is 1 MB, or half
/// of [`max_value_bytes`](Capabilities::max_value_bytes) when that is less.
pub async fn writes_publish_their_changes<B: Backend + Clone>(
    backend: B, capabilities: &Capabilities,
) {
    let store = writable(&backend);
    let ttl = match Watched::TTL {
        Some(types) if !capabilities.per_key_expiry => types,
        _ => Duration::from_secs(60),
    };
    let big_len = capabilities
        .max_value_bytes
        .map_or(1024 * 1024, |limit| (limit / 2).min(1024 * 1024));
    let mut jobs = store.watch::<Watched>().await.unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    let id = |s: &str| s.to_string();

    put(&store, "a", &watched("queued", 1)).await;
    expect_change(&mut jobs, set_of("a", watched("queued", 1)), "set").await;
    set_for(&store, "a", &watched("queued", 2), ttl).await;
    expect_change(&mut jobs, set_of("a", watched("queued", 2)), "set_with_ttl").await;
    assert!(
        store
            .set_if_absent::<Watched>(id("b"), &watched("new", 1))
            .await
            .unwrap()
    );
    expect_change(
        &mut jobs,
        set_of("b", watched("new", 1)),
        "a winning set_if_absent",
    )
    .await;
    store
        .update::<Watched>(id("a"), |w| {
            w.map(|w| Watched {
                status: "running".into(),
                step: w.step + 1,
            })
        })
        .await
        .unwrap();
    expect_change(
        &mut jobs,
        set_of("a", watched("running", 3)),
        "an update that replaced a value",
    )
    .await;
    store
        .update::<Watched>(id("c"), |w| match w {
            None => Some(watched("created", 1)),
            Some(w) => panic!("c holds {w:?}"),
        })
        .await
        .unwrap();
    expect_change(
        &mut jobs,
        set_of("c", watched("created", 1)),
        "an update that created the key",
    )
    .await;

    let items: Vec<(String, Watched)> = (1..=3)
        .map(|n| (format!("many-{n}"), watched("bulk", n)))
        .collect();
    store.set_many::<Watched>(&items).await.unwrap();
    let expected = items
        .iter()
        .map(|(id, value)| set_of(id, value.clone()))
        .collect();
    expect_changes(&mut jobs, expected, "set_many: one change per item").await;

    assert!(store.remove::<Watched>(id("b")).await.unwrap());
    expect_change(&mut jobs, removed_of("b"), "remove of a key that existed").await;
    assert_eq!(
        store
            .remove_many::<Watched>([id("c"), id("never-written"), id("many-2")])
            .await
            .unwrap(),
        2
    );
    expect_changes(
        &mut jobs,
        vec![removed_of("c"), removed_of("many-2")],
        "remove_many: a change for each key that existed",
    )
    .await;

    // Ids that must be escaped in the key, and a large value, arrive as written.
    let nasty = [
        "a:b",
        "a%3Ab",
        "*",
        "{tag} [x]?\\",
        "\"quoted\" and /slashed/",
        "ünïcødé 🦀",
        "tab\tnew\nline",
        "",
    ];
    for (n, nasty_id) in nasty.into_iter().enumerate() {
        let value = watched(&format!("nasty-{n}"), n as u64);
        put(&store, nasty_id, &value).await;
        expect_change(
            &mut jobs,
            set_of(nasty_id, value),
            &format!("set of the id {nasty_id:?}"),
        )
        .await;
    }
    let big = watched(&"x".repeat(big_len), 7);
    put(&store, "big", &big).await;
    let what = format!("set of a {big_len}-byte value");
    expect_change(&mut jobs, set_of("big", big), &what).await;

    // A counter announces each new count.
    for (by, count) in [(5, 5), (-2, 3), (0, 3)] {
        assert_eq!(
            store.incr::<WatchedCount>(id("hits"), by).await.unwrap(),
            count
        );
        expect_change(
            &mut counts,
            Change::Set {
                id: id("hits"),
                value: WatchedCount(count),
            },
            &format!("incr by {by}"),
        )
        .await;
    }

    nothing_before_sentinel(
        &store,
        &mut jobs,
        id("sentinel"),
        sentinel("the writes"),
        "the writes above, beyond their own changes,",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut counts,
        id("sentinel"),
        WatchedCount(-1),
        "the increments above, beyond their own changes,",
    )
    .await;
}

/// What changes nothing announces nothing: a losing `set_if_absent`, an `update` whose closure
/// returned `None`, removes of keys that did not exist, empty bulk calls, `incr` of a value
/// that is not a counter or would overflow, writes that fail (refused, invalid ttl, a value
/// that does not decode), and rate-limit checks, allowed or refused.
///
/// Without [`announced_writes_only`](Capabilities::announced_writes_only), the values the check
/// writes through [`BackendExt::set`](crate::BackendExt::set) without a channel must be heard (as the decode errors they
/// are), and the rate-limit checks, which write, are left to [`every_write_is_heard`].
pub async fn writes_that_change_nothing_publish_nothing<B: Backend + Clone>(
    backend: B, capabilities: &Capabilities,
) {
    let store = writable(&backend);
    let read_only = Store::new(backend.clone());
    let mut jobs = store.watch::<Watched>().await.unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    let id = |s: &str| s.to_string();
    let quiet = async |jobs: &mut Changes<Watched>, what: &str| {
        nothing_before_sentinel(&store, jobs, id("sentinel"), sentinel(what), what).await;
    };

    put(&store, "a", &watched("first", 1)).await;
    expect_change(&mut jobs, set_of("a", watched("first", 1)), "set").await;

    assert!(
        !store
            .set_if_absent::<Watched>(id("a"), &watched("second", 1))
            .await
            .unwrap()
    );
    quiet(&mut jobs, "a losing set_if_absent").await;

    assert_eq!(
        store.update::<Watched>(id("a"), |_| None).await.unwrap(),
        Some(watched("first", 1))
    );
    assert_eq!(
        store
            .update::<Watched>(id("missing"), |_| None)
            .await
            .unwrap(),
        None
    );
    quiet(&mut jobs, "an update whose closure returned None").await;

    assert!(!store.remove::<Watched>(id("missing")).await.unwrap());
    assert_eq!(
        store
            .remove_many::<Watched>([id("missing"), id("gone")])
            .await
            .unwrap(),
        0
    );
    store
        .set_many::<Watched>(Vec::<(String, Watched)>::new())
        .await
        .unwrap();
    assert_eq!(
        store
            .remove_many::<Watched>(Vec::<String>::new())
            .await
            .unwrap(),
        0
    );
    quiet(
        &mut jobs,
        "removes of missing keys and empty set_many/remove_many",
    )
    .await;

    let refused = [
        read_only
            .set::<Watched>(id("a"), &watched("refused", 1))
            .await
            .unwrap_err(),
        read_only
            .set_with::<Watched>(
                id("a"),
                &watched("refused", 1),
                crate::SetOptions::new().ttl(Duration::from_secs(5)),
            )
            .await
            .unwrap_err(),
        read_only
            .set_if_absent::<Watched>(id("new"), &watched("refused", 1))
            .await
            .unwrap_err(),
        read_only
            .update::<Watched>(id("a"), |_| Some(watched("refused", 1)))
            .await
            .unwrap_err(),
        read_only
            .set_many::<Watched>(vec![(id("a"), watched("refused", 1))])
            .await
            .unwrap_err(),
        read_only
            .incr::<WatchedCount>(id("hits"), 1)
            .await
            .unwrap_err(),
        Store::new(backend.clone())
            .enable_set()
            .remove::<Watched>(id("a"))
            .await
            .unwrap_err(),
        Store::new(backend.clone())
            .enable_set()
            .remove_many::<Watched>([id("a")])
            .await
            .unwrap_err(),
    ];
    for err in refused {
        assert!(matches!(err, Error::Disabled { .. }), "{err:?}");
    }
    let err = store
        .set_with::<Watched>(
            id("a"),
            &watched("invalid ttl", 1),
            crate::SetOptions::new().ttl(Duration::ZERO),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTtl { .. }), "{err:?}");
    quiet(&mut jobs, "refused writes and an invalid ttl").await;

    // A value that does not decode, written without announcement: the update fails before
    // writing.
    write_undecodable(&store, &mut jobs, "corrupt", b"{oops", capabilities).await;
    let err = store
        .update::<Watched>(id("corrupt"), |_| Some(watched("never", 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    quiet(&mut jobs, "an update of a value that does not decode").await;

    // Increments that fail change nothing and announce nothing.
    write_undecodable(&store, &mut counts, "text", b"1.5", capabilities).await;
    let err = store.incr::<WatchedCount>(id("text"), 1).await.unwrap_err();
    assert!(matches!(err, Error::NotACounter { .. }), "{err:?}");
    store
        .set::<WatchedCount>(id("max"), &WatchedCount(i64::MAX))
        .await
        .unwrap();
    expect_change(
        &mut counts,
        Change::Set {
            id: id("max"),
            value: WatchedCount(i64::MAX),
        },
        "set of a counter",
    )
    .await;
    let err = store.incr::<WatchedCount>(id("max"), 1).await.unwrap_err();
    assert!(matches!(err, Error::NotACounter { .. }), "{err:?}");
    nothing_before_sentinel(
        &store,
        &mut counts,
        id("sentinel"),
        WatchedCount(-1),
        "incr of a value that is not a counter, and one that would overflow,",
    )
    .await;

    // Rate-limit checks keep their counts without announcing them, allowed or refused.
    let mut fixed = store.watch::<WatchedFixed>().await.unwrap();
    let mut smooth = store.watch::<WatchedSmooth>().await.unwrap();
    let mut allowed = (0, 0);
    for _ in 0..5 {
        allowed.0 += u32::from(
            store
                .check::<WatchedFixed>(id("client"))
                .await
                .unwrap()
                .allowed,
        );
        allowed.1 += u32::from(
            store
                .check::<WatchedSmooth>(id("client"))
                .await
                .unwrap()
                .allowed,
        );
    }
    assert_eq!(allowed, (3, 3), "three calls an hour");
    if !capabilities.announced_writes_only {
        // Their writes are heard: `every_write_is_heard` checks that.
        return;
    }
    nothing_before_sentinel(
        &store,
        &mut fixed,
        id("sentinel"),
        WatchedFixed(-1),
        "fixed-window rate-limit checks",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut smooth,
        id("sentinel"),
        WatchedSmooth(-1),
        "smooth rate-limit checks",
    )
    .await;
}

/// Types declared without `notify` announce nothing, whatever the write: a watcher of their
/// channel, subscribed through [`ChangeFeed::watch`](crate::backend::ChangeFeed::watch), hears only a write that announces itself.
pub async fn types_without_notify_publish_nothing<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let mut sessions = feed_of(&backend)
        .watch(&Watch::new("session"))
        .await
        .unwrap();
    let mut totals = feed_of(&backend).watch(&Watch::new("total")).await.unwrap();

    store.set::<Session>(1, &session(1)).await.unwrap();
    set_for(&store, 1, &session(2), Duration::from_secs(60)).await;
    assert!(
        store
            .set_if_absent::<Session>(2, &session(2))
            .await
            .unwrap()
    );
    store
        .update::<Session>(1, |s| s.map(|s| Session { updated_at: 3, ..s }))
        .await
        .unwrap();
    store
        .set_many::<Session>(vec![(3u64, session(3)), (4, session(4))])
        .await
        .unwrap();
    assert!(store.remove::<Session>(1).await.unwrap());
    assert_eq!(store.remove_many::<Session>([2u64, 3]).await.unwrap(), 2);
    assert_eq!(store.incr::<Total>(1, 5).await.unwrap(), 5);

    // Sentinels: writes through the backend that do announce on the same channels.
    let value = serde_json::to_vec(&session(99)).unwrap();
    backend
        .set("session:99", value.clone(), Session::TTL, Some("session"))
        .await
        .unwrap();
    let expected = Event::Set {
        key: "session:99".into(),
        value: value.into(),
    };
    let event = next_event(&mut sessions, "writes of Session").await;
    assert_eq!(
        event, expected,
        "a Session write published though Session is not declared with `notify`"
    );
    backend
        .set("total:99", b"7".to_vec(), Total::TTL, Some("total"))
        .await
        .unwrap();
    let expected = Event::Set {
        key: "total:99".into(),
        value: b"7".as_slice().into(),
    };
    let event = next_event(&mut totals, "incr of Total").await;
    assert_eq!(
        event, expected,
        "incr of Total published though Total is not declared with `notify`"
    );
}

/// A watcher hears its own namespace and type only: stores in different namespaces on one
/// backend, and two types (one's prefix starting the other's), do not see each other's changes.
pub async fn changes_stay_in_their_namespace_and_type<B: Backend + Clone>(backend: B) {
    let id = |s: &str| s.to_string();
    let plain = writable(&backend);
    let first = writable(&backend).namespace("feed-a");
    let second = writable(&backend).namespace("feed-b");
    let mut plain_jobs = plain.watch::<Watched>().await.unwrap();
    let mut first_jobs = first.watch::<Watched>().await.unwrap();
    let mut first_one = first.watch_id::<Watched>(id("1")).await.unwrap();
    let mut second_jobs = second.watch::<Watched>().await.unwrap();
    let mut first_counts = first.watch::<WatchedCount>().await.unwrap();

    put(&plain, "1", &watched("plain", 1)).await;
    put(&first, "1", &watched("first", 1)).await;
    put(&second, "1", &watched("second", 1)).await;
    second
        .set_many::<Watched>(vec![(id("1"), watched("second", 2))])
        .await
        .unwrap();
    assert_eq!(first.incr::<WatchedCount>(id("1"), 1).await.unwrap(), 1);
    assert_eq!(second.incr::<WatchedCount>(id("1"), 1).await.unwrap(), 1);
    assert_eq!(plain.incr::<WatchedCount>(id("1"), 1).await.unwrap(), 1);
    assert!(second.remove::<Watched>(id("1")).await.unwrap());
    assert!(plain.remove::<Watched>(id("1")).await.unwrap());

    expect_changes(
        &mut plain_jobs,
        vec![set_of("1", watched("plain", 1)), removed_of("1")],
        "no namespace",
    )
    .await;
    expect_change(
        &mut first_jobs,
        set_of("1", watched("first", 1)),
        "namespace feed-a",
    )
    .await;
    expect_change(
        &mut first_one,
        set_of("1", watched("first", 1)),
        "namespace feed-a, watch_id",
    )
    .await;
    expect_changes(
        &mut second_jobs,
        vec![
            set_of("1", watched("second", 1)),
            set_of("1", watched("second", 2)),
            removed_of("1"),
        ],
        "namespace feed-b",
    )
    .await;
    expect_change(
        &mut first_counts,
        Change::Set {
            id: id("1"),
            value: WatchedCount(1),
        },
        "namespace feed-a, WatchedCount",
    )
    .await;
    for (store, changes, name) in [
        (&plain, &mut plain_jobs, "no namespace"),
        (&first, &mut first_jobs, "namespace feed-a"),
        (&second, &mut second_jobs, "namespace feed-b"),
    ] {
        nothing_before_sentinel(
            store,
            changes,
            id("sentinel"),
            sentinel(name),
            &format!("writes of other namespaces or types, seen from {name},"),
        )
        .await;
    }
    nothing_before_sentinel(
        &first,
        &mut first_one,
        id("1"),
        sentinel("feed-a"),
        "writes of other namespaces or types, seen from watch_id in feed-a,",
    )
    .await;
    nothing_before_sentinel(
        &first,
        &mut first_counts,
        id("sentinel"),
        WatchedCount(-1),
        "writes of other namespaces or types, seen from WatchedCount in feed-a,",
    )
    .await;
}
