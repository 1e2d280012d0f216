//! The Redis backend through Redis Sentinel: one primary, one replica and three sentinels that
//! the tests start on loopback (`tests/support/sentinel.rs`). The conformance suite through the
//! sentinels, and the primary killed under load: the same store reads and writes again on the
//! promoted replica, and its watchers go on.
#![cfg(feature = "sentinel")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::conformance::{Session, session};
use state_store::{Change, Error, RedisBackend, StateKey, Store};
use support::sentinel::RedisSentinel;

/// A backend through `topology`'s sentinels with nothing stored.
async fn fresh(topology: &RedisSentinel) -> ((), RedisBackend) {
    let client = redis::Client::open(topology.primary_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let backend = RedisBackend::sentinel(topology.sentinel_urls(), topology.master_name())
        .await
        .unwrap();
    ((), backend)
}

state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    in_one_test(topology = RedisSentinel::start()),
    crate::fresh(&topology),
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "beat", id = u32, notify)]
struct Beat {
    n: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_clear_and_show_no_password() {
    let topology = RedisSentinel::start();
    let e = RedisBackend::sentinel(topology.sentinel_urls(), "no-such-master")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("no-such-master"), "{message}");

    // The sentinels have no password: one given is refused, and never shown.
    let with_password: Vec<String> = topology
        .sentinel_ports()
        .iter()
        .map(|port| format!("redis://:wr0ng-pw@127.0.0.1:{port}"))
        .collect();
    let e = RedisBackend::sentinel(&with_password, topology.master_name())
        .await
        .unwrap_err();
    let shown = format!("{e}\n{e:?}");
    assert!(matches!(e, Error::Connect { .. }), "{shown}");
    assert!(!shown.contains("wr0ng-pw"), "{shown}");

    let (_, backend) = fresh(&topology).await;
    let shown = format!("{backend:?}");
    assert!(shown.contains(topology.master_name()), "{shown}");
}

/// The primary is killed while writers run. Calls fail with errors (never hang) until the
/// sentinels promote the replica, then the same store reads and writes again, on the new
/// primary; writes the replica had before the kill are there, and a watcher hears of the gap
/// and then of new changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_same_store_reads_and_writes_on_the_new_primary() {
    let mut topology = RedisSentinel::start();
    let (_, backend) = fresh(&topology).await;
    let store = Store::new(backend).namespace("svc").enable_set();
    let old_primary = topology.primary_port();

    let before: Vec<(u64, Session)> = (0..100).map(|id| (id as u64, session(id))).collect();
    store.set_many::<Session>(&before).await.unwrap();
    {
        let client = redis::Client::open(topology.primary_url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut conn)
            .unwrap();
        assert_eq!(acked, 1, "the replica is behind");
    }
    let mut changes = store.watch::<Beat>().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for writer in 0..4u32 {
        let store = store.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = store.set::<Beat>(writer, &Beat { n }).await;
                slowest = slowest.max(started.elapsed());
                match result {
                    Ok(()) => n += 1,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (n, slowest)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed_at = Instant::now();
    let killed = topology.kill_primary();
    assert_eq!(killed, old_primary);
    let (topology, failover_took) = tokio::task::spawn_blocking(move || {
        let took = topology.wait_for_failover(killed);
        (topology, took)
    })
    .await
    .unwrap();
    let new_primary = topology.primary_port();
    assert_ne!(new_primary, old_primary);

    // Reads and writes through the same store succeed again.
    let recovered = loop {
        let wrote = store.set::<Beat>(99, &Beat { n: 1 }).await;
        let read = store.get::<Session>(7).await;
        if wrote.is_ok() && read.is_ok() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < failover_took + Duration::from_secs(10),
            "not recovered {:?} after the kill (failover took {failover_took:?}): {wrote:?} {read:?}",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for writer in writers {
        let (n, slow) = writer.await.unwrap();
        assert!(n > 0, "a writer never wrote");
        slowest = slowest.max(slow);
    }
    eprintln!(
        "sentinel failover: promoted after {failover_took:?}, the store read and wrote again \
         {recovered:?} after the kill; {} failed writes meanwhile, slowest call {slowest:?}",
        errors.load(Ordering::Relaxed)
    );
    assert!(slowest < Duration::from_secs(15), "a call took {slowest:?}");

    // The writes are on the new primary (never on a replica), and the old ones survived.
    let client = redis::Client::open(format!("redis://127.0.0.1:{new_primary}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let stored: Option<String> = redis::cmd("GET")
        .arg("svc:beat:99")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored.as_deref(), Some(r#"{"n":1}"#));
    let ids: Vec<u64> = before.iter().map(|(id, _)| *id).collect();
    let after = store.get_many::<Session>(&ids).await.unwrap();
    for ((id, expected), got) in before.iter().zip(after) {
        assert_eq!(got.as_ref(), Some(expected), "session {id}");
    }

    // The watcher heard of the gap, and hears changes written on the new primary.
    let marker = Beat { n: u64::MAX };
    store.set::<Beat>(1000, &marker).await.unwrap();
    let mut interrupted = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, changes.next())
            .await
            .expect("the marker written after the failover never arrived")
            .expect("the feed ended");
        match item {
            Err(e) if e.missed_changes() => interrupted = true,
            Err(e) => panic!("{e}"),
            Ok(Change::Set { id: 1000, value }) => {
                assert_eq!(value, marker);
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(interrupted, "the watcher was not told of the gap");
}

/// Leases under Sentinel: a holder paused past its ttl, or lost with nobody newer, cannot
/// write; and once the replica has caught up, a failover keeps the tokens growing: the next
/// token on the promoted replica is greater than every token before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_out_lost_holders_and_tokens_survive_a_failover() {
    use support::leases::{
        a_lost_holder_cannot_write, a_paused_holder_is_fenced_out, acquire_when_back, churn,
    };

    let mut topology = RedisSentinel::start();
    let (_, backend) = fresh(&topology).await;
    let store = Store::new(backend).enable_set().enable_remove();
    a_paused_holder_is_fenced_out(&store, 1).await;
    a_lost_holder_cannot_write(&store, 2).await;

    let last = churn(&store, 3, 50, 0).await;
    let primary = topology.primary_port();
    {
        let client = redis::Client::open(topology.primary_url()).unwrap();
        support::replicated(&mut client.get_connection().unwrap(), primary);
    }
    let killed = topology.kill_primary();
    let topology = tokio::task::spawn_blocking(move || {
        topology.wait_for_failover(killed);
        topology
    })
    .await
    .unwrap();
    assert_ne!(topology.primary_port(), primary);
    let next = acquire_when_back(&store, 3).await;
    assert!(next.token() > last, "{} after {last}", next.token());
    assert!(next.release().await.unwrap());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "payment", id = (u32, u64), durable)]
struct Payment {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "view", id = (u32, u64))]
struct View {
    n: u64,
}

/// What the writers of one type saw: the ids of the writes acknowledged, and how many failed
/// (with `NotDurable` or otherwise).
#[derive(Default)]
struct Tally {
    acked: Vec<(u32, u64)>,
    not_durable: u64,
    failed: u64,
}

/// The failover the issue measured: the replica stalls for 3 s (SIGSTOP) while 16 writers run,
/// then the primary dies and the stalled replica is promoted without what the primary took
/// meanwhile. Every durable write the store acknowledged is on the new primary (0 lost): those
/// the replica could not take failed with `NotDurable`. The plain writes' loss is real, and
/// counted. With no replica left, durable writes are `NotDurable` until one joins again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_durable_writes_survive_a_stalled_replica_and_a_failover() {
    use std::sync::Mutex;

    let mut topology = RedisSentinel::start();
    let (_, _) = fresh(&topology).await;
    let durability = state_store::Durability::Replicas {
        count: 1,
        timeout: Duration::from_millis(500),
    };
    let options = state_store::RedisOptions::default().durability(durability);
    let backend =
        RedisBackend::sentinel_with(topology.sentinel_urls(), topology.master_name(), options)
            .await
            .unwrap();
    let store = Store::new(backend).enable_set();
    let old_primary = topology.primary_port();
    let replica = topology.replica_port();

    let stop = Arc::new(AtomicBool::new(false));
    let durable = Arc::new(Mutex::new(Tally::default()));
    let plain = Arc::new(Mutex::new(Tally::default()));
    let mut writers = Vec::new();
    for writer in 0..16u32 {
        let (store, stop) = (store.clone(), stop.clone());
        let tally = if writer % 2 == 0 {
            durable.clone()
        } else {
            plain.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let result = if writer % 2 == 0 {
                    store.set::<Payment>((writer, n), &Payment { n }).await
                } else {
                    store.set::<View>((writer, n), &View { n }).await
                };
                let failed = {
                    let mut tally = tally.lock().unwrap();
                    match &result {
                        Ok(()) => tally.acked.push((writer, n)),
                        Err(Error::NotDurable { .. }) => tally.not_durable += 1,
                        Err(_) => tally.failed += 1,
                    }
                    matches!(&result, Err(e) if !matches!(e, Error::NotDurable { .. }))
                };
                // The primary is gone: do not spin while the sentinels fail over.
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    topology.node(replica).unwrap().signal("STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    let killed = topology.kill_primary();
    assert_eq!(killed, old_primary);
    topology.node(replica).unwrap().signal("CONT");
    let mut topology = tokio::task::spawn_blocking(move || {
        topology.wait_for_failover(killed);
        topology
    })
    .await
    .unwrap();
    assert_eq!(
        topology.primary_port(),
        replica,
        "the stalled replica was promoted"
    );
    // Writers go on against the new primary for a moment, then stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let recovered = killed_at.elapsed();

    let client = redis::Client::open(topology.primary_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let lost = |tally: &Tally, prefix: &str, conn: &mut redis::Connection| -> usize {
        tally
            .acked
            .iter()
            .filter(|(writer, n)| {
                let value: Option<String> = redis::cmd("GET")
                    .arg(format!("{prefix}:{writer}:{n}"))
                    .query(conn)
                    .unwrap();
                value.is_none()
            })
            .count()
    };
    // Every writer has ended: the tallies are whole.
    let durable = std::mem::take(&mut *durable.lock().unwrap());
    let plain = std::mem::take(&mut *plain.lock().unwrap());
    let durable_lost = lost(&durable, "payment", &mut conn);
    let plain_lost = lost(&plain, "view", &mut conn);
    eprintln!(
        "stalled replica, then failover: durable writes: {} acknowledged, {durable_lost} lost, \
         {} not durable, {} failed; plain writes: {} acknowledged, {plain_lost} lost, {} failed; \
         writes resumed {recovered:?} after the kill",
        durable.acked.len(),
        durable.not_durable,
        durable.failed,
        plain.acked.len(),
        plain.failed,
    );
    assert_eq!(durable_lost, 0, "acknowledged durable writes were lost");
    assert!(
        durable.not_durable > 0,
        "the stall made no durable write wait in vain"
    );
    assert!(!durable.acked.is_empty() && !plain.acked.is_empty());

    // No replica left: durable writes are not durable, and say so within their timeout.
    let started = Instant::now();
    let err = store
        .set::<Payment>((99, 1), &Payment { n: 1 })
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
    assert!(started.elapsed() < Duration::from_secs(3));
    // The old primary comes back; the sentinels make it a replica; durable writes succeed again.
    topology.restart_node(old_primary);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.set::<Payment>((99, 2), &Payment { n: 2 }).await {
            Ok(()) => break,
            Err(Error::NotDurable { .. }) | Err(Error::Backend { .. }) => {
                assert!(Instant::now() < deadline, "no replica joined");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
