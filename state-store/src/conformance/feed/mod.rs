//! The change-feed checks, and the helpers they share.

use super::*;

mod expiry;
mod order;
mod publish;
mod watchers;

pub use expiry::*;
pub use order::*;
pub use publish::*;
pub use watchers::*;

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of the key, or of its `{hash tag}`,
/// modulo 16384), for checks whose keys must share one.
pub(crate) fn redis_cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// How long a feed check waits for the next item before it fails: a change that never comes
/// fails the check instead of hanging it. On a paused clock the wait passes at once when nothing
/// else is scheduled.
pub(crate) const FEED_WAIT: Duration = Duration::from_secs(5);

/// The next item of `changes`, or a panic naming `what` when none comes within [`FEED_WAIT`] or
/// the feed ends.
pub(crate) async fn next_item<S: StateKey>(
    changes: &mut Changes<S>, what: &str,
) -> crate::Result<Change<S>> {
    match tokio::time::timeout(FEED_WAIT, changes.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("{what}: the change feed ended"),
        Err(_) => panic!("{what}: no change arrived within {FEED_WAIT:?}"),
    }
}

/// The next event of `events`, a raw subscription ([`ChangeFeed::watch`]), which must not be an
/// error; a panic naming `what` when none comes within [`FEED_WAIT`] or the feed ends.
pub(crate) async fn next_event(
    events: &mut BoxStream<'static, crate::Result<Event>>, what: &str,
) -> Event {
    match tokio::time::timeout(FEED_WAIT, events.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("{what}: expected a change, got the error {e:?}"),
        Ok(None) => panic!("{what}: the change feed ended"),
        Err(_) => panic!("{what}: no change arrived within {FEED_WAIT:?}"),
    }
}

/// The next change of `changes`, which must not be an error.
pub(crate) async fn next_change<S>(changes: &mut Changes<S>, what: &str) -> Change<S>
where
    S: StateKey + fmt::Debug,
    S::Id: fmt::Debug,
{
    match next_item(changes, what).await {
        Ok(change) => change,
        Err(e) => panic!("{what}: expected a change, got the error {e:?}"),
    }
}

/// Reads the next change of `changes`, which must be `expected`.
pub(crate) async fn expect_change<S>(changes: &mut Changes<S>, expected: Change<S>, what: &str)
where
    S: StateKey + fmt::Debug + PartialEq,
    S::Id: fmt::Debug + PartialEq,
{
    match next_item(changes, what).await {
        Ok(change) => assert_eq!(change, expected, "{what}: another change came first"),
        Err(e) => panic!("{what}: expected {expected:?}, got the error {e:?}"),
    }
}

/// Reads `expected.len()` changes, which must be `expected` key by key: the changes of each id
/// in `expected`'s order (the contract orders the changes of one key, not of different keys).
pub(crate) async fn expect_changes<S>(
    changes: &mut Changes<S>, expected: Vec<Change<S>>, what: &str,
) where
    S: StateKey + fmt::Debug + PartialEq,
    S::Id: fmt::Debug + PartialEq,
{
    let mut got = Vec::with_capacity(expected.len());
    for n in 0..expected.len() {
        got.push(
            next_change(
                changes,
                &format!("{what} (change {n} of {})", expected.len()),
            )
            .await,
        );
    }
    let mut ids: Vec<&S::Id> = Vec::new();
    for change in &expected {
        if !ids.contains(&change.id()) {
            ids.push(change.id());
        }
    }
    for id in ids {
        let of = |list: &[Change<S>]| -> Vec<String> {
            list.iter()
                .filter(|c| c.id() == id)
                .map(|c| format!("{c:?}"))
                .collect()
        };
        assert_eq!(
            of(&got),
            of(&expected),
            "{what}: the changes of {id:?} differ; all that arrived: {got:?}"
        );
    }
}

/// Proves that `changes` holds nothing unread: writes `value` under `id` (a sentinel that the
/// checks write nowhere else) and asserts that the next change is that very write. `what` names
/// the writes that were to publish nothing.
pub(crate) async fn nothing_before_sentinel<B, S>(
    store: &Store<B>, changes: &mut Changes<S>, id: S::Id, value: S, what: &str,
) where
    B: Backend,
    S: crate::Notified + fmt::Debug + PartialEq + Clone,
    S::Id: fmt::Debug + PartialEq + Clone,
{
    store.set::<S>(&id, &value).await.unwrap();
    match next_item(changes, what).await {
        Ok(Change::Set { id: got, value: v }) if got == id && v == value => {}
        other => panic!("{what} published: {other:?} came before the sentinel write {value:?}"),
    }
}

/// The sentinel `Watched` for `what`: a status no other write of the checks stores.
pub(crate) fn sentinel(what: &str) -> Watched {
    watched(&format!("sentinel after {what}"), u64::MAX)
}

/// Stores `value` as the `Watched` of `id`, with the type's ttl.
pub(crate) async fn put<B: Backend>(store: &Store<B>, id: &str, value: &Watched) {
    store.set::<Watched>(id.to_string(), value).await.unwrap();
}

/// `Change::Set` of a `Watched`.
pub(crate) fn set_of(id: &str, value: Watched) -> Change<Watched> {
    Change::Set {
        id: id.to_string(),
        value,
    }
}

/// `Change::Removed` of a `Watched`.
pub(crate) fn removed_of(id: &str) -> Change<Watched> {
    Change::Removed { id: id.to_string() }
}

/// Writes `bytes`, which do not decode as `S`, under the key of `S`'s `id` straight to the
/// backend, without a channel (as an older or foreign writer would). For a backend without
/// [`announced_writes_only`](Capabilities::announced_writes_only), the next item of `changes`
/// must then be the decode error of that value.
pub(crate) async fn write_undecodable<B, S>(
    store: &Store<B>, changes: &mut Changes<S>, id: &str, bytes: &[u8], capabilities: &Capabilities,
) where
    B: Backend,
    S: StateKey<Id = String> + fmt::Debug,
{
    let key = store.full_key::<S>(id).unwrap();
    store
        .backend()
        .set(&key, bytes.to_vec(), S::TTL, None)
        .await
        .unwrap();
    if capabilities.announced_writes_only {
        return;
    }
    let what = format!("the write of an undecodable value under {key}, without a channel");
    match next_item(changes, &what).await {
        Err(Error::Decode { key: reported, .. }) => assert_eq!(reported, key, "{what}"),
        other => panic!("{what}: expected a decode error naming {key}, got {other:?}"),
    }
}

/// `writers` tasks, each setting its own id `writer-{w}` to steps 1 to `writes` and
/// incrementing the shared counter after each set.
pub(crate) fn spawn_writers<B: Backend>(
    store: &Store<B>, writers: u64, writes: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 1..=writes {
                    put(&store, &format!("writer-{w}"), &watched("write", n)).await;
                    store
                        .incr::<WatchedCount>("shared".to_string(), 1)
                        .await
                        .unwrap();
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod slot_tests {
    #[test]
    fn cluster_slots_match_redis() {
        // `CLUSTER KEYSLOT` of these keys on Redis 7.
        assert_eq!(super::redis_cluster_slot("foo"), 12182);
        assert_eq!(
            super::redis_cluster_slot("{user1000}.following"),
            super::redis_cluster_slot("user1000")
        );
        assert_eq!(super::redis_cluster_slot("123456789"), 12739);
    }
}
