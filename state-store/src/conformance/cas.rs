//! Checks of compare-and-set: `update`, `touch`, `remove_if`, `set_if_absent`.

use super::*;

/// Checks: update changes only what the closure accepts.
pub async fn update_changes_only_what_the_closure_accepts<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let claim = |current: Option<Task>| match current {
        Some(mut task) if task.status == "queued" => {
            task.status = "running".into();
            task.runs += 1;
            Some(task)
        }
        _ => None,
    };
    assert_eq!(
        store.update::<Task>(1, claim).await.unwrap(),
        None,
        "nothing to claim"
    );
    assert!(
        !store.exists::<Task>(1).await.unwrap(),
        "None creates nothing"
    );

    let queued = Task {
        status: "queued".into(),
        runs: 0,
    };
    assert!(store.set_if_absent::<Task>(1, &queued).await.unwrap());
    let running = Task {
        status: "running".into(),
        runs: 1,
    };
    assert_eq!(
        store.update::<Task>(1, claim).await.unwrap(),
        Some(running.clone())
    );
    // A second claim sees it running, leaves it, and returns what is stored.
    assert_eq!(
        store.update::<Task>(1, claim).await.unwrap(),
        Some(running.clone())
    );
    assert_eq!(store.get::<Task>(1).await.unwrap(), Some(running));

    // Creating through update gives the type's ttl.
    let created = store
        .update::<Task>(2, |current| {
            assert!(current.is_none());
            Some(Task {
                status: "new".into(),
                runs: 0,
            })
        })
        .await
        .unwrap();
    assert_eq!(created.unwrap().status, "new");
    let left = store.ttl::<Task>(2).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(3590), "{left:?}");

    let err = Store::new(backend.clone())
        .update::<Task>(3, |_| {
            Some(Task {
                status: "x".into(),
                runs: 0,
            })
        })
        .await
        .unwrap_err();
    assert_disabled(&err, "update");
    assert!(!store.exists::<Task>(3).await.unwrap());
}

/// Checks: `touch` and `get_and_touch` reset a key's expiry to its type's `ttl` from now (or
/// clear it, for a type without `ttl`) and leave the value as it is; a missing key stays
/// missing; both are writes.
pub async fn touch_slides_the_expiry<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let short = Duration::from_secs(60);
    set_for(&store, 1, &session(1), short).await;
    assert!(store.touch::<Session>(1).await.unwrap());
    let left = expiry_left::<Session>(&store, 1, "expires").await;
    assert!(left > short && left <= THIRTY_MINUTES, "touch: {left:?}");
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));

    set_for(&store, 2, &session(2), short).await;
    assert_eq!(
        store.get_and_touch::<Session>(2).await.unwrap(),
        Some(session(2))
    );
    let left = expiry_left::<Session>(&store, 2, "expires").await;
    assert!(
        left > short && left <= THIRTY_MINUTES,
        "get_and_touch: {left:?}"
    );

    assert!(!store.touch::<Session>(3).await.unwrap());
    assert_eq!(store.get_and_touch::<Session>(3).await.unwrap(), None);
    assert!(
        !store.exists::<Session>(3).await.unwrap(),
        "touch created a key"
    );

    // A type without `ttl`: touching clears an expiry given by `set_with_ttl`.
    set_for(&store, 1, &Marker(1), short).await;
    assert!(store.touch::<Marker>(1).await.unwrap());
    assert_eq!(store.ttl::<Marker>(1).await.unwrap(), None);
    set_for(&store, 2, &Marker(2), short).await;
    assert_eq!(
        store.get_and_touch::<Marker>(2).await.unwrap(),
        Some(Marker(2))
    );
    assert_eq!(store.ttl::<Marker>(2).await.unwrap(), None);

    let read_only = Store::new(backend.clone());
    assert!(matches!(
        read_only.touch::<Session>(1).await,
        Err(Error::Disabled { .. })
    ));
    assert!(matches!(
        read_only.get_and_touch::<Session>(1).await,
        Err(Error::Disabled { .. })
    ));
}

/// Checks: `update_and_touch` gives a value it replaces the type's `ttl` from now (where
/// `update` keeps the remaining expiry); a change the closure declines writes nothing and leaves
/// the expiry; a value it creates gets the type's `ttl`.
pub async fn update_and_touch_slides_the_expiry<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let short = Duration::from_secs(60);
    let bump = |s: Option<Session>| {
        s.map(|mut s| {
            s.updated_at += 1;
            s
        })
    };
    set_for(&store, 1, &session(1), short).await;
    store.update::<Session>(1, bump).await.unwrap();
    let left = expiry_left::<Session>(&store, 1, "expires").await;
    assert!(left <= short, "update: {left:?}");
    let now = store
        .update_with::<Session>(1, crate::UpdateOptions::new().refresh_ttl(), bump)
        .await
        .unwrap();
    assert!(now.is_written());
    assert_eq!(now.into_value().map(|s| s.updated_at), Some(3));
    let left = expiry_left::<Session>(&store, 1, "expires").await;
    assert!(
        left > short && left <= THIRTY_MINUTES,
        "update_and_touch: {left:?}"
    );

    set_for(&store, 2, &session(2), short).await;
    let now = store
        .update_with::<Session>(2, crate::UpdateOptions::new().refresh_ttl(), |_| None)
        .await
        .unwrap();
    assert_eq!(now, crate::Updated::Unchanged(Some(session(2))));
    let left = expiry_left::<Session>(&store, 2, "expires").await;
    assert!(
        left <= short,
        "a declined change extended the expiry: {left:?}"
    );

    store
        .update_with::<Session>(3, crate::UpdateOptions::new().refresh_ttl(), |_| {
            Some(session(3))
        })
        .await
        .unwrap();
    let left = expiry_left::<Session>(&store, 3, "expires").await;
    assert!(left > short && left <= THIRTY_MINUTES, "created: {left:?}");
}

/// Checks: `update_outcome` says whether the closure's value was written, without comparing
/// values; of many workers claiming one queued job at once, exactly one hears `Written`.
pub async fn update_outcome_says_what_happened<B: Backend + Clone>(backend: B) {
    use crate::Updated;
    let store = writable(&backend);
    let task = |status: &str, runs: u64| Task {
        status: status.into(),
        runs,
    };
    assert_eq!(
        store
            .update_with::<Task>(1, crate::UpdateOptions::new(), |_| None)
            .await
            .unwrap(),
        Updated::Unchanged(None)
    );
    assert!(
        !store.exists::<Task>(1).await.unwrap(),
        "declined, yet written"
    );
    assert_eq!(
        store
            .update_with::<Task>(1, crate::UpdateOptions::new(), |_| Some(task("queued", 0)))
            .await
            .unwrap(),
        Updated::Written(task("queued", 0))
    );
    assert_eq!(
        store
            .update_with::<Task>(1, crate::UpdateOptions::new(), |_| None)
            .await
            .unwrap(),
        Updated::Unchanged(Some(task("queued", 0)))
    );

    let claims: Vec<_> = (0..32u64)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update_with::<Task>(1, crate::UpdateOptions::new(), move |current| {
                        match current {
                            Some(t) if t.status == "queued" => Some(Task {
                                status: "running".into(),
                                runs: worker + 1,
                            }),
                            _ => None,
                        }
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for claim in claims {
        match claim.await.unwrap() {
            Updated::Written(t) => winners.push(t),
            Updated::Unchanged(current) => {
                assert_eq!(current.map(|t| t.status), Some("running".into()));
            }
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        store.get::<Task>(1).await.unwrap(),
        Some(winners[0].clone())
    );
}

/// Checks: `remove_if` removes a value only when the check accepts it, atomically: of many
/// tasks removing one finished job at once, exactly one hears `true`. It is a delete (needs
/// `enable_remove`). Needs a compare-and-delete ([`Capabilities::conditional_remove`]):
/// [`Error::Unsupported`] fails it; an engine without one runs [`remove_if_is_unsupported`].
pub async fn remove_if_removes_only_what_the_check_accepts<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let task = |status: &str| Task {
        status: status.into(),
        runs: 1,
    };
    store.set::<Task>(1, &task("done")).await.unwrap();
    match store.remove_if::<Task>(1, |t| t.status == "done").await {
        Err(err @ Error::Unsupported { .. }) => panic!(
            "remove_if: {err}, though the backend has a compare-and-delete \
             (`Capabilities::conditional_remove`)"
        ),
        other => assert!(other.unwrap(), "a finished task was not removed"),
    }
    assert!(!store.exists::<Task>(1).await.unwrap());
    assert!(
        !store.remove_if::<Task>(1, |_| true).await.unwrap(),
        "removed a value that does not exist"
    );
    store.set::<Task>(1, &task("running")).await.unwrap();
    assert!(
        !store
            .remove_if::<Task>(1, |t| t.status == "done")
            .await
            .unwrap()
    );
    assert_eq!(store.get::<Task>(1).await.unwrap(), Some(task("running")));

    store.set::<Task>(2, &task("done")).await.unwrap();
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .remove_if::<Task>(2, |t| t.status == "done")
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(winners(racers).await, 1);

    let no_remove = Store::new(backend.clone()).enable_set();
    no_remove.set::<Task>(3, &task("done")).await.unwrap();
    assert!(matches!(
        no_remove.remove_if::<Task>(3, |_| true).await,
        Err(Error::Disabled { .. })
    ));
    assert!(store.exists::<Task>(3).await.unwrap());
}

/// Checks: update keeps the remaining expiry.
pub async fn update_keeps_the_remaining_expiry<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let task = Task {
        status: "queued".into(),
        runs: 0,
    };
    set_for(&store, 1, &task, Duration::from_secs(10)).await;
    store.update::<Task>(1, |t| t.map(ran_again)).await.unwrap();
    let left = expiry_left::<Task>(&store, 1, "still expires").await;
    assert!(
        left <= Duration::from_secs(10),
        "update reset the ttl: {left:?}"
    );
    assert_eq!(store.get::<Task>(1).await.unwrap().unwrap().runs, 1);

    // A key without expiry stays without.
    store
        .set::<Job>(("j".to_string(), 1), &Job { status: "a".into() })
        .await
        .unwrap();
    store
        .update::<Job>(("j".to_string(), 1), |_| Some(Job { status: "b".into() }))
        .await
        .unwrap();
    assert_eq!(store.ttl::<Job>(("j".to_string(), 1)).await.unwrap(), None);
}

/// Checks: update of a corrupt value is a decode error.
pub async fn update_of_a_corrupt_value_is_a_decode_error<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    backend
        .set("task:9", b"{oops".to_vec(), None, None)
        .await
        .unwrap();
    let mut called = false;
    let err = store
        .update::<Task>(9, |_| {
            called = true;
            None
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref key, .. } if key == "task:9"),
        "{err:?}"
    );
    assert!(
        !called,
        "the closure never sees a value that did not decode"
    );
    assert_eq!(
        stored(&backend, "task:9").await.as_deref(),
        Some(&b"{oops"[..])
    );
}

/// 64 tasks each add 1 through `update` 50 times: the final count equals the successful
/// updates, so no update was lost.
pub async fn concurrent_updates_lose_nothing<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store
        .set::<Task>(
            5,
            &Task {
                status: "count".into(),
                runs: 0,
            },
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let (mut ok, mut conflicts) = (0u64, 0u64);
                for _ in 0..50 {
                    match store.update::<Task>(5, |t| t.map(ran_again)).await {
                        Ok(_) => ok += 1,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, conflicts)
            })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        let (o, c) = task.await.unwrap();
        ok += o;
        conflicts += c;
    }
    let runs = store.get::<Task>(5).await.unwrap().unwrap().runs;
    assert_eq!(runs, ok, "{conflicts} conflicts");
    assert_eq!(ok + conflicts, 64 * 50);
    assert!(ok > 0);
}

/// Checks: set if absent never overwrites.
pub async fn set_if_absent_never_overwrites<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    assert!(
        store
            .set_if_absent::<Session>(1, &session(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_if_absent::<Session>(1, &session(2))
            .await
            .unwrap()
    );
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));
    let left = store.ttl::<Session>(1).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(29 * 60), "{left:?}");
    let err = Store::new(backend.clone())
        .set_if_absent::<Session>(2, &session(2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disabled { .. }), "{err:?}");

    // Exactly one of many concurrent creators wins.
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .set_if_absent::<Session>(3, &session(n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
}

// ---- bulk -----------------------------------------------------------------------------------
