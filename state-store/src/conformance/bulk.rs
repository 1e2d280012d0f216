//! Checks of the bulk calls: `get_many`, `set_many`, `remove_many`.

use super::*;

/// Checks: bulk reads and writes.
pub async fn bulk_reads_and_writes<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("bulk");
    let items: Vec<(u64, Session)> = (0..10).map(|n| (n, session(n as i64))).collect();
    store.set_many::<Session>(&items).await.unwrap();
    store
        .set_many::<Session>(vec![(100u64, session(100))])
        .await
        .unwrap();
    store
        .set_many::<Session>(Vec::<(u64, Session)>::new())
        .await
        .unwrap();

    let ids = vec![9u64, 50, 0, 100, 9];
    let got = store.get_many::<Session>(&ids).await.unwrap();
    assert_eq!(
        got,
        vec![
            Some(session(9)),
            None,
            Some(session(0)),
            Some(session(100)),
            Some(session(9))
        ]
    );
    assert!(
        store
            .get_many::<Session>(Vec::<u64>::new())
            .await
            .unwrap()
            .is_empty()
    );
    let left = store.ttl::<Session>(3).await.unwrap().unwrap();
    assert!(
        left > Duration::from_secs(29 * 60),
        "each key has the type's ttl: {left:?}"
    );

    assert_eq!(
        store
            .remove_many::<Session>([0u64, 1, 2, 50])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .remove_many::<Session>(Vec::<u64>::new())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.get_many::<Session>([0u64, 3]).await.unwrap(),
        vec![None, Some(session(3))]
    );

    let read_only = Store::new(backend.clone()).namespace("bulk");
    assert_disabled(
        &read_only.set_many::<Session>(&items).await.unwrap_err(),
        "set_many",
    );
    assert_disabled(
        &read_only.remove_many::<Session>([3u64]).await.unwrap_err(),
        "remove_many",
    );
    assert!(read_only.exists::<Session>(3).await.unwrap());
}

/// Checks: bulk errors name the key.
pub async fn bulk_errors_name_the_key<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Session>(1, &session(1)).await.unwrap();
    backend
        .set("session:2", b"not json".to_vec(), Session::TTL, None)
        .await
        .unwrap();
    let err = store.get_many::<Session>([1u64, 2]).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref key, .. } if key == "session:2"),
        "{err:?}"
    );

    // One value that cannot be encoded: nothing is written.
    let items = vec![
        (
            1u8,
            Unencodable {
                by_pair: HashMap::new(),
            },
        ),
        (
            2u8,
            Unencodable {
                by_pair: HashMap::from([((1, 1), 1)]),
            },
        ),
    ];
    let err = store.set_many::<Unencodable>(&items).await.unwrap_err();
    assert!(
        matches!(err, Error::Encode { ref key, .. } if key == "unencodable:2"),
        "{err:?}"
    );
    assert!(!store.exists::<Unencodable>(1).await.unwrap());
}

// ---- listing ids ----------------------------------------------------------------------------
