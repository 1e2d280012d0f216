//! The metrics of the `metrics` feature, captured by a recorder of our own: their names, labels
//! and plausible values, on the memory backend and a real redis-server (call durations, the
//! client-side cache's hits and misses, read batch sizes, missed changes, reconnections).
#![cfg(feature = "metrics")]

#[cfg(feature = "redis")]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde::{Deserialize, Serialize};
use state_store::{Error, MemoryBackend, StateKey, Store, StreamExt};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    user: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, notify)]
struct Job {
    step: u32,
}

#[cfg(feature = "redis")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "flags", id = u64, cache)]
struct Flags {
    version: u64,
}

/// A metric's labels, sorted by name.
type Labels = BTreeMap<String, String>;

/// Every value recorded, per metric name and sorted label pairs.
type Recorded = Arc<Mutex<BTreeMap<(String, Vec<(String, String)>), Vec<f64>>>>;

/// Every value recorded, per metric name and label set: a counter's increments, a histogram's
/// samples.
#[derive(Clone, Default)]
struct Capture {
    values: Recorded,
}

/// The handle of one metric, writing into the capture.
struct Series {
    key: (String, Vec<(String, String)>),
    values: Recorded,
}

impl Series {
    fn push(&self, value: f64) {
        let mut values = self.values.lock().unwrap();
        values.entry(self.key.clone()).or_default().push(value);
    }
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.push(value as f64);
    }
    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

impl Capture {
    fn series(&self, key: &Key) -> Arc<Series> {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        Arc::new(Series {
            key: (key.name().to_string(), labels),
            values: self.values.clone(),
        })
    }

    /// Runs `work` on a current-thread runtime with this capture as the thread's recorder (the
    /// runtime's tasks run on this thread too).
    fn run<F: Future>(&self, work: F) -> F::Output {
        let _local = metrics::set_default_local_recorder(self);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    }

    /// The label sets and values of `name`, whose labels include every pair of `with`.
    fn find(&self, name: &str, with: &[(&str, &str)]) -> Vec<(Labels, Vec<f64>)> {
        let values = self.values.lock().unwrap();
        values
            .iter()
            .filter(|((n, labels), _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|((_, labels), values)| (labels.iter().cloned().collect(), values.clone()))
            .collect()
    }

    /// Every value of `name` with labels `with`, all label sets together.
    fn values(&self, name: &str, with: &[(&str, &str)]) -> Vec<f64> {
        self.find(name, with)
            .into_iter()
            .flat_map(|(_, values)| values)
            .collect()
    }

    /// A counter's total.
    fn total(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.values(name, with).iter().sum()
    }

    fn names(&self) -> Vec<String> {
        let values = self.values.lock().unwrap();
        let mut names: Vec<String> = values.keys().map(|(name, _)| name.clone()).collect();
        names.dedup();
        names
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The duration series of `operation` on `system`: exactly OpenTelemetry's labels and ours,
/// each value a plausible duration in seconds.
fn durations(capture: &Capture, system: &str, operation: &str) -> BTreeMap<String, Vec<f64>> {
    let found = capture.find(
        "db.client.operation.duration",
        &[("db.system.name", system), ("db.operation.name", operation)],
    );
    let mut by_outcome = BTreeMap::new();
    for (labels, values) in found {
        let outcome = labels["state.outcome"].clone();
        assert_eq!(
            labels,
            self::labels(&[
                ("db.system.name", system),
                ("db.operation.name", operation),
                ("state.prefix", &labels["state.prefix"]),
                ("state.outcome", &outcome),
            ]),
            "the label set of {operation}"
        );
        for value in &values {
            assert!(
                (0.0..5.0).contains(value),
                "{operation} took {value} seconds?"
            );
        }
        by_outcome.insert(outcome, values);
    }
    by_outcome
}

#[test]
fn memory_calls_record_their_duration_with_the_outcome() {
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(MemoryBackend::new()).enable_set();
        store.set::<Session>(1, &session("ada")).await.unwrap();
        assert!(store.get::<Session>(1).await.unwrap().is_some());
        assert!(store.get::<Session>(1).await.unwrap().is_some());
        assert!(store.get::<Session>(2).await.unwrap().is_none());
        assert!(store.exists::<Session>(1).await.unwrap());
        // A call that fails: removes are not enabled.
        assert!(store.remove::<Session>(1).await.is_err());
    });
    let get = durations(&capture, "memory", "get");
    assert_eq!(get.keys().collect::<Vec<_>>(), ["found", "none"]);
    assert_eq!((get["found"].len(), get["none"].len()), (2, 1));
    let set = durations(&capture, "memory", "set");
    assert_eq!(set["ok"].len(), 1);
    assert_eq!(durations(&capture, "memory", "exists")["true"].len(), 1);
    assert_eq!(durations(&capture, "memory", "remove")["error"].len(), 1);
    let with_prefix = capture.values(
        "db.client.operation.duration",
        &[("state.prefix", "session"), ("db.operation.name", "get")],
    );
    assert_eq!(with_prefix.len(), 3);
    // No client-side cache, batching or connection on the memory backend.
    assert_eq!(capture.names(), ["db.client.operation.duration"]);
}

#[test]
fn a_lagging_watcher_counts_the_changes_it_missed() {
    let capture = Capture::default();
    let missed = capture.run(async {
        let store = Store::new(MemoryBackend::new())
            .enable_set()
            .watch_buffer(4);
        let mut changes = store.watch::<Job>().await.unwrap();
        for step in 0..20 {
            store.set::<Job>(1, &Job { step }).await.unwrap();
        }
        match changes.next().await {
            Some(Err(Error::Lagged { missed })) => missed,
            other => panic!("expected Lagged, got {other:?}"),
        }
    });
    assert_eq!(missed, 16);
    let found = capture.find("state_store.watch.missed", &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].0,
        labels(&[("db.system.name", "memory"), ("state.prefix", "job")])
    );
    assert_eq!(found[0].1.iter().sum::<f64>(), 16.0);
}

fn session(user: &str) -> Session {
    Session { user: user.into() }
}

#[cfg(feature = "redis")]
mod redis_server {
    use std::time::{Duration, Instant};

    use state_store::{RedisBackend, RedisOptions, Store};

    use super::support::RedisServer;
    use super::*;

    async fn store_on(server: &RedisServer) -> Store<RedisBackend> {
        Store::new(RedisBackend::connect(&server.url()).await.unwrap()).enable_set()
    }

    #[test]
    fn redis_calls_record_their_duration_with_the_outcome() {
        let server = RedisServer::start();
        let capture = Capture::default();
        capture.run(async {
            let store = store_on(&server).await;
            store.set::<Session>(1, &session("ada")).await.unwrap();
            assert!(store.get::<Session>(1).await.unwrap().is_some());
            assert!(store.get::<Session>(2).await.unwrap().is_none());
        });
        let get = durations(&capture, "redis", "get");
        assert_eq!((get["found"].len(), get["none"].len()), (1, 1));
        assert_eq!(durations(&capture, "redis", "set")["ok"].len(), 1);
    }

    #[test]
    fn the_client_side_cache_counts_hits_and_misses() {
        let server = RedisServer::start();
        let capture = Capture::default();
        capture.run(async {
            let store = store_on(&server).await;
            store.set::<Flags>(1, &Flags { version: 1 }).await.unwrap();
            // The first read goes to the server; the next ones are served by the cache.
            for _ in 0..3 {
                assert_eq!(
                    store.get::<Flags>(1).await.unwrap(),
                    Some(Flags { version: 1 })
                );
            }
            // Nothing under this id: a read of the server each time.
            assert_eq!(store.get::<Flags>(2).await.unwrap(), None);
        });
        let with = [("db.system.name", "redis"), ("state.prefix", "flags")];
        assert_eq!(capture.total("state_store.cache.misses", &with), 2.0);
        assert_eq!(capture.total("state_store.cache.hits", &with), 2.0);
        let hits = capture.find("state_store.cache.hits", &[]);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, labels(&with));
        // Every get of a cached type is a hit or a miss.
        let gets = capture.values("db.client.operation.duration", &[("state.prefix", "flags")]);
        assert_eq!(gets.len(), 1 + 4);
    }

    #[test]
    fn concurrent_gets_record_batch_sizes() {
        let server = RedisServer::start();
        let capture = Capture::default();
        capture.run(async {
            let store = store_on(&server).await;
            store.set::<Session>(1, &session("ada")).await.unwrap();
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for _ in 0..10 {
                            assert!(store.get::<Session>(1).await.unwrap().is_some());
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        let found = capture.find("state_store.batch.size", &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, labels(&[("db.system.name", "redis")]));
        let sizes = &found[0].1;
        assert!(sizes.iter().any(|&size| size > 1.0), "{sizes:?}");
        assert!(sizes.iter().all(|size| (1.0..=320.0).contains(size)));
        // A batch carries only gets that waited: fewer than all of them.
        assert!(sizes.iter().sum::<f64>() < 320.0, "{sizes:?}");
    }

    #[test]
    fn killed_connections_count_as_reconnections() {
        let server = RedisServer::start();
        let capture = Capture::default();
        capture.run(async {
            // No retry of a read, so that the first get after the kill sees the break.
            let backend =
                RedisBackend::connect_with(&server.url(), RedisOptions::default().read_batch(0))
                    .await
                    .unwrap();
            let store = Store::new(backend).enable_set();
            store.set::<Session>(1, &session("ada")).await.unwrap();
            store.set::<Flags>(1, &Flags { version: 1 }).await.unwrap();
            assert!(store.get::<Flags>(1).await.unwrap().is_some());
            let mut watcher = store.watch::<Job>().await.unwrap();

            // Every client but this one: the data, durable-lane and cache connections (normal),
            // and the change feed's (pubsub).
            let mut raw = server.raw();
            for kind in ["normal", "pubsub"] {
                let _: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg(kind)
                    .query(&mut raw)
                    .unwrap();
            }

            let reconnected = |connection: &str| {
                capture.total(
                    "state_store.reconnections",
                    &[
                        ("db.system.name", "redis"),
                        ("state.connection", connection),
                    ],
                )
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while reconnected("data") < 1.0 || reconnected("cache") < 1.0 {
                assert!(
                    Instant::now() < deadline,
                    "reconnections: {:?}",
                    capture.find("state_store.reconnections", &[])
                );
                // Failures while the connections come back are expected.
                let _ = store.get::<Session>(1).await;
                let _ = store.get::<Flags>(1).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The feed tells its watcher of the gap once it has reconnected.
            let item = tokio::time::timeout(Duration::from_secs(10), watcher.next())
                .await
                .expect("the watcher hears of the interruption");
            assert!(
                matches!(item, Some(Err(Error::Interrupted { .. }))),
                "{item:?}"
            );
            assert_eq!(reconnected("feed"), 1.0);
            // One break of the data connection is one reconnection, whatever failed with it.
            assert_eq!(reconnected("data"), 1.0);
        });
    }
}
