//! Durable writes against real `redis-server`s that each test starts: a primary with a replica
//! the write reaches before it is acknowledged, a primary without one (`NotDurable` within the
//! timeout, never a hang), a stalled replica that plain writes never wait for, concurrent
//! durable writes sharing their `WAIT`s, and `Persisted`: refused by a server without `WAITAOF`,
//! and on a server with it (Valkey 8.1, Redis 7.2+) a write in the append-only files of the
//! primary and a replica when it is acknowledged.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use state_store::{Durability, Error, RedisBackend, RedisOptions, StateKey, Store};
use support::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "order", id = u64, durable)]
struct Order {
    total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "hit", id = u64)]
struct Hit {
    n: u64,
}

#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "orders", id = u64, counter, durable)]
struct OrderCount(i64);

/// A replica of `primary` started with `extra_args` (such as `["--appendonly", "yes"]`), once it
/// has synced and the primary counts it online.
fn replica_of(primary: &RedisServer, extra_args: &[&str]) -> RedisServer {
    // The first sync at once, not after the default 5 s wait for more replicas.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-diskless-sync-delay")
        .arg("0")
        .query(&mut primary.raw())
        .unwrap();
    let port = primary.port().to_string();
    let mut args = vec!["--replicaof", "127.0.0.1", &port];
    args.extend_from_slice(extra_args);
    let replica = RedisServer::start_with(&args);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut raw = replica.raw();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut raw)
            .unwrap();
        if info.contains("master_link_status:up")
            && support::replica_online(&mut primary.raw()).is_ok()
        {
            return replica;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server knows `WAITAOF` (Redis 7.2+, Valkey 8+): `COMMAND INFO` answers a nil
/// for a command it does not know.
fn has_waitaof(server: &RedisServer) -> bool {
    let info: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("WAITAOF")
        .query(&mut server.raw())
        .unwrap();
    !matches!(&info, redis::Value::Array(e) if e.iter().all(|e| *e == redis::Value::Nil))
}

/// Waits until `server` (started with `--appendonly yes`) has its append-only file and no
/// rewrite of it pending: a replica rewrites its file after the sync, and `WAITAOF` counts a
/// server's file only once that first rewrite is done.
fn aof_settled(server: &RedisServer) {
    let mut raw = server.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut raw)
            .unwrap();
        let settled = [
            "aof_enabled:1",
            "aof_rewrite_in_progress:0",
            "aof_rewrite_scheduled:0",
        ]
        .iter()
        .all(|field| info.lines().any(|line| line.trim() == *field));
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the append-only file never settled: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything in `server`'s append-only files (the base and incremental files of its
/// `appendonlydir`), as bytes.
fn append_only_files(server: &RedisServer) -> Vec<u8> {
    let dir = server.dir().join("appendonlydir");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

/// Whether `bytes` holds `text`.
fn holds(bytes: &[u8], text: &str) -> bool {
    bytes
        .windows(text.len())
        .any(|window| window == text.as_bytes())
}

async fn store(server: &RedisServer, durability: Durability) -> Store<RedisBackend> {
    let options = RedisOptions::default().durability(durability);
    let backend = RedisBackend::connect_with(&server.url(), options)
        .await
        .unwrap();
    Store::new(backend).enable_set().enable_remove()
}

fn replicas(count: u32, timeout: Duration) -> Durability {
    Durability::Replicas { count, timeout }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_write_is_on_the_replica_when_it_is_acknowledged() {
    let primary = RedisServer::start();
    let replica = replica_of(&primary, &[]);
    let store = store(&primary, Durability::default()).await;
    let mut on_replica = replica.raw();
    for total in 0..50 {
        store.set::<Order>(1, &Order { total }).await.unwrap();
        // Read from the replica at once: the acknowledgement came after it had the write.
        let there: String = redis::cmd("GET")
            .arg("order:1")
            .query(&mut on_replica)
            .unwrap();
        assert_eq!(there, format!(r#"{{"total":{total}}}"#));
    }
    assert_eq!(store.incr::<OrderCount>(1, 5).await.unwrap(), 5);
    let count: i64 = redis::cmd("GET")
        .arg("orders:1")
        .query(&mut on_replica)
        .unwrap();
    assert_eq!(count, 5);
    let updated = store
        .update::<Order>(1, |o| o.map(|o| Order { total: o.total + 1 }))
        .await
        .unwrap();
    assert_eq!(updated, Some(Order { total: 50 }));
    assert!(store.remove::<Order>(1).await.unwrap());
    let gone: Option<String> = redis::cmd("GET")
        .arg("order:1")
        .query(&mut on_replica)
        .unwrap();
    assert_eq!(gone, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_replica_a_durable_write_is_not_durable_within_its_timeout() {
    let primary = RedisServer::start();
    let store = store(&primary, replicas(1, Duration::from_millis(300))).await;
    let started = Instant::now();
    let err = store
        .set::<Order>(7, &Order { total: 1 })
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::NotDurable { key, acked: 0, required: 1 } if key == "order:7"),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(300),
        "answered before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        err.to_string().contains("may be lost in a failover"),
        "{err}"
    );
    // Applied on the primary all the same, as the error says.
    assert_eq!(
        store.get::<Order>(7).await.unwrap(),
        Some(Order { total: 1 })
    );
    // Every kind of write of the type waits.
    for err in [
        store
            .set_many::<Order>(&[(8, Order { total: 2 })])
            .await
            .unwrap_err(),
        store
            .update::<Order>(7, |_| Some(Order { total: 3 }))
            .await
            .unwrap_err(),
        store.incr::<OrderCount>(7, 1).await.map(drop).unwrap_err(),
        store.remove::<Order>(8).await.map(drop).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotDurable { .. }), "{err:?}");
    }
    // A type without `durable` does not wait.
    let started = Instant::now();
    store.set::<Hit>(7, &Hit { n: 1 }).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(250));
}

/// A replica that stalls (SIGSTOP): a durable write waits out its timeout, while plain writes
/// of the same store go on at their own pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_writes_never_wait_behind_a_durable_one() {
    let primary = RedisServer::start();
    let replica = replica_of(&primary, &[]);
    let store = store(&primary, replicas(1, Duration::from_secs(2))).await;
    store.set::<Order>(1, &Order { total: 1 }).await.unwrap();
    replica.signal("STOP");
    let durable = tokio::spawn({
        let store = store.clone();
        async move { store.set::<Order>(1, &Order { total: 2 }).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut slowest = Duration::ZERO;
    for n in 0..100 {
        let started = Instant::now();
        store.set::<Hit>(n, &Hit { n }).await.unwrap();
        assert_eq!(store.get::<Hit>(n).await.unwrap(), Some(Hit { n }));
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(300),
        "a plain write took {slowest:?}"
    );
    let err = durable.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::NotDurable { acked: 0, .. }), "{err:?}");
    replica.signal("CONT");
}

/// Durable writes from 64 tasks share their `WAIT`s: far fewer than one per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_writes_share_their_waits() {
    let primary = RedisServer::start();
    let _replica = replica_of(&primary, &[]);
    let store = Arc::new(store(&primary, Durability::default()).await);
    let mut raw = primary.raw();
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    let tasks: Vec<_> = (0..64u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..20 {
                    store.set::<Order>(task, &Order { total: n }).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let writes = support::command_calls(&mut raw, "set");
    let waits = support::command_calls(&mut raw, "wait");
    assert_eq!(writes, 64 * 20);
    assert!(
        waits > 0 && waits * 4 < writes,
        "{waits} WAITs for {writes} writes"
    );
}

/// `Persisted` needs `WAITAOF`: a server without it (Redis before 7.2) is refused at connect,
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_is_refused_by_a_server_without_waitaof() {
    let primary = RedisServer::start();
    let persisted = Durability::Persisted {
        local: false,
        replicas: 1,
        timeout: Duration::from_millis(200),
    };
    let options = RedisOptions::default().durability(persisted);
    let connected = RedisBackend::connect_with(&primary.url(), options).await;
    if !has_waitaof(&primary) {
        let err = connected.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("WAITAOF needs Redis 7.2+ or Valkey 8+"),
            "{err}"
        );
    } else {
        // A server with `WAITAOF` (`REDIS_SERVER` pointing at Valkey or Redis 7.2+).
        let backend = connected.unwrap();
        let store = Store::new(backend).enable_set();
        let err = store
            .set::<Order>(1, &Order { total: 1 })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotDurable {
                    acked: 0,
                    required: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

/// `Persisted` on either kind of server. Without `WAITAOF` (Redis before 7.2), a backend asking
/// for it is refused at connect. With it (Valkey 8+, Redis 7.2+), a write is acknowledged once
/// it is in the append-only file of the primary and of a replica: it is then on the replica and
/// in both servers' files; a primary alone takes `replicas: 0`; and with the replica stalled only
/// the primary's file counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_writes_reach_the_append_only_files() {
    let persisted = |replicas| Durability::Persisted {
        local: true,
        replicas,
        timeout: Duration::from_secs(1),
    };
    // (No 5 s wait before the replica's sync.)
    let primary =
        RedisServer::start_with(&["--appendonly", "yes", "--repl-diskless-sync-delay", "0"]);
    if !has_waitaof(&primary) {
        for durability in [persisted(1), persisted(0)] {
            let options = RedisOptions::default().durability(durability);
            let err = RedisBackend::connect_with(&primary.url(), options)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
            assert!(err.to_string().contains("WAITAOF"), "{err}");
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut primary.raw())
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        return;
    }

    // A primary alone: its own file is the one copy asked for.
    aof_settled(&primary);
    let alone = store(&primary, persisted(0)).await;
    alone.set::<Order>(1, &Order { total: 1 }).await.unwrap();
    assert!(holds(&append_only_files(&primary), r#"{"total":1}"#));

    // With a replica that keeps an append-only file too. It syncs its file on every write:
    // under `appendfsync everysec` (the default) a replica reports a write in its file only
    // after its next once-a-second fsync, so `WAITAOF` with a replica takes up to about a second
    // there, and a timeout of one second would sometimes fall short (`_guide::durability`).
    let replica = replica_of(
        &primary,
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    aof_settled(&replica);
    let store = store(&primary, persisted(1)).await;
    let mut on_replica = replica.raw();
    let started = Instant::now();
    for total in 2..12 {
        store.set::<Order>(2, &Order { total }).await.unwrap();
        // Read from the replica at once: the acknowledgement came after its file had the write.
        let there: String = redis::cmd("GET")
            .arg("order:2")
            .query(&mut on_replica)
            .unwrap();
        assert_eq!(there, format!(r#"{{"total":{total}}}"#));
    }
    // Milliseconds each, not the second a replica takes to acknowledge a `WAITAOF` that reached
    // it in the same batch as the write (the `SET` and its `WAITAOF` in one pipeline did that).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "10 writes took {:?}",
        started.elapsed()
    );
    for server in [&primary, &replica] {
        assert!(
            holds(&append_only_files(server), r#"{"total":11}"#),
            "not in the append-only files of {}",
            server.port()
        );
    }

    // The replica stalled: the primary's file has the write, the replica's cannot.
    replica.signal("STOP");
    let err = store
        .set::<Order>(2, &Order { total: 12 })
        .await
        .unwrap_err();
    replica.signal("CONT");
    assert!(
        matches!(&err, Error::NotDurable { key, acked: 1, required: 2 } if key == "order:2"),
        "{err:?}"
    );
}
