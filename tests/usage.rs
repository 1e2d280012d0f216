//! `Store::usage`: what a namespace holds, on a real `redis-server` holding a known mix of
//! 100,000 keys, on the memory backend (exact figures), and through the provided
//! `Backend::usage` of a backend with only the core methods.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use state_store::BackendExt;
use state_store::backend::{BoxFuture, BoxStream, PutOptions, RemoveOptions};
use state_store::conformance::{Job, Session, session};
use state_store::{
    Backend, MemoryBackend, PrefixUsage, Result, Store, UsageOptions, UsageProgress, Versioned,
};

/// The keys one prefix of the Redis test holds.
#[cfg(feature = "redis")]
struct Written {
    prefix: &'static str,
    keys: u64,
    without_expiry: u64,
    /// The range of the ttls written, in milliseconds.
    ttls: Option<(u64, u64)>,
    names: Vec<String>,
}

/// 100,000 keys in namespace `app` under five prefixes, with and without expiry, values of
/// varied sizes; plus keys of other namespaces (`other`, and `apple`, which shares the start of
/// the name) that must not be counted. Written with raw pipelines of 1000 commands.
#[cfg(feature = "redis")]
fn write_known_mix(raw: &mut redis::Connection) -> Vec<Written> {
    // (prefix, keys, how many of them have no expiry, ttl range in ms)
    type Plan = (&'static str, u64, u64, Option<(u64, u64)>);
    let plan: [Plan; 5] = [
        ("session", 40_000, 0, Some((60_000, 3_600_000))),
        ("job", 30_000, 30_000, None),
        ("cache", 20_000, 10_000, Some((600_000, 1_200_000))),
        ("ratelimit", 9_993, 0, Some((30_000, 90_000))),
        // Ids with separators and glob characters, as another client may write them.
        ("odd", 5, 5, None),
    ];
    let mut written = Vec::new();
    let mut pipe = redis::pipe();
    let mut flush = |pipe: &mut redis::Pipeline, force: bool| {
        if pipe.len() >= 1000 || (force && !pipe.is_empty()) {
            pipe.query::<()>(raw).unwrap();
            pipe.clear();
        }
    };
    for (prefix, keys, without_expiry, ttls) in plan {
        let mut names = Vec::with_capacity(keys as usize);
        for i in 0..keys {
            let name = match prefix {
                "odd" => [
                    "app:odd:*",
                    "app:odd:a?b",
                    "app:odd:[x]:y",
                    "app:odd:\\",
                    "app:odd:",
                ][i as usize]
                    .to_string(),
                _ => format!("app:{prefix}:{i}"),
            };
            // Sizes from 10 to 1,009 bytes, so that the sample has to estimate a spread.
            let value = "v".repeat(10 + (i as usize * 7919) % 1000);
            let cmd = pipe.cmd("SET").arg(&name).arg(value);
            if i >= without_expiry {
                let (low, high) = ttls.unwrap();
                cmd.arg("PX").arg(low + (i * 7_368_787) % (high - low));
            }
            pipe.ignore();
            names.push(name);
            flush(&mut pipe, false);
        }
        written.push(Written {
            prefix,
            keys,
            without_expiry,
            ttls,
            names,
        });
    }
    // Keys of the namespace written by other clients: one without a prefix, one a hash.
    pipe.cmd("SET").arg("app:loose").arg("x").ignore();
    pipe.cmd("HSET")
        .arg("app:loose-hash")
        .arg("field")
        .arg("value")
        .ignore();
    // Other namespaces.
    for i in 0..5_000 {
        pipe.cmd("SET")
            .arg(format!("other:session:{i}"))
            .arg("x")
            .ignore();
        flush(&mut pipe, false);
    }
    pipe.cmd("SET").arg("apple:job:1").arg("x").ignore();
    pipe.cmd("SET").arg("app").arg("x").ignore();
    flush(&mut pipe, true);
    written
}

/// The sum of `MEMORY USAGE` over `keys`, pipelined.
#[cfg(feature = "redis")]
fn memory_usage(raw: &mut redis::Connection, keys: &[String]) -> u64 {
    let mut total = 0;
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(key);
        }
        let sizes: Vec<u64> = pipe.query(raw).unwrap();
        total += sizes.iter().sum::<u64>();
    }
    total
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_a_known_mix_of_100_000_keys_on_redis() {
    let server = support::RedisServer::start();
    let mut raw = server.raw();
    let started = Instant::now();
    let written = write_known_mix(&mut raw);
    let wrote_in = started.elapsed();
    let database: u64 = redis::cmd("DBSIZE").query(&mut raw).unwrap();

    let backend = state_store::RedisBackend::connect(&server.url())
        .await
        .unwrap();
    let store = Store::new(backend).namespace("app");
    let calls = Arc::new(AtomicU64::new(0));
    let last: Arc<Mutex<Option<UsageProgress>>> = Arc::default();
    let options = UsageOptions::new().on_progress({
        let (calls, last) = (calls.clone(), last.clone());
        move |progress| {
            calls.fetch_add(1, Ordering::Relaxed);
            *last.lock().unwrap() = Some(progress.clone());
        }
    });
    let started = Instant::now();
    let usage = store.usage_with(options).await.unwrap();
    let scanned_in = started.elapsed();
    eprintln!(
        "wrote {database} keys in {wrote_in:?}; usage took {scanned_in:?} ({:?} by its clock)",
        usage.elapsed
    );

    assert!(usage.complete, "{usage:?}");
    assert_eq!(usage.keys, 100_000, "written keys and the two loose ones");
    assert_eq!(usage.database_keys, Some(database));
    for w in &written {
        let row = usage
            .prefix(w.prefix)
            .unwrap_or_else(|| panic!("{}", w.prefix));
        assert_eq!(row.keys, w.keys, "{}", w.prefix);
        assert_eq!(row.without_expiry, w.without_expiry, "{}", w.prefix);
        assert_eq!(row.sampled, w.keys.min(200), "{}", w.prefix);
        let measured = memory_usage(&mut raw, &w.names);
        let error = row.estimated_bytes.abs_diff(measured) as f64 / measured as f64;
        eprintln!(
            "{}: estimated {} bytes, MEMORY USAGE {measured} ({:.1} % off)",
            w.prefix,
            row.estimated_bytes,
            error * 100.0
        );
        assert!(
            error < 0.2,
            "{}: estimated {} bytes, MEMORY USAGE says {measured}",
            w.prefix,
            row.estimated_bytes
        );
        match (w.ttls, row.ttl) {
            (None, None) => {}
            (Some((low, high)), Some(ttl)) => {
                // Less may be left than was written, by the time it took to get here.
                let slack = (wrote_in + scanned_in).as_millis() as u64 + 1_000;
                let ms = |d: Duration| d.as_millis() as u64;
                assert!(ms(ttl.min) + slack >= low, "{}: {ttl:?}", w.prefix);
                assert!(ms(ttl.max) <= high, "{}: {ttl:?}", w.prefix);
                assert!(ttl.min <= ttl.median && ttl.median <= ttl.p90 && ttl.p90 <= ttl.max);
                // The ttls written are spread evenly over their range.
                let middle = (low + high) / 2;
                assert!(
                    ms(ttl.median).abs_diff(middle) < (high - low) / 10,
                    "{}: {ttl:?}",
                    w.prefix
                );
            }
            other => panic!("{}: {other:?}", w.prefix),
        }
    }
    let loose = usage.prefix(PrefixUsage::NO_PREFIX).unwrap();
    // `app:loose` and the hash `app:loose-hash`.
    assert_eq!((loose.keys, loose.without_expiry), (2, 2));
    assert!(usage.prefix("other").is_none() && usage.prefix("apple").is_none());
    let names: Vec<&str> = usage.prefixes.iter().map(|p| p.prefix.as_str()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(
        usage
            .prefixes
            .windows(2)
            .all(|w| w[0].estimated_bytes >= w[1].estimated_bytes),
        "largest first: {names:?}"
    );
    assert_eq!(
        usage.without_expiry,
        written.iter().map(|w| w.without_expiry).sum::<u64>() + 2
    );

    // One progress report per SCAN batch: about DBSIZE / COUNT of them.
    let calls = calls.load(Ordering::Relaxed);
    assert!(calls >= database / 1000 / 2, "{calls} progress reports");
    let last = last.lock().unwrap().clone().unwrap();
    assert_eq!(last.keys, usage.keys);
    assert_eq!(last.database_keys, Some(database));
    assert!(last.examined <= database, "{last:?}");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_limit_stops_the_walk_and_says_so() {
    let server = support::RedisServer::start();
    let mut raw = server.raw();
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        pipe.cmd("SET")
            .arg(format!("app:job:{i}"))
            .arg("x")
            .ignore();
    }
    pipe.query::<()>(&mut raw).unwrap();
    let backend = state_store::RedisBackend::connect(&server.url())
        .await
        .unwrap();
    let store = Store::new(backend).namespace("app");

    let options = UsageOptions::new()
        .scan_count(10)
        .time_limit(Duration::ZERO);
    let usage = store.usage_with(options).await.unwrap();
    assert!(!usage.complete);
    assert!(usage.keys > 0 && usage.keys < 5_000, "{usage:?}");
    assert_eq!(usage.prefix("job").unwrap().keys, usage.keys);

    let usage = store.usage().await.unwrap();
    assert!(usage.complete);
    assert_eq!(usage.keys, 5_000);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn without_a_namespace_every_key_is_counted_by_its_first_segment() {
    let server = support::RedisServer::start();
    let mut raw = server.raw();
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("a:1")
        .arg("x")
        .cmd("SET")
        .arg("b:1")
        .arg("x")
        .arg("PX")
        .arg(60_000)
        .cmd("SET")
        .arg("bare")
        .arg("x")
        .query(&mut raw)
        .unwrap();
    let backend = state_store::RedisBackend::connect(&server.url())
        .await
        .unwrap();
    let usage = Store::new(backend).usage().await.unwrap();
    assert_eq!(usage.keys, 3);
    assert_eq!(usage.without_expiry, 2);
    for prefix in ["a", "b", PrefixUsage::NO_PREFIX] {
        assert_eq!(usage.prefix(prefix).unwrap().keys, 1, "{prefix}");
    }
    assert!(usage.prefix("b").unwrap().ttl.is_some());
}

/// Sessions (30 min ttl) and jobs (no ttl) in `app`, a key without prefix in `app`, and keys of
/// other namespaces; the exact sizes the memory backend reports.
async fn seed<B: Backend>(backend: B) -> (Store<B>, u64, u64) {
    let store = Store::new(backend).namespace("app").enable_set();
    let mut session_bytes = 0;
    for id in 0..10u64 {
        store.set::<Session>(id, &session(id as i64)).await.unwrap();
        let key = store.full_key::<Session>(id).unwrap();
        session_bytes +=
            (key.len() + serde_json::to_vec(&session(id as i64)).unwrap().len()) as u64;
    }
    let job = Job {
        status: "queued".into(),
    };
    let mut job_bytes = 0;
    for n in 0..4u32 {
        let id = ("a:b*c".to_string(), n);
        store.set::<Job>(&id, &job).await.unwrap();
        let key = store.full_key::<Job>(&id).unwrap();
        job_bytes += (key.len() + serde_json::to_vec(&job).unwrap().len()) as u64;
    }
    let raw = store.backend();
    raw.set("app:loose", b"x".to_vec(), None, None)
        .await
        .unwrap();
    raw.set("apple:job:1", b"x".to_vec(), None, None)
        .await
        .unwrap();
    raw.set("other:session:1", b"x".to_vec(), None, None)
        .await
        .unwrap();
    (store, session_bytes, job_bytes)
}

#[tokio::test(start_paused = true)]
async fn the_memory_backend_reports_exact_figures() {
    let (store, session_bytes, job_bytes) = seed(MemoryBackend::new()).await;
    let calls = Arc::new(AtomicU64::new(0));
    let options = UsageOptions::new().sample(2).on_progress({
        let calls = calls.clone();
        move |progress| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!(progress.keys, 15);
            assert_eq!(progress.database_keys, Some(17));
        }
    });
    let usage = store.usage_with(options).await.unwrap();
    assert!(calls.load(Ordering::Relaxed) >= 1, "progress reported");
    assert!(usage.complete);
    assert_eq!((usage.keys, usage.without_expiry), (15, 5));
    assert_eq!(usage.database_keys, Some(17));

    let sessions = usage.prefix("session").unwrap();
    assert_eq!((sessions.keys, sessions.without_expiry), (10, 0));
    // Exact however small the sample asked for: every key is measured.
    assert_eq!(
        (sessions.sampled, sessions.estimated_bytes),
        (10, session_bytes)
    );
    let ttl = sessions.ttl.unwrap();
    let thirty_minutes = Duration::from_secs(30 * 60);
    assert_eq!(
        (ttl.min, ttl.median, ttl.p90, ttl.max),
        (
            thirty_minutes,
            thirty_minutes,
            thirty_minutes,
            thirty_minutes
        )
    );

    let jobs = usage.prefix("job").unwrap();
    assert_eq!(
        (jobs.keys, jobs.without_expiry, jobs.estimated_bytes),
        (4, 4, job_bytes)
    );
    assert!(jobs.ttl.is_none());
    let loose = usage.prefix(PrefixUsage::NO_PREFIX).unwrap();
    assert_eq!(
        (loose.keys, loose.estimated_bytes),
        (1, "app:loose".len() as u64 + 1)
    );
    assert_eq!(usage.prefixes.len(), 3);
    assert_eq!(usage.estimated_bytes, session_bytes + job_bytes + 10);
    assert_eq!(usage.prefixes[0].prefix, "session", "largest first");
}

/// A backend with only the five core methods (over the memory backend), so that `usage` is the
/// provided one: `list`, then `ttl` and `get` per key.
#[derive(Debug, Default)]
struct CoreOnly(MemoryBackend);

impl Backend for CoreOnly {
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        self.0.get_versioned(key)
    }
    fn put<'a>(
        &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.0.put(key, value, options)
    }
    fn remove<'a>(
        &'a self, key: &'a str, options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.0.remove(key, options)
    }
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        self.0.ttl(key)
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        self.0.list(prefix)
    }
}

#[tokio::test(start_paused = true)]
async fn the_provided_usage_counts_through_the_core_methods() {
    let (store, session_bytes, job_bytes) = seed(CoreOnly::default()).await;
    let calls = Arc::new(AtomicU64::new(0));
    let options = UsageOptions::new().scan_count(4).on_progress({
        let calls = calls.clone();
        move |_: &UsageProgress| {
            calls.fetch_add(1, Ordering::Relaxed);
        }
    });
    let usage = store.usage_with(options).await.unwrap();
    // 15 keys listed, a report every 4 and one at the end.
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    assert!(usage.complete);
    assert_eq!((usage.keys, usage.without_expiry), (15, 5));
    assert_eq!(usage.database_keys, None);
    let sessions = usage.prefix("session").unwrap();
    assert_eq!((sessions.keys, sessions.sampled), (10, 10));
    assert_eq!(sessions.estimated_bytes, session_bytes);
    assert_eq!(sessions.ttl.unwrap().max, Duration::from_secs(30 * 60));
    assert_eq!(usage.prefix("job").unwrap().estimated_bytes, job_bytes);

    // A sample of 3 keys per prefix: the estimate is their mean times the count.
    let usage = store
        .usage_with(UsageOptions::new().sample(3))
        .await
        .unwrap();
    let sessions = usage.prefix("session").unwrap();
    assert_eq!((sessions.keys, sessions.sampled), (10, 3));
    let error = sessions.estimated_bytes.abs_diff(session_bytes) as f64 / session_bytes as f64;
    assert!(
        error < 0.2,
        "{} vs {session_bytes}",
        sessions.estimated_bytes
    );
}

#[tokio::test]
async fn an_invalid_namespace_is_an_error() {
    let store = Store::new(MemoryBackend::new()).namespace("bad name");
    assert!(matches!(
        store.usage().await,
        Err(state_store::Error::InvalidNamespace { .. })
    ));
}
