//! Journals: what `#[state(notify, history = N)]` costs a `set`, and how fast a journal replays.
//!
//! - `set` of a journaled `Session` (on Redis one `MULTI`: `XADD stream MAXLEN ~N 0-* op set
//!   key K value V`, `DEL` of the key's expiry marker, `SET PX`, `PUBLISH`, `EXEC`) against the
//!   same value declared only `notify` (`MULTI`, `SET PX`, `PUBLISH`, `EXEC`) and undeclared
//!   (`SET PX`), nobody watching, at 1 and at `MANY` tasks, with `history` 10,000 and 100,000.
//! - Where the time goes: the same `MULTI`s written by hand with the raw `redis` crate, one
//!   command added at a time (`+XADD`, `+DEL`), and `XADD` without trimming.
//! - Replay: `store.journal::<S>(Position::Start)` reading a journal of `replay_len` entries to
//!   its end, each decoded as an `Entry<S>` (on Redis one `MULTI` per 512 entries: the first
//!   and last entry kept, `XRANGE ... COUNT 512`), against the raw crate's `XRANGE ... COUNT 512`
//!   loop decoding each value with serde_json, the same `XRANGE` run from a script (what the
//!   reader did before), and on the memory backend.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use state_store::{Backend, Position, RedisBackend, StateKey, Store};

use crate::commands::commandstat_field;
use crate::common::{BATCH, MANY, Res, SESSION_TTL_MS, Session, pick, session};
use crate::stats::{
    Count, RoundFuture, Series, Workload, measure, process_cpu_ns, ratio, workload,
};
use crate::typed_vs_raw::{raw_set, typed_sets};
use crate::watch::{set_notify, set_plain};
use crate::{Config, Table};

/// `Session` with a journal of about 10,000 changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[serde(transparent)]
#[state(prefix = "session-journal", id = u64, ttl = "30m", notify, history = 10_000)]
pub(crate) struct JournaledSession(Session);

/// ... and of about 100,000.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[serde(transparent)]
#[state(prefix = "session-journal-100k", id = u64, ttl = "30m", notify, history = 100_000)]
pub(crate) struct JournaledSession100k(Session);

/// The type the replay rounds read: its journal keeps all they write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[serde(transparent)]
#[state(prefix = "session-replay", id = u64, ttl = "30m", notify, history = 1_000_000)]
pub(crate) struct ReplaySession(Session);

/// The journaled set's target against a plain set at `MANY` tasks.
pub(crate) const JOURNAL_SET_TARGET: f64 = 0.7;
/// The replay target, entries decoded per second (Redis, one reader).
pub(crate) const REPLAY_TARGET: f64 = 200_000.0;

/// Journaled sets, `history = 10_000`.
pub(crate) fn set_journaled<B: Backend>(store: &Store<B>, tasks: usize) -> Workload {
    typed_sets(store, "jrnl", tasks, |n| JournaledSession(session(n)))
}

/// Journaled sets, `history = 100_000`.
pub(crate) fn set_journaled_100k<B: Backend>(store: &Store<B>, tasks: usize) -> Workload {
    typed_sets(store, "jr100k", tasks, |n| JournaledSession100k(session(n)))
}

/// What a raw `MULTI` holds, in the order the store sends a journaled set.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawWrite {
    /// `SET PX`, `PUBLISH`: a notified set.
    Notify,
    /// `XADD MAXLEN ~ 10000 0-*`, `SET PX`, `PUBLISH`.
    Xadd,
    /// `XADD MAXLEN ~ 10000 0-*`, `DEL` marker, `SET PX`, `PUBLISH`: a journaled set.
    XaddDel,
    /// `XADD 0-*` (never trimmed), `DEL` marker, `SET PX`, `PUBLISH`.
    XaddNoTrim,
}

/// The keys, channel and stream of a raw variant: each its own stream, so that the untrimmed one
/// does not grow the others.
fn raw_prefix(what: RawWrite) -> String {
    format!("raw-journal-{}", what as u8)
}

/// Sets of `Session` by hand in a `MULTI` of `what`, to their own keys, channel and stream.
pub(crate) fn raw_multi(conn: &ConnectionManager, tasks: usize, what: RawWrite) -> Workload {
    let label = match what {
        RawWrite::Notify => "SET,PUB",
        RawWrite::Xadd => "SET,PUB,XADD~",
        RawWrite::XaddDel => "SET,PUB,XADD~,DEL",
        RawWrite::XaddNoTrim => "SET,PUB,XADD,DEL",
    };
    let prefix = raw_prefix(what);
    let conn = conn.clone();
    workload(
        format!("raw M:{label} {tasks:>2}"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let mut conn = conn.clone();
            let prefix = prefix.clone();
            async move {
                let value = session(t as u64);
                let stream = format!("{prefix}#journal");
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let key = format!("{prefix}:{}", pick(t, i));
                    let bytes = serde_json::to_vec(&value)?;
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    if !matches!(what, RawWrite::Notify) {
                        let xadd = pipe.cmd("XADD").arg(&stream);
                        if !matches!(what, RawWrite::XaddNoTrim) {
                            xadd.arg("MAXLEN").arg("~").arg(10_000);
                        }
                        xadd.arg("0-*")
                            .arg("op")
                            .arg("set")
                            .arg("key")
                            .arg(&key)
                            .arg("value")
                            .arg(&bytes)
                            .ignore();
                    }
                    if matches!(what, RawWrite::XaddDel | RawWrite::XaddNoTrim) {
                        pipe.cmd("DEL").arg(format!("{stream}:gone:{key}")).ignore();
                    }
                    // The feed's message: a header line with the key, then the value.
                    let mut message =
                        format!("{{\"op\":\"set\",\"key\":\"{key}\"}}\n").into_bytes();
                    message.extend_from_slice(&bytes);
                    pipe.cmd("SET")
                        .arg(&key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(SESSION_TTL_MS)
                        .ignore();
                    pipe.cmd("PUBLISH").arg(&prefix).arg(message).ignore();
                    let () = pipe.query_async(&mut conn).await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

/// How many entries a replay round reads.
pub(crate) fn replay_len(config: &Config) -> u64 {
    if config.quick { 10_000 } else { 100_000 }
}

/// Writes `entries` journaled sets of `ReplaySession` through `store`, `BATCH` per `set_many`.
pub(crate) async fn fill_journal<B: Backend>(store: &Store<B>, entries: u64) -> Res<()> {
    for start in (0..entries).step_by(BATCH as usize) {
        let items: Vec<(u64, ReplaySession)> = (start..(start + BATCH).min(entries))
            .map(|n| (n % 1000, ReplaySession(session(n))))
            .collect();
        store.set_many::<ReplaySession>(&items).await?;
    }
    Ok(())
}

/// Series compared with no other round by round.
static GROUPS: AtomicUsize = AtomicUsize::new(usize::MAX / 2);

fn lone_series(name: String, unit: &'static str) -> Series {
    Series {
        name,
        unit,
        rates: Vec::new(),
        cpu_per_unit: Vec::new(),
        count: Count::default(),
        group: GROUPS.fetch_sub(1, Ordering::Relaxed),
    }
}

/// `rounds` replays of the first `entries` entries of `ReplaySession`'s journal through
/// `store.journal` (after one to warm up): entries decoded per second, and this process's CPU
/// time per entry.
pub(crate) async fn replay<B: Backend>(
    config: &Config, store: &Store<B>, side: &str, entries: u64,
    mut server: Option<(&mut MultiplexedConnection, &mut f64)>,
) -> Res<Series> {
    eprintln!("  measuring: replay of {entries} journal entries ({side})");
    let mut series = lone_series(format!("replay {side}"), "entries");
    for round in 0..=config.rounds {
        let server_start = match server.as_mut() {
            Some((admin, _)) => Some(server_cpu_us(admin).await?),
            None => None,
        };
        let cpu_start = process_cpu_ns();
        let start = Instant::now();
        let mut journal = store.journal::<ReplaySession>(Position::Start).await?;
        let mut n = 0;
        while n < entries {
            let entry = journal.next().await.ok_or("the journal ended")??;
            black_box(entry);
            n += 1;
        }
        let elapsed = start.elapsed();
        drop(journal);
        if round > 0 {
            series.push_round(n, elapsed, cpu_start);
            if let (Some((admin, total)), Some(before)) = (server.as_mut(), server_start) {
                **total += server_cpu_us(admin).await? - before;
            }
        }
    }
    Ok(series)
}

/// The same by hand: `XRANGE stream (last + COUNT 512` until `entries` are read, each value
/// decoded with serde_json.
pub(crate) async fn raw_replay(
    config: &Config, conn: &ConnectionManager, stream: &str, entries: u64, in_lua: bool,
    admin: &mut MultiplexedConnection, server_us: &mut f64,
) -> Res<Series> {
    let how = if in_lua { "Lua XRANGE" } else { "XRANGE" };
    eprintln!("  measuring: replay of {entries} journal entries (raw {how})");
    let mut series = lone_series(format!("replay raw {how}+serde"), "entries");
    let mut conn = conn.clone();
    for round in 0..=config.rounds {
        let server_start = server_cpu_us(admin).await?;
        let cpu_start = process_cpu_ns();
        let start = Instant::now();
        let mut from = "-".to_string();
        let mut n = 0;
        while n < entries {
            let reply: Value = if in_lua {
                XRANGE_IN_LUA
                    .key(stream)
                    .arg(&from)
                    .invoke_async(&mut conn)
                    .await?
            } else {
                redis::cmd("XRANGE")
                    .arg(stream)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(512)
                    .query_async(&mut conn)
                    .await?
            };
            let Value::Array(items) = reply else {
                return Err(format!("XRANGE answered {reply:?}").into());
            };
            if items.is_empty() {
                return Err(format!("the journal ended after {n} entries").into());
            }
            for item in items {
                let (id, fields) = stream_entry(item)?;
                let value = fields
                    .chunks(2)
                    .find(|pair| matches!(&pair[0], Value::BulkString(f) if f == b"value"))
                    .and_then(|pair| match pair.get(1) {
                        Some(Value::BulkString(bytes)) => Some(bytes),
                        _ => None,
                    })
                    .ok_or("an entry without a value")?;
                black_box(serde_json::from_slice::<Session>(value)?);
                from = format!("({id}");
                n += 1;
            }
        }
        if round > 0 {
            series.push_round(n, start.elapsed(), cpu_start);
            *server_us += server_cpu_us(admin).await? - server_start;
        }
    }
    Ok(series)
}

/// The same `XRANGE` from a script, as the store's reader ran it at first (without its
/// `XINFO STREAM`): what a script costs the server per entry.
static XRANGE_IN_LUA: LazyLock<Script> = LazyLock::new(|| {
    Script::new("return redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', 512)")
});

/// A stream entry's id and its flat list of fields and values.
fn stream_entry(item: Value) -> Res<(String, Vec<Value>)> {
    if let Value::Array(mut parts) = item
        && parts.len() == 2
        && let Value::Array(fields) = parts.pop().unwrap_or(Value::Nil)
        && let Some(Value::BulkString(id)) = parts.pop()
    {
        return Ok((String::from_utf8(id)?, fields));
    }
    Err("an XRANGE entry that is not [id, [field, value, ...]]".into())
}

/// The stream of `ReplaySession`'s journal on a store without a namespace.
pub(crate) fn replay_stream() -> String {
    format!("{}#journal", ReplaySession::PREFIX)
}

/// The section's figures.
pub(crate) struct JournalSection {
    /// At 1 task, then at `MANY`: journaled (10k), journaled (100k), notified, plain.
    sets: [Vec<Series>; 2],
    /// At `MANY`: raw `SET PX`, the raw `MULTI`s, and the store's journaled set.
    raw: Vec<Series>,
    /// What the server spent per write on the rounds at `MANY`: `sets[1]`, then `raw`.
    costs: Vec<Arc<ServerCost>>,
    entries: u64,
    /// The store's on Redis, by hand (`XRANGE`, `XRANGE` in a script), the store's on memory.
    replays: [Series; 4],
    /// The server's CPU time over the measured replay rounds: the store's, the two by hand.
    replay_server_us: [f64; 3],
}

/// Measures the section on `store`'s server (and on a memory store for the replay).
pub(crate) async fn journal_section(
    config: &Config, store: &Store<RedisBackend>, raw: &ConnectionManager,
    admin: &MultiplexedConnection,
) -> Res<JournalSection> {
    let one = measure(
        config,
        vec![
            set_journaled(store, 1),
            set_journaled_100k(store, 1),
            set_notify(store, 1),
            set_plain(store, 1),
        ],
    )
    .await?;
    // At `MANY` tasks, with what the server spends per write.
    let mut costs = Vec::new();
    let mut cost = |w: Workload| {
        let (w, c) = costing(w, admin);
        costs.push(c);
        w
    };
    let many = vec![
        cost(set_journaled(store, MANY)),
        cost(set_journaled_100k(store, MANY)),
        cost(set_notify(store, MANY)),
        cost(set_plain(store, MANY)),
    ];
    let by_hand = vec![
        cost(raw_set(raw, MANY)),
        cost(raw_multi(raw, MANY, RawWrite::Notify)),
        cost(raw_multi(raw, MANY, RawWrite::Xadd)),
        cost(raw_multi(raw, MANY, RawWrite::XaddDel)),
        cost(raw_multi(raw, MANY, RawWrite::XaddNoTrim)),
        cost(set_journaled(store, MANY)),
    ];
    let many = measure(config, many).await?;
    let by_hand = measure(config, by_hand).await?;

    let entries = replay_len(config);
    fill_journal(store, entries).await?;
    let mut admin = admin.clone();
    let mut replay_server_us = [0.0; 3];
    let [on_store, by_hand_us, in_lua_us] = &mut replay_server_us;
    let on_redis = replay(
        config,
        store,
        "redis",
        entries,
        Some((&mut admin, on_store)),
    )
    .await?;
    let replay_by_hand = raw_replay(
        config,
        raw,
        &replay_stream(),
        entries,
        false,
        &mut admin,
        by_hand_us,
    )
    .await?;
    let replay_in_lua = raw_replay(
        config,
        raw,
        &replay_stream(),
        entries,
        true,
        &mut admin,
        in_lua_us,
    )
    .await?;
    let memory = crate::watch::memory_store(None);
    fill_journal(&memory, entries).await?;
    let on_memory = replay(config, &memory, "memory", entries, None).await?;

    // The streams the section wrote, gone, so the replica of the durable section does not copy
    // them in its full sync (the sessions written stay until their ttl, as other sections'
    // do).
    let mut conn = raw.clone();
    let mut streams = vec![
        replay_stream(),
        format!("{}#journal", JournaledSession::PREFIX),
        format!("{}#journal", JournaledSession100k::PREFIX),
    ];
    for what in [
        RawWrite::Notify,
        RawWrite::Xadd,
        RawWrite::XaddDel,
        RawWrite::XaddNoTrim,
    ] {
        streams.push(format!("{}#journal", raw_prefix(what)));
    }
    let _: u64 = redis::cmd("DEL")
        .arg(&streams)
        .query_async(&mut conn)
        .await?;
    Ok(JournalSection {
        sets: [one, many],
        raw: by_hand,
        costs,
        entries,
        replays: [on_redis, replay_by_hand, replay_in_lua, on_memory],
        replay_server_us,
    })
}

/// `series` against `reference` as a note: `vs NAME 0.83x`.
fn versus(series: &Series, reference: &Series) -> String {
    ratio(series, reference).map_or(String::new(), |(x, _)| {
        format!(
            "vs {} {:.2}x",
            reference.name.trim(),
            (x * 100.0).floor() / 100.0
        )
    })
}

impl JournalSection {
    pub(crate) fn rows(&self, table: &mut Table) {
        table.section(&format!(
            "13. Journals: set of a `notify, history = N` type (MULTI: XADD MAXLEN ~N, DEL \
             marker, SET PX, PUBLISH) vs the same type `notify` only (MULTI: SET PX, PUBLISH) \
             and plain (SET PX), nobody watching (target {JOURNAL_SET_TARGET:.2}x of plain at \
             {MANY} tasks); the same MULTIs by hand, a command at a time; replay of {} entries \
             through `journal(Position::Start)`, each decoded (target {} entries/s on Redis)",
            crate::format_rate(self.entries as f64),
            crate::format_rate(REPLAY_TARGET),
        ));
        for (group, target) in [
            (&self.sets[0], None),
            (&self.sets[1], Some(JOURNAL_SET_TARGET)),
        ] {
            let [journaled, journaled_100k, notified, plain] =
                [&group[0], &group[1], &group[2], &group[3]];
            table.row(journaled, Some(plain), target, &versus(journaled, notified));
            table.row(
                journaled_100k,
                Some(plain),
                target,
                &versus(journaled_100k, notified),
            );
            table.row(notified, Some(plain), None, "");
            table.row(plain, None, None, "");
        }
        // Each MULTI against raw SET PX, and in the note against the one before it; the store's
        // journaled set in the note against the same MULTI by hand.
        let [raw_set, notify, xadd, xadd_del, no_trim, store_set] = [
            &self.raw[0],
            &self.raw[1],
            &self.raw[2],
            &self.raw[3],
            &self.raw[4],
            &self.raw[5],
        ];
        table.row(raw_set, None, None, "");
        table.row(notify, Some(raw_set), None, "");
        for (series, before) in [
            (xadd, notify),
            (xadd_del, xadd),
            (no_trim, xadd_del),
            (store_set, xadd_del),
        ] {
            table.row(series, Some(raw_set), None, &versus(series, before));
        }
        table.lines.push(format!(
            "  server side at {MANY} tasks, per write (INFO cpu; INFO commandstats usec, reset \
             before each round):"
        ));
        for (series, cost) in self.sets[1].iter().chain(&self.raw).zip(&self.costs) {
            table
                .lines
                .push(format!("  {:<28} {}", series.name, cost.note()));
        }
        let [on_redis, by_hand, in_lua, on_memory] = &self.replays;
        let rate = on_redis.median();
        let verdict = if rate >= REPLAY_TARGET {
            format!(">= {} entries/s: ok", crate::format_rate(REPLAY_TARGET))
        } else {
            table.missed.push(format!(
                "{}: {} entries/s, target {}",
                on_redis.name,
                crate::format_rate(rate),
                crate::format_rate(REPLAY_TARGET)
            ));
            format!(
                "below target ({} entries/s)",
                crate::format_rate(REPLAY_TARGET)
            )
        };
        let server = |series: &Series, us: f64| {
            format!(
                "; server cpu {:.2} µs/entry",
                us / series.count.units.max(1) as f64
            )
        };
        let verdict = verdict + &server(on_redis, self.replay_server_us[0]);
        table.row(on_redis, None, None, &verdict);
        let note = versus(on_redis, by_hand).replace("vs", "redis vs")
            + &server(by_hand, self.replay_server_us[1]);
        table.row(by_hand, None, None, &note);
        let note = versus(in_lua, by_hand) + &server(in_lua, self.replay_server_us[2]);
        table.row(in_lua, None, None, &note);
        table.row(on_memory, None, None, "");
    }
}

/// What the server spent on a workload's rounds: its CPU time (`INFO cpu`, all of it: reading,
/// parsing, running, replying) and the time in each command (`INFO commandstats`, reset before
/// each round), over the units the rounds did.
#[derive(Debug, Default)]
pub(crate) struct ServerCost {
    inner: Mutex<CostTotals>,
}

#[derive(Debug, Default)]
struct CostTotals {
    units: u64,
    cpu_us: f64,
    /// Command: (calls, microseconds).
    commands: BTreeMap<String, (u64, u64)>,
}

impl ServerCost {
    /// How often the server ran `command` (lowercase) in the rounds.
    pub(crate) fn calls(&self, command: &str) -> u64 {
        let totals = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        totals.commands.get(command).map_or(0, |(calls, _)| *calls)
    }

    /// `server 12.3 µs/op (xadd 3.1, set 1.2, ...)`: the server's CPU per unit, then the
    /// commands' own time per unit, largest first.
    pub(crate) fn note(&self) -> String {
        let totals = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if totals.units == 0 {
            return String::new();
        }
        let per = |us: f64| us / totals.units as f64;
        let mut commands: Vec<(&String, &(u64, u64))> = totals
            .commands
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
            .collect();
        commands.sort_by_key(|c| std::cmp::Reverse(c.1.1));
        let commands: Vec<String> = commands
            .iter()
            .map(|(name, (_, usec))| format!("{name} {:.2}", per(*usec as f64)))
            .collect();
        format!(
            "server cpu {:.1} µs/op, in commands: {}",
            per(totals.cpu_us),
            commands.join(" ")
        )
    }
}

/// The server's CPU time so far, in microseconds (`used_cpu_sys` + `used_cpu_user`).
async fn server_cpu_us(admin: &mut MultiplexedConnection) -> Res<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(admin).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((field("used_cpu_sys") + field("used_cpu_user")) * 1e6)
}

/// `workload`, with what the server spent on each of its rounds added to a `ServerCost`
/// (sampled just outside the timed round; the rounds of the others, which alternate with these,
/// are not counted).
pub(crate) fn costing(
    workload: Workload, admin: &MultiplexedConnection,
) -> (Workload, Arc<ServerCost>) {
    let cost = Arc::new(ServerCost::default());
    let (totals, admin) = (cost.clone(), admin.clone());
    let inner = workload.run;
    let run = Box::new(move |duration, limit| {
        let round = inner(duration, limit);
        let (totals, mut admin) = (totals.clone(), admin.clone());
        Box::pin(async move {
            let () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut admin)
                .await?;
            let cpu_before = server_cpu_us(&mut admin).await?;
            let done = round.await?;
            let cpu_after = server_cpu_us(&mut admin).await?;
            let stats: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut admin)
                .await?;
            let mut totals = totals.inner.lock().unwrap_or_else(|e| e.into_inner());
            totals.units += done.1.units;
            totals.cpu_us += cpu_after - cpu_before;
            for line in stats.lines() {
                let Some((name, fields)) = line
                    .strip_prefix("cmdstat_")
                    .and_then(|rest| rest.split_once(':'))
                else {
                    continue;
                };
                let field = |wanted: &str| commandstat_field(fields, wanted);
                let entry = totals.commands.entry(name.to_string()).or_default();
                entry.0 += field("calls");
                entry.1 += field("usec");
            }
            Ok(done)
        }) as RoundFuture
    });
    (Workload { run, ..workload }, cost)
}
