#![cfg(feature = "redis")]
//! ACL users as the isolation boundary between services, against a real `redis-server` the
//! tests start: a user restricted to `user-service:*` keys and channels (and the keyevent
//! channel of expiries), without `@dangerous` commands, can do everything through a store in its
//! namespace; through a store in another namespace every operation fails naming the key (or the
//! channel) and writes nothing; and no password is ever shown.

mod support;

use std::fmt::Debug;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::{
    Change, Changes, Policy, Quota, RateLimit, RedisBackend, SetOptions, StateKey, Store,
};
use support::RedisServer;

/// The user as production creates it: its own keys and channels, the expired-key events of
/// database 0, every command but the dangerous ones (`CONFIG`, `KEYS`, `INFO`, `CLIENT LIST`...).
const ACL_LINE: &str = "ACL SETUSER user-service on >secret resetchannels ~user-service:* \
                        &user-service:* &__keyevent@0__:expired +@all -@dangerous";
/// How long any one call or item may take.
const ITEM: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u32, notify)]
struct Job {
    status: String,
}

/// Without `notify`: its writes are plain commands (`SET`, `SET NX`, `DEL`, a `MULTI` of `SET`s,
/// the compare-and-set script), not the publishing ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "note", id = u32, ttl = "1h")]
struct Note(String);

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "hits", id = u32, ttl = "1m", counter)]
struct Hits(i64);

#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "fixed-rate", id = u32, counter)]
struct FixedRate(i64);

impl RateLimit for FixedRate {
    const QUOTA: Quota = Quota::per_minute(2);
    const POLICY: Policy = Policy::FixedWindow;
}

#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "smooth-rate", id = u32, counter)]
struct SmoothRate(i64);

impl RateLimit for SmoothRate {
    const QUOTA: Quota = Quota::per_minute(2);
    const POLICY: Policy = Policy::Smooth;
}

fn job(status: &str) -> Job {
    Job {
        status: status.into(),
    }
}

fn set(id: u32, status: &str) -> Change<Job> {
    Change::Set {
        id,
        value: job(status),
    }
}

/// A server with the service user created by [`ACL_LINE`], exactly as written.
fn server_with_user() -> RedisServer {
    let server = RedisServer::start();
    let mut words = ACL_LINE.split_whitespace();
    let mut cmd = redis::cmd(words.next().unwrap());
    cmd.arg(words.collect::<Vec<_>>());
    let () = cmd.query(&mut server.raw()).expect(ACL_LINE);
    server
}

fn user_url(server: &RedisServer, password: &str) -> String {
    format!(
        "redis://user-service:{password}@127.0.0.1:{}",
        server.port()
    )
}

async fn store_in(server: &RedisServer, namespace: &str) -> Store<RedisBackend> {
    let backend = within(
        "connect",
        RedisBackend::connect(&user_url(server, "secret")),
    )
    .await
    .unwrap();
    Store::new(backend)
        .namespace(namespace)
        .enable_set()
        .enable_remove()
}

/// `future`'s output, which must come within [`ITEM`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(ITEM, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ITEM:?}"))
}

/// The next change, which must come within [`ITEM`].
async fn next_change(changes: &mut Changes<Job>) -> Change<Job> {
    match within("next change", changes.next()).await {
        Some(Ok(change)) => change,
        Some(Err(e)) => panic!("expected a change, got the error {e:?}"),
        None => panic!("the change feed ended"),
    }
}

/// Asserts that `result` is an error naming `key`, which shows no password.
fn assert_refused<T: Debug>(what: &str, key: &str, result: state_store::Result<T>) {
    let e = match result {
        Ok(value) => panic!("{what}: expected a refusal, got Ok({value:?})"),
        Err(e) => e,
    };
    let shown = format!("{e}");
    assert!(shown.contains(&format!("`{key}`")), "{what}: {shown}");
    // Refused by the ACL (NOPERM), not failing for another reason.
    assert!(support::is_noperm(&e), "{what}: not NOPERM: {shown}");
    assert!(!format!("{e} {e:?}").contains("secret"), "{what}: {e:?}");
}

/// Every key of the database, its value and its expiry (`PTTL`), as the admin sees them.
fn snapshot(raw: &mut redis::Connection) -> Vec<(String, Option<String>, i64)> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(raw).unwrap();
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let value = redis::cmd("GET").arg(&key).query(raw).unwrap();
            let pttl = redis::cmd("PTTL").arg(&key).query(raw).unwrap();
            (key, value, pttl)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_user_can_do_everything_in_its_namespace() {
    let server = server_with_user();
    let mut admin = server.raw();
    let store = store_in(&server, "user-service").await;

    let mut all = within("watch", store.watch::<Job>()).await.unwrap();
    let mut one = within("watch_id", store.watch_id::<Job>(1)).await.unwrap();

    within("set", store.set::<Job>(1, &job("a"))).await.unwrap();
    let got = within("get", store.get::<Job>(1)).await.unwrap();
    assert_eq!(got, Some(job("a")));
    assert!(within("exists", store.exists::<Job>(1)).await.unwrap());
    assert_eq!(within("ttl", store.ttl::<Job>(1)).await.unwrap(), None);
    let minute = Duration::from_secs(60);
    let with_ttl = store.set_with::<Job>(2, &job("b"), SetOptions::new().ttl(minute));
    within("set_with_ttl", with_ttl).await.unwrap();
    let left = within("ttl", store.ttl::<Job>(2)).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(50) && left <= minute, "{left:?}");
    assert!(
        within("set_if_absent", store.set_if_absent::<Job>(3, &job("c")))
            .await
            .unwrap()
    );
    assert!(
        !within("set_if_absent", store.set_if_absent::<Job>(3, &job("x")))
            .await
            .unwrap()
    );
    let updated = store.update::<Job>(1, |current| {
        current.map(|mut j| {
            j.status.push('+');
            j
        })
    });
    assert_eq!(within("update", updated).await.unwrap(), Some(job("a+")));
    assert_eq!(within("incr", store.incr::<Hits>(1, 1)).await.unwrap(), 1);
    assert_eq!(within("incr", store.incr::<Hits>(1, 2)).await.unwrap(), 3);
    for allowed in [true, true, false] {
        let fixed = within("check fixed", store.check::<FixedRate>(1))
            .await
            .unwrap();
        assert_eq!(fixed.allowed, allowed, "{fixed:?}");
        let smooth = within("check smooth", store.check::<SmoothRate>(1))
            .await
            .unwrap();
        assert_eq!(smooth.allowed, allowed, "{smooth:?}");
    }
    let many = within("get_many", store.get_many::<Job>([1, 2, 3, 4]))
        .await
        .unwrap();
    assert_eq!(
        many,
        [Some(job("a+")), Some(job("b")), Some(job("c")), None]
    );
    let batch = [(4, job("d")), (5, job("e"))];
    within("set_many", store.set_many::<Job>(&batch))
        .await
        .unwrap();
    assert!(within("remove", store.remove::<Job>(5)).await.unwrap());
    assert_eq!(
        within("remove_many", store.remove_many::<Job>([3, 4, 9]))
            .await
            .unwrap(),
        2
    );
    let mut ids: Vec<u32> = within("ids", store.ids::<Job>().collect::<Vec<_>>())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    // The same without `notify`: plain commands and the compare-and-set script.
    let notes = [(1, Note("n1".into())), (2, Note("n2".into()))];
    within("set_many", store.set_many::<Note>(&notes))
        .await
        .unwrap();
    within("set", store.set::<Note>(3, &Note("n3".into())))
        .await
        .unwrap();
    let if_absent = store.set_if_absent::<Note>(4, &Note("n4".into()));
    assert!(within("set_if_absent", if_absent).await.unwrap());
    let updated = store.update::<Note>(1, |n| n.map(|n| Note(n.0 + "+")));
    assert_eq!(
        within("update", updated).await.unwrap(),
        Some(Note("n1+".into()))
    );
    assert!(within("remove", store.remove::<Note>(2)).await.unwrap());
    assert_eq!(
        within("remove_many", store.remove_many::<Note>([3, 4]))
            .await
            .unwrap(),
        2
    );

    for expected in [
        set(1, "a"),
        set(2, "b"),
        set(3, "c"),
        set(1, "a+"),
        set(4, "d"),
        set(5, "e"),
        Change::Removed { id: 5 },
        Change::Removed { id: 3 },
        Change::Removed { id: 4 },
    ] {
        assert_eq!(next_change(&mut all).await, expected);
    }
    assert_eq!(next_change(&mut one).await, set(1, "a"));
    assert_eq!(next_change(&mut one).await, set(1, "a+"));

    // `-@dangerous` takes `CONFIG` away: the library cannot turn expiry events on itself, and
    // says which setting to put in the server's configuration.
    let enabled = within(
        "enable_expiry_events",
        store.backend().enable_expiry_events(),
    )
    .await;
    let e = enabled.expect_err("CONFIG is dangerous, so refused");
    assert!(e.to_string().contains("notify-keyspace-events"), "{e}");
    // The admin does it; the restricted user hears expiries on `&__keyevent@0__:expired`.
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "Ex"])
        .query(&mut admin)
        .unwrap();
    let short = store.set_with::<Job>(
        6,
        &job("f"),
        SetOptions::new().ttl(Duration::from_millis(50)),
    );
    within("set_with_ttl", short).await.unwrap();
    assert_eq!(next_change(&mut all).await, set(6, "f"));
    // Redis announces the expiry when it deletes the key: in its background cycle, or at the
    // latest when the key is accessed after its ttl, as the admin's `EXISTS` does here.
    let deadline = std::time::Instant::now() + ITEM;
    while redis::cmd("EXISTS")
        .arg("user-service:job:6")
        .query::<bool>(&mut admin)
        .unwrap()
    {
        assert!(std::time::Instant::now() < deadline, "job 6 did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next_change(&mut all).await, Change::Expired { id: 6 });

    let keys: Vec<String> = {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
        keys.sort();
        keys
    };
    let expected = [
        "user-service:fixed-rate:1",
        "user-service:hits:1",
        "user-service:job:1",
        "user-service:job:2",
        "user-service:note:1",
        "user-service:smooth-rate:1",
    ];
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespace_is_refused_and_nothing_is_written() {
    let server = server_with_user();
    let mut admin = server.raw();
    let () = redis::cmd("SET")
        .arg(&["billing:job:1", r#"{"status":"billing's"}"#])
        .query(&mut admin)
        .unwrap();
    let () = redis::cmd("SET")
        .arg(&["billing:note:1", r#""billing's""#])
        .query(&mut admin)
        .unwrap();
    let () = redis::cmd("SET")
        .arg(&["user-service:job:1", r#"{"status":"mine"}"#])
        .query(&mut admin)
        .unwrap();
    let before = snapshot(&mut admin);
    let store = store_in(&server, "billing").await;

    let key = "billing:job:1";
    assert_refused("get", key, within("get", store.get::<Job>(1)).await);
    assert_refused(
        "exists",
        key,
        within("exists", store.exists::<Job>(1)).await,
    );
    assert_refused("ttl", key, within("ttl", store.ttl::<Job>(1)).await);
    assert_refused(
        "set",
        key,
        within("set", store.set::<Job>(1, &job("x"))).await,
    );
    let with_ttl =
        store.set_with::<Job>(1, &job("x"), SetOptions::new().ttl(Duration::from_secs(60)));
    assert_refused("set_with_ttl", key, within("set_with_ttl", with_ttl).await);
    let if_absent = store.set_if_absent::<Job>(2, &job("x"));
    assert_refused(
        "set_if_absent",
        "billing:job:2",
        within("set_if_absent", if_absent).await,
    );
    let update = store.update::<Job>(1, |_| Some(job("x")));
    assert_refused("update", key, within("update", update).await);
    let incr = store.incr::<Hits>(1, 1);
    assert_refused("incr", "billing:hits:1", within("incr", incr).await);
    let fixed = store.check::<FixedRate>(1);
    assert_refused(
        "check fixed",
        "billing:fixed-rate:1",
        within("check", fixed).await,
    );
    let smooth = store.check::<SmoothRate>(1);
    assert_refused(
        "check smooth",
        "billing:smooth-rate:1",
        within("check", smooth).await,
    );
    let many = store.get_many::<Job>([1, 2]);
    assert_refused("get_many", key, within("get_many", many).await);
    let batch = [(1, job("x")), (2, job("y"))];
    let set_many = store.set_many::<Job>(&batch);
    assert_refused("set_many", key, within("set_many", set_many).await);
    assert_refused(
        "remove",
        key,
        within("remove", store.remove::<Job>(1)).await,
    );
    let remove_many = store.remove_many::<Job>([1, 2]);
    assert_refused("remove_many", key, within("remove_many", remove_many).await);
    // The same without `notify`: plain commands, refused as well.
    let (key, note) = ("billing:note:1", Note("x".into()));
    assert_refused(
        "set note",
        key,
        within("set", store.set::<Note>(1, &note)).await,
    );
    let if_absent = store.set_if_absent::<Note>(1, &note);
    assert_refused(
        "set_if_absent note",
        key,
        within("set_if_absent", if_absent).await,
    );
    let notes = [(1, note.clone())];
    let set_many = store.set_many::<Note>(&notes);
    assert_refused("set_many note", key, within("set_many", set_many).await);
    let update = store.update::<Note>(1, |_| Some(Note("y".into())));
    assert_refused("update note", key, within("update", update).await);
    assert_refused(
        "remove note",
        key,
        within("remove", store.remove::<Note>(1)).await,
    );
    let remove_many = store.remove_many::<Note>([1]);
    assert_refused(
        "remove_many note",
        key,
        within("remove_many", remove_many).await,
    );
    // The channel `billing:job` is not the user's: the subscription is refused, and said so.
    let watch = within("watch", store.watch::<Job>()).await;
    assert_refused("watch", "billing:job", watch);
    let watch_id = within("watch_id", store.watch_id::<Job>(1)).await;
    assert_refused("watch_id", "billing:job", watch_id);

    // A limit of Redis, not of the library: ACL key patterns restrict commands by their key
    // arguments, and `SCAN` has none, so `SCAN MATCH billing:job:*` walks the whole database and
    // the user sees the other service's key names (not their values: `GET` is refused above).
    // Isolating `ids` needs `-scan` in the user's ACL (which refuses `ids` in the user's own
    // namespace too, see the next test), or a Redis instance per service (a database per
    // service is not enough: the user may `SELECT` another one and `SCAN` it).
    let ids = within("ids", store.ids::<Job>().collect::<Vec<_>>()).await;
    let ids: Vec<u32> = ids.into_iter().map(Result::unwrap).collect();
    assert_eq!(ids, [1], "SCAN is not restricted by key patterns");

    assert_eq!(
        snapshot(&mut admin),
        before,
        "the refused calls changed the data"
    );
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    assert_eq!(dbsize, 3);
    // The refusals did not break the shared connection: the same backend works in its own
    // namespace.
    let own = Store::new(store.backend().clone()).namespace("user-service");
    let mine = within("get", own.get::<Job>(1)).await.unwrap();
    assert_eq!(mine, Some(job("mine")));
}

/// With `-scan` added, `ids` of another namespace is refused instead of listing its keys; so is
/// `ids` in the user's own namespace: `SCAN` is all or nothing for an ACL user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_scan_ids_of_another_namespace_are_refused() {
    let server = server_with_user();
    let mut admin = server.raw();
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "user-service", "-scan"])
        .query(&mut admin)
        .unwrap();
    let () = redis::cmd("SET")
        .arg(&["billing:job:1", "{}"])
        .query(&mut admin)
        .unwrap();
    for namespace in ["billing", "user-service"] {
        let store = store_in(&server, namespace).await;
        let ids = within("ids", store.ids::<Job>().collect::<Vec<_>>()).await;
        match ids.as_slice() {
            [Err(e)] => {
                let shown = e.to_string();
                assert!(shown.contains(&format!("`{namespace}:job:*`")), "{shown}");
                assert!(support::is_noperm(e), "not NOPERM: {shown}");
            }
            other => panic!("{namespace}: expected one error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_never_shown() {
    let server = server_with_user();
    let wrong = user_url(&server, "wrong-s3cret");
    let e = within("connect", RedisBackend::connect(&wrong))
        .await
        .expect_err("a wrong password connects");
    let shown = format!("{e}\n{e:?}");
    assert!(!shown.contains("wrong-s3cret"), "{shown}");
    assert!(shown.contains(&server.port().to_string()), "{shown}");

    let store = store_in(&server, "user-service").await;
    for shown in [format!("{:?}", store.backend()), format!("{store:?}")] {
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains(&server.port().to_string()), "{shown}");
    }
}
