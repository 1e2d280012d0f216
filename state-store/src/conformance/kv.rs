//! Checks of single values: round trips, expiry, namespaces, ids, decode errors.

use super::*;

/// Checks: round trip.
pub async fn round_trip<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    assert_eq!(store.get::<Session>(42).await.unwrap(), None);
    assert!(!store.exists::<Session>(42).await.unwrap());

    store.set::<Session>(42, &session(1)).await.unwrap();
    assert_eq!(store.get::<Session>(&42).await.unwrap(), Some(session(1)));
    assert!(store.exists::<Session>(42).await.unwrap());
    assert_eq!(
        store.get::<Marker>(42).await.unwrap(),
        None,
        "prefixes are separate"
    );

    store.set::<Session>(42, &session(2)).await.unwrap();
    assert_eq!(
        store.get::<Session>(42).await.unwrap(),
        Some(session(2)),
        "set overwrites"
    );

    assert!(store.remove::<Session>(42).await.unwrap());
    assert!(
        !store.remove::<Session>(42).await.unwrap(),
        "second remove finds nothing"
    );
    assert_eq!(store.get::<Session>(42).await.unwrap(), None);
    assert!(!store.exists::<Session>(42).await.unwrap());
}

/// Checks: writes and removes are opt in.
pub async fn writes_and_removes_are_opt_in<B: Backend + Clone>(backend: B) {
    let read_only = Store::new(backend.clone());
    let err = read_only.set::<Session>(1, &session(1)).await.unwrap_err();
    assert_disabled(&err, "set");
    assert!(err.to_string().contains("enable_set"), "{err}");
    let err = read_only
        .set_with::<Session>(
            1,
            &session(1),
            crate::SetOptions::new().ttl(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert_disabled(&err, "set");
    assert!(
        !read_only.exists::<Session>(1).await.unwrap(),
        "nothing written"
    );

    let writer = Store::new(backend.clone()).enable_set();
    writer.set::<Session>(1, &session(1)).await.unwrap();
    let err = writer.remove::<Session>(1).await.unwrap_err();
    assert_disabled(&err, "remove");
    assert!(err.to_string().contains("enable_remove"), "{err}");
    assert_eq!(
        read_only.get::<Session>(1).await.unwrap(),
        Some(session(1)),
        "reads are on by default and the refused remove kept the value"
    );
}

/// Checks: set applies the type ttl.
pub async fn set_applies_the_type_ttl<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Session>(7, &session(7)).await.unwrap();
    let left = expiry_left::<Session>(&store, 7, "a session expires").await;
    assert!(
        left <= THIRTY_MINUTES && left > THIRTY_MINUTES - Duration::from_secs(5),
        "{left:?}"
    );

    let job_id = ("build".to_string(), 1);
    store
        .set::<Job>(
            &job_id,
            &Job {
                status: "queued".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.ttl::<Job>(&job_id).await.unwrap(),
        None,
        "no ttl: no expiry"
    );
    assert_eq!(
        store.ttl::<Session>(999).await.unwrap(),
        None,
        "missing key"
    );
}

/// Checks: set resets the expiry to the types.
pub async fn set_resets_the_expiry_to_the_types<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    // A type without ttl: a plain set clears an expiry set earlier.
    let job_id = ("deploy".to_string(), 2);
    let job = Job {
        status: "queued".into(),
    };
    set_for(&store, &job_id, &job, Duration::from_secs(60)).await;
    let left = expiry_left::<Job>(&store, &job_id, "expiry set").await;
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(55),
        "{left:?}"
    );
    store.set::<Job>(&job_id, &job).await.unwrap();
    assert_eq!(store.ttl::<Job>(&job_id).await.unwrap(), None);

    // A type with ttl: a plain set replaces a custom expiry with the type's.
    set_for(&store, 8, &session(8), Duration::from_secs(5)).await;
    assert!(store.ttl::<Session>(8).await.unwrap().unwrap() <= Duration::from_secs(5));
    store.set::<Session>(8, &session(8)).await.unwrap();
    assert!(store.ttl::<Session>(8).await.unwrap().unwrap() > Duration::from_secs(29 * 60));
}

/// Uses tokio's clock: real time on Redis, paused time on the memory backend.
pub async fn values_expire<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    set_for(&store, 5, &session(5), Duration::from_millis(150)).await;
    store.set::<Session>(6, &session(6)).await.unwrap();
    assert!(store.exists::<Session>(5).await.unwrap());
    let left = store.ttl::<Session>(5).await.unwrap().unwrap();
    assert!(left <= Duration::from_millis(150), "{left:?}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get::<Session>(5).await.unwrap(), None);
    assert!(!store.exists::<Session>(5).await.unwrap());
    assert_eq!(store.ttl::<Session>(5).await.unwrap(), None);
    assert!(
        !store.remove::<Session>(5).await.unwrap(),
        "an expired key is gone"
    );
    assert_eq!(
        store.get::<Session>(6).await.unwrap(),
        Some(session(6)),
        "others stay"
    );
}

/// Checks: namespaces separate services.
pub async fn namespaces_separate_services<B: Backend + Clone>(backend: B) {
    let plain = writable(&backend);
    let users = writable(&backend).namespace("user-service");
    let billing = writable(&backend).namespace("billing");
    plain.set::<Session>(1, &session(10)).await.unwrap();
    users.set::<Session>(1, &session(11)).await.unwrap();
    billing.set::<Session>(1, &session(12)).await.unwrap();
    assert_eq!(plain.get::<Session>(1).await.unwrap(), Some(session(10)));
    assert_eq!(users.get::<Session>(1).await.unwrap(), Some(session(11)));
    assert_eq!(billing.get::<Session>(1).await.unwrap(), Some(session(12)));
    assert_eq!(
        users.full_key::<Session>(1).unwrap(),
        "user-service:session:1"
    );
    assert_eq!(plain.full_key::<Session>(1).unwrap(), "session:1");
    assert!(users.remove::<Session>(1).await.unwrap());
    assert_eq!(billing.get::<Session>(1).await.unwrap(), Some(session(12)));
}

/// Checks: invalid namespaces touch nothing.
pub async fn invalid_namespaces_touch_nothing<B: Backend + Clone>(backend: B) {
    for bad in ["", "a:b", "svc*", "{svc}", "my svc", "sérvice"] {
        let store = writable(&backend).namespace(bad);
        let err = store.set::<Session>(1, &session(1)).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidNamespace { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("invalid namespace"), "{err}");
        assert!(matches!(
            store.get::<Session>(1).await.unwrap_err(),
            Error::InvalidNamespace { .. }
        ));
        assert!(matches!(
            store.remove::<Session>(1).await.unwrap_err(),
            Error::InvalidNamespace { .. }
        ));
        assert!(writable(&backend).try_namespace(bad).is_err());
        // Where a careless implementation would have written.
        assert!(!backend.exists(&format!("{bad}:session:1")).await.unwrap());
        assert!(!backend.exists("session:1").await.unwrap());
    }
}

/// Checks: ids are escaped and never collide.
pub async fn ids_are_escaped_and_never_collide<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let ids = [
        ("a:b".to_string(), 7),
        ("a%3Ab".to_string(), 7),
        ("a".to_string(), 7),
        (String::new(), 7),
        ("*".to_string(), 7),
        ("{tag} [x]?\\".to_string(), 7),
        ("ünïcødé 🦀".to_string(), 7),
        ("a".to_string(), 8),
    ];
    for (n, id) in ids.iter().enumerate() {
        let job = Job {
            status: format!("job-{n}"),
        };
        store.set::<Job>(id, &job).await.unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        let job = store.get::<Job>(id).await.unwrap().expect("stored");
        assert_eq!(job.status, format!("job-{n}"), "{id:?}");
    }
    assert_eq!(store.full_key::<Job>(&ids[0]).unwrap(), "job:a%3Ab:7");
    assert_eq!(store.full_key::<Job>(&ids[1]).unwrap(), "job:a%253Ab:7");
}

/// Checks: corrupt values are decode errors.
pub async fn corrupt_values_are_decode_errors<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    for (n, raw) in [
        &b"{not json"[..],
        br#"{"cart": "not a list", "updated_at": 1}"#,
        br#"[1, 2, 3]"#,
        b"\xff\xfe\x00garbage",
        b"",
    ]
    .into_iter()
    .enumerate()
    {
        let key = store.full_key::<Session>(n as u64).unwrap();
        backend
            .set(&key, raw.to_vec(), Session::TTL, None)
            .await
            .unwrap();
        let err = store.get::<Session>(n as u64).await.unwrap_err();
        let Error::Decode { key: reported, .. } = &err else {
            panic!("expected a decode error for {raw:?}, got {err:?}");
        };
        assert_eq!(reported, &format!("svc:session:{n}"));
        assert!(err.to_string().contains(&key), "{err}");
        assert_eq!(
            stored(&backend, &key).await.as_deref(),
            Some(raw),
            "value kept"
        );
    }
    // The store keeps working.
    store.set::<Session>(0, &session(0)).await.unwrap();
    assert_eq!(store.get::<Session>(0).await.unwrap(), Some(session(0)));
}

/// Checks: unencodable values write nothing.
pub async fn unencodable_values_write_nothing<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let value = Unencodable {
        by_pair: HashMap::from([((1, 2), 3)]),
    };
    let err = store.set::<Unencodable>(1, &value).await.unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    assert!(err.to_string().contains("unencodable:1"), "{err}");
    assert!(!store.exists::<Unencodable>(1).await.unwrap());
}

/// Many tasks share one store (and, on Redis, one connection) without mixing answers.
pub async fn concurrent_tasks_share_a_store<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20u64 {
                let id = task * 1000 + n;
                store.set::<Session>(id, &session(id as i64)).await.unwrap();
                assert_eq!(
                    store.get::<Session>(id).await.unwrap(),
                    Some(session(id as i64))
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for task in 0..64u64 {
        for n in 0..20u64 {
            assert!(store.exists::<Session>(task * 1000 + n).await.unwrap());
        }
    }
}

// ---- counters -------------------------------------------------------------------------------

/// Checks: the id of a type declared `id = String` can be given as a `&str`, escaped exactly as
/// the `String` is, in single-key calls and in `get_many`/`remove_many`.
pub async fn string_ids_can_be_given_as_str<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let tricky = "a:b *?[]{x}";
    let owned = tricky.to_string();
    assert_eq!(
        store.full_key::<Watched>(tricky).unwrap(),
        store.full_key::<Watched>(&owned).unwrap()
    );
    store
        .set::<Watched>(tricky, &watched("str", 1))
        .await
        .unwrap();
    assert_eq!(
        store.get::<Watched>(&owned).await.unwrap(),
        Some(watched("str", 1))
    );
    assert_eq!(
        store.get::<Watched>(tricky).await.unwrap(),
        Some(watched("str", 1))
    );
    assert_eq!(
        store
            .get_many::<Watched>(&[tricky, "missing"])
            .await
            .unwrap(),
        vec![Some(watched("str", 1)), None]
    );
    assert_eq!(
        store
            .remove_many::<Watched>(["missing", tricky])
            .await
            .unwrap(),
        1
    );
    assert!(!store.exists::<Watched>(owned).await.unwrap());
}
