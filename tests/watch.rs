//! The typed change feed (`Store::watch`, `Store::watch_id`) against real `redis-server`
//! processes that the tests start themselves: what reaches a watcher, on which channel, over how
//! many connections, and what a watcher is told when the server restarts, when it falls behind,
//! when a message on its channel is not a change, and when the server refuses `CONFIG` or
//! the keyspace-event channel.
#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::{Change, Changes, Error, RedisBackend, SetOptions, StateKey, Store};
use support::RedisServer;

/// A notified type with a string id and the type's own ttl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = String, ttl = "7d", notify)]
struct Job {
    status: String,
}

/// A second notified type in the same namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "task", id = u32, notify)]
struct Task {
    step: u32,
}

/// A notified counter: `incr` announces the new count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "hits", id = String, counter, notify)]
struct Hits(i64);

/// Not notified: its writes must publish nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "note", id = String, ttl = "1h")]
struct Note {
    text: String,
}

/// `Job` without `notify`: the notified writes (scripts) must treat expiry as the plain ones do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "plain-job", id = String, ttl = "7d")]
struct PlainJob {
    status: String,
}

/// A notified counter whose window is its ttl.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "window", id = String, ttl = "1m", counter, notify)]
struct Window(i64);

/// `Window` without `notify`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "plain-window", id = String, ttl = "1m", counter)]
struct PlainWindow(i64);

/// A counter that is not notified.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "count", id = String, counter)]
struct Count(i64);

const NS: &str = "user-service";
const JOB_CHANNEL: &str = "user-service:job";
const EXPIRED_CHANNEL: &str = "__keyevent@0__:expired";
/// How long any one item may take to arrive.
const ITEM: Duration = Duration::from_secs(5);

fn job(status: &str) -> Job {
    Job {
        status: status.into(),
    }
}

fn set(id: &str, status: &str) -> Change<Job> {
    Change::Set {
        id: id.into(),
        value: job(status),
    }
}

fn removed(id: &str) -> Change<Job> {
    Change::Removed { id: id.into() }
}

async fn store_at(url: &str) -> Store<RedisBackend> {
    let backend = RedisBackend::connect(url).await.unwrap();
    Store::new(backend)
        .namespace(NS)
        .enable_set()
        .enable_remove()
}

/// The next item, which must come within [`ITEM`]; the stream must not end.
async fn next_item<S: StateKey>(changes: &mut Changes<S>) -> state_store::Result<Change<S>> {
    match tokio::time::timeout(ITEM, changes.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the change feed ended"),
        Err(_) => panic!("no item within {ITEM:?}"),
    }
}

/// The next item, which must be a change.
async fn next_change<S>(changes: &mut Changes<S>) -> Change<S>
where
    S: StateKey + std::fmt::Debug,
{
    next_item(changes)
        .await
        .unwrap_or_else(|e| panic!("expected a change, got the error {e:?}"))
}

/// Asserts that no item arrives within `wait` (only where absence is the claim).
async fn assert_quiet<S>(changes: &mut Changes<S>, wait: Duration, what: &str)
where
    S: StateKey + std::fmt::Debug,
    S::Id: std::fmt::Debug,
{
    if let Ok(item) = tokio::time::timeout(wait, changes.next()).await {
        panic!("{what}: expected nothing within {wait:?}, got {item:?}");
    }
}

/// Polls `condition` every 20 ms until it holds, failing after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pubsub_channels(raw: &mut redis::Connection) -> BTreeSet<String> {
    redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("*")
        .query(raw)
        .unwrap()
}

fn pubsub_numpat(raw: &mut redis::Connection) -> i64 {
    redis::cmd("PUBSUB").arg("NUMPAT").query(raw).unwrap()
}

fn pubsub_numsub(raw: &mut redis::Connection, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(raw)
        .unwrap();
    count
}

/// `CLIENT LIST` lines of the connections subscribed to at least one channel, as the number of
/// channels of each (sorted).
fn subscriber_connections(raw: &mut redis::Connection) -> Vec<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(raw).unwrap();
    let mut subs: Vec<u64> = list
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("sub="))
                .map(|n| n.parse::<u64>().unwrap())
        })
        .filter(|&n| n > 0)
        .collect();
    subs.sort_unstable();
    subs
}

fn config_resetstat(raw: &mut redis::Connection) {
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query(raw).unwrap();
}

fn commandstats(raw: &mut redis::Connection) -> String {
    redis::cmd("INFO").arg("commandstats").query(raw).unwrap()
}

/// A field of `cmdstat_{command}` in `INFO commandstats` (`calls`, `rejected_calls`, ...); `None`
/// when the command has not run since the last `CONFIG RESETSTAT`.
fn command_stat(stats: &str, command: &str, field: &str) -> Option<u64> {
    let line = stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))?;
    let value = line
        .split(',')
        .find_map(|pair| pair.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    Some(value.parse().unwrap())
}

/// A server where `CONFIG` does not exist (as on many managed services): every write method of
/// a notified type is delivered, because the scripts publish; only `enable_expiry_events`
/// fails, with an error that says what to configure instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_config_every_write_method_is_delivered() {
    let server = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let mut raw = server.raw();
    let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut raw);
    assert!(config.is_err(), "CONFIG is still there: {config:?}");

    let store = store_at(&server.url()).await;
    let mut jobs = store.watch::<Job>().await.unwrap();
    let mut hits = store.watch::<Hits>().await.unwrap();

    store
        .set::<Job>("1".to_string(), &job("queued"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut jobs).await, set("1", "queued"));

    assert!(
        store
            .set_if_absent::<Job>("2".to_string(), &job("new"))
            .await
            .unwrap()
    );
    assert_eq!(next_change(&mut jobs).await, set("2", "new"));
    // A losing set_if_absent wrote nothing and announces nothing (checked by what comes next).
    assert!(
        !store
            .set_if_absent::<Job>("2".to_string(), &job("lost"))
            .await
            .unwrap()
    );

    let updated = store
        .update::<Job>("1".to_string(), |current| current.map(|_| job("running")))
        .await
        .unwrap();
    assert_eq!(updated, Some(job("running")));
    assert_eq!(next_change(&mut jobs).await, set("1", "running"));
    // An update that declines writes nothing and announces nothing.
    store
        .update::<Job>("1".to_string(), |_| None)
        .await
        .unwrap();
    // An update that creates the key.
    store
        .update::<Job>("3".to_string(), |current| {
            assert_eq!(current, None);
            Some(job("created"))
        })
        .await
        .unwrap();
    assert_eq!(next_change(&mut jobs).await, set("3", "created"));

    store
        .set_with::<Job>(
            "4".to_string(),
            &job("brief"),
            SetOptions::new().ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(next_change(&mut jobs).await, set("4", "brief"));

    let batch = [
        ("5".to_string(), job("five")),
        ("6".to_string(), job("six")),
    ];
    store.set_many::<Job>(&batch).await.unwrap();
    assert_eq!(next_change(&mut jobs).await, set("5", "five"));
    assert_eq!(next_change(&mut jobs).await, set("6", "six"));

    assert!(store.remove::<Job>("1".to_string()).await.unwrap());
    assert_eq!(next_change(&mut jobs).await, removed("1"));
    // Removing a missing key announces nothing.
    assert!(!store.remove::<Job>("1".to_string()).await.unwrap());

    let gone = store
        .remove_many::<Job>(["2", "missing", "3"].map(String::from))
        .await
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(next_change(&mut jobs).await, removed("2"));
    assert_eq!(next_change(&mut jobs).await, removed("3"));

    // Nothing was announced for the writes that did not happen: the next item is this one.
    store
        .set::<Job>("end".to_string(), &job("end"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut jobs).await, set("end", "end"));

    assert_eq!(store.incr::<Hits>("h".to_string(), 5).await.unwrap(), 5);
    assert_eq!(store.incr::<Hits>("h".to_string(), -2).await.unwrap(), 3);
    for count in [5, 3] {
        assert_eq!(
            next_change(&mut hits).await,
            Change::Set {
                id: "h".into(),
                value: Hits(count)
            }
        );
    }
    // The counter's changes went to its own channel only.
    assert_quiet(&mut jobs, Duration::from_millis(200), "the job watcher").await;

    let refused = store.backend().enable_expiry_events().await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Backend {
                operation: "enable_expiry_events",
                ..
            }
        ),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(message.contains("notify-keyspace-events"), "{message}");
    assert!(message.contains("CONFIG"), "{message}");
}

/// Channels are `{namespace}:{prefix}`: namespaces and types do not hear each other, with one
/// backend per store as with one backend shared by both stores (and expiries, which all arrive
/// on one server channel, are routed by key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_types_are_isolated() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let open = |namespace: &'static str, backend: RedisBackend| {
        Store::new(backend)
            .namespace(namespace)
            .enable_set()
            .enable_remove()
    };
    let a = open("a", RedisBackend::connect(&server.url()).await.unwrap());
    let b = open("b", RedisBackend::connect(&server.url()).await.unwrap());
    let shared = RedisBackend::connect(&server.url()).await.unwrap();
    let shared_a = open("a", shared.clone());
    let shared_b = open("b", shared);
    a.backend().enable_expiry_events().await.unwrap();

    let mut a_jobs = a.watch::<Job>().await.unwrap();
    let mut a_tasks = a.watch::<Task>().await.unwrap();
    let mut b_jobs = b.watch::<Job>().await.unwrap();
    let mut shared_a_jobs = shared_a.watch::<Job>().await.unwrap();
    let mut shared_b_jobs = shared_b.watch::<Job>().await.unwrap();

    let channels = pubsub_channels(&mut raw);
    let expected: BTreeSet<String> = ["a:job", "a:task", "b:job", EXPIRED_CHANNEL]
        .map(String::from)
        .into();
    assert_eq!(channels, expected);
    assert_eq!(pubsub_numsub(&mut raw, "a:job"), 2);
    assert_eq!(pubsub_numsub(&mut raw, "b:job"), 2);
    assert_eq!(pubsub_numsub(&mut raw, "a:task"), 1);
    // One connection per backend: a's (a:job, a:task, expired), b's (b:job, expired), and the
    // shared one (a:job, b:job, expired).
    assert_eq!(subscriber_connections(&mut raw), [2, 3, 3]);

    a.set::<Job>("1".to_string(), &job("a1")).await.unwrap();
    b.set::<Job>("1".to_string(), &job("b1")).await.unwrap();
    a.set::<Task>(1, &Task { step: 1 }).await.unwrap();
    shared_b
        .set::<Job>("2".to_string(), &job("b2"))
        .await
        .unwrap();
    a.set_with::<Job>(
        "brief".to_string(),
        &job("a-brief"),
        SetOptions::new().ttl(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    for watcher in [&mut a_jobs, &mut shared_a_jobs] {
        assert_eq!(next_change(watcher).await, set("1", "a1"));
        assert_eq!(next_change(watcher).await, set("brief", "a-brief"));
        assert_eq!(
            next_change(watcher).await,
            Change::Expired { id: "brief".into() }
        );
    }
    // Written after a's watchers heard of the expiry, so anything b's watchers were (wrongly)
    // sent about a's keys would come before these.
    a.set::<Job>("end".to_string(), &job("a-end"))
        .await
        .unwrap();
    b.set::<Job>("end".to_string(), &job("b-end"))
        .await
        .unwrap();
    a.set::<Task>(99, &Task { step: 99 }).await.unwrap();

    for watcher in [&mut a_jobs, &mut shared_a_jobs] {
        assert_eq!(next_change(watcher).await, set("end", "a-end"));
    }
    for watcher in [&mut b_jobs, &mut shared_b_jobs] {
        assert_eq!(next_change(watcher).await, set("1", "b1"));
        assert_eq!(next_change(watcher).await, set("2", "b2"));
        assert_eq!(next_change(watcher).await, set("end", "b-end"));
    }
    assert_eq!(
        next_change(&mut a_tasks).await,
        Change::Set {
            id: 1,
            value: Task { step: 1 }
        }
    );
    assert_eq!(
        next_change(&mut a_tasks).await,
        Change::Set {
            id: 99,
            value: Task { step: 99 }
        }
    );
    let quiet = Duration::from_millis(200);
    assert_quiet(&mut a_jobs, quiet, "a's job watcher").await;
    assert_quiet(&mut b_jobs, quiet, "b's job watcher").await;
    assert_quiet(&mut a_tasks, quiet, "a's task watcher").await;
    assert_eq!(pubsub_numpat(&mut raw), 0);
}

/// 50 watchers of one store, created concurrently, share one pub/sub connection with one
/// subscription per channel; each gets its changes; once they are dropped the channels are
/// unsubscribed. No pattern subscription at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_watchers_share_one_connection_and_unsubscribe_when_dropped() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    assert!(subscriber_connections(&mut raw).is_empty());

    let ids: Vec<String> = (0..25).map(|n| n.to_string()).collect();
    let (every, one) = tokio::join!(
        futures_util::future::join_all((0..25).map(|_| store.watch::<Job>())),
        futures_util::future::join_all(ids.iter().map(|id| store.watch_id::<Job>(id))),
    );
    let every: Vec<Changes<Job>> = every.into_iter().map(Result::unwrap).collect();
    let one: Vec<Changes<Job>> = one.into_iter().map(Result::unwrap).collect();

    assert_eq!(
        subscriber_connections(&mut raw),
        [2],
        "one connection, subscribed to the job channel and the expired channel"
    );
    assert_eq!(pubsub_numsub(&mut raw, JOB_CHANNEL), 1);
    assert_eq!(pubsub_numsub(&mut raw, EXPIRED_CHANNEL), 1);
    assert_eq!(pubsub_numpat(&mut raw), 0);

    // Each watcher read in its own task (the streams are `Send + 'static`), while the changes
    // arrive.
    let every_readers: Vec<_> = every
        .into_iter()
        .map(|mut watcher| {
            let ids = ids.clone();
            tokio::spawn(async move {
                for id in &ids {
                    assert_eq!(next_change(&mut watcher).await, set(id, id));
                }
                for id in &ids {
                    assert_eq!(next_change(&mut watcher).await, removed(id));
                }
                watcher
            })
        })
        .collect();
    // A watcher of one id sees its own set and removal, and nothing of the 24 others in
    // between.
    let one_readers: Vec<_> = one
        .into_iter()
        .zip(ids.clone())
        .map(|(mut watcher, id)| {
            tokio::spawn(async move {
                assert_eq!(next_change(&mut watcher).await, set(&id, &id));
                assert_eq!(next_change(&mut watcher).await, removed(&id));
                watcher
            })
        })
        .collect();

    let items: Vec<(String, Job)> = ids.iter().map(|id| (id.clone(), job(id))).collect();
    store.set_many::<Job>(&items).await.unwrap();
    assert_eq!(store.remove_many::<Job>(&ids).await.unwrap(), 25);

    let mut every = Vec::new();
    for reader in every_readers {
        every.push(reader.await.unwrap());
    }
    let mut one = Vec::new();
    for reader in one_readers {
        one.push(reader.await.unwrap());
    }
    assert_eq!(subscriber_connections(&mut raw), [2]);
    assert_eq!(pubsub_numpat(&mut raw), 0);

    // Dropping all but one keeps the subscription.
    let last = every.pop().unwrap();
    drop(every);
    drop(one);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pubsub_numsub(&mut raw, JOB_CHANNEL), 1);

    drop(last);
    eventually("the channels are unsubscribed", ITEM, || {
        pubsub_channels(&mut raw).is_empty()
    })
    .await;
    assert_eq!(pubsub_numpat(&mut raw), 0);
    assert!(subscriber_connections(&mut raw).is_empty());

    // A new watcher subscribes again, on the same connection.
    let clients_before: String = redis::cmd("CLIENT").arg("LIST").query(&mut raw).unwrap();
    let mut again = store.watch_id::<Job>("7".to_string()).await.unwrap();
    assert_eq!(subscriber_connections(&mut raw), [2]);
    let clients_after: String = redis::cmd("CLIENT").arg("LIST").query(&mut raw).unwrap();
    assert_eq!(
        clients_before.lines().count(),
        clients_after.lines().count(),
        "a new connection was opened:\n{clients_before}\n---\n{clients_after}"
    );
    store
        .set::<Job>("6".to_string(), &job("six"))
        .await
        .unwrap();
    store
        .set::<Job>("7".to_string(), &job("seven"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut again).await, set("7", "seven"));
    assert_eq!(pubsub_numpat(&mut raw), 0);
}

/// A server restart on the same port: the watcher is told of the gap with `Interrupted`
/// before any change stored after the restart, and goes on; a watcher created after the
/// restart works from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_interrupts_then_the_feed_resumes() {
    let mut server = RedisServer::start();
    let store = store_at(&server.url()).await;
    let mut watcher = store.watch::<Job>().await.unwrap();
    store
        .set::<Job>("before".to_string(), &job("before"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("before", "before"));

    server.restart();

    // Writes while the feed reconnects may be lost (pub/sub keeps nothing): keep writing until
    // one arrives.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: Vec<String> = Vec::new();
    let mut attempt = 0;
    let resumed_with = loop {
        assert!(
            Instant::now() < deadline,
            "no change arrived within 15 s of the restart; items: {seen:?}"
        );
        attempt += 1;
        let _ = store
            .set::<Job>(format!("after-{attempt}"), &job("after"))
            .await;
        match tokio::time::timeout(Duration::from_millis(200), watcher.next()).await {
            Err(_) => continue,
            Ok(None) => panic!("the change feed ended; items: {seen:?}"),
            Ok(Some(Ok(change))) => break change,
            Ok(Some(Err(e))) => seen.push(format!("{e:?}")),
        }
    };
    assert!(
        matches!(&resumed_with, Change::Set { id, value } if id.starts_with("after-") && value.status == "after"),
        "{resumed_with:?}"
    );
    let interrupted = format!(
        "{:?}",
        Error::Interrupted {
            channel: JOB_CHANNEL.into()
        }
    );
    assert_eq!(
        seen,
        [interrupted],
        "exactly one Interrupted before the first change after the restart"
    );

    // A watcher created after the restart starts clean.
    let mut fresh = store.watch::<Job>().await.unwrap();
    store
        .set::<Job>("fresh".to_string(), &job("fresh"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut fresh).await, set("fresh", "fresh"));
    // The first watcher goes on too (after any of its own retries still queued).
    loop {
        let change = next_change(&mut watcher).await;
        if change == set("fresh", "fresh") {
            break;
        }
        assert!(
            matches!(&change, Change::Set { id, .. } if id.starts_with("after-")),
            "{change:?}"
        );
    }
    assert_quiet(&mut fresh, Duration::from_millis(200), "the fresh watcher").await;
}

/// A watcher that does not read while 20,000 changes are stored keeps the newest 1024 (the
/// default buffer): one `Lagged` with the exact number dropped, then those 1024 in order, then
/// later changes as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_gets_one_lagged_then_the_newest_changes() {
    const TOTAL: usize = 20_000;
    const BUFFER: usize = 1024;
    let server = RedisServer::start();
    let store = store_at(&server.url()).await;
    let mut slow = store.watch::<Job>().await.unwrap();
    // A watcher of one id buffers only that id's changes: it does not lag.
    let mut one = store.watch_id::<Job>("19999".to_string()).await.unwrap();
    // Same backend, so the same connection and dispatch: once the reader has seen the last
    // change, so has the slow watcher's queue.
    let mut reader = store
        .clone()
        .watch_buffer(TOTAL + 1000)
        .watch::<Job>()
        .await
        .unwrap();

    let items: Vec<(String, Job)> = (0..TOTAL)
        .map(|n| (n.to_string(), job(&n.to_string())))
        .collect();
    for batch in items.chunks(1000) {
        store.set_many::<Job>(batch).await.unwrap();
    }
    for (n, (id, value)) in items.iter().enumerate() {
        match next_item(&mut reader).await {
            Ok(Change::Set { id: got, value: v }) if &got == id && &v == value => {}
            other => panic!("reader, change {n}: {other:?}"),
        }
    }

    match next_item(&mut slow).await {
        Err(Error::Lagged { missed }) => assert_eq!(
            missed,
            (TOTAL - BUFFER) as u64,
            "every change was delivered to the process (the reader saw them all)"
        ),
        other => panic!("expected Lagged first, got {other:?}"),
    }
    for (n, (id, value)) in items[TOTAL - BUFFER..].iter().enumerate() {
        match next_item(&mut slow).await {
            Ok(Change::Set { id: got, value: v }) if &got == id && &v == value => {}
            other => panic!("slow watcher, kept change {n}: {other:?}"),
        }
    }
    store
        .set::<Job>("later".to_string(), &job("later"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut slow).await, set("later", "later"));
    assert_eq!(next_change(&mut reader).await, set("later", "later"));
    assert_eq!(next_change(&mut one).await, set("19999", "19999"));
    assert_quiet(
        &mut one,
        Duration::from_millis(100),
        "the watcher of one id",
    )
    .await;
}

/// Writes of a type without `notify` publish nothing (and a plain `set` stays a plain `SET`);
/// a notified type's writes publish once per change, in the same atomic step: `set` and
/// `set_many` in a `MULTI` with their `SET`s, the conditional writes, removals and `incr` from
/// inside their scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_notified_types_publish_and_in_the_same_step() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    // Loads the scripts, so that SCRIPT LOAD and NOSCRIPT retries do not count below.
    store
        .update::<Note>("w".to_string(), |_| Some(Note { text: "w".into() }))
        .await
        .unwrap();
    store
        .update::<Note>("w".to_string(), |_| Some(Note { text: "w2".into() }))
        .await
        .unwrap();
    store.incr::<Count>("w".to_string(), 1).await.unwrap();
    store.set::<Job>("w".to_string(), &job("w")).await.unwrap();
    store
        .set_many::<Job>([("w".to_string(), job("w"))])
        .await
        .unwrap();
    store
        .set_if_absent::<Job>("w".to_string(), &job("w"))
        .await
        .unwrap();
    store.remove::<Job>("w".to_string()).await.unwrap();
    store.incr::<Hits>("w".to_string(), 1).await.unwrap();

    config_resetstat(&mut raw);
    store
        .set::<Note>("1".to_string(), &Note { text: "one".into() })
        .await
        .unwrap();
    let stats = commandstats(&mut raw);
    assert_eq!(command_stat(&stats, "set", "calls"), Some(1), "{stats}");
    assert_eq!(command_stat(&stats, "evalsha", "calls"), None, "{stats}");
    assert_eq!(command_stat(&stats, "publish", "calls"), None, "{stats}");

    config_resetstat(&mut raw);
    let note = |text: &str| Note { text: text.into() };
    store
        .set::<Note>("1".to_string(), &note("a"))
        .await
        .unwrap();
    store
        .set_with::<Note>(
            "2".to_string(),
            &note("b"),
            SetOptions::new().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(
        store
            .set_if_absent::<Note>("3".to_string(), &note("c"))
            .await
            .unwrap()
    );
    store
        .update::<Note>("1".to_string(), |n| n.map(|_| note("a2")))
        .await
        .unwrap();
    store
        .update::<Note>("4".to_string(), |_| Some(note("d")))
        .await
        .unwrap();
    store
        .set_many::<Note>([("5".to_string(), note("e")), ("6".to_string(), note("f"))])
        .await
        .unwrap();
    assert!(store.remove::<Note>("1".to_string()).await.unwrap());
    assert_eq!(
        store
            .remove_many::<Note>(["2", "3"].map(String::from))
            .await
            .unwrap(),
        2
    );
    store.incr::<Count>("c".to_string(), 3).await.unwrap();
    let stats = commandstats(&mut raw);
    assert_eq!(command_stat(&stats, "publish", "calls"), None, "{stats}");
    // The writes did run (so the absence above means something).
    assert!(
        command_stat(&stats, "set", "calls").unwrap() >= 5,
        "{stats}"
    );
    assert_eq!(
        command_stat(&stats, "evalsha", "calls"),
        Some(2),
        "update + incr: {stats}"
    );

    // A notified type: a `set` is SET and PUBLISH in one MULTI transaction.
    let mut watcher = store.watch::<Job>().await.unwrap();
    let monitor = support::Monitor::start(server.port());
    config_resetstat(&mut raw);
    for n in 0..3 {
        store.set::<Job>(n.to_string(), &job("x")).await.unwrap();
    }
    let stats = commandstats(&mut raw);
    assert_eq!(command_stat(&stats, "evalsha", "calls"), None, "{stats}");
    assert_eq!(command_stat(&stats, "exec", "calls"), Some(3), "{stats}");
    assert_eq!(command_stat(&stats, "publish", "calls"), Some(3), "{stats}");
    // Leaving out the test's own INFO and CONFIG.
    let library = |sent: Vec<String>| -> Vec<String> {
        sent.into_iter()
            .filter(|command| !matches!(command.as_str(), "info" | "config"))
            .collect()
    };
    assert_eq!(
        library(monitor.take_client_commands()),
        ["multi", "set", "publish", "exec"].repeat(3),
        "each set is one transaction"
    );

    // More write methods: the PUBLISH count is the number of changes.
    store.remove::<Job>("0".to_string()).await.unwrap(); // 1 change
    store.remove::<Job>("0".to_string()).await.unwrap(); // none: it is gone
    store
        .set_many::<Job>((10..14).map(|n| (n.to_string(), job("y"))))
        .await
        .unwrap(); // 4 changes
    assert!(
        !store
            .set_if_absent::<Job>("1".to_string(), &job("z"))
            .await
            .unwrap()
    ); // none
    store
        .remove_many::<Job>(["1", "2", "nope"].map(String::from))
        .await
        .unwrap(); // 2 changes
    store.incr::<Hits>("h".to_string(), 2).await.unwrap(); // 1 change (on the hits channel)
    let stats = commandstats(&mut raw);
    // Two removes, set_if_absent, remove_many and incr are scripts; set_many a transaction.
    assert_eq!(command_stat(&stats, "evalsha", "calls"), Some(5), "{stats}");
    assert_eq!(
        command_stat(&stats, "exec", "calls"),
        Some(3 + 1),
        "{stats}"
    );
    assert_eq!(
        command_stat(&stats, "publish", "calls"),
        Some(3 + 1 + 4 + 2 + 1),
        "{stats}"
    );

    // The client sends PUBLISH only inside set_many's transaction; the scripts publish
    // inside the server.
    let sent = library(monitor.take_client_commands());
    let mut expected = vec!["multi"];
    expected.extend(["set", "publish"].repeat(4));
    expected.push("exec");
    let transactions: Vec<&str> = sent
        .iter()
        .map(String::as_str)
        .filter(|command| *command != "evalsha")
        .collect();
    assert_eq!(transactions, expected, "{sent:?}");
    // The job watcher got exactly the job changes: 3 + 1 + 4 + 2.
    for _ in 0..10 {
        next_change(&mut watcher).await;
    }
    assert_quiet(&mut watcher, Duration::from_millis(200), "the job watcher").await;
}

/// An ACL user allowed only its own keys and channels (not the server's keyspace-event
/// channel) can watch: `Set` and `Removed` arrive, since they are published by the write
/// scripts on `user-service:job`. `Expired` is silently unavailable to such a user: the
/// library's SUBSCRIBE to `__keyevent@0__:expired` is refused (NOPERM), the watcher is not
/// failed for it, and the refused channel is not retried in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_without_the_keyevent_channel_can_watch() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("watcher")
        .arg("on")
        .arg(">pw")
        .arg("resetchannels")
        .arg("~user-service:*")
        .arg("&user-service:*")
        .arg("+@all")
        .query(&mut raw)
        .unwrap();
    // A user without any channel: watching fails at once, saying why.
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("outsider")
        .arg("on")
        .arg(">pw")
        .arg("resetchannels")
        .arg("~user-service:*")
        .arg("+@all")
        .query(&mut raw)
        .unwrap();
    let outsider = store_at(&format!("redis://outsider:pw@127.0.0.1:{}", server.port())).await;
    match tokio::time::timeout(ITEM, outsider.watch::<Job>()).await {
        Ok(Err(e @ Error::Backend { .. })) => {
            assert!(e.to_string().contains(JOB_CHANNEL), "{e}");
            assert!(support::is_noperm(&e), "not NOPERM: {e}");
        }
        Ok(other) => panic!("expected a refusal, got {other:?}"),
        Err(_) => panic!("watch hangs on a refused channel"),
    }
    drop(outsider);
    // Expiry events are on server-side; the user just cannot hear them.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Ex")
        .query(&mut raw)
        .unwrap();
    config_resetstat(&mut raw);

    let url = format!("redis://watcher:pw@127.0.0.1:{}", server.port());
    let store = store_at(&url).await;
    let mut watcher = store.watch::<Job>().await.unwrap();
    let mut one = store.watch_id::<Job>("a".to_string()).await.unwrap();
    let channels = pubsub_channels(&mut raw);
    assert_eq!(channels, BTreeSet::from([JOB_CHANNEL.to_string()]));
    let stats = commandstats(&mut raw);
    let refused = command_stat(&stats, "subscribe", "rejected_calls").unwrap_or(0)
        + command_stat(&stats, "subscribe", "failed_calls").unwrap_or(0);
    assert!(refused >= 1, "the expired channel was not refused? {stats}");

    store
        .set_with::<Job>(
            "short".to_string(),
            &job("short"),
            SetOptions::new().ttl(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("short", "short"));
    // Reading the key after its expiry expires it (and publishes the event) at the latest.
    eventually("the short-lived key expires", ITEM, || {
        !redis::cmd("EXISTS")
            .arg("user-service:job:short")
            .query::<bool>(&mut raw)
            .unwrap()
    })
    .await;

    store.set::<Job>("a".to_string(), &job("a")).await.unwrap();
    assert!(store.remove::<Job>("a".to_string()).await.unwrap());
    // No Expired (nor any error) before these.
    assert_eq!(next_change(&mut watcher).await, set("a", "a"));
    assert_eq!(next_change(&mut watcher).await, removed("a"));
    assert_eq!(next_change(&mut one).await, set("a", "a"));
    assert_eq!(next_change(&mut one).await, removed("a"));

    let stats = commandstats(&mut raw);
    let refused_later = command_stat(&stats, "subscribe", "rejected_calls").unwrap_or(0)
        + command_stat(&stats, "subscribe", "failed_calls").unwrap_or(0);
    assert_eq!(
        refused, refused_later,
        "the refused channel is retried: {stats}"
    );
}

/// A message on the channel that is not a change this crate wrote is an error item, and the
/// stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_are_not_changes_are_error_items() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    let mut watcher = store.watch::<Job>().await.unwrap();
    let mut one = store.watch_id::<Job>("x".to_string()).await.unwrap();
    let publish = |raw: &mut redis::Connection, message: &str| {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(JOB_CHANNEL)
            .arg(message)
            .query(raw)
            .unwrap();
        assert_eq!(receivers, 1, "one subscribed connection");
    };

    // A value that is not a Job (the header, a newline, the value as stored).
    publish(
        &mut raw,
        "{\"op\":\"set\",\"key\":\"user-service:job:x\"}\n{\"wrong\":1}",
    );
    for changes in [&mut watcher, &mut one] {
        match next_item(changes).await {
            Err(Error::Decode { key, .. }) => assert_eq!(key, "user-service:job:x"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
    store
        .set::<Job>("x".to_string(), &job("real"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("x", "real"));
    assert_eq!(next_change(&mut one).await, set("x", "real"));

    // Not JSON at all: every watcher of the channel hears of it.
    publish(&mut raw, "not json");
    for changes in [&mut watcher, &mut one] {
        match next_item(changes).await {
            Err(e) => {
                assert!(!e.missed_changes(), "{e:?}");
                assert!(e.to_string().contains(JOB_CHANNEL), "{e}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    // A key outside the type's keys.
    publish(&mut raw, r#"{"op":"removed","key":"other-service:job:1"}"#);
    match next_item(&mut watcher).await {
        Err(Error::InvalidKey { key, .. }) => assert_eq!(key, "other-service:job:1"),
        other => panic!("expected an invalid key, got {other:?}"),
    }

    store.set::<Job>("y".to_string(), &job("y")).await.unwrap();
    store
        .set::<Job>("x".to_string(), &job("again"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("y", "y"));
    assert_eq!(next_change(&mut watcher).await, set("x", "again"));
    assert_eq!(next_change(&mut one).await, set("x", "again"));
}

/// `Expired` comes from the server's keyspace events: after `enable_expiry_events` (which keeps
/// the flags already set) every watcher of the key hears of it; on a server without them,
/// nothing but the `Set` arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_arrive_once_expiry_events_are_enabled() {
    let (enabled, plain) = (RedisServer::start(), RedisServer::start());

    let mut raw = enabled.raw();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Kg")
        .query(&mut raw)
        .unwrap();
    let store = store_at(&enabled.url()).await;
    store.backend().enable_expiry_events().await.unwrap();
    let (_, flags): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut raw)
        .unwrap();
    for flag in ['K', 'g', 'E', 'x'] {
        assert!(flags.contains(flag), "{flag} missing from {flags:?}");
    }
    // Idempotent.
    store.backend().enable_expiry_events().await.unwrap();

    let mut watcher = store.watch::<Job>().await.unwrap();
    let mut one = store.watch_id::<Job>("t".to_string()).await.unwrap();
    let mut other = store.watch_id::<Job>("u".to_string()).await.unwrap();
    store
        .set_with::<Job>(
            "t".to_string(),
            &job("brief"),
            SetOptions::new().ttl(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    for changes in [&mut watcher, &mut one] {
        assert_eq!(next_change(changes).await, set("t", "brief"));
        assert_eq!(
            next_change(changes).await,
            Change::Expired { id: "t".into() }
        );
    }
    assert_quiet(
        &mut other,
        Duration::from_millis(100),
        "the watcher of another id",
    )
    .await;

    let store = store_at(&plain.url()).await;
    let mut raw = plain.raw();
    let mut watcher = store.watch::<Job>().await.unwrap();
    store
        .set_with::<Job>(
            "t".to_string(),
            &job("brief"),
            SetOptions::new().ttl(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("t", "brief"));
    assert_quiet(
        &mut watcher,
        Duration::from_millis(1500),
        "without keyspace events",
    )
    .await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("user-service:job:t")
        .query(&mut raw)
        .unwrap();
    assert!(!exists, "the key did expire");
}

/// Ids that need escaping in keys or in JSON (quotes, backslashes, `/`, which Lua's cjson
/// escapes, `:` and `%`, which the key form escapes, control characters and non-ASCII) arrive
/// as written, for every kind of change and for watchers of that one id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_need_escaping_arrive_intact() {
    let server = RedisServer::start();
    let store = store_at(&server.url()).await;
    store.backend().enable_expiry_events().await.unwrap();
    let ids = [
        "a/b",
        "quote\"d",
        "back\\slash",
        "co:lon",
        "100%",
        "tab\there\nnewline\u{1}",
        "ünïcødé ✓ 🚀",
        "",
    ];
    let mut watcher = store.watch::<Job>().await.unwrap();
    let mut single = Vec::new();
    for id in ids {
        single.push(store.watch_id::<Job>(id.to_string()).await.unwrap());
    }
    for id in ids {
        store
            .set::<Job>(id.to_string(), &job(&format!("{id}/\"v\"")))
            .await
            .unwrap();
        assert!(store.remove::<Job>(id.to_string()).await.unwrap());
        store
            .set_with::<Job>(
                id.to_string(),
                &job(id),
                SetOptions::new().ttl(Duration::from_millis(30)),
            )
            .await
            .unwrap();
    }
    for (id, one) in ids.iter().zip(&mut single) {
        assert_eq!(next_change(one).await, set(id, &format!("{id}/\"v\"")));
        assert_eq!(next_change(one).await, removed(id));
        assert_eq!(next_change(one).await, set(id, id));
        assert_eq!(
            next_change(one).await,
            Change::Expired { id: id.to_string() }
        );
    }
    let mut seen = Vec::new();
    for _ in 0..ids.len() * 4 {
        seen.push(next_change(&mut watcher).await);
    }
    for id in ids {
        let mine: Vec<&Change<Job>> = seen.iter().filter(|c| c.id() == id).collect();
        assert_eq!(mine.len(), 4, "{id:?}: {seen:?}");
    }
}

/// Concurrent `update`s of one id: each write that landed is announced once, in the order
/// they were stored, and a lost compare-and-set announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_are_each_announced_once_in_order() {
    const WRITERS: u32 = 20;
    let server = RedisServer::start();
    let store = store_at(&server.url()).await;
    let mut watcher = store.watch_id::<Task>(1).await.unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update::<Task>(1, |t| {
                        Some(Task {
                            step: t.map_or(1, |t| t.step + 1),
                        })
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for step in 1..=WRITERS {
        assert_eq!(
            next_change(&mut watcher).await,
            Change::Set {
                id: 1,
                value: Task { step }
            }
        );
    }
    assert_quiet(
        &mut watcher,
        Duration::from_millis(200),
        "after the last update",
    )
    .await;
}

/// A `watch` future dropped before it completed leaves no subscription behind: dropped while
/// the feed connects, and while its SUBSCRIBE awaits the server's answer. (The server is stopped
/// meanwhile so that the future cannot complete before it is dropped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_watch_leaves_no_subscription() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    let cancelled = |server: &RedisServer| {
        server.signal("STOP");
        let store = &store;
        async move {
            let watch = tokio::time::timeout(Duration::from_millis(200), store.watch::<Job>());
            assert!(watch.await.is_err(), "watch completed on a stopped server");
        }
    };

    // The first watcher: the feed's task is connecting when the future is dropped.
    cancelled(&server).await;
    server.signal("CONT");
    // The task handles requests in order: once this watcher is subscribed, the cancelled one
    // has been dealt with.
    let _tasks = store.watch::<Task>().await.unwrap();
    let expected = BTreeSet::from(["user-service:task".to_string(), EXPIRED_CHANNEL.to_string()]);
    eventually("only the task channel is subscribed", ITEM, || {
        pubsub_channels(&mut raw) == expected
    })
    .await;

    // Connected: the task is waiting for the answer to SUBSCRIBE when the future is dropped.
    cancelled(&server).await;
    server.signal("CONT");
    let _more_tasks = store.watch_id::<Task>(1).await.unwrap();
    eventually("the job channel is unsubscribed again", ITEM, || {
        pubsub_channels(&mut raw) == expected
    })
    .await;
    assert_eq!(pubsub_numsub(&mut raw, JOB_CHANNEL), 0);
}

/// The server closing the feed's connection (`CLIENT KILL TYPE pubsub`) while it keeps running:
/// every watcher, of the type or of one id, is told with `Interrupted`, then changes flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_feed_connection_interrupts_every_watcher_then_resumes() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    let mut every = store.watch::<Job>().await.unwrap();
    let mut one = store.watch_id::<Job>("k".to_string()).await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut raw)
        .unwrap();
    assert_eq!(killed, 1);
    let interrupted = |item: state_store::Result<Change<Job>>| match item {
        Err(Error::Interrupted { channel }) => assert_eq!(channel, JOB_CHANNEL),
        other => panic!("expected Interrupted, got {other:?}"),
    };
    interrupted(next_item(&mut every).await);
    interrupted(next_item(&mut one).await);
    // Interrupted is reported once resubscribed: what is stored from now on arrives.
    store
        .set::<Job>("k".to_string(), &job("back"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut every).await, set("k", "back"));
    assert_eq!(next_change(&mut one).await, set("k", "back"));
    assert_eq!(subscriber_connections(&mut raw), [2]);
}

/// `follow` across a killed feed connection: a write that no message announced while the feed
/// was down (a plain `SET` from another client) still reaches the stream, which reads the value
/// again when the feed is back, instead of yielding `Interrupted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_reads_again_what_a_broken_feed_missed() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    store
        .set::<Job>("f".to_string(), &job("queued"))
        .await
        .unwrap();
    let mut follow = store.follow::<Job>("f".to_string()).await.unwrap();
    let mut next = async || match tokio::time::timeout(ITEM, follow.next()).await {
        Ok(Some(value)) => value.unwrap(),
        other => panic!("expected a value, got {other:?}"),
    };
    assert_eq!(next().await, Some(job("queued")));
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut raw)
        .unwrap();
    assert_eq!(killed, 1);
    let key = store.full_key::<Job>("f".to_string()).unwrap();
    let done = serde_json::to_vec(&job("done")).unwrap();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(done)
        .query(&mut raw)
        .unwrap();
    assert_eq!(next().await, Some(job("done")), "read again after the gap");
    // And the feed goes on.
    store
        .set::<Job>("f".to_string(), &job("archived"))
        .await
        .unwrap();
    assert_eq!(next().await, Some(job("archived")));
}

/// Watchers over RESP3 (push messages instead of pub/sub arrays) work as over RESP2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_works_over_resp3() {
    let server = RedisServer::start();
    let store = store_at(&format!("{}?protocol=resp3", server.url())).await;
    store.backend().enable_expiry_events().await.unwrap();
    let mut watcher = store.watch::<Job>().await.unwrap();
    store
        .set::<Job>("1".to_string(), &job("one"))
        .await
        .unwrap();
    assert!(store.remove::<Job>("1".to_string()).await.unwrap());
    store
        .set_with::<Job>(
            "2".to_string(),
            &job("two"),
            SetOptions::new().ttl(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("1", "one"));
    assert_eq!(next_change(&mut watcher).await, removed("1"));
    assert_eq!(next_change(&mut watcher).await, set("2", "two"));
    assert_eq!(
        next_change(&mut watcher).await,
        Change::Expired { id: "2".into() }
    );
}

/// Two stores with the same namespace in two databases of one server hold separate data; a
/// watcher must hear only the changes of its own database's keys. Expiries are kept apart (the
/// server announces them on a channel per database); `Set` and `Removed` currently are not: the
/// scripts publish on `{namespace}:{prefix}`, and Redis pub/sub channels are server-wide,
/// whatever the database, so the db-1 watcher is told of db 0's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_isolated() {
    let server = RedisServer::start();
    let db0 = store_at(&format!("{}/0", server.url())).await;
    let db1 = store_at(&format!("{}/1", server.url())).await;
    db1.backend().enable_expiry_events().await.unwrap();
    let mut in_db0 = db0.watch::<Job>().await.unwrap();
    let mut in_db1 = db1.watch::<Job>().await.unwrap();

    // An expiry in db 1 (the key written by another client, so that no `Set` is published).
    let mut raw1 = redis::Client::open(format!("{}/1", server.url()))
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("SET")
        .arg("user-service:job:e")
        .arg(r#"{"status":"e"}"#)
        .arg("PX")
        .arg(50)
        .query(&mut raw1)
        .unwrap();
    assert_eq!(
        next_change(&mut in_db1).await,
        Change::Expired { id: "e".into() }
    );
    assert_quiet(&mut in_db0, Duration::from_millis(200), "the db-0 watcher").await;

    db0.set::<Job>("x".to_string(), &job("db0")).await.unwrap();
    assert_eq!(db1.get::<Job>("x".to_string()).await.unwrap(), None);
    db1.set::<Job>("y".to_string(), &job("db1")).await.unwrap();
    assert_eq!(next_change(&mut in_db0).await, set("x", "db0"));
    assert_eq!(
        next_change(&mut in_db1).await,
        set("y", "db1"),
        "the db-1 watcher was told of a write to db 0, whose key does not exist in db 1"
    );
}

/// A user who may write the keys but not publish on the type's channel (Redis 7 creates users
/// with `resetchannels` unless `acl-pubsub-default` says otherwise): a notified write must not
/// report a failure for a write that happened, nor half-do a `set_many` that is all or nothing.
/// Either the write fails and changes nothing, or it happens; here: every write method that
/// returns an error must have left the data as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_publish_gets_no_half_done_writes() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("writer")
        .arg("on")
        .arg(">pw")
        .arg("resetchannels")
        .arg("~user-service:*")
        .arg("+@all")
        .query(&mut raw)
        .unwrap();
    let url = format!("redis://writer:pw@127.0.0.1:{}", server.port());
    let store = store_at(&url).await;
    let mut get =
        |key: &str| -> Option<String> { redis::cmd("GET").arg(key).query(&mut raw).unwrap() };
    // Types without `notify` are unaffected.
    store
        .set::<Note>("n".to_string(), &Note { text: "n".into() })
        .await
        .unwrap();

    let mut half_done = Vec::new();
    if let Err(e) = store.set::<Job>("1".to_string(), &job("new")).await
        && get("user-service:job:1").is_some()
    {
        half_done.push(format!("set: {e}; yet the value was written"));
    }
    let batch = [("2".to_string(), job("a")), ("3".to_string(), job("b"))];
    if let Err(e) = store.set_many::<Job>(&batch).await {
        let written: Vec<&str> = ["2", "3"]
            .into_iter()
            .filter(|id| get(&format!("user-service:job:{id}")).is_some())
            .collect();
        if !written.is_empty() {
            half_done.push(format!("set_many: {e}; yet ids {written:?} were written"));
        }
    }
    if let Err(e) = store.incr::<Hits>("h".to_string(), 1).await
        && get("user-service:hits:h").is_some()
    {
        half_done.push(format!("incr: {e}; yet the counter was incremented"));
    }
    let () = redis::cmd("SET")
        .arg("user-service:job:old")
        .arg(r#"{"status":"old"}"#)
        .query(&mut server.raw())
        .unwrap();
    if let Err(e) = store.remove::<Job>("old".to_string()).await
        && get("user-service:job:old").is_none()
    {
        half_done.push(format!("remove: {e}; yet the key was removed"));
    }
    assert!(half_done.is_empty(), "{half_done:#?}");
}

/// Watching while the server is down fails within the timeouts instead of hanging, and works
/// once the server is back; a watcher outlives its store without keeping the pub/sub
/// connection open after it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_server_that_is_down_fails_then_works_and_nothing_leaks() {
    let mut server = RedisServer::start();
    let store = store_at(&server.url()).await;
    server.kill();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), store.watch::<Job>())
        .await
        .expect("watch hangs while the server is down");
    match result {
        Err(Error::Backend { operation, .. }) => assert_eq!(operation, "watch"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.restart();
    let mut raw = server.raw();
    let watcher = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.watch::<Job>().await {
                Ok(watcher) => break watcher,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut watcher = watcher;
    let writer = store_at(&server.url()).await;
    writer
        .set::<Job>("1".to_string(), &job("one"))
        .await
        .unwrap();
    assert_eq!(next_change(&mut watcher).await, set("1", "one"));
    assert_eq!(subscriber_connections(&mut raw), [2]);

    // The pub/sub connection, by its client id.
    let feed_connection = support::client_ids(&mut raw, |line| line.contains(" sub=2 "));
    assert_eq!(feed_connection.len(), 1);
    // The watcher outlives its store (on Redis it goes on delivering what other clients
    // write; the memory backend's watchers end with the backend instead). Dropping it closes
    // the pub/sub connection.
    drop(store);
    writer
        .set::<Job>("2".to_string(), &job("two"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(watcher);
    eventually("the pub/sub connection is closed", ITEM, || {
        support::client_ids(&mut raw, |_| true).is_disjoint(&feed_connection)
    })
    .await;
}

/// The notified writes run their own scripts: they must give keys the same expiries as the
/// plain writes of an otherwise identical type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notified_writes_keep_the_expiry_rules_of_plain_writes() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let store = store_at(&server.url()).await;
    let mut pttl = |key: &str| -> i64 { redis::cmd("PTTL").arg(key).query(&mut raw).unwrap() };
    let week = 7 * 24 * 3600 * 1000;
    let hour = 3600 * 1000;
    let near = |ms: i64, expected: i64| ms <= expected && ms > expected - 10_000;

    // set: the type's ttl.
    store.set::<Job>("a".to_string(), &job("a")).await.unwrap();
    store
        .set::<PlainJob>("a".to_string(), &PlainJob { status: "a".into() })
        .await
        .unwrap();
    for key in ["user-service:job:a", "user-service:plain-job:a"] {
        assert!(near(pttl(key), week), "set {key}: {}", pttl(key));
    }
    // set_with_ttl, then update: the update keeps the remaining expiry.
    store
        .set_with::<Job>(
            "b".to_string(),
            &job("b"),
            SetOptions::new().ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    store
        .set_with::<PlainJob>(
            "b".to_string(),
            &PlainJob { status: "b".into() },
            SetOptions::new().ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    store
        .update::<Job>("b".to_string(), |j| j.map(|_| job("b2")))
        .await
        .unwrap();
    store
        .update::<PlainJob>("b".to_string(), |j| {
            j.map(|_| PlainJob {
                status: "b2".into(),
            })
        })
        .await
        .unwrap();
    for key in ["user-service:job:b", "user-service:plain-job:b"] {
        assert!(near(pttl(key), hour), "update {key}: {}", pttl(key));
    }
    // update that creates, set_if_absent and set_many: the type's ttl.
    store
        .update::<Job>("c".to_string(), |_| Some(job("c")))
        .await
        .unwrap();
    store
        .update::<PlainJob>("c".to_string(), |_| Some(PlainJob { status: "c".into() }))
        .await
        .unwrap();
    store
        .set_if_absent::<Job>("d".to_string(), &job("d"))
        .await
        .unwrap();
    store
        .set_if_absent::<PlainJob>("d".to_string(), &PlainJob { status: "d".into() })
        .await
        .unwrap();
    store
        .set_many::<Job>([("e".to_string(), job("e"))])
        .await
        .unwrap();
    store
        .set_many::<PlainJob>([("e".to_string(), PlainJob { status: "e".into() })])
        .await
        .unwrap();
    for id in ["c", "d", "e"] {
        for prefix in ["job", "plain-job"] {
            let key = format!("user-service:{prefix}:{id}");
            assert!(near(pttl(&key), week), "{key}: {}", pttl(&key));
        }
    }
    // incr: the window starts with the counter and later increments do not extend it.
    store.incr::<Window>("w".to_string(), 1).await.unwrap();
    store.incr::<PlainWindow>("w".to_string(), 1).await.unwrap();
    let _ = redis::cmd("PEXPIRE")
        .arg("user-service:window:w")
        .arg(30_000)
        .query::<i64>(&mut server.raw())
        .unwrap();
    let _ = redis::cmd("PEXPIRE")
        .arg("user-service:plain-window:w")
        .arg(30_000)
        .query::<i64>(&mut server.raw())
        .unwrap();
    assert_eq!(store.incr::<Window>("w".to_string(), 1).await.unwrap(), 2);
    assert_eq!(
        store.incr::<PlainWindow>("w".to_string(), 1).await.unwrap(),
        2
    );
    for key in ["user-service:window:w", "user-service:plain-window:w"] {
        assert!(near(pttl(key), 30_000), "incr {key}: {}", pttl(key));
    }
}

/// A watcher whose channel the server refuses after a reconnection (its user lost the right
/// meanwhile) gets one error naming the channel, and then its stream ends, instead of waiting
/// for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_refused_after_a_reconnection_ends_its_streams_with_an_error() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let acl = |raw: &mut redis::Connection, rules: &[&str]| {
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("watcher")
            .arg(rules)
            .query(raw)
            .unwrap();
    };
    acl(
        &mut raw,
        &[
            "on",
            ">pw",
            "resetchannels",
            "~user-service:*",
            "&user-service:*",
            "+@all",
        ],
    );
    let store = store_at(&format!("redis://watcher:pw@127.0.0.1:{}", server.port())).await;
    let mut changes = store.watch::<Job>().await.unwrap();
    store.set::<Job>("1".to_string(), &job("a")).await.unwrap();
    assert_eq!(next_change(&mut changes).await, set("1", "a"));

    // The channel right goes, and with it the feed's connection (Redis disconnects a subscriber
    // that lost a channel it is subscribed to; the kill makes sure).
    acl(&mut raw, &["resetchannels"]);
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut raw)
        .unwrap();
    match next_item(&mut changes).await {
        Err(e @ Error::Backend { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains(JOB_CHANNEL), "{shown}");
            assert!(shown.contains("refused to subscribe again"), "{shown}");
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    let end = tokio::time::timeout(ITEM, changes.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");
    // The store goes on with what the user may still do: a notified write, which must
    // publish, is refused whole; reads work.
    store
        .set::<Job>("2".to_string(), &job("b"))
        .await
        .unwrap_err();
    assert_eq!(store.get::<Job>("2".to_string()).await.unwrap(), None);
    assert_eq!(
        store.get::<Job>("1".to_string()).await.unwrap(),
        Some(job("a"))
    );
}
