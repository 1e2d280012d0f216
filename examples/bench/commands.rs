//! Server commands per call: what the server counted for one call of each kind, between
//! `CONFIG RESETSTAT` and `INFO commandstats` + `stats`.

use std::collections::BTreeMap;
use std::future::Future;

use redis::aio::MultiplexedConnection;
use state_store::{RedisBackend, Store};

use crate::common::{BATCH, Calls, FixedRate, Res, Session, SmoothRate, UPDATE_SOLO_ID, session};
use crate::leases::{JobLease, worker};

/// What the server counted between `CONFIG RESETSTAT` and `INFO`.
#[derive(Debug, Default)]
struct ServerCounts {
    /// Command name: (calls, failed calls).
    commands: BTreeMap<String, (u64, u64)>,
    total_commands: u64,
    reads: u64,
    writes: u64,
}

/// One field of an `INFO commandstats` line's fields (`calls=3,usec=12,...`), 0 when absent.
pub(crate) fn commandstat_field(fields: &str, wanted: &str) -> u64 {
    fields
        .split(',')
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| *k == wanted)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0)
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
            let field = |wanted: &str| commandstat_field(fields, wanted);
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
    admin: &mut MultiplexedConnection, baseline: Option<&ServerCounts>, op: Fut,
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

pub(crate) async fn command_table(
    store: &Store<RedisBackend>, admin: &mut MultiplexedConnection,
) -> Res<()> {
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
    // A lease on a fresh id, a fenced set under it, and its release.
    let lease_id = 300_000 + std::process::id() as u64;
    let holder = JobLease { worker: worker(0) };
    let mut lease = None;
    row!(
        "acquire (lease)",
        "1: EVALSHA (the rest ran inside the Lua script)",
        {
            lease = store.acquire::<JobLease>(lease_id, &holder).await?;
            Ok(())
        }
    );
    let lease = lease.ok_or("acquire found a fresh lease held")?;
    row!(
        "fenced set",
        "1: EVALSHA (the rest ran inside the Lua script)",
        store
            .fenced(&lease)
            .set::<Session>(7, &value)
            .await
            .map_err(Into::into)
    );
    row!(
        "release (lease)",
        "1: EVALSHA (the rest ran inside the Lua script)",
        {
            if !lease.release().await? {
                return Err("the lease was lost before its release".into());
            }
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
