//! Checks of previous shapes: values read converted, and `migrate`.

use super::*;

/// Reads of a type declared with `previous` (`get`, `get_many`, `get_and_touch`, the closures
/// of `update` and `remove_if`) return a value stored in the older shape converted, and do not
/// write it; `update` writes the current shape and keeps the key's expiry. A value in neither
/// shape is a decode error naming the key, with both shapes' messages.
pub async fn previous_shapes_are_read_converted<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    let raw = |id: u64| store.full_key::<Profile>(id).unwrap();
    let hour = Duration::from_secs(3600);
    for id in [1, 2, 3, 4] {
        let old = profile_v1(&format!("user-{id}"));
        backend.set(&raw(id), old, Some(hour), None).await.unwrap();
    }
    let current = Profile {
        names: vec!["new".into()],
        visits: 7,
    };
    store.set::<Profile>(5, &current).await.unwrap();

    assert_eq!(
        store.get::<Profile>(1).await.unwrap(),
        Some(profile_from_v1("user-1"))
    );
    assert_eq!(
        store.get_many::<Profile>([5, 1, 9, 2]).await.unwrap(),
        vec![
            Some(current.clone()),
            Some(profile_from_v1("user-1")),
            None,
            Some(profile_from_v1("user-2")),
        ]
    );
    assert_eq!(
        stored(&backend, &raw(1)).await,
        Some(profile_v1("user-1")),
        "reads do not write"
    );

    // `update` sees the converted value and writes the current shape, keeping the expiry.
    let before = expiry_left::<Profile>(&store, 2, "an expiry").await;
    let mut seen = None;
    let updated = store
        .update::<Profile>(2, |p| {
            seen = p.clone();
            p.map(|p| Profile {
                visits: p.visits + 1,
                ..p
            })
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(profile_from_v1("user-2")), "update's input");
    let expected = Profile {
        visits: 1,
        ..profile_from_v1("user-2")
    };
    assert_eq!(updated, Some(expected.clone()));
    assert_eq!(
        stored(&backend, &raw(2)).await,
        Some(serde_json::to_vec(&expected).unwrap()),
        "update writes the current shape"
    );
    let after = expiry_left::<Profile>(&store, 2, "still expires").await;
    assert!(
        after <= before,
        "update kept the expiry: {after:?} > {before:?}"
    );

    assert_eq!(
        store.get_and_touch::<Profile>(3).await.unwrap(),
        Some(profile_from_v1("user-3"))
    );
    let mut checked = None;
    let removed = store
        .remove_if::<Profile>(4, |p| {
            checked = Some(p.clone());
            false
        })
        .await;
    // The check runs on the value read before any compare-and-delete is tried, so this holds
    // on a backend without one too (it answers `Unsupported` only when a removal is due).
    assert!(!removed.unwrap());
    assert_eq!(
        checked,
        Some(profile_from_v1("user-4")),
        "remove_if's input"
    );

    // Neither shape: the key and both of serde's messages.
    backend
        .set(&raw(6), br#"{"title": 5}"#.to_vec(), None, None)
        .await
        .unwrap();
    let err = store.get::<Profile>(6).await.unwrap_err();
    let Error::Decode { key, .. } = &err else {
        panic!("expected a decode error, got {err:?}");
    };
    assert_eq!(key, "svc:profile:6");
    let message = err.to_string();
    for part in [
        "svc:profile:6",
        "missing field `names`",
        "`ProfileV1`",
        "missing field `name`",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    let err = store.get_many::<Profile>([1, 6]).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { key, .. } if key == "svc:profile:6"),
        "{err:?}"
    );
}

/// `migrate` rewrites exactly the values in the older shape, in the current one, each keeping
/// its expiry; it leaves current values byte for byte, reports undecodable values and foreign
/// keys without touching them, stays in its namespace, reports progress, needs `enable_set`,
/// and finds nothing to do the second time.
///
/// With [`per_key_expiry`](Capabilities::per_key_expiry), the values written raw have ten
/// minutes or no expiry, and each keeps its own; without, all have the type's ttl (the only
/// expiry such a backend gives). Without
/// [`keeps_remaining_expiry`](Capabilities::keeps_remaining_expiry), a rewrite may restart
/// the ttl ([`kept_expiry_restarts`]) but must keep an expiry.
pub async fn migrate_rewrites_older_values_and_only_those<B: Backend + Clone>(
    backend: B, capabilities: &Capabilities,
) {
    let store = writable(&backend).namespace("svc");
    let raw = |id: u64| store.full_key::<Profile>(id).unwrap();
    // `ttl` for a value given an expiry, `none` for one given none (where the backend can).
    let (ttl, none) = match Profile::TTL {
        Some(types) if !capabilities.per_key_expiry => (types, Some(types)),
        _ => (Duration::from_secs(600), None),
    };
    for id in 0..30u64 {
        let old = profile_v1(&format!("user-{id}"));
        let ttl = if id % 3 != 0 { Some(ttl) } else { none };
        backend.set(&raw(id), old, ttl, None).await.unwrap();
    }
    for id in 100..125u64 {
        let value = Profile {
            names: vec![format!("user-{id}")],
            visits: id,
        };
        store.set::<Profile>(id, &value).await.unwrap();
    }
    // Current, but not as this release would write it: left as it is.
    let spaced = br#"{ "visits": 1, "names": [] }"#.to_vec();
    backend
        .set(&raw(200), spaced.clone(), none, None)
        .await
        .unwrap();
    let undecodable = [(300, &b"{not json"[..]), (301, br#"{"title": 5}"#)];
    for (id, bytes) in undecodable {
        backend
            .set(&raw(id), bytes.to_vec(), none, None)
            .await
            .unwrap();
    }
    // Under the prefix but not a `Profile` id, in the older shape all the same.
    let foreign = "svc:profile:not-a-number";
    backend
        .set(foreign, profile_v1("x"), none, None)
        .await
        .unwrap();
    // Another namespace's older values are not this store's to migrate.
    let other = writable(&backend).namespace("other");
    let elsewhere = other.full_key::<Profile>(1).unwrap();
    backend
        .set(&elsewhere, profile_v1("x"), none, None)
        .await
        .unwrap();

    let read_only = Store::new(backend.clone()).namespace("svc");
    let err = read_only.migrate::<Profile>().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "migrate",
                enable: "enable_set"
            }
        ),
        "{err:?}"
    );

    let mut before = HashMap::new();
    for id in (0..30).chain(100..125).chain([200, 300, 301]) {
        let bytes = stored(&backend, &raw(id)).await.unwrap();
        before.insert(id, (bytes, store.ttl::<Profile>(id).await.unwrap()));
    }
    let mut calls = Vec::new();
    let options = crate::MigrateOptions::new()
        .batch(16)
        .on_progress(|so_far| calls.push(so_far.clone()));
    let report = store.migrate_with::<Profile>(options).await.unwrap();
    assert_eq!(
        (report.scanned, report.rewritten, report.current),
        (59, 30, 26),
        "{report:?}"
    );
    assert_eq!((report.undecodable, report.vanished), (3, 0), "{report:?}");
    let named: BTreeSet<&str> = report.undecodable_keys.iter().map(String::as_str).collect();
    let expected: BTreeSet<String> = [raw(300), raw(301), foreign.to_string()].into();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(named, expected);
    assert!(
        calls.len() >= 4,
        "progress after each batch of 16: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&report),
        "the last progress is the report"
    );
    assert!(
        calls.windows(2).all(|w| w[0].scanned < w[1].scanned),
        "{calls:?}"
    );

    for (id, (bytes, ttl_before)) in before {
        let now = stored(&backend, &raw(id)).await.unwrap();
        let ttl_now = store.ttl::<Profile>(id).await.unwrap();
        if id < 30 {
            let converted = profile_from_v1(&format!("user-{id}"));
            assert_eq!(
                now,
                serde_json::to_vec(&converted).unwrap(),
                "{id} rewritten"
            );
            match (ttl_before, ttl_now) {
                (Some(b), Some(n)) => assert!(
                    (n <= b || !capabilities.keeps_remaining_expiry) && n > ttl / 2,
                    "{id}: {n:?} vs {b:?}"
                ),
                (None, None) => {}
                other => panic!("{id}: the expiry changed: {other:?}"),
            }
        } else {
            assert_eq!(now, bytes, "{id} left byte for byte");
            assert_eq!(ttl_now.is_some(), ttl_before.is_some(), "{id}");
        }
    }
    assert_eq!(stored(&backend, foreign).await, Some(profile_v1("x")));
    assert_eq!(stored(&backend, &elsewhere).await, Some(profile_v1("x")));

    let again = store.migrate::<Profile>().await.unwrap();
    assert_eq!(
        (again.scanned, again.rewritten, again.current),
        (59, 0, 56),
        "{again:?}"
    );
    assert_eq!(again.undecodable, 3);
    assert!(
        again
            .to_string()
            .starts_with("59 scanned: 0 rewritten, 56 current"),
        "{again}"
    );

    // A type without `previous` rewrites nothing: an audit of what decodes.
    let audit = store.migrate::<Session>().await.unwrap();
    assert_eq!(audit, crate::MigrateReport::default());
}

/// Updates running while `migrate` rewrites the same keys lose nothing: the migration's
/// compare-and-set never overwrites a value written after it read, and every increment lands.
///
/// The race only happens on an engine whose calls wait: on the memory backend under a
/// current-thread runtime no call ever yields, so the migration runs to its end before the
/// updaters start, and this check only shows that both finish exactly. The race itself is
/// exercised on Redis (here and in `tests/migrate.rs`), on a Cluster, and on the
/// "Writing a backend" engine that yields before every call.
///
/// The migration scans every key, and a second one, once the updates have ended, finds every
/// key current. Without [`stable_listing`](Capabilities::stable_listing), the first may miss
/// keys that the updates rewrote while it listed them (never more than there are).
pub async fn migrate_loses_no_concurrent_update<B: Backend + Clone>(
    backend: B, capabilities: &Capabilities,
) {
    let store = writable(&backend);
    const KEYS: u64 = 24;
    const TASKS: u64 = 4;
    const ROUNDS: u64 = 10;
    for id in 0..KEYS {
        let key = store.full_key::<Profile>(id).unwrap();
        let old = profile_v1(&format!("user-{id}"));
        backend.set(&key, old, Profile::TTL, None).await.unwrap();
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for id in (0..KEYS).filter(|id| (id + round + task) % 2 == 0) {
                    store
                        .update::<Profile>(id, |p| {
                            p.map(|p| Profile {
                                visits: p.visits + 1,
                                ..p
                            })
                        })
                        .await
                        .unwrap();
                }
            }
        }));
    }
    let report = store
        .migrate_with::<Profile>(crate::MigrateOptions::new().batch(4))
        .await
        .unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    if capabilities.stable_listing {
        assert_eq!(report.scanned, KEYS, "{report:?}");
    } else {
        assert!(report.scanned <= KEYS, "{report:?}");
    }
    assert_eq!(
        report.rewritten + report.current,
        report.scanned,
        "{report:?}"
    );
    let again = store.migrate::<Profile>().await.unwrap();
    assert_eq!(
        (again.scanned, again.rewritten, again.current),
        (KEYS, 0, KEYS),
        "{again:?}"
    );
    let mut total = 0;
    for id in 0..KEYS {
        let key = store.full_key::<Profile>(id).unwrap();
        let bytes = stored(&backend, &key).await.unwrap();
        let profile: Profile = serde_json::from_slice(&bytes).expect("in the current shape");
        assert_eq!(profile.names, [format!("user-{id}")]);
        total += profile.visits;
    }
    assert_eq!(total, TASKS * ROUNDS * KEYS / 2, "no update lost");
}

/// A change-feed check: a value written in the older shape reaches watchers converted, and a
/// migration's rewrite is announced as a change (the stored bytes changed).
pub async fn previous_shapes_reach_watchers_converted<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    let channel = "svc:watched-profile";
    let mut changes = store.watch::<WatchedProfile>().await.unwrap();
    let key = store.full_key::<WatchedProfile>("a").unwrap();
    backend
        .set(&key, profile_v1("ann"), None, Some(channel))
        .await
        .unwrap();
    let converted = WatchedProfile::from(ProfileV1 { name: "ann".into() });
    let set = Change::Set {
        id: "a".to_string(),
        value: converted.clone(),
    };
    expect_change(&mut changes, set.clone(), "a write in the older shape").await;
    let report = store.migrate::<WatchedProfile>().await.unwrap();
    assert_eq!(report.rewritten, 1, "{report:?}");
    expect_change(&mut changes, set, "the migration's rewrite").await;
    assert_eq!(
        stored(&backend, &key).await,
        Some(serde_json::to_vec(&converted).unwrap())
    );
}
