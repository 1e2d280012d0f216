//! The client-side cache of types declared with `cache`, against real `redis-server` processes
//! the tests start: hits stay in the client, another client's write is seen once its
//! invalidation arrives, a task never reads a value older than its own last write, and a
//! restarted server never gets a stale value served, and a tracking connection that falls
//! silent serves a stale value for a bounded time only.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, RedisBackend, RedisOptions, StateKey, Store};
use support::RedisServer;
use support::proxy::Proxy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "flags", id = String, cache)]
struct Flags {
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "short", id = String, ttl = "1s", cache)]
struct Short {
    version: u64,
}

/// The same prefix family without `cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "plain", id = String)]
struct Plain {
    version: u64,
}

fn id(s: &str) -> String {
    s.to_string()
}

async fn store_on(server: &RedisServer) -> Store<RedisBackend> {
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    Store::new(backend).namespace("svc").enable_set()
}

/// Polls `get` until it gives `expected`, for at most two seconds.
async fn eventually<S>(store: &Store<RedisBackend>, id: &str, expected: Option<S>)
where
    S: StateKey<Id = String> + PartialEq + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = store.get::<S>(id.to_string()).await.unwrap();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?} instead of {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_stay_in_the_client_and_other_types_are_not_cached() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    store
        .set::<Flags>(id("a"), &Flags { version: 1 })
        .await
        .unwrap();
    store
        .set::<Plain>(id("a"), &Plain { version: 1 })
        .await
        .unwrap();
    let mut raw = server.raw();
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    for _ in 0..100 {
        assert_eq!(
            store.get::<Flags>(id("a")).await.unwrap(),
            Some(Flags { version: 1 })
        );
        assert_eq!(
            store.get::<Plain>(id("a")).await.unwrap(),
            Some(Plain { version: 1 })
        );
    }
    // One read of the cached type reached the server; every read of the other did.
    assert_eq!(support::command_calls(&mut raw, "get"), 101);
    assert_eq!(support::command_calls(&mut raw, "pttl"), 1);
    // A missing key is not cached as missing: it is asked each time.
    assert_eq!(store.get::<Flags>(id("none")).await.unwrap(), None);
    assert_eq!(store.get::<Flags>(id("none")).await.unwrap(), None);
    assert_eq!(support::command_calls(&mut raw, "get"), 103);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_write_is_seen_once_its_invalidation_arrives() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let mut raw = server.raw();
    store
        .set::<Flags>(id("a"), &Flags { version: 1 })
        .await
        .unwrap();
    assert_eq!(
        store.get::<Flags>(id("a")).await.unwrap(),
        Some(Flags { version: 1 })
    );
    for version in 2..20u64 {
        let () = raw
            .set("svc:flags:a", format!(r#"{{"version":{version}}}"#))
            .unwrap();
        eventually(&store, "a", Some(Flags { version })).await;
    }
    let () = raw.del("svc:flags:a").unwrap();
    eventually::<Flags>(&store, "a", None).await;
    // Once seen, the new value stays: no old one comes back from the cache.
    let () = raw.set("svc:flags:a", r#"{"version":100}"#).unwrap();
    eventually(&store, "a", Some(Flags { version: 100 })).await;
    for _ in 0..50 {
        assert_eq!(
            store.get::<Flags>(id("a")).await.unwrap(),
            Some(Flags { version: 100 })
        );
    }
}

/// 64 tasks increment one cached value with `update` (compare-and-set, so the value only grows)
/// and read it back: a read never gives less than the task's own last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_never_reads_a_value_older_than_its_own_last_write() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    store
        .set::<Flags>(id("hot"), &Flags { version: 0 })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut checked = 0;
                for _ in 0..20 {
                    let written = match store
                        .update::<Flags>(id("hot"), |flags| {
                            flags.map(|f| Flags {
                                version: f.version + 1,
                            })
                        })
                        .await
                    {
                        Ok(Some(flags)) => flags.version,
                        Ok(None) => panic!("the value vanished"),
                        Err(state_store::Error::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    };
                    for _ in 0..3 {
                        let read = store.get::<Flags>(id("hot")).await.unwrap().unwrap();
                        assert!(
                            read.version >= written,
                            "read {} after writing {written}",
                            read.version
                        );
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let mut checked = 0;
    for task in tasks {
        checked += task.await.unwrap();
    }
    assert!(checked > 64, "only {checked} writes got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_never_gets_a_stale_value_served() {
    let mut server = RedisServer::start();
    let store = store_on(&server).await;
    store
        .set::<Flags>(id("a"), &Flags { version: 1 })
        .await
        .unwrap();
    assert_eq!(
        store.get::<Flags>(id("a")).await.unwrap(),
        Some(Flags { version: 1 })
    );
    // Nothing persisted: the restarted server is empty.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        match store.get::<Flags>(id("a")).await {
            Ok(value) => break value,
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first, None, "the cached value outlived the server's");
    // And caching works again on the new connection.
    store
        .set::<Flags>(id("a"), &Flags { version: 2 })
        .await
        .unwrap();
    eventually(&store, "a", Some(Flags { version: 2 })).await;
    let mut raw = server.raw();
    let () = raw.set("svc:flags:a", r#"{"version":3}"#).unwrap();
    eventually(&store, "a", Some(Flags { version: 3 })).await;
}

/// The tracking connection goes silent without closing (a NAT or load balancer that forgot the
/// flow): the invalidation for another client's write never arrives. The keep-alive `PING`
/// (every 5 s) goes unanswered within the timeout (1 s here), the cache is dropped, and the next
/// read gets the new value from the server instead of the stale one forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tracking_connection_is_found_by_its_keep_alive() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let options = RedisOptions::default()
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1));
    let backend = RedisBackend::connect_with(&proxy.url(), options)
        .await
        .unwrap();
    let store = Store::new(backend).namespace("svc").enable_set();
    store
        .set::<Flags>(id("a"), &Flags { version: 1 })
        .await
        .unwrap();
    let before = proxy.connections();
    // The first cached read opens the tracking connection, the last the proxy accepted.
    assert_eq!(
        store.get::<Flags>(id("a")).await.unwrap(),
        Some(Flags { version: 1 })
    );
    assert_eq!(proxy.connections(), before + 1, "no tracking connection");
    proxy.silence_latest();
    let mut raw = server.raw();
    let () = raw.set("svc:flags:a", r#"{"version":2}"#).unwrap();
    // The invalidation is lost: the cache still answers with the old value.
    let silenced = Instant::now();
    assert_eq!(
        store.get::<Flags>(id("a")).await.unwrap(),
        Some(Flags { version: 1 }),
        "the invalidation got through the silenced connection"
    );
    // Found within one keep-alive period and its timeout (plus slack for a loaded machine).
    let deadline = silenced + Duration::from_secs(5 + 1 + 4);
    loop {
        let got = store.get::<Flags>(id("a")).await.unwrap();
        if got == Some(Flags { version: 2 }) {
            break;
        }
        assert_eq!(got, Some(Flags { version: 1 }));
        assert!(
            Instant::now() < deadline,
            "the stale value was still served {:?} after the connection fell silent",
            silenced.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Caching resumes on a new tracking connection, and its invalidations arrive.
    let () = raw.set("svc:flags:a", r#"{"version":3}"#).unwrap();
    eventually(&store, "a", Some(Flags { version: 3 })).await;
    assert!(
        proxy.connections() > before + 1,
        "no new tracking connection"
    );
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    for _ in 0..50 {
        assert_eq!(
            store.get::<Flags>(id("a")).await.unwrap(),
            Some(Flags { version: 3 })
        );
    }
    // At most a read that raced the invalidation of version 3, and the one that kept it.
    let reads = support::command_calls(&mut raw, "get");
    assert!(
        reads <= 2,
        "{reads} of 50 reads reached the server: not cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_values_expire_with_their_key() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    store
        .set::<Short>(id("a"), &Short { version: 1 })
        .await
        .unwrap();
    assert_eq!(
        store.get::<Short>(id("a")).await.unwrap(),
        Some(Short { version: 1 })
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.get::<Short>(id("a")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_can_be_turned_off_and_memory_ignores_it() {
    let server = RedisServer::start();
    let backend =
        RedisBackend::connect_with(&server.url(), RedisOptions::default().client_cache(0))
            .await
            .unwrap();
    let store = Store::new(backend).enable_set();
    store
        .set::<Flags>(id("a"), &Flags { version: 1 })
        .await
        .unwrap();
    let mut raw = server.raw();
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    for _ in 0..10 {
        assert!(store.get::<Flags>(id("a")).await.unwrap().is_some());
    }
    assert_eq!(support::command_calls(&mut raw, "get"), 10);

    let memory = Store::new(MemoryBackend::new()).enable_set();
    memory
        .set::<Flags>(id("a"), &Flags { version: 1 })
        .await
        .unwrap();
    assert_eq!(
        memory.get::<Flags>(id("a")).await.unwrap(),
        Some(Flags { version: 1 })
    );
}

/// A write given up while in flight (its future dropped after it was sent) may still run; the
/// cache must not keep the value from before it. Each round: the cached value is read, a `set`
/// is started and dropped at once, reads go on, and within a bound every read gives the new
/// value for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_given_up_in_flight_leaves_no_stale_value() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    for round in 0..50u64 {
        let key = id("given-up");
        store
            .set::<Flags>(&key, &Flags { version: round * 2 })
            .await
            .unwrap();
        eventually(&store, "given-up", Some(Flags { version: round * 2 })).await;
        let next = Flags {
            version: round * 2 + 1,
        };
        // Polled once (the SET is sent), then dropped.
        let write = store.set::<Flags>(&key, &next);
        let _ = tokio::time::timeout(Duration::ZERO, write).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let got = store.get::<Flags>(&key).await.unwrap();
            if got.as_ref() == Some(&next) {
                break;
            }
            if Instant::now() > deadline {
                // The SET never ran: nothing more to check this round.
                let raw: Option<String> = redis::cmd("GET")
                    .arg("svc:flags:given-up")
                    .query(&mut server.raw())
                    .unwrap();
                assert_eq!(
                    raw,
                    Some(format!(r#"{{"version":{}}}"#, round * 2)),
                    "round {round}: the server has the new value, the cache still {got:?}"
                );
                break;
            }
        }
        for _ in 0..5 {
            let got = store.get::<Flags>(&key).await.unwrap();
            let raw: Option<String> = redis::cmd("GET")
                .arg("svc:flags:given-up")
                .query(&mut server.raw())
                .unwrap();
            let stored: Flags = serde_json::from_str(&raw.unwrap()).unwrap();
            assert_eq!(got, Some(stored), "round {round}");
        }
    }
}
