//! The NATS JetStream KV backend against real `nats-server -js` processes that the tests start
//! themselves, each on a free loopback port with its own store directory (never the NATS on
//! 4222).
#![cfg(feature = "nats")]

mod support;

use std::time::Duration;

use state_store::StreamExt;
use state_store::conformance::Capabilities;
use state_store::{NatsBackend, SetOptions, async_nats};
use support::nats::NatsServer;

async fn fresh() -> (NatsServer, NatsBackend) {
    let server = NatsServer::start();
    let backend = NatsBackend::connect(&server.url()).await.unwrap();
    (server, backend)
}

/// What JetStream KV on NATS 2.9 does differently from Redis (the table of `_guide::nats`).
fn capabilities() -> Capabilities {
    let mut caps = Capabilities::FULL;
    // One `max_age` per bucket, counted from each write.
    caps.per_key_expiry = false;
    caps.keeps_remaining_expiry = false;
    // Values past `max_age` are removed silently (no marker before 2.11).
    caps.expiry_events = false;
    // Each watcher is a consumer of its own.
    caps.shared_subscription = false;
    // A watcher reads the bucket's stream, which holds every write (`touch` rewrites the value
    // to restart `max_age`; rate-limit checks store their counts in the bucket).
    caps.announced_writes_only = false;
    // Listing keys reads the buckets' streams (last message per key): a key rewritten
    // meanwhile may be missed.
    caps.stable_listing = false;
    // A bucket keeps one revision per key: a value replaced before a watcher's consumer read
    // it is gone, so under fast writes a watcher may get a key's newer value only.
    caps.every_change_delivered = false;
    // The server's default `max_payload` (1 MB), which holds key and value.
    caps.max_value_bytes = Some(1024 * 1024);
    // `max_age` is kept in nanoseconds as an `i64`.
    caps.max_ttl = Some(Duration::from_secs(i64::MAX as u64 / 1_000_000_000));
    caps
}

state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    crate::fresh(),
    capabilities = crate::capabilities()
);

use state_store::conformance::{Job, Session, Task, session};
use state_store::{Error, Store};

#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, state_store::StateKey,
)]
#[state(prefix = "hits", id = String, ttl = "1h", counter)]
struct Hits(i64);

fn tricky_ids() -> Vec<(String, u32)> {
    [
        "",
        "a:b",
        "a%3Ab",
        "*",
        "?",
        "[x]",
        "{y}",
        "back\\slash",
        "with space",
        "é ü 字",
        ".",
        "..",
        "=",
        "=3A",
        "a.b",
        "-/_",
        "%",
    ]
    .into_iter()
    .enumerate()
    .map(|(n, id)| (id.to_string(), n as u32))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_ids_get_their_own_keys_and_parse_back() {
    let (_server, backend) = fresh().await;
    for namespace in [None, Some("user-service.v2_x")] {
        let mut store = Store::new(backend.clone()).enable_set();
        if let Some(namespace) = namespace {
            store = store.namespace(namespace);
        }
        let ids = tricky_ids();
        for (id, n) in &ids {
            let job = Job {
                status: format!("{id}/{n}"),
            };
            store.set::<Job>(&(id.clone(), *n), &job).await.unwrap();
        }
        for (id, n) in &ids {
            let job = store.get::<Job>(&(id.clone(), *n)).await.unwrap().unwrap();
            assert_eq!(job.status, format!("{id}/{n}"));
        }
        let mut listed: Vec<(String, u32)> = store
            .ids::<Job>()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .await;
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected, "{namespace:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_incr_and_update_lose_nothing() {
    let (_server, backend) = fresh().await;
    let store = Store::new(backend).enable_set().update_attempts(10_000);
    store
        .set::<Task>(
            1,
            &Task {
                status: "x".into(),
                runs: 0,
            },
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    store.incr::<Hits>("page".to_string(), 1).await.unwrap();
                    store
                        .update::<Task>(1, |t| {
                            t.map(|t| Task {
                                runs: t.runs + 1,
                                ..t
                            })
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.incr::<Hits>("page".to_string(), 0).await.unwrap(),
        64 * 50
    );
    assert_eq!(store.get::<Task>(1).await.unwrap().unwrap().runs, 64 * 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ttls_are_unsupported_and_write_nothing() {
    let (_server, backend) = fresh().await;
    let store = Store::new(backend).namespace("svc").enable_set();
    let err = store
        .set_with::<Session>(
            7,
            &session(7),
            SetOptions::new().ttl(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                operation: "set_with_ttl",
                backend: "NatsBackend"
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.get::<Session>(7).await.unwrap(), None);
    store.set::<Session>(7, &session(7)).await.unwrap();
    let left = store.ttl::<Session>(7).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(29 * 60), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_another_client_that_are_not_json_are_decode_errors() {
    let (server, backend) = fresh().await;
    let store = Store::new(backend.clone()).namespace("svc").enable_set();
    store.set::<Session>(1, &session(1)).await.unwrap();
    let key = store.full_key::<Session>(2).unwrap();
    let (bucket, nats_key) = backend.location(&key).unwrap();
    assert_eq!((bucket.as_str(), nats_key.as_str()), ("svc__session", "2"));
    let raw = async_nats::connect(server.url()).await.unwrap();
    let kv = async_nats::jetstream::new(raw)
        .get_key_value(bucket)
        .await
        .unwrap();
    kv.put(nats_key, "not json".into()).await.unwrap();
    match store.get::<Session>(2).await.unwrap_err() {
        Error::Decode { key: reported, .. } => assert_eq!(reported, "svc:session:2"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_restart() {
    let (mut server, backend) = fresh().await;
    let store = Store::new(backend).namespace("svc").enable_set();
    for n in 0..100 {
        store.set::<Session>(n, &session(n as i64)).await.unwrap();
    }
    store.incr::<Hits>("page".to_string(), 5).await.unwrap();
    server.restart();
    let backend = NatsBackend::connect(&server.url()).await.unwrap();
    let store = Store::new(backend).namespace("svc").enable_set();
    for n in 0..100 {
        assert_eq!(
            store.get::<Session>(n).await.unwrap(),
            Some(session(n as i64))
        );
    }
    assert_eq!(store.incr::<Hits>("page".to_string(), 1).await.unwrap(), 6);
}

#[tokio::test]
async fn any_backend_connects_by_url() {
    let (server, _backend) = fresh().await;
    let any = state_store::AnyBackend::connect(&server.url())
        .await
        .unwrap();
    let extensions = state_store::Backend::extensions(&any);
    assert_eq!(extensions.system_name, Some("nats"));
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, state_store::StateKey)]
#[state(prefix = "payment", id = u64, durable)]
struct Payment(u64);

/// A plain type with the durable type's prefix: the bucket it makes has 1 replica.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, state_store::StateKey)]
#[state(prefix = "payment", id = u64)]
struct PaymentDraft(u64);

/// On a server alone a durable type's bucket has the one replica a server can give
/// (`tests/nats_cluster.rs` has the cluster's three); a count it cannot give is a clear error
/// that writes nothing, at the bucket's creation or when raising an existing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_types_on_a_server_alone() {
    let (server, backend) = fresh().await;
    assert_eq!(backend.durable_replicas(), 1, "automatic: no cluster");
    let store = Store::new(backend.clone()).enable_set();
    store.set::<Payment>(1, &Payment(1)).await.unwrap();
    assert_eq!(store.get::<Payment>(1).await.unwrap(), Some(Payment(1)));
    let js = async_nats::jetstream::new(backend.client().clone());
    let info = js.get_stream("KV_payment").await.unwrap();
    assert_eq!(info.cached_info().config.num_replicas, 1);

    let options = state_store::NatsOptions::new().durable_replicas(3);
    let three = NatsBackend::connect_with(&server.url(), options)
        .await
        .unwrap();
    assert_eq!(three.durable_replicas(), 3);
    let store = Store::new(three).enable_set();
    // A new bucket: refused at its creation.
    let err = store
        .clone()
        .namespace("svc")
        .set::<Payment>(1, &Payment(1))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "create bucket",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("svc__payment") && text.contains("durable_replicas"),
        "{text}"
    );
    assert!(js.get_stream("KV_svc__payment").await.is_err());
    // The bucket above: refused when raising its replicas, nothing written.
    let err = store.set::<Payment>(2, &Payment(2)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "raise bucket replicas",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("has 1 replica") && text.contains("durable_replicas"),
        "{text}"
    );
    assert_eq!(store.get::<Payment>(2).await.unwrap(), None);
    let info = js.get_stream("KV_payment").await.unwrap();
    assert_eq!(info.cached_info().config.num_replicas, 1, "left as it was");
    // Plain types are not concerned.
    store
        .set::<PaymentDraft>(3, &PaymentDraft(3))
        .await
        .unwrap();
}

/// A connect URL of several servers, comma-separated, as the other NATS clients take it.
#[tokio::test]
async fn connects_with_a_list_of_urls() {
    let (server, _backend) = fresh().await;
    let dead = format!("nats://127.0.0.1:{}", support::free_port());
    for url in [
        format!("{dead},{}", server.url()),
        format!("{}, {dead}", server.url()),
    ] {
        let backend = NatsBackend::connect(&url).await.unwrap();
        let store = Store::new(backend).enable_set();
        store.set::<Payment>(1, &Payment(1)).await.unwrap();
    }
}
