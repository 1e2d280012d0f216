//! Change-feed checks: watchers, `watch_id`, lagging, undecodable values.

use super::*;

/// `watch_id` delivers the changes of its one id, every kind of them, and nothing of other ids
/// (not even ids whose key starts the same, or the same id of another type).
pub async fn watch_id_sees_only_its_id<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store.watch_id::<Watched>(id("a")).await.unwrap();
    let mut escaped = store.watch_id::<Watched>(id("a:b")).await.unwrap();
    let mut counter = store.watch_id::<WatchedCount>(id("a")).await.unwrap();

    for key in ["a", "b", "ab", "a:b", "a%3Ab"] {
        put(&store, key, &watched(key, 1)).await;
    }
    store
        .set_many::<Watched>(vec![(id("b"), watched("b", 2)), (id("a"), watched("a", 2))])
        .await
        .unwrap();
    store
        .update::<Watched>(id("a"), |w| w.map(|w| watched("a", w.step + 1)))
        .await
        .unwrap();
    assert_eq!(store.incr::<WatchedCount>(id("a"), 1).await.unwrap(), 1);
    assert_eq!(store.incr::<WatchedCount>(id("b"), 1).await.unwrap(), 1);
    assert!(store.remove::<Watched>(id("b")).await.unwrap());
    assert!(store.remove::<Watched>(id("a")).await.unwrap());
    assert!(store.remove::<Watched>(id("a:b")).await.unwrap());

    expect_changes(
        &mut one,
        vec![
            set_of("a", watched("a", 1)),
            set_of("a", watched("a", 2)),
            set_of("a", watched("a", 3)),
            removed_of("a"),
        ],
        "watch_id(\"a\")",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut one,
        id("a"),
        sentinel("other ids' writes"),
        "writes of other ids than \"a\"",
    )
    .await;
    expect_changes(
        &mut escaped,
        vec![set_of("a:b", watched("a:b", 1)), removed_of("a:b")],
        "watch_id(\"a:b\")",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut escaped,
        id("a:b"),
        sentinel("other ids' writes"),
        "writes of other ids than \"a:b\"",
    )
    .await;
    expect_change(
        &mut counter,
        Change::Set {
            id: id("a"),
            value: WatchedCount(1),
        },
        "watch_id::<WatchedCount>(\"a\")",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut counter,
        id("a"),
        WatchedCount(-1),
        "writes of other ids than the counter \"a\", and of Watched \"a\",",
    )
    .await;
    // The watcher of every id got all 11 changes and the two sentinels.
    let mut got = Vec::new();
    for n in 0..13 {
        got.push(next_change(&mut all, &format!("watch(): change {n} of 13")).await);
    }
    let mut ids: Vec<&str> = got.iter().map(|c| c.id().as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "a", "a", "a", "a", "a", "a%3Ab", "a:b", "a:b", "a:b", "ab", "b", "b", "b"
        ],
        "watch(): {got:?}"
    );
    nothing_before_sentinel(
        &store,
        &mut all,
        id("sentinel"),
        sentinel("every write"),
        "the writes above, beyond their own changes,",
    )
    .await;
}

/// A value on the feed that does not decode as the type is an [`Error::Decode`] item naming its
/// key, and a key that is not an id of the type an [`Error::InvalidKey`] item naming it; either
/// way the stream goes on with the next change. The values are written through
/// [`BackendExt::set`](crate::BackendExt::set) with the type's channel, as another program could write them.
pub async fn undecodable_changes_are_errors_and_the_feed_goes_on<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    let channel = "svc:watched";
    let mut changes = store.watch::<Watched>().await.unwrap();
    let mut after = 0;
    let mut goes_on = async |changes: &mut Changes<Watched>, what: &str| {
        after += 1;
        let value = watched("after", after);
        put(&store, "good", &value).await;
        expect_change(
            changes,
            set_of("good", value),
            &format!("the change after {what}"),
        )
        .await;
    };

    // A key under the channel that no `Watched` id gives (`:` is escaped in string ids).
    let foreign = format!("{}:b", store.full_key::<Watched>("a").unwrap());
    assert_eq!(foreign, "svc:watched:a:b");
    let value = serde_json::to_vec(&watched("foreign", 1)).unwrap();
    backend
        .set(&foreign, value, Watched::TTL, Some(channel))
        .await
        .unwrap();
    match next_item(&mut changes, "a foreign key").await {
        Err(Error::InvalidKey { key, .. }) => assert_eq!(key, foreign),
        other => panic!("expected an invalid-key error naming {foreign}, got {other:?}"),
    }
    goes_on(&mut changes, "a foreign key").await;

    // JSON of another shape first, then bytes that are not JSON at all.
    for (n, raw) in [
        &br#"{"status": 5, "step": 1}"#[..],
        br#"[1, 2, 3]"#,
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"",
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("the value {:?}", String::from_utf8_lossy(raw));
        let key = store.full_key::<Watched>(format!("bad-{n}")).unwrap();
        backend
            .set(&key, raw.to_vec(), Watched::TTL, Some(channel))
            .await
            .unwrap();
        match next_item(&mut changes, &what).await {
            Err(Error::Decode { key: reported, .. }) => assert_eq!(reported, key, "{what}"),
            other => panic!("{what}: expected a decode error naming {key}, got {other:?}"),
        }
        goes_on(&mut changes, &what).await;
    }
    nothing_before_sentinel(
        &store,
        &mut changes,
        "sentinel".to_string(),
        sentinel("undecodable changes"),
        "undecodable changes, beyond their errors,",
    )
    .await;
}

/// Reads what a watcher that lagged behind a burst of writes to `burst` holds: one
/// [`Error::Lagged`] counting `missed`, then the sets of the steps `newest`, in order.
async fn lagged_then_newest(
    changes: &mut Changes<Watched>, missed: u64, newest: std::ops::Range<u64>, what: &str,
) {
    match next_item(changes, what).await {
        Err(Error::Lagged { missed: m }) => assert_eq!(m, missed, "{what}"),
        other => panic!("{what}: expected Lagged {{ missed: {missed} }}, got {other:?}"),
    }
    for n in newest {
        expect_change(
            changes,
            set_of("burst", watched("burst", n)),
            &format!("{what}: the newest, {n}"),
        )
        .await;
    }
}

/// A watcher that reads nothing while more changes than its buffer arrive gets one
/// [`Error::Lagged`] with how many were dropped, then the newest ones in order, and is then in
/// step again; other watchers lose nothing. Watching with `watch_buffer(8)`, 100 writes give
/// `Lagged { missed: 92 }` and the last 8.
///
/// Before reading, the check waits until a write after the 100, to another id, has reached a
/// watcher of that id: a backend whose feed delivers asynchronously has then queued the 100.
pub async fn slow_watchers_lag_and_keep_the_newest<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let small = store.clone().watch_buffer(8);
    // The fence shares the burst's Redis Cluster hash slot: changes of keys on different nodes
    // may arrive in another order than written, those of one slot may not.
    let slot_of =
        |id: &str| redis_cluster_slot(&store.full_key::<Watched>(id.to_string()).unwrap());
    let fence_id = (0..)
        .map(|n| format!("fence-{n}"))
        .find(|fence| slot_of(fence) == slot_of("burst"))
        .unwrap();
    let fence_id = fence_id.as_str();
    let mut lagging = small.watch::<Watched>().await.unwrap();
    let mut lagging_one = small.watch_id::<Watched>(id("burst")).await.unwrap();
    let mut fence = store.watch_id::<Watched>(id(fence_id)).await.unwrap();
    let mut keeping_up = store.watch::<Watched>().await.unwrap();

    for (round, writes) in [(1u64, 100u64), (2, 20)] {
        for n in 0..writes {
            put(&store, "burst", &watched("burst", n)).await;
        }
        // Everything written is queued once a later change has arrived.
        let marker = watched("fence", round);
        put(&store, fence_id, &marker).await;
        expect_change(
            &mut fence,
            set_of(fence_id, marker.clone()),
            "the write after the burst",
        )
        .await;

        // The watcher of every id holds the newest 8 of the burst and the fence.
        let missed = writes + 1 - 8;
        let what = format!("round {round}: {writes} writes and one more into a buffer of 8");
        lagged_then_newest(&mut lagging, missed, writes - 7..writes, &what).await;
        expect_change(&mut lagging, set_of(fence_id, marker), &what).await;

        // The watcher of the id holds the newest 8 of the burst.
        let what = format!("round {round}: watch_id, {writes} writes into a buffer of 8");
        lagged_then_newest(&mut lagging_one, writes - 8, writes - 8..writes, &what).await;
        nothing_before_sentinel(
            &store,
            &mut lagging_one,
            id("burst"),
            sentinel(&format!("round {round}")),
            &format!("{what}: more than the newest"),
        )
        .await;
        expect_change(
            &mut lagging,
            set_of("burst", sentinel(&format!("round {round}"))),
            "the sentinel, to the watcher of every id",
        )
        .await;
    }

    // A watcher with room for everything lost nothing.
    let mut expected = Vec::new();
    for (round, writes) in [(1u64, 100u64), (2, 20)] {
        expected.extend((0..writes).map(|n| set_of("burst", watched("burst", n))));
        expected.push(set_of(fence_id, watched("fence", round)));
        expected.push(set_of("burst", sentinel(&format!("round {round}"))));
    }
    expect_changes(
        &mut keeping_up,
        expected,
        "a watcher with the default buffer",
    )
    .await;
}

/// The stream is `Send + 'static`: it moves into a spawned task, which reads the changes
/// written here.
pub async fn changes_are_send_and_static<B: Backend + Clone>(backend: B) {
    fn send_static<T: Send + 'static>(value: T) -> T {
        value
    }
    let store = writable(&backend);
    let changes = send_static(store.watch::<Watched>().await.unwrap());
    let reader = tokio::spawn(async move {
        let mut changes = changes;
        let mut got = Vec::new();
        for n in 0..10 {
            got.push(
                next_change(
                    &mut changes,
                    &format!("in a spawned task: change {n} of 10"),
                )
                .await,
            );
        }
        got
    });
    let mut expected = Vec::new();
    for n in 0..10 {
        let value = watched("spawned", n);
        put(&store, &format!("id-{n}"), &value).await;
        expected.push(set_of(&format!("id-{n}"), value));
    }
    let mut got = reader.await.unwrap();
    // Ten ids, one change each: the contract orders the changes of one key, not of different
    // keys (on a Redis Cluster they come from different nodes).
    let order = |change: &Change<Watched>| format!("{change:?}");
    got.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(got, expected);
}

/// Watchers come and go independently: dropping one leaves the others their changes, and a
/// watcher made after the last one of its type was dropped hears every later change.
pub async fn watchers_come_and_go<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let first = store.watch::<Watched>().await.unwrap();
    let mut second = store.watch::<Watched>().await.unwrap();
    let first_one = store.watch_id::<Watched>(id("a")).await.unwrap();
    drop(first);
    drop(first_one);
    put(&store, "a", &watched("a", 1)).await;
    expect_change(
        &mut second,
        set_of("a", watched("a", 1)),
        "after another watcher was dropped",
    )
    .await;
    drop(second);
    for round in 0..3 {
        let mut again = store.watch::<Watched>().await.unwrap();
        let mut again_one = store.watch_id::<Watched>(id("a")).await.unwrap();
        put(&store, "a", &watched("again", round)).await;
        let what = format!("round {round}: watching again after the last watcher was dropped");
        expect_change(&mut again, set_of("a", watched("again", round)), &what).await;
        expect_change(&mut again_one, set_of("a", watched("again", round)), &what).await;
    }
}

/// Starts a watcher of `Watched`, writes `a` (`after watch`, `round`) and expects that write to
/// be the first change the watcher hears; `made` says when the watcher was made.
async fn first_heard_is_the_next_write<B: Backend>(store: &Store<B>, round: u64, made: &str) {
    let mut changes = store.watch::<Watched>().await.unwrap();
    put(store, "a", &watched("after watch", round)).await;
    expect_change(
        &mut changes,
        set_of("a", watched("after watch", round)),
        &format!("round {round}: the first change of a watcher made {made}"),
    )
    .await;
}

/// A watcher hears the changes stored after it started, never one stored before `watch` was
/// called (which, arriving after a read of the state, would take a reader back to an older
/// value): neither beside a watcher of the type that has changes still on their way (10 rounds
/// of 50 writes and a `set_many` of 400, more than a task's scheduling budget lets a stream
/// yield at once), nor when the last watcher of the type was dropped just before (50 rounds).
pub async fn watchers_hear_nothing_from_before_watch<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let busy = store.watch::<Watched>().await.unwrap();
    for round in 0..10 {
        for n in 0..50 {
            put(
                &store,
                &format!("busy-{n}"),
                &watched("before watch", round),
            )
            .await;
        }
        let burst: Vec<(String, Watched)> = (0..400)
            .map(|n| (format!("burst-{n}"), watched("before watch", round)))
            .collect();
        store.set_many::<Watched>(&burst).await.unwrap();
        first_heard_is_the_next_write(&store, round, "beside a busy one, after 450 writes").await;
    }
    drop(busy);

    for round in 0..50 {
        drop(store.watch::<Watched>().await.unwrap());
        put(&store, "a", &watched("before watch", round)).await;
        let made = "after the last one was dropped and a write";
        first_heard_is_the_next_write(&store, round, made).await;
    }
}
