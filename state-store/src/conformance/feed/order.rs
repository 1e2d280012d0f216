//! Change-feed checks: order and concurrency.

use super::*;

/// The changes of one key arrive in the order they were stored: 200 updates of one id, between
/// writes of another, reach a watcher of the type and a watcher of the id step by step.
pub async fn changes_of_one_id_arrive_in_order<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store.watch_id::<Watched>(id("ordered")).await.unwrap();

    put(&store, "ordered", &watched("step", 0)).await;
    let mut expected = vec![set_of("ordered", watched("step", 0))];
    let mut others = Vec::new();
    for n in 1..=200u64 {
        store
            .update::<Watched>(id("ordered"), |w| w.map(|w| watched("step", w.step + 1)))
            .await
            .unwrap();
        expected.push(set_of("ordered", watched("step", n)));
        if n % 10 == 0 {
            put(&store, "other", &watched("other", n)).await;
            others.push(set_of("other", watched("other", n)));
        }
    }
    assert!(store.remove::<Watched>(id("ordered")).await.unwrap());
    expected.push(removed_of("ordered"));

    for (n, change) in expected.iter().enumerate() {
        expect_change(
            &mut one,
            change.clone(),
            &format!("watch_id: change {n} of {}", expected.len()),
        )
        .await;
    }
    let mut both = expected;
    both.extend(others);
    expect_changes(&mut all, both, "watch(): 200 updates between other writes").await;
    nothing_before_sentinel(
        &store,
        &mut all,
        id("sentinel"),
        sentinel("200 updates"),
        "the writes above, beyond their own changes,",
    )
    .await;
}

/// Writers in several tasks at once: a watcher gets every change exactly once, each id's in
/// order. 8 tasks set their own id 25 times and increment one shared counter 25 times (so the
/// counts 1 to 200 arrive once each, in order), while 4 more race to `update` one key (every
/// successful update announces its value, in order, and failed attempts nothing).
pub async fn concurrent_writers_deliver_every_change<B: Backend + Clone>(backend: B) {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 25;
    const UPDATERS: u64 = 4;
    const UPDATES: u64 = 20;
    let store = writable(&backend);
    let mut jobs = store.watch::<Watched>().await.unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    put(&store, "contended", &watched("race", 0)).await;

    let writers = spawn_writers(&store, WRITERS, WRITES);
    let updaters: Vec<_> = (0..UPDATERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                for _ in 0..UPDATES {
                    match store
                        .update::<Watched>("contended".to_string(), |w| {
                            w.map(|w| watched("race", w.step + 1))
                        })
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                ok
            })
        })
        .collect();
    for task in writers {
        task.await.unwrap();
    }
    let mut updated = 0;
    for task in updaters {
        updated += task.await.unwrap();
    }
    assert!(updated > 0);

    let total = WRITERS * WRITES + 1 + updated;
    let mut next_step: HashMap<String, u64> = HashMap::new();
    next_step.insert("contended".into(), 0);
    for n in 0..total {
        let what = format!("change {n} of {total} from concurrent writers");
        let Change::Set { id, value } = next_change(&mut jobs, &what).await else {
            panic!("{what}: only sets were written");
        };
        let expected = next_step
            .entry(id.clone())
            .or_insert(if id == "contended" { 0 } else { 1 });
        assert_eq!(
            value.step, *expected,
            "{what}: {id} out of order or duplicated"
        );
        *expected += 1;
    }
    for w in 0..WRITERS {
        assert_eq!(
            next_step.get(&format!("writer-{w}")),
            Some(&(WRITES + 1)),
            "writer-{w}: {next_step:?}"
        );
    }
    assert_eq!(
        next_step["contended"],
        updated + 1,
        "one change per successful update"
    );
    for count in 1..=(WRITERS * WRITES) as i64 {
        expect_change(
            &mut counts,
            Change::Set {
                id: "shared".to_string(),
                value: WatchedCount(count),
            },
            &format!("concurrent increments: count {count}"),
        )
        .await;
    }
    nothing_before_sentinel(
        &store,
        &mut jobs,
        "sentinel".to_string(),
        sentinel("concurrent writes"),
        "concurrent writes, beyond their own changes,",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut counts,
        "sentinel".to_string(),
        WatchedCount(-1),
        "concurrent increments, beyond their own changes,",
    )
    .await;
}

/// [`Store::follow`]: the current value first, then the value after each change (`None` after a
/// removal); and, with writes racing the call, values never go back and the last one always
/// arrives, however many changes the engine coalesced.
pub async fn follow_gives_the_value_then_its_changes<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    put(&store, "followed", &watched("queued", 1)).await;
    let mut follow = store
        .follow::<Watched>("followed".to_string())
        .await
        .unwrap();
    let mut next = async |what: &str| match tokio::time::timeout(FEED_WAIT, follow.next()).await {
        Ok(Some(value)) => value.unwrap_or_else(|e| panic!("{what}: {e}")),
        Ok(None) => panic!("{what}: the stream ended"),
        Err(_) => panic!("{what}: nothing arrived within {FEED_WAIT:?}"),
    };
    assert_eq!(next("the current value").await, Some(watched("queued", 1)));
    put(&store, "followed", &watched("running", 2)).await;
    assert_eq!(next("a set").await, Some(watched("running", 2)));
    store
        .remove::<Watched>("followed".to_string())
        .await
        .unwrap();
    assert_eq!(next("a removal").await, None);

    // Many rounds, each follow starting while a writer sets increasing steps: the follower
    // sees the last step, its steps never go back, and no value comes twice in a row.
    for round in 0..40 {
        let id = format!("raced-{round}");
        let writer = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                for step in 1..=20 {
                    put(&store, &id, &watched("step", step)).await;
                }
            })
        };
        let mut follow = store.follow::<Watched>(id).await.unwrap();
        let mut seen: Vec<u64> = Vec::new();
        while seen.last() != Some(&20) {
            let value = match tokio::time::timeout(FEED_WAIT, follow.next()).await {
                Ok(Some(value)) => value.unwrap(),
                other => panic!("round {round}: {seen:?} arrived, then {other:?}"),
            };
            let step = value.map_or(0, |v| v.step);
            assert!(
                seen.last().is_none_or(|&last| step > last),
                "round {round}: step {step} after {seen:?}"
            );
            seen.push(step);
        }
        writer.await.unwrap();
    }
}
