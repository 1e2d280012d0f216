//! Change-feed checks: expiries.

use super::*;

/// A key that expires is announced as [`Change::Expired`], to watchers of the type and of the
/// id; a key removed or given the type's ttl again before its deadline is not, and an update
/// keeps the expiry it announces. Calls [`ChangeFeed::enable_expiry_events`](crate::backend::ChangeFeed::enable_expiry_events) first; allows the few
/// seconds an engine such as Redis takes to expire keys in the background.
pub async fn expiries_are_changes<B: Backend + Clone>(backend: B) {
    feed_of(&backend).enable_expiry_events().await.unwrap();
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store.watch_id::<Watched>(id("short")).await.unwrap();
    let short = Duration::from_millis(100);

    set_for(&store, "short", &watched("short", 1), short).await;
    set_for(&store, "removed", &watched("removed", 1), short).await;
    assert!(store.remove::<Watched>(id("removed")).await.unwrap());
    set_for(&store, "renewed", &watched("renewed", 1), short).await;
    put(&store, "renewed", &watched("renewed", 2)).await;
    set_for(&store, "updated", &watched("updated", 1), short * 3).await;
    store
        .update::<Watched>(id("updated"), |w| w.map(|w| watched("updated", w.step + 1)))
        .await
        .unwrap();
    expect_changes(
        &mut all,
        vec![
            set_of("short", watched("short", 1)),
            set_of("removed", watched("removed", 1)),
            removed_of("removed"),
            set_of("renewed", watched("renewed", 1)),
            set_of("renewed", watched("renewed", 2)),
            set_of("updated", watched("updated", 1)),
            set_of("updated", watched("updated", 2)),
        ],
        "writes before the deadlines",
    )
    .await;
    expect_change(
        &mut one,
        set_of("short", watched("short", 1)),
        "watch_id before the deadline",
    )
    .await;

    let mut expired = Vec::new();
    for n in 0..2 {
        match next_change(&mut all, &format!("expiry {n} of 2")).await {
            Change::Expired { id } => expired.push(id),
            other => panic!("expected the expiry of short or updated, got {other:?}"),
        }
    }
    expired.sort();
    assert_eq!(expired, vec![id("short"), id("updated")]);
    expect_change(
        &mut one,
        Change::Expired { id: id("short") },
        "watch_id: the expiry",
    )
    .await;
    assert!(!store.exists::<Watched>(id("short")).await.unwrap());

    // Past every deadline: the removed and the renewed key announced no expiry.
    tokio::time::sleep(short * 5).await;
    assert!(store.exists::<Watched>(id("renewed")).await.unwrap());
    nothing_before_sentinel(
        &store,
        &mut all,
        id("sentinel"),
        sentinel("expiries"),
        "a key removed, or given the type's ttl, before its deadline",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut one,
        id("short"),
        sentinel("expiries"),
        "watch_id after the expiry",
    )
    .await;
}

/// A rate limit's count is bookkeeping, not state: rate-limit checks of a notified type publish
/// no `Set`. Their keys still expire, and an expiry is announced for every key under a watched
/// type's prefix, whichever call wrote it (Redis's server announces every key that expires and
/// cannot tell who wrote it; the memory backend does the same): when the windows end, the
/// watchers get `Expired`. Calls [`ChangeFeed::enable_expiry_events`](crate::backend::ChangeFeed::enable_expiry_events) first.
pub async fn rate_limit_checks_publish_only_their_windows_expiry<B: Backend + Clone>(backend: B) {
    feed_of(&backend).enable_expiry_events().await.unwrap();
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut windows = store.watch::<WatchedWindow>().await.unwrap();
    let mut paces = store.watch::<WatchedPace>().await.unwrap();
    for _ in 0..2 {
        let window = store.check::<WatchedWindow>(id("client")).await.unwrap();
        assert!(window.allowed, "{window:?}");
        let pace = store.check::<WatchedPace>(id("client")).await.unwrap();
        assert!(pace.allowed, "{pace:?}");
    }
    // Nothing for the checks themselves: the next item is a write made after them.
    nothing_before_sentinel(
        &store,
        &mut windows,
        id("sentinel"),
        WatchedWindow(-1),
        "a fixed-window check",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut paces,
        id("sentinel"),
        WatchedPace(-1),
        "a smooth rate-limit check",
    )
    .await;
    // Both keys end within a second.
    expect_change(
        &mut windows,
        Change::Expired { id: id("client") },
        "the end of a fixed window",
    )
    .await;
    expect_change(
        &mut paces,
        Change::Expired { id: id("client") },
        "the end of a smooth rate limit's key",
    )
    .await;
}

/// Expiries reach the watchers of their namespace only, even where a namespace is named like
/// the type's prefix, so that its keys (`watched:watched:x`, `watched:session:1`) start with the
/// keys of the store without namespace (`watched:...`). Calls
/// [`ChangeFeed::enable_expiry_events`](crate::backend::ChangeFeed::enable_expiry_events) first.
pub async fn expiries_stay_in_their_namespace<B: Backend + Clone>(backend: B) {
    feed_of(&backend).enable_expiry_events().await.unwrap();
    let id = |s: &str| s.to_string();
    let plain = writable(&backend);
    let named = writable(&backend).namespace(Watched::PREFIX);
    let other = writable(&backend).namespace("feed-a");
    let mut plain_jobs = plain.watch::<Watched>().await.unwrap();
    let mut named_jobs = named.watch::<Watched>().await.unwrap();
    let mut other_jobs = other.watch::<Watched>().await.unwrap();
    let short = Duration::from_millis(100);

    set_for(&named, "x", &watched("named", 1), short).await;
    set_for(&named, 1, &session(1), short).await;
    set_for(&other, "x", &watched("other", 1), short).await;
    for (changes, name) in [
        (&mut named_jobs, "namespace `watched`"),
        (&mut other_jobs, "namespace `feed-a`"),
    ] {
        let status = if name.contains("feed-a") {
            "other"
        } else {
            "named"
        };
        expect_change(
            changes,
            set_of("x", watched(status, 1)),
            &format!("{name}: the write"),
        )
        .await;
        expect_change(
            changes,
            Change::Expired { id: id("x") },
            &format!("{name}: the expiry"),
        )
        .await;
    }
    // The Session has expired too, and had time to be announced.
    let deadline = tokio::time::Instant::now() + FEED_WAIT;
    while named.exists::<Session>(1).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Session did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(short * 3).await;

    nothing_before_sentinel(
        &named,
        &mut named_jobs,
        id("sentinel"),
        sentinel("expiries"),
        "the expiry of a Session in the namespace `watched`, and of a Watched in `feed-a`,",
    )
    .await;
    nothing_before_sentinel(
        &other,
        &mut other_jobs,
        id("sentinel"),
        sentinel("expiries"),
        "expiries in the namespace `watched`, seen from `feed-a`,",
    )
    .await;
    nothing_before_sentinel(
        &plain,
        &mut plain_jobs,
        id("sentinel"),
        sentinel("expiries"),
        "expiries in the namespaces `watched` and `feed-a`, seen from the store without namespace,",
    )
    .await;
}

/// [`Store::follow`] of a value that expires: the value, then `None` once it has expired, as
/// after a removal. Calls [`ChangeFeed::enable_expiry_events`](crate::backend::ChangeFeed::enable_expiry_events) first.
pub async fn follow_gives_none_after_an_expiry<B: Backend + Clone>(backend: B) {
    feed_of(&backend).enable_expiry_events().await.unwrap();
    let store = writable(&backend);
    let id = "followed-to-expiry".to_string();
    set_for(
        &store,
        &id,
        &watched("short", 1),
        Duration::from_millis(300),
    )
    .await;
    let mut follow = store.follow::<Watched>(id.clone()).await.unwrap();
    let mut next = async |what: &str| match tokio::time::timeout(FEED_WAIT, follow.next()).await {
        Ok(Some(value)) => value.unwrap_or_else(|e| panic!("{what}: {e}")),
        Ok(None) => panic!("{what}: the stream ended"),
        Err(_) => panic!("{what}: nothing arrived within {FEED_WAIT:?}"),
    };
    // (A slow engine may have expired it already: then the stream starts at `None`.)
    if next("the current value").await.is_some() {
        assert_eq!(next("the expiry").await, None);
    }
    assert!(!store.exists::<Watched>(id).await.unwrap());
}
