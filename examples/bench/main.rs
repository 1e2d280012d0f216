//! Throughput benchmark: the typed `Store` against the raw `redis` crate doing the same work,
//! with `redis-benchmark` as the machine's ceiling, plus the bulk, counter, rate-limit and
//! compare-and-set patterns, the memory backend, the change feed, leases, durable writes (on a
//! replica of its own), journals (the cost of `history` to a write, and replay), and the
//! commands each call sends.
//!
//!     cargo run --release --example bench              # about 6½ minutes
//!     cargo run --release --example bench -- --quick   # about 25 seconds (what CI runs)
//!
//! Options: `--quick`, `--rounds N`, `--secs S` (length of one round). It starts its own
//! `redis-server` on a free loopback port with its own temp dir (never the Redis on 6379, and
//! `REDIS_URL` is ignored), for the durable writes a replica of it on another, and stops them at
//! the end; `REDIS_SERVER` and `REDIS_BENCHMARK` point at other binaries. Every figure is the
//! median of several rounds; the rounds of the workloads compared with each other alternate
//! (A B, B A, ...) so that noise on a shared machine hits both sides alike, and their ratio is
//! the median of the round-by-round ratios. It exits non-zero only on errors: a missed target is
//! reported as "below target".
//!
//! `bench --profile get-typed --ops 20000` (see `--help`) runs a single workload for a fixed
//! number of operations, to compare instruction counts under `valgrind --tool=callgrind`.

#[path = "../../tests/support/mod.rs"]
mod support;

mod bulk;
mod ceiling;
mod commands;
mod common;
mod durable;
mod evolve;
mod journal;
mod leases;
mod memory;
#[cfg(feature = "nats")]
mod nats;
mod patterns;
mod stats;
mod typed_vs_raw;
mod watch;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use state_store::{AnyBackend, MemoryBackend, RedisBackend, RedisOptions, Store};

use crate::bulk::{get_many, get_sequential, set_many, set_sequential};
use crate::ceiling::ceiling;
use crate::commands::command_table;
use crate::common::{
    ANY_TARGET, BATCH, BATCHED_TARGET, CACHE_HIT_TARGET, CACHED_WRITE_TARGET, CachedSession,
    DURABLE_MANY_TARGET, DURABLE1_TARGET, FixedRate, GET1_TARGET, LEASE_TARGET, MANY, POOL,
    PREVIOUS_TARGET, Res, Session, SmoothRate, TARGET, UPDATE_SHARED_ID, UPDATE_SOLO_ID,
    cached_session, session,
};
use crate::durable::{check_on_replica, counting_waits, durable_set, replica_of};
use crate::evolve::previous_get;
use crate::journal::{JOURNAL_SET_TARGET, REPLAY_TARGET, journal_section, set_journaled};
use crate::leases::{acquire_release, fenced_set, raw_acquire_release};
use crate::memory::{
    instrumentation, json_decode, json_encode, memory_backend_get, memory_get, memory_set,
};
use crate::patterns::{check, incr, raw_incr, raw_read_modify_write, update};
use crate::stats::{Series, measure, ratio};
use crate::typed_vs_raw::{cached_get, raw_get, raw_set, typed_get, typed_set, typed_sets};
use crate::watch::{delivery, delivery_note, delivery_sets, memory_store, set_notify, set_plain};

// ---------------------------------------------------------------------------------------------
// Options
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
        &mut self, series: &Series, reference: Option<&Series>, target: Option<f64>, note: &str,
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

const PROFILES: [&str; 17] = [
    "get-typed",
    "get-any",
    "get-raw",
    "set-typed",
    "set-raw",
    "set-journal",
    "incr",
    "raw-incr",
    "update",
    "update-shared",
    "raw-update",
    "memory-get",
    "decode",
    "lease-typed",
    "lease-raw",
    "fenced-set",
    "set-durable",
];

/// `--profile`: one workload, `ops` operations (shared by `tasks` tasks for get, set and the
/// lease workloads, else on one task), then the time it took (`set-durable` with a replica of
/// the server started before). Compare `valgrind --tool=callgrind` instruction counts of two
/// workloads, each minus a run with `--ops 0` (start-up, seeding and connecting).
async fn profile(
    name: &str, ops: u64, tasks: usize, store: &Store<RedisBackend>, any: &Store<AnyBackend>,
    raw: &ConnectionManager, memory: &Store<MemoryBackend>,
) -> Res<()> {
    let w = match name {
        "get-typed" => typed_get(store, "typed", tasks),
        "get-any" => typed_get(any, "any", tasks),
        "update" => update(store, "update, 1 task, own key", 1, UPDATE_SOLO_ID),
        "update-shared" => update(store, "update, N tasks, 1 key", tasks, UPDATE_SHARED_ID),
        "raw-update" => raw_read_modify_write(raw, UPDATE_SOLO_ID),
        "get-raw" => raw_get(raw, tasks),
        "set-typed" => typed_set(store, tasks),
        "set-raw" => raw_set(raw, tasks),
        "set-journal" => set_journaled(store, tasks),
        "incr" => incr(store),
        "raw-incr" => raw_incr(raw),
        "memory-get" => memory_get(memory),
        "decode" => json_decode(),
        "lease-typed" => acquire_release(store, tasks),
        "lease-raw" => raw_acquire_release(raw, tasks),
        "fenced-set" => fenced_set(store, tasks).await?,
        "set-durable" => durable_set(store, tasks),
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
    let races = if count.retries + count.conflicts > 0 {
        format!(
            "; lost races {} ({:.2} per success), Error::Conflict {}",
            count.retries,
            count.retries as f64 / count.units.max(1) as f64,
            count.conflicts
        )
    } else {
        String::new()
    };
    println!(
        "{}: {} {} in {:?}: {:.0} {}/s, cpu µs/{} {cpu}{races}",
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
    // The store without automatic read batching, to show what batching adds.
    let unbatched = Store::new(
        RedisBackend::connect_with(&server.url(), RedisOptions::default().read_batch(0)).await?,
    );
    // The same backend (and connection) behind `AnyBackend`, as a service configured at run
    // time would hold it.
    let any = Store::new(AnyBackend::new(store.backend().clone()));
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
        let cached: Vec<(u64, CachedSession)> = (start..start + BATCH)
            .map(|id| (id, cached_session(id)))
            .collect();
        store.set_many::<CachedSession>(&cached).await?;
    }
    for id in [UPDATE_SOLO_ID, UPDATE_SHARED_ID] {
        store.set::<Session>(id, &session(id)).await?;
    }

    if let Some(name) = &config.profile {
        // A durable write needs a replica to reach (stopped when the profile returns).
        let _replica = match name.as_str() {
            "set-durable" => Some(replica_of(&server).await?),
            _ => None,
        };
        return profile(name, config.ops, config.tasks, &store, &any, &raw, &memory).await;
    }

    let machine = machine_line(&server_version);

    // 2. The machine's ceiling, measured first so that the comparisons below can refer to it.
    let ceiling = ceiling(&config, server.port()).await?;

    // 1. Typed vs raw, alternating rounds.
    let get1 = measure(
        &config,
        vec![typed_get(&store, "typed", 1), raw_get(&raw, 1)],
    )
    .await?;
    let set1 = measure(&config, vec![typed_set(&store, 1), raw_set(&raw, 1)]).await?;
    let get64 = measure(
        &config,
        vec![
            typed_get(&store, "typed", MANY),
            raw_get(&raw, MANY),
            typed_get(&unbatched, "nobat", MANY),
        ],
    )
    .await?;

    // 1b. The backend chosen at run time against the concrete one, on the same connection.
    let any_get1 = measure(
        &config,
        vec![typed_get(&any, "any", 1), typed_get(&store, "typed", 1)],
    )
    .await?;
    let any_get64 = measure(
        &config,
        vec![
            typed_get(&any, "any", MANY),
            typed_get(&store, "typed", MANY),
        ],
    )
    .await?;
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

    // 6. The memory backend vs serde_json alone, and the `Store` layer vs the backend under it
    // (what the `metrics` and `tracing` features add to a call, in a build with them).
    let mem = measure(
        &config,
        vec![
            memory_get(&memory),
            json_decode(),
            memory_set(&memory),
            json_encode(),
            memory_backend_get(&memory),
        ],
    )
    .await?;

    // 7. The change feed: what `notify` costs a set, and one watcher of many writers.
    let notify1 = measure(&config, vec![set_notify(&store, 1), set_plain(&store, 1)]).await?;
    let notify64 = measure(
        &config,
        vec![set_notify(&store, MANY), set_plain(&store, MANY)],
    )
    .await?;
    let sets = delivery_sets(&config);
    let watched_redis = delivery(&config, &store, "redis", sets).await?;
    let watched_memory = delivery(&config, &memory_store(None), "memory", sets).await?;
    // The same with a buffer that holds every change: how fast the watcher itself goes.
    let buffered_memory = delivery(
        &config,
        &memory_store(Some(sets as usize)),
        "memory, buffer=all",
        sets,
    )
    .await?;

    // 8. The client-side cache: hot-key reads of a type declared with `cache`, and what
    // `cache` costs a write.
    let cache_hits = measure(&config, vec![cached_get(&store, 1), raw_get(&raw, 1)]).await?;
    let cache_hits64 =
        measure(&config, vec![cached_get(&store, MANY), raw_get(&raw, MANY)]).await?;
    let cached_sets = measure(
        &config,
        vec![
            typed_sets(&store, "cached", 1, cached_session),
            typed_sets(&store, "typed", 1, session),
        ],
    )
    .await?;

    // 9. Changing a state type: a read of a type declared with `previous`, of values in the
    // current shape (the same keys as `Session`), against `Session`.
    let previous_redis = measure(
        &config,
        vec![
            previous_get(&store, "prev", 1),
            typed_get(&store, "typed", 1),
        ],
    )
    .await?;
    let previous_memory = measure(
        &config,
        vec![
            previous_get(&memory, "prev-m", 1),
            typed_get(&memory, "mem", 1),
        ],
    )
    .await?;

    // 10. The NATS JetStream KV backend against the raw async-nats KV client.
    #[cfg(feature = "nats")]
    let nats = nats::nats_section(&config).await?;

    // 11. Leases: acquire + release against SET NX PX + a compare-and-delete script, and a
    // fenced set against a plain one, each task on its own lease.
    let lease1 = measure(
        &config,
        vec![acquire_release(&store, 1), raw_acquire_release(&raw, 1)],
    )
    .await?;
    let lease64 = measure(
        &config,
        vec![
            acquire_release(&store, MANY),
            raw_acquire_release(&raw, MANY),
        ],
    )
    .await?;
    let fenced1 = measure(
        &config,
        vec![fenced_set(&store, 1).await?, typed_set(&store, 1)],
    )
    .await?;
    let fenced64 = measure(
        &config,
        vec![fenced_set(&store, MANY).await?, typed_set(&store, MANY)],
    )
    .await?;

    // 13. Journals, measured before the replica starts (a journaled write replicates its XADD),
    // on the lone server as sections 1 to 11.
    let journals = journal_section(&config, &store, &raw, &admin).await?;

    // 12. Durable writes: from here on the server has a replica (started only now, so that the
    // sections above keep measuring a lone server). A durable set against a plain one of the
    // same shape, through the same store; the server's WAITs counted over the durable rounds.
    let replica = replica_of(&server).await?;
    check_on_replica(&store, &replica).await?;
    let (durable1, waits1) = counting_waits(durable_set(&store, 1), &admin);
    let durable1 = measure(&config, vec![durable1, typed_set(&store, 1)]).await?;
    let (durable64, waits64) = counting_waits(durable_set(&store, MANY), &admin);
    let durable64 = measure(&config, vec![durable64, typed_set(&store, MANY)]).await?;
    // The command table below counts what the server ran: without the replica's REPLCONF.
    drop(replica);

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
        // At 1 task a lone get goes out at once; at many, batching must beat raw calls.
        let get_target = if pipelined.is_some() {
            BATCHED_TARGET
        } else {
            GET1_TARGET
        };
        table.row(&get[0], Some(&get[1]), Some(get_target), "");
        let note = of_pipelined(&get[1], pipelined.map(|p| p.0));
        table.row(&get[1], Some(ceiling_get), None, &note);
        if let Some(unbatched) = get.get(2) {
            table.row(unbatched, Some(&get[1]), None, "typed, read_batch(0)");
        }
        table.row(&set[0], Some(&set[1]), Some(TARGET), "");
        let note = of_pipelined(&set[1], pipelined.map(|p| p.1));
        table.row(&set[1], Some(ceiling_set), None, &note);
    }
    table.section(&format!(
        "1b. Store<AnyBackend> vs Store<RedisBackend> (the run-time choice; target {ANY_TARGET:.2}x)"
    ));
    for pair in [&any_get1, &any_get64] {
        table.row(&pair[0], Some(&pair[1]), Some(ANY_TARGET), "");
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
    table.row(&mem[0], Some(&mem[4]), None, &instrumentation());
    table.row(&mem[4], None, None, "");
    table.section(&format!(
        "7. Change feed: set of a `notify` type (nobody watching) vs the same type without; \
         one watcher of {MANY} writing tasks"
    ));
    for pair in [&notify1, &notify64] {
        table.row(&pair[0], Some(&pair[1]), None, "");
        table.row(&pair[1], None, None, "");
    }
    // The writers of the Redis rounds against the same sets with nobody subscribed.
    for (watched, unwatched) in [
        (&watched_redis, Some(&notify64[0])),
        (&watched_memory, None),
        (&buffered_memory, None),
    ] {
        let note = delivery_note(watched, sets);
        table.row(&watched.received, None, None, &note);
        table.row(&watched.sets, unwatched, None, "");
    }
    table.section(
        "8. Client-side cache: get of a type declared with `cache` (every read a hit after the \
         first round) vs a raw GET + decode; set of a cached type vs an uncached one",
    );
    table.row(
        &cache_hits[0],
        Some(&cache_hits[1]),
        Some(CACHE_HIT_TARGET),
        "",
    );
    table.row(&cache_hits64[0], Some(&cache_hits64[1]), None, "");
    table.row(
        &cached_sets[0],
        Some(&cached_sets[1]),
        Some(CACHED_WRITE_TARGET),
        "",
    );

    table.section(&format!(
        "9. Changing a state type: get of a type declared with `previous` (values in the \
         current shape) vs the same type without, 1 task (target {PREVIOUS_TARGET:.2}x)"
    ));
    for pair in [&previous_redis, &previous_memory] {
        table.row(&pair[0], Some(&pair[1]), Some(PREVIOUS_TARGET), "");
    }

    #[cfg(feature = "nats")]
    {
        let (version, pairs) = &nats;
        table.section(&format!(
            "10. NATS JetStream KV (nats-server {version}, its own): typed Store vs the raw \
             async-nats KV client, same bucket, keys and serde_json work (target {TARGET:.2}x)"
        ));
        for pair in pairs {
            table.row(&pair[0], Some(&pair[1]), Some(TARGET), "");
        }
    }
    #[cfg(not(feature = "nats"))]
    table.section("10. NATS JetStream KV: not built (run with `--features nats`)");

    table.section(&format!(
        "11. Leases, each task its own: acquire + release (2 x EVALSHA) vs raw SET NX PX + a \
         compare-and-delete script (EVALSHA); fenced set (EVALSHA, 3 keys) vs set (SET PX) \
         (target {LEASE_TARGET:.2}x)"
    ));
    for pair in [&lease1, &lease64, &fenced1, &fenced64] {
        table.row(&pair[0], Some(&pair[1]), Some(LEASE_TARGET), "");
        table.row(&pair[1], None, None, "");
    }

    table.section(&format!(
        "12. Durable writes, on the server with one replica: set of a `durable` type (SET PX on \
         its own connection, then WAIT 1 1000, one per round of concurrent writes) vs set of the \
         same shape without, same store (targets {DURABLE1_TARGET:.2}x at 1 task, \
         {DURABLE_MANY_TARGET:.2}x at {MANY}; WAITs per write from INFO commandstats)"
    ));
    for (pair, target, waits) in [
        (&durable1, DURABLE1_TARGET, &waits1),
        (&durable64, DURABLE_MANY_TARGET, &waits64),
    ] {
        table.row(&pair[0], Some(&pair[1]), Some(target), &waits.note());
        table.row(&pair[1], None, None, "");
    }

    journals.rows(&mut table);

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
        println!(
            "targets: all met (typed >= {TARGET:.2}x of raw, typed get >= {GET1_TARGET:.2}x at 1 \
             task and >= {BATCHED_TARGET:.2}x at {MANY}, AnyBackend >= {ANY_TARGET:.2}x of \
             RedisBackend, leases >= {LEASE_TARGET:.2}x, durable set >= {DURABLE1_TARGET:.2}x \
             of set at 1 task and >= {DURABLE_MANY_TARGET:.2}x at {MANY}, journaled set >= \
             {JOURNAL_SET_TARGET:.2}x of set at {MANY}, journal replay >= {} entries/s)",
            format_rate(REPLAY_TARGET)
        );
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
