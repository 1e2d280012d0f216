//! Throughput benchmark: the typed `Store` against the raw `redis` crate doing the same work,
//! with `redis-benchmark` as the machine's ceiling, plus the bulk, counter, rate-limit and
//! compare-and-set patterns, the memory backend, and the commands each call sends.
//!
//!     cargo run --release --example bench              # about 2.5 minutes
//!     cargo run --release --example bench -- --quick   # about 15 seconds (what CI runs)
//!
//! Options: `--quick`, `--rounds N`, `--secs S` (length of one round). It starts its own
//! `redis-server` on a free loopback port with its own temp dir (never the Redis on 6379, and
//! `REDIS_URL` is ignored) and stops it at the end; `REDIS_SERVER` and `REDIS_BENCHMARK` point at
//! other binaries. Every figure is the median of several rounds; the rounds of the workloads
//! compared with each other alternate (A B, B A, ...) so that noise on a shared machine hits both
//! sides alike, and their ratio is the median of the round-by-round ratios. It exits non-zero only
//! on errors: a missed target is reported as "below target".
//!
//! `bench --profile get-typed --ops 20000` (see `--help`) runs a single workload for a fixed
//! number of operations, to compare instruction counts under `valgrind --tool=callgrind`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use serde::{Deserialize, Serialize};
use state_store::{
    Error, MemoryBackend, Policy, Quota, RateLimit, RedisBackend, RedisOptions, StateKey, Store,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// A realistic session: about 200 bytes of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    user: String,
    cart: Vec<String>,
    locale: String,
    updated_at: i64,
    flags: u32,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "calls", id = u64, ttl = "1m", counter)]
struct Calls(i64);

/// Quotas large enough that every check in the benchmark is allowed.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "rate-fixed", id = u64, ttl = "1m", counter)]
struct FixedRate(i64);

impl RateLimit for FixedRate {
    const QUOTA: Quota = Quota::per_second(1_000_000);
    const POLICY: Policy = Policy::FixedWindow;
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "rate-smooth", id = u64, ttl = "1m", counter)]
struct SmoothRate(i64);

impl RateLimit for SmoothRate {
    const QUOTA: Quota = Quota::per_second(1_000_000);
    const POLICY: Policy = Policy::Smooth;
}

/// Sessions written before the benchmark; reads pick among them.
const POOL: u64 = 1000;
/// The `PX` the raw side sends, as the store does for `Session`'s `ttl = "30m"`.
const SESSION_TTL_MS: u64 = 30 * 60 * 1000;
/// Concurrency of the "many tasks" workloads.
const MANY: usize = 64;
/// Batch size of the bulk workloads.
const BATCH: u64 = 100;
/// Ids outside the pool for the update workloads.
const UPDATE_SOLO_ID: u64 = 100_000;
const UPDATE_SHARED_ID: u64 = 100_001;
/// The typed-vs-raw target.
const TARGET: f64 = 0.95;

fn session(id: u64) -> Session {
    Session {
        user: format!("customer-{id:06}@shop.example.com"),
        cart: vec![
            "sku-100234-espresso-beans-1kg".into(),
            "sku-200871-ceramic-mug-blue".into(),
            "sku-310045-milk-frother".into(),
        ],
        locale: "en-GB".into(),
        updated_at: 1_767_225_600_000 + id as i64,
        flags: 0b1011,
    }
}

/// Spreads the ids a task reads or writes over the pool.
fn pick(task: usize, i: u64) -> u64 {
    (task as u64 * 7919 + i) % POOL
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    /// `--profile WORKLOAD --ops N`: run only that workload, N operations on one task (for
    /// `valgrind --tool=callgrind`).
    profile: Option<String>,
    ops: u64,
    /// `--tasks N` with `--profile`: the ops are shared among N concurrent tasks (get and set).
    tasks: usize,
    rounds: usize,
    round: Duration,
    warmup: Duration,
    /// redis-benchmark rounds and request counts at 1 and at 64 clients.
    rb_rounds: usize,
    rb_n1: u64,
    rb_n64: u64,
    /// ... and at 1 client pipelining 64 requests.
    rb_np: u64,
}

impl Config {
    fn from_args() -> Res<Config> {
        let mut config = Config {
            quick: false,
            profile: None,
            ops: 20_000,
            tasks: 1,
            rounds: 7,
            round: Duration::from_millis(700),
            warmup: Duration::from_millis(300),
            rb_rounds: 3,
            rb_n1: 20_000,
            rb_n64: 40_000,
            rb_np: 300_000,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => {
                    config.quick = true;
                    config.rounds = 3;
                    config.round = Duration::from_millis(150);
                    config.warmup = Duration::from_millis(50);
                    config.rb_rounds = 1;
                    config.rb_n1 = 3_000;
                    config.rb_n64 = 6_000;
                    config.rb_np = 30_000;
                }
                "--rounds" => {
                    let n: usize = args.next().ok_or("--rounds needs a number")?.parse()?;
                    config.rounds = n.max(1);
                }
                "--secs" => {
                    let s: f64 = args.next().ok_or("--secs needs a number")?.parse()?;
                    config.round = Duration::try_from_secs_f64(s)?;
                }
                "--profile" => {
                    config.profile = Some(args.next().ok_or("--profile needs a workload")?);
                }
                "--ops" => config.ops = args.next().ok_or("--ops needs a number")?.parse()?,
                "--tasks" => {
                    let n: usize = args.next().ok_or("--tasks needs a number")?.parse()?;
                    config.tasks = n.max(1);
                }
                "-h" | "--help" => {
                    println!(
                        "usage: cargo run --release --example bench [-- --quick] \
                         [--rounds N] [--secs S]\n\
                         \x20      bench --profile WORKLOAD [--ops N] [--tasks T]   (N ops on T \
                         tasks, default 1; for callgrind)\n\
                         WORKLOAD: {}",
                        PROFILES.join(", ")
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)").into()),
            }
        }
        Ok(config)
    }
}

/// What the tasks of one round did.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    /// Operations, keys or successful updates, as the workload counts them.
    units: u64,
    /// `update`: attempts that lost the compare-and-set and ran again.
    retries: u64,
    /// `update`: calls that gave up with `Error::Conflict`.
    conflicts: u64,
}

impl Count {
    fn units(units: u64) -> Count {
        Count {
            units,
            ..Count::default()
        }
    }
}

/// Hands out operation numbers until the round's deadline (or, with `--profile`, a count).
#[derive(Debug)]
struct Ticker {
    deadline: Instant,
    next: u64,
    limit: u64,
}

impl Ticker {
    fn tick(&mut self) -> Option<u64> {
        if self.next >= self.limit || Instant::now() >= self.deadline {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// One round: units per second, what was done, and this process's CPU time in the round
/// (nanoseconds, all threads; `None` where the kernel does not report it).
type RoundFuture = Pin<Box<dyn Future<Output = Res<(f64, Count, Option<u64>)>> + Send>>;

/// CPU time of all threads of this process so far, in nanoseconds, from
/// `/proc/self/task/*/schedstat` (Linux). This is the client's cost of a workload, which, unlike
/// its throughput, does not depend on what else the shared machine is running.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// A named workload: `tasks` concurrent tasks, each running its loop until the deadline.
struct Workload {
    name: String,
    unit: &'static str,
    tasks: usize,
    /// Runs one round: for a duration, or until each task has done `limit` operations.
    run: Box<dyn Fn(Duration, u64) -> RoundFuture + Send + Sync>,
}

fn workload<F, Fut>(name: impl Into<String>, unit: &'static str, tasks: usize, task: F) -> Workload
where
    F: Fn(usize, Ticker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<Count>> + Send + 'static,
{
    let task = Arc::new(task);
    Workload {
        name: name.into(),
        unit,
        tasks,
        run: Box::new(move |duration, limit| {
            let task = task.clone();
            Box::pin(async move {
                let cpu_start = process_cpu_ns();
                let start = Instant::now();
                let deadline = start + duration;
                let handles: Vec<_> = (0..tasks)
                    .map(|t| {
                        tokio::spawn(task(
                            t,
                            Ticker {
                                deadline,
                                next: 0,
                                limit,
                            },
                        ))
                    })
                    .collect();
                let mut total = Count::default();
                for handle in handles {
                    let count = handle.await??;
                    total.units += count.units;
                    total.retries += count.retries;
                    total.conflicts += count.conflicts;
                }
                // Measured to the end of the slowest task, not the nominal deadline.
                let rate = total.units as f64 / start.elapsed().as_secs_f64();
                let cpu = cpu_start
                    .zip(process_cpu_ns())
                    .map(|(a, b)| b.saturating_sub(a));
                Ok((rate, total, cpu))
            })
        }),
    }
}

/// Rates of several rounds of one workload.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    unit: &'static str,
    rates: Vec<f64>,
    /// Client CPU microseconds per unit, per round.
    cpu_per_unit: Vec<f64>,
    count: Count,
    /// Which `measure` call ran it: series of the same group ran in alternating rounds, so
    /// their ratio is taken round by round.
    group: usize,
}

impl Series {
    fn median(&self) -> f64 {
        median(&self.rates)
    }

    /// Median client CPU microseconds per unit.
    fn cpu(&self) -> Option<f64> {
        (!self.cpu_per_unit.is_empty()).then(|| median(&self.cpu_per_unit))
    }

    /// (max - min) / median, as a rough noise figure.
    fn spread(&self) -> f64 {
        let max = self.rates.iter().copied().fold(f64::MIN, f64::max);
        let min = self.rates.iter().copied().fold(f64::MAX, f64::min);
        if self.median() > 0.0 {
            (max - min) / self.median()
        } else {
            0.0
        }
    }
}

/// `series` relative to `reference`, with the range over the rounds when they are paired: the
/// median of the per-round ratios (each round of one next to the same round of the other, so
/// that a slow stretch of the machine hits both), else the ratio of the medians.
fn ratio(series: &Series, reference: &Series) -> Option<(f64, Option<(f64, f64)>)> {
    if series.group == reference.group && series.rates.len() == reference.rates.len() {
        let ratios: Vec<f64> = series
            .rates
            .iter()
            .zip(&reference.rates)
            .filter(|(_, r)| **r > 0.0)
            .map(|(s, r)| s / r)
            .collect();
        if ratios.len() == series.rates.len() && !ratios.is_empty() {
            let min = ratios.iter().copied().fold(f64::MAX, f64::min);
            let max = ratios.iter().copied().fold(f64::MIN, f64::max);
            return Some((median(&ratios), Some((min, max))));
        }
    }
    (reference.median() > 0.0).then(|| (series.median() / reference.median(), None))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Warms every workload up, then runs the rounds interleaved, in alternating order so that
/// neither side always goes first: A B C, C B A, A B C ...
async fn measure(config: &Config, group: Vec<Workload>) -> Res<Vec<Series>> {
    static GROUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let group_id = GROUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let names: Vec<&str> = group.iter().map(|w| w.name.as_str()).collect();
    eprintln!("  measuring: {}", names.join(" | "));
    for w in &group {
        (w.run)(config.warmup, u64::MAX).await?;
    }
    let mut series: Vec<Series> = group
        .iter()
        .map(|w| Series {
            name: w.name.clone(),
            unit: w.unit,
            rates: Vec::new(),
            cpu_per_unit: Vec::new(),
            count: Count::default(),
            group: group_id,
        })
        .collect();
    for round in 0..config.rounds {
        let mut order: Vec<usize> = (0..group.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (w, s) = (&group[i], &mut series[i]);
            let (rate, count, cpu) = (w.run)(config.round, u64::MAX).await?;
            s.rates.push(rate);
            if let Some(cpu) = cpu.filter(|_| count.units > 0) {
                s.cpu_per_unit
                    .push(cpu as f64 / count.units as f64 / 1000.0);
            }
            s.count.units += count.units;
            s.count.retries += count.retries;
            s.count.conflicts += count.conflicts;
        }
    }
    Ok(series)
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn typed_get(store: &Store<RedisBackend>, tasks: usize) -> Workload {
    let store = store.clone();
    workload(
        format!("get  typed  {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let store = store.clone();
            async move {
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let session = store.get::<Session>(pick(t, i)).await?;
                    black_box(session.ok_or("a seeded session is missing")?);
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

fn raw_get(conn: &ConnectionManager, tasks: usize) -> Workload {
    let conn = conn.clone();
    workload(
        format!("get  raw    {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let mut conn = conn.clone();
            async move {
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = format!("session:{}", pick(t, i));
                    let bytes: Option<Vec<u8>> =
                        redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                    let session: Option<Session> =
                        bytes.map(|b| serde_json::from_slice(&b)).transpose()?;
                    black_box(session.ok_or("a seeded session is missing")?);
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

fn typed_set(store: &Store<RedisBackend>, tasks: usize) -> Workload {
    let store = store.clone();
    workload(
        format!("set  typed  {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let store = store.clone();
            async move {
                let value = session(t as u64);
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    store.set::<Session>(pick(t, i), &value).await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

fn raw_set(conn: &ConnectionManager, tasks: usize) -> Workload {
    let conn = conn.clone();
    workload(
        format!("set  raw    {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let mut conn = conn.clone();
            async move {
                let value = session(t as u64);
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = format!("session:{}", pick(t, i));
                    let bytes = serde_json::to_vec(&value)?;
                    let () = redis::cmd("SET")
                        .arg(&key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(SESSION_TTL_MS)
                        .query_async(&mut conn)
                        .await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

fn batch_ids(i: u64) -> Vec<u64> {
    let start = (i * BATCH) % POOL;
    (start..start + BATCH).map(|id| id % POOL).collect()
}

fn get_many(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("get_many(100)", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let sessions = store.get_many::<Session>(batch_ids(i)).await?;
                if sessions.iter().any(Option::is_none) {
                    return Err("a seeded session is missing".into());
                }
                black_box(sessions);
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

fn get_sequential(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("100 sequential gets", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                for id in batch_ids(i) {
                    let session = store.get::<Session>(id).await?;
                    black_box(session.ok_or("a seeded session is missing")?);
                }
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

fn set_many(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("set_many(100)", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let items: Vec<(u64, Session)> = batch_ids(i)
                    .into_iter()
                    .map(|id| (id, session(id)))
                    .collect();
                store.set_many::<Session>(&items).await?;
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

fn set_sequential(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("100 sequential sets", "keys", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let items: Vec<(u64, Session)> = batch_ids(i)
                    .into_iter()
                    .map(|id| (id, session(id)))
                    .collect();
                for (id, value) in &items {
                    store.set::<Session>(id, value).await?;
                }
                n += BATCH;
            }
            Ok(Count::units(n))
        }
    })
}

fn incr(store: &Store<RedisBackend>) -> Workload {
    let store = store.clone();
    workload("incr (Calls)", "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while ticker.tick().is_some() {
                black_box(store.incr::<Calls>(1, 1).await?);
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

fn raw_incr(conn: &ConnectionManager) -> Workload {
    let conn = conn.clone();
    workload("raw INCR", "ops", 1, move |_, mut ticker| {
        let mut conn = conn.clone();
        async move {
            let mut n = 0;
            while ticker.tick().is_some() {
                let value: i64 = redis::cmd("INCR")
                    .arg("calls:raw")
                    .query_async(&mut conn)
                    .await?;
                black_box(value);
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

fn check<S: RateLimit<Id = u64>>(store: &Store<RedisBackend>, name: &str) -> Workload {
    let store = store.clone();
    workload(name, "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while ticker.tick().is_some() {
                let decision = store.check::<S>(1).await?;
                if !decision.allowed {
                    return Err(format!("a check was refused: {decision:?}").into());
                }
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

/// `update` on `id` from `tasks` tasks, counting lost races and give-ups.
fn update(store: &Store<RedisBackend>, name: &str, tasks: usize, id: u64) -> Workload {
    let store = store.clone();
    workload(name, "updates", tasks, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut count = Count::default();
            while let Some(i) = ticker.tick() {
                let mut attempts = 0u64;
                let result = store
                    .update::<Session>(id, |current| {
                        attempts += 1;
                        current.map(|mut s| {
                            s.updated_at = i as i64;
                            s.flags = s.flags.wrapping_add(1);
                            s
                        })
                    })
                    .await;
                match result {
                    Ok(Some(_)) => {
                        count.units += 1;
                        count.retries += attempts - 1;
                    }
                    Ok(None) => return Err("the updated session is missing".into()),
                    Err(Error::Conflict { .. }) => {
                        count.conflicts += 1;
                        count.retries += attempts;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(count)
        }
    })
}

/// The same read-modify-write by hand (GET, decode, encode, SET PX): two round trips, like
/// `update`, but not atomic.
fn raw_read_modify_write(conn: &ConnectionManager, id: u64) -> Workload {
    let conn = conn.clone();
    workload("raw GET + SET PX", "updates", 1, move |_, mut ticker| {
        let mut conn = conn.clone();
        async move {
            let key = format!("session:{id}");
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let bytes: Option<Vec<u8>> =
                    redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                let mut s: Session =
                    serde_json::from_slice(&bytes.ok_or("the updated session is missing")?)?;
                s.updated_at = i as i64;
                s.flags = s.flags.wrapping_add(1);
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(serde_json::to_vec(&s)?)
                    .arg("PX")
                    .arg(SESSION_TTL_MS)
                    .query_async(&mut conn)
                    .await?;
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

fn memory_get(store: &Store<MemoryBackend>) -> Workload {
    let store = store.clone();
    workload("memory get", "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                let session = store.get::<Session>(pick(0, i)).await?;
                black_box(session.ok_or("a seeded session is missing")?);
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

fn memory_set(store: &Store<MemoryBackend>) -> Workload {
    let store = store.clone();
    workload("memory set", "ops", 1, move |_, mut ticker| {
        let store = store.clone();
        async move {
            let value = session(0);
            let mut n = 0;
            while let Some(i) = ticker.tick() {
                store.set::<Session>(pick(0, i), &value).await?;
                n += 1;
            }
            Ok(Count::units(n))
        }
    })
}

fn json_decode() -> Workload {
    workload(
        "serde_json decode",
        "ops",
        1,
        move |_, mut ticker| async move {
            let bytes = serde_json::to_vec(&session(0))?;
            let mut n = 0;
            while ticker.tick().is_some() {
                let s: Session = serde_json::from_slice(black_box(&bytes))?;
                black_box(s);
                n += 1;
            }
            Ok(Count::units(n))
        },
    )
}

fn json_encode() -> Workload {
    workload(
        "serde_json encode",
        "ops",
        1,
        move |_, mut ticker| async move {
            let value = session(0);
            let mut n = 0;
            while ticker.tick().is_some() {
                black_box(serde_json::to_vec(black_box(&value))?);
                n += 1;
            }
            Ok(Count::units(n))
        },
    )
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark
// ---------------------------------------------------------------------------------------------

fn redis_benchmark_binary() -> String {
    std::env::var("REDIS_BENCHMARK").unwrap_or_else(|_| "redis-benchmark".into())
}

/// One `redis-benchmark -t get,set -d 200` run: (GET rps, SET rps).
fn redis_benchmark(port: u16, clients: usize, pipeline: usize, requests: u64) -> Res<(f64, f64)> {
    let binary = redis_benchmark_binary();
    let output = Command::new(&binary)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "get,set", "-d", "200", "--csv"])
        .args(["-n", &requests.to_string(), "-c", &clients.to_string()])
        .args(["-P", &pipeline.to_string()])
        .output()
        .map_err(|e| {
            format!("cannot run {binary}: {e} (install redis-tools, or set REDIS_BENCHMARK=/path)")
        })?;
    if !output.status.success() {
        return Err(format!(
            "{binary} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rps = |test: &str| -> Res<f64> {
        stdout
            .lines()
            .find_map(|line| {
                let mut fields = line.split(',').map(|f| f.trim_matches('"'));
                (fields.next() == Some(test)).then(|| fields.next())?
            })
            .ok_or_else(|| format!("no {test} line in redis-benchmark output:\n{stdout}"))?
            .parse::<f64>()
            .map_err(|e| format!("bad {test} rate in redis-benchmark output: {e}").into())
    };
    Ok((rps("GET")?, rps("SET")?))
}

/// Rounds of redis-benchmark at 1 client, 64 clients, and 1 client pipelining 64 requests (what
/// 64 tasks on one multiplexed connection amount to), alternating.
async fn ceiling(config: &Config, port: u16) -> Res<Vec<Series>> {
    eprintln!("  measuring: redis-benchmark -c 1 | -c {MANY} | -c 1 -P {MANY}");
    let mut rates: [Vec<f64>; 6] = Default::default();
    for _ in 0..config.rb_rounds {
        let (n1, n64, np) = (config.rb_n1, config.rb_n64, config.rb_np);
        let ((g1, s1), (g64, s64), (gp, sp)) = tokio::task::spawn_blocking(move || -> Res<_> {
            Ok((
                redis_benchmark(port, 1, 1, n1)?,
                redis_benchmark(port, MANY, 1, n64)?,
                redis_benchmark(port, 1, MANY, np)?,
            ))
        })
        .await??;
        for (r, v) in rates.iter_mut().zip([g1, s1, g64, s64, gp, sp]) {
            r.push(v);
        }
    }
    let names = [
        "redis-benchmark GET -c 1".to_string(),
        "redis-benchmark SET -c 1".to_string(),
        format!("redis-benchmark GET -c {MANY}"),
        format!("redis-benchmark SET -c {MANY}"),
        format!("redis-benchmark GET -P {MANY}"),
        format!("redis-benchmark SET -P {MANY}"),
    ];
    Ok(names
        .into_iter()
        .zip(rates)
        .map(|(name, rates)| Series {
            name,
            unit: "ops",
            rates,
            cpu_per_unit: Vec::new(),
            count: Count::default(),
            group: usize::MAX,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Server commands per call
// ---------------------------------------------------------------------------------------------

/// What the server counted between `CONFIG RESETSTAT` and `INFO`.
#[derive(Debug, Default)]
struct ServerCounts {
    /// Command name: (calls, failed calls).
    commands: BTreeMap<String, (u64, u64)>,
    total_commands: u64,
    reads: u64,
    writes: u64,
}

async fn server_counts(admin: &mut MultiplexedConnection) -> Res<ServerCounts> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("stats")
        .query_async(admin)
        .await?;
    let mut counts = ServerCounts::default();
    for line in info.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let field = |wanted: &str| {
                fields
                    .split(',')
                    .filter_map(|f| f.split_once('='))
                    .find(|(k, _)| *k == wanted)
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            counts
                .commands
                .insert(name.to_string(), (field("calls"), field("failed_calls")));
        } else if let Some((key, value)) = line.trim_end().split_once(':') {
            let value = value.parse::<u64>().unwrap_or(0);
            match key {
                "total_commands_processed" => counts.total_commands = value,
                "total_reads_processed" => counts.reads = value,
                "total_writes_processed" => counts.writes = value,
                _ => {}
            }
        }
    }
    Ok(counts)
}

/// Resets the server's statistics, runs `op` once, and returns what the server counted minus
/// what the bookkeeping itself costs (`baseline`).
async fn commands_of<Fut>(
    admin: &mut MultiplexedConnection,
    baseline: Option<&ServerCounts>,
    op: Fut,
) -> Res<ServerCounts>
where
    Fut: Future<Output = Res<()>>,
{
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(admin)
        .await?;
    op.await?;
    let mut counts = server_counts(admin).await?;
    if let Some(base) = baseline {
        for (name, (calls, failed)) in &base.commands {
            if let Some(entry) = counts.commands.get_mut(name) {
                entry.0 = entry.0.saturating_sub(*calls);
                entry.1 = entry.1.saturating_sub(*failed);
            }
        }
        counts.commands.retain(|_, (calls, _)| *calls > 0);
        counts.total_commands = counts.total_commands.saturating_sub(base.total_commands);
        counts.reads = counts.reads.saturating_sub(base.reads);
        counts.writes = counts.writes.saturating_sub(base.writes);
    }
    Ok(counts)
}

fn describe_commands(counts: &ServerCounts) -> String {
    // MULTI first and EXEC last; the rest alphabetically.
    let rank = |name: &str| match name {
        "multi" => 0,
        "exec" => 2,
        _ => 1,
    };
    let mut names: Vec<&String> = counts.commands.keys().collect();
    names.sort_by_key(|name| (rank(name), name.as_str()));
    names
        .into_iter()
        .map(|name| {
            let (calls, failed) = counts.commands[name];
            if failed > 0 {
                format!("{name}:{calls}({failed} failed)")
            } else {
                format!("{name}:{calls}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn command_table(store: &Store<RedisBackend>, admin: &mut MultiplexedConnection) -> Res<()> {
    // The counters and limits exist already, as they do in steady state (the first call of a
    // window also sets the expiry).
    store.incr::<Calls>(2, 1).await?;
    store.check::<FixedRate>(2).await?;
    store.check::<SmoothRate>(2).await?;
    let baseline = commands_of(admin, None, async { Ok(()) }).await?;
    let ids: Vec<u64> = (0..BATCH).collect();
    let items: Vec<(u64, Session)> = ids.iter().map(|&id| (id, session(id))).collect();
    let value = session(7);

    let mut rows: Vec<(&str, ServerCounts, &str)> = Vec::new();
    macro_rules! row {
        ($name:expr, $sends:expr, $op:expr) => {{
            let counts = commands_of(admin, Some(&baseline), async { $op }).await?;
            rows.push(($name, counts, $sends));
        }};
    }
    row!("get", "1: GET", {
        store.get::<Session>(7).await?;
        Ok(())
    });
    row!(
        "set",
        "1: SET PX",
        store.set::<Session>(7, &value).await.map_err(Into::into)
    );
    row!("get_many(100)", "1: MGET of 100 keys", {
        store.get_many::<Session>(&ids).await?;
        Ok(())
    });
    row!(
        "set_many(100)",
        "1: MULTI, 100 x SET PX, EXEC written as one pipeline",
        store.set_many::<Session>(&items).await.map_err(Into::into)
    );
    row!("incr", "1: EVALSHA (the rest ran inside the Lua script)", {
        store.incr::<Calls>(2, 1).await?;
        Ok(())
    });
    row!(
        "check FixedWindow",
        "1: EVALSHA (the rest ran inside the Lua script)",
        {
            store.check::<FixedRate>(2).await?;
            Ok(())
        }
    );
    row!(
        "check Smooth",
        "1: EVALSHA (the rest ran inside the Lua script)",
        {
            store.check::<SmoothRate>(2).await?;
            Ok(())
        }
    );
    // A fresh id each run, so that the key is absent and the write happens.
    let absent_id = 200_000 + std::process::id() as u64;
    row!("set_if_absent", "1: SET NX PX", {
        if !store.set_if_absent::<Session>(absent_id, &value).await? {
            return Err("set_if_absent found a value".into());
        }
        Ok(())
    });
    row!(
        "update (uncontended)",
        "2: GET, then EVALSHA (compare-and-set script)",
        {
            store
                .update::<Session>(UPDATE_SOLO_ID, |s| {
                    s.map(|mut s| {
                        s.flags += 1;
                        s
                    })
                })
                .await?;
            Ok(())
        }
    );
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(admin).await?;
    row!(
        "incr, script not cached",
        "3: EVALSHA (fails: NOSCRIPT), SCRIPT LOAD, EVALSHA",
        {
            store.incr::<Calls>(2, 1).await?;
            Ok(())
        }
    );

    println!();
    println!("## Server commands per call (CONFIG RESETSTAT, one call, INFO commandstats + stats)");
    println!();
    println!(
        "{:<24} {:<52} {:>5} {:>5} {:>6}  round trips (from the code): what the client sends",
        "call", "commands the server ran", "total", "reads", "writes"
    );
    for (name, counts, sends) in &rows {
        println!(
            "{:<24} {:<52} {:>5} {:>5} {:>6}  {}",
            name,
            describe_commands(counts),
            counts.total_commands,
            counts.reads,
            counts.writes,
            sends
        );
    }
    println!();
    println!(
        "commandstats and total_commands_processed also count the commands a Lua script runs \
         and the commands queued inside MULTI/EXEC, so they are not round trips. `reads`/`writes` \
         are the server's socket reads and writes for the call (total_reads_processed / \
         total_writes_processed): one request that the client writes at once is one read unless \
         it is larger than the server's 16 KB read buffer, as set_many(100) is."
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn format_rate(rate: f64) -> String {
    let n = rate.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Default)]
struct Table {
    lines: Vec<String>,
    missed: Vec<String>,
}

impl Table {
    fn section(&mut self, title: &str) {
        self.lines.push(String::new());
        self.lines.push(format!("## {title}"));
    }

    /// One row: `series` against `reference`, with an optional minimum ratio.
    fn row(
        &mut self,
        series: &Series,
        reference: Option<&Series>,
        target: Option<f64>,
        note: &str,
    ) {
        let rate = series.median();
        let relative = reference.and_then(|r| Some((r, ratio(series, r)?)));
        let (ratio_text, against) = match relative {
            // Rounded down, so that a ratio shown as 0.95x meets a 0.95x target.
            Some((r, (x, _))) => (
                format!("{:.2}x", (x * 100.0).floor() / 100.0),
                format!("vs {}", r.name.trim()),
            ),
            None => (String::new(), String::new()),
        };
        let range = match relative {
            Some((_, (_, Some((min, max))))) => format!(" (rounds {min:.2}-{max:.2})"),
            _ => String::new(),
        };
        let verdict = match (target, relative) {
            (Some(t), Some((r, (x, _)))) => {
                if x >= t {
                    format!(">= {t:.2}x: ok{range}")
                } else {
                    self.missed.push(format!(
                        "{}: {x:.3}x of {}{range}, target {t:.2}x",
                        series.name.trim(),
                        r.name.trim()
                    ));
                    format!("below target ({t:.2}x){range}")
                }
            }
            _ => range.trim_start().to_string(),
        };
        let cpu = series.cpu();
        let cpu_text = cpu.map_or("-".into(), |c| format!("{c:.2}"));
        let mut verdict = verdict;
        if let Some((r, _)) = relative.filter(|(r, _)| r.group == series.group)
            && let (Some(c), Some(rc)) = (cpu, r.cpu())
        {
            verdict = format!("cpu/{} {:.2}x; {verdict}", series.unit, c / rc);
        }
        let mut line = format!(
            "{:<28} {:>11} {:<9} {:>4.0}% {:>7}  {:>6}  {:<30} {}",
            series.name,
            format_rate(rate),
            format!("{}/s", series.unit),
            series.spread() * 100.0,
            cpu_text,
            ratio_text,
            against,
            verdict
        );
        if !note.is_empty() {
            line.push_str(&format!("  {note}"));
        }
        self.lines.push(line.trim_end().to_string());
    }
}

fn machine_line(server_version: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "n/a".into());
    format!(
        "machine: nproc {cores}, {cpu}, load average {load}; redis-server {server_version}; \
         tokio multi-thread runtime, {cores} workers"
    )
}

const PROFILES: [&str; 8] = [
    "get-typed",
    "get-raw",
    "set-typed",
    "set-raw",
    "incr",
    "raw-incr",
    "memory-get",
    "decode",
];

/// `--profile`: one workload, `ops` operations (shared by `tasks` tasks for get and set, else on
/// one task), then the time it took. Compare
/// `valgrind --tool=callgrind` instruction counts of two workloads, each minus a run with
/// `--ops 0` (start-up, seeding and connecting).
async fn profile(
    name: &str,
    ops: u64,
    tasks: usize,
    store: &Store<RedisBackend>,
    raw: &ConnectionManager,
    memory: &Store<MemoryBackend>,
) -> Res<()> {
    let w = match name {
        "get-typed" => typed_get(store, tasks),
        "get-raw" => raw_get(raw, tasks),
        "set-typed" => typed_set(store, tasks),
        "set-raw" => raw_set(raw, tasks),
        "incr" => incr(store),
        "raw-incr" => raw_incr(raw),
        "memory-get" => memory_get(memory),
        "decode" => json_decode(),
        other => {
            return Err(format!(
                "unknown workload {other:?} for --profile; one of {}",
                PROFILES.join(", ")
            )
            .into());
        }
    };
    let start = Instant::now();
    let per_task = ops.div_ceil(w.tasks as u64);
    let (rate, count, cpu) = (w.run)(Duration::from_secs(24 * 3600), per_task).await?;
    let cpu = cpu.map_or("-".into(), |c| {
        format!("{:.2}", c as f64 / 1000.0 / count.units.max(1) as f64)
    });
    println!(
        "{}: {} {} in {:?}: {:.0} {}/s, cpu µs/{} {cpu}",
        w.name.trim(),
        count.units,
        w.unit,
        start.elapsed(),
        rate,
        w.unit,
        w.unit,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Res<()> {
    let config = Config::from_args()?;
    let started = Instant::now();
    let server = support::RedisServer::start();
    let client = server.client();
    let mut admin = client.get_multiplexed_async_connection().await?;
    let server_info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut admin)
        .await?;
    let server_version = server_info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_string();

    let store = Store::new(RedisBackend::connect(&server.url()).await?)
        .enable_set()
        .enable_remove();
    // The raw side: its own ConnectionManager, configured as `RedisBackend` configures its own,
    // shared (cloned) by all of its tasks as the store's clones share the store's.
    let options = RedisOptions::default();
    let raw_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(options.reconnect_retries)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1));
    let raw = ConnectionManager::new_with_config(server.client(), raw_config).await?;
    let memory = Store::new(MemoryBackend::new()).enable_set();

    let json_len = serde_json::to_vec(&session(0))?.len();
    eprintln!(
        "bench: redis-server {server_version} on 127.0.0.1:{} ({} mode: {} rounds of {:?})",
        server.port(),
        match (&config.profile, config.quick) {
            (Some(_), _) => "profile",
            (None, true) => "quick",
            (None, false) => "full",
        },
        config.rounds,
        config.round
    );

    // Seed the pool on both backends, and the update keys.
    for start in (0..POOL).step_by(BATCH as usize) {
        let items: Vec<(u64, Session)> =
            (start..start + BATCH).map(|id| (id, session(id))).collect();
        store.set_many::<Session>(&items).await?;
        memory.set_many::<Session>(&items).await?;
    }
    for id in [UPDATE_SOLO_ID, UPDATE_SHARED_ID] {
        store.set::<Session>(id, &session(id)).await?;
    }

    if let Some(name) = &config.profile {
        return profile(name, config.ops, config.tasks, &store, &raw, &memory).await;
    }

    let machine = machine_line(&server_version);

    // 2. The machine's ceiling, measured first so that the comparisons below can refer to it.
    let ceiling = ceiling(&config, server.port()).await?;

    // 1. Typed vs raw, alternating rounds.
    let get1 = measure(&config, vec![typed_get(&store, 1), raw_get(&raw, 1)]).await?;
    let set1 = measure(&config, vec![typed_set(&store, 1), raw_set(&raw, 1)]).await?;
    let get64 = measure(&config, vec![typed_get(&store, MANY), raw_get(&raw, MANY)]).await?;
    let set64 = measure(&config, vec![typed_set(&store, MANY), raw_set(&raw, MANY)]).await?;

    // 3. Bulk vs sequential.
    let bulk_get = measure(&config, vec![get_many(&store), get_sequential(&store)]).await?;
    let bulk_set = measure(&config, vec![set_many(&store), set_sequential(&store)]).await?;

    // 4. Counters and rate limits vs a raw INCR.
    let counters = measure(
        &config,
        vec![
            raw_incr(&raw),
            incr(&store),
            check::<FixedRate>(&store, "check FixedWindow"),
            check::<SmoothRate>(&store, "check Smooth"),
        ],
    )
    .await?;

    // 5. Compare-and-set.
    let updates = measure(
        &config,
        vec![
            update(&store, "update, 1 task, own key", 1, UPDATE_SOLO_ID),
            raw_read_modify_write(&raw, UPDATE_SOLO_ID),
            update(
                &store,
                &format!("update, {MANY} tasks, 1 key"),
                MANY,
                UPDATE_SHARED_ID,
            ),
        ],
    )
    .await?;

    // 6. The memory backend vs serde_json alone.
    let mem = measure(
        &config,
        vec![
            memory_get(&memory),
            json_decode(),
            memory_set(&memory),
            json_encode(),
        ],
    )
    .await?;

    // The table.
    let mut table = Table::default();
    table.section("1. Typed Store vs the raw redis crate (same serde_json work, SET with PX)");
    for (get, set, ceiling_get, ceiling_set, pipelined) in [
        (&get1, &set1, &ceiling[0], &ceiling[1], None),
        (
            &get64,
            &set64,
            &ceiling[2],
            &ceiling[3],
            Some((&ceiling[4], &ceiling[5])),
        ),
    ] {
        let of_pipelined = |raw: &Series, p: Option<&Series>| {
            p.map(|p| format!("{:.2}x of {}", raw.median() / p.median(), p.name))
                .unwrap_or_default()
        };
        table.row(&get[0], Some(&get[1]), Some(TARGET), "");
        let note = of_pipelined(&get[1], pipelined.map(|p| p.0));
        table.row(&get[1], Some(ceiling_get), None, &note);
        table.row(&set[0], Some(&set[1]), Some(TARGET), "");
        let note = of_pipelined(&set[1], pipelined.map(|p| p.1));
        table.row(&set[1], Some(ceiling_set), None, &note);
    }
    table.section(
        "2. redis-benchmark -t get,set -d 200 (the machine's ceiling; -P: one client pipelining)",
    );
    for series in &ceiling {
        table.row(series, None, None, "");
    }
    table.section("3. Bulk (100 keys per call) vs 100 sequential typed calls");
    table.row(&bulk_get[0], Some(&bulk_get[1]), None, "");
    table.row(&bulk_get[1], None, None, "");
    table.row(&bulk_set[0], Some(&bulk_set[1]), None, "");
    table.row(&bulk_set[1], None, None, "");
    table.section("4. Counters and rate limits (1 task) vs a raw INCR");
    let raw_incr_series = &counters[0];
    table.row(raw_incr_series, None, None, "");
    for series in &counters[1..] {
        table.row(series, Some(raw_incr_series), None, "");
    }
    table.section("5. update (compare-and-set)");
    let [solo, raw_rmw, shared] = [&updates[0], &updates[1], &updates[2]];
    table.row(
        solo,
        Some(raw_rmw),
        None,
        &format!("retries {}", solo.count.retries),
    );
    table.row(raw_rmw, None, None, "not atomic");
    let per_success = if shared.count.units > 0 {
        shared.count.retries as f64 / shared.count.units as f64
    } else {
        0.0
    };
    table.row(
        shared,
        Some(solo),
        None,
        &format!(
            "successful; lost races {} ({per_success:.1} per success), Error::Conflict {}",
            shared.count.retries, shared.count.conflicts
        ),
    );
    table.section("6. Memory backend (1 task) vs serde_json alone");
    table.row(&mem[0], Some(&mem[1]), None, "");
    table.row(&mem[1], None, None, "");
    table.row(&mem[2], Some(&mem[3]), None, "");
    table.row(&mem[3], None, None, "");

    println!("# state-store bench");
    println!();
    println!("{machine}");
    println!(
        "mode: {}; median of {} rounds of {:?} each (after a {:?} warm-up), rounds of compared \
         workloads alternating; redis-benchmark: median of {} runs of -n {} (-c 1) / -n {} \
         (-c {MANY}) / -n {} (-c 1 -P {MANY}); Session JSON is {json_len} bytes",
        if config.quick { "--quick" } else { "full" },
        config.rounds,
        config.round,
        config.warmup,
        config.rb_rounds,
        config.rb_n1,
        config.rb_n64,
        config.rb_np,
    );
    println!();
    println!(
        "{:<28} {:>11} {:<9} {:>5} {:>7}  {:>6}  {:<30} notes",
        "workload", "median", "unit", "sprd", "cpu µs", "ratio", "reference"
    );
    for line in &table.lines {
        println!("{line}");
    }
    println!();
    println!(
        "sprd: (max - min) / median of the rounds. ratio: for workloads measured together, the \
         median of the round-by-round ratios (rounds alternate A B, B A, ...), with their range; \
         else the ratio of the medians. cpu µs: CPU time of this process (all threads: the \
         tasks, the connection's driver and the runtime; not redis-server) per op or key, median \
         of the rounds; cpu/op Nx: that figure against the reference's, less is better."
    );

    command_table(&store, &mut admin).await?;

    println!();
    if table.missed.is_empty() {
        println!("targets: all met (typed >= {TARGET:.2}x of raw at 1 and {MANY} tasks)");
    } else {
        println!("targets: below target:");
        for m in &table.missed {
            println!("  - {m}");
        }
    }
    println!("total time: {:.0?}", started.elapsed());
    drop(server);
    Ok(())
}
