//! Checks of listings: `ids` and `usage`.

use super::*;

pub(crate) async fn collect_ids<B: Backend, S: StateKey>(
    store: &Store<B>,
) -> (Vec<S::Id>, Vec<Error>)
where
    S::Id: Ord,
{
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    let mut stream = std::pin::pin!(store.ids::<S>());
    while let Some(item) = stream.next().await {
        match item {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(e),
        }
    }
    ids.sort();
    (ids, errors)
}

/// Checks: ids lists the type in its namespace.
pub async fn ids_lists_the_type_in_its_namespace<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    for n in [3u64, 1, 2, 1_000_000] {
        store.set::<Session>(n, &session(0)).await.unwrap();
    }
    store.set::<Marker>(9, &Marker(9)).await.unwrap();
    writable(&backend)
        .set::<Session>(8, &session(0))
        .await
        .unwrap();
    writable(&backend)
        .namespace("other")
        .set::<Session>(7, &session(0))
        .await
        .unwrap();

    let (ids, errors) = collect_ids::<B, Session>(&store).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, vec![1, 2, 3, 1_000_000]);

    let nasty: BTreeSet<(String, u32)> = [
        ("a:b", 1),
        ("*", 2),
        ("[x]?", 3),
        ("{tag}", 4),
        ("", 5),
        ("100%", 6),
        ("back\\slash", 7),
        ("ünï 🦀", 8),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect();
    for id in &nasty {
        store
            .set::<Job>(id, &Job { status: "x".into() })
            .await
            .unwrap();
    }
    let (ids, errors) = collect_ids::<B, Job>(&store).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, nasty.into_iter().collect::<Vec<_>>());
}

/// Checks: ids report foreign keys and go on.
pub async fn ids_report_foreign_keys_and_go_on<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Session>(1, &session(0)).await.unwrap();
    store.set::<Session>(2, &session(0)).await.unwrap();
    for foreign in ["session:abc", "session:1:2", "session:007", "session:"] {
        backend
            .set(foreign, b"{}".to_vec(), Session::TTL, None)
            .await
            .unwrap();
    }
    let (ids, errors) = collect_ids::<B, Session>(&store).await;
    assert_eq!(ids, vec![1, 2]);
    let mut bad: Vec<String> = errors
        .into_iter()
        .map(|e| match e {
            Error::InvalidKey { key, .. } => key,
            other => panic!("{other:?}"),
        })
        .collect();
    bad.sort();
    assert_eq!(
        bad,
        vec!["session:", "session:007", "session:1:2", "session:abc"]
    );

    let invalid = writable(&backend).namespace("bad ns");
    let (ids, errors) = collect_ids::<B, Session>(&invalid).await;
    assert!(ids.is_empty());
    assert!(
        matches!(errors.as_slice(), [Error::InvalidNamespace { .. }]),
        "{errors:?}"
    );
}

/// Checks: ids walk large key spaces.
pub async fn ids_walk_large_key_spaces<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let items: Vec<(u64, Marker)> = (0..2_500).map(|n| (n, Marker(n))).collect();
    store.set_many::<Marker>(&items).await.unwrap();
    store
        .set_many::<Session>((0..500u64).map(|n| (n, session(0))))
        .await
        .unwrap();
    let (ids, errors) = collect_ids::<B, Marker>(&store).await;
    assert!(errors.is_empty());
    assert_eq!(ids, (0..2_500).collect::<Vec<u64>>());
}

/// Checks: [`Store::usage`] counts the keys of its namespace per prefix, exactly, with and
/// without expiry, and nothing of other namespaces; it reads only, and reports progress.
pub async fn usage_counts_the_namespace_per_prefix<B: Backend + Clone>(backend: B) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let store = writable(&backend).namespace("usage");
    store
        .set_many::<Session>((0..300u64).map(|n| (n, session(n as i64))))
        .await
        .unwrap();
    let job = Job {
        status: "queued".into(),
    };
    let jobs: Vec<((String, u32), Job)> = (0..120u32)
        .map(|n| (("a:b*[c]".to_string(), n), job.clone()))
        .collect();
    store.set_many::<Job>(&jobs).await.unwrap();
    // A key of the namespace written by another client, without a prefix.
    backend
        .set("usage:loose", b"x".to_vec(), None, None)
        .await
        .unwrap();
    // Other namespaces, one of them sharing the start of the name, and none.
    let other = writable(&backend).namespace("usage2");
    other.set::<Session>(1, &session(1)).await.unwrap();
    writable(&backend)
        .set::<Session>(1, &session(1))
        .await
        .unwrap();

    let reports = Arc::new(AtomicU64::new(0));
    let options = crate::UsageOptions::new()
        .scan_count(100)
        .sample(50)
        .on_progress({
            let reports = reports.clone();
            move |_| {
                reports.fetch_add(1, Ordering::Relaxed);
            }
        });
    // A read: a store without `enable_set` may ask.
    let reader = Store::new(backend.clone()).namespace("usage");
    let usage = reader.usage_with(options).await.unwrap();
    assert!(usage.complete, "{usage:?}");
    assert!(reports.load(Ordering::Relaxed) >= 1, "progress reported");
    assert_eq!((usage.keys, usage.without_expiry), (421, 121), "{usage:?}");
    assert_eq!(usage.prefixes.len(), 3, "{usage:?}");

    let sessions = usage.prefix("session").expect("a row for sessions");
    assert_eq!((sessions.keys, sessions.without_expiry), (300, 0));
    assert!((50..=300).contains(&sessions.sampled), "{sessions:?}");
    assert!(sessions.estimated_bytes > 0, "{sessions:?}");
    let ttl = sessions.ttl.expect("sessions expire");
    assert!(
        ttl.min > Duration::from_secs(29 * 60) && ttl.max <= Duration::from_secs(30 * 60),
        "{ttl:?}"
    );
    let jobs = usage.prefix("job").expect("a row for jobs");
    assert_eq!((jobs.keys, jobs.without_expiry, jobs.ttl), (120, 120, None));
    let loose = usage
        .prefix(crate::PrefixUsage::NO_PREFIX)
        .expect("a row for keys without prefix");
    assert_eq!((loose.keys, loose.without_expiry), (1, 1));
}

// ---- size limits ----------------------------------------------------------------------------
