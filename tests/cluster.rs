//! The Redis backend on a real Redis Cluster: 3 primaries and 3 replicas that the tests start on
//! loopback (`tests/support/cluster.rs`), the conformance suite on it, multi-key operations over
//! every slot, change feeds from every node, and a primary killed under load.
#![cfg(feature = "cluster")]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::conformance::{Session, session};
use state_store::{Change, RedisBackend, SetOptions, StateKey, Store};
use support::cluster::RedisCluster;

/// A backend on `cluster` with nothing stored: every primary flushed (replicas follow), and
/// every change the previous check published delivered.
async fn fresh(cluster: &RedisCluster) -> ((), RedisBackend) {
    for primary in cluster.primaries() {
        let mut conn = cluster.connection(primary.port);
        let () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    }
    drain_the_bus(cluster).await;
    let backend = RedisBackend::cluster(cluster.urls()).await.unwrap();
    ((), backend)
}

/// Waits until every node has delivered what the primaries published so far: each primary
/// publishes a token after it, and a subscriber on every node hears them all (the cluster bus
/// carries one node's messages to another in order). The checks of the suite use the same
/// channels one after another; without this, a change of one check could reach the next.
async fn drain_the_bus(cluster: &RedisCluster) {
    const BARRIER: &str = "test-barrier";
    let token = format!("{:?}", Instant::now());
    let mut subscribers = Vec::new();
    for port in cluster.live_ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(BARRIER).await.unwrap();
        subscribers.push((port, pubsub.into_on_message()));
    }
    let primaries = cluster.primaries();
    for primary in &primaries {
        let mut conn = cluster.connection(primary.port);
        let _: i64 = redis::cmd("PUBLISH")
            .arg(BARRIER)
            .arg(format!("{token} {}", primary.port))
            .query(&mut conn)
            .unwrap();
    }
    for (port, mut messages) in subscribers {
        let mut heard = HashSet::new();
        while heard.len() < primaries.len() {
            let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .unwrap_or_else(|_| panic!("node {port} heard {heard:?} of the barrier"))
                .expect("barrier subscription ended");
            let payload: String = message.get_payload().unwrap();
            if payload.starts_with(&token) {
                heard.insert(payload);
            }
        }
    }
}

state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    in_one_test(cluster = RedisCluster::start()),
    crate::fresh(&cluster),
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "item", id = u32, notify)]
struct Item {
    n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "beat", id = u32)]
struct Beat {
    writer: u32,
    n: u64,
}

fn store(backend: &RedisBackend) -> Store<RedisBackend> {
    Store::new(backend.clone())
        .namespace("svc")
        .enable_set()
        .enable_remove()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_operations_span_every_slot_and_keep_the_callers_order() {
    let cluster = RedisCluster::start();
    let (_, backend) = fresh(&cluster).await;
    let store = store(&backend);
    let ids: Vec<u32> = (0..200).collect();
    // The ids land on every primary: the test covers the split it means to.
    let owners: HashSet<u16> = ids
        .iter()
        .map(|id| cluster.primary_for_key(&format!("svc:item:{id}")))
        .collect();
    assert_eq!(owners.len(), 3, "200 ids fell on {owners:?}");

    let items: Vec<(u32, Item)> = ids.iter().map(|&id| (id, Item { n: id * 10 })).collect();
    store.set_many::<Item>(&items).await.unwrap();

    // Asked in a shuffled order, with ids that do not exist in between.
    let mut asked: Vec<u32> = ids.iter().rev().copied().collect();
    asked.insert(50, 1000);
    asked.insert(120, 1001);
    let got = store.get_many::<Item>(&asked).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for (id, value) in asked.iter().zip(&got) {
        let expected = (*id < 200).then(|| Item { n: id * 10 });
        assert_eq!(value, &expected, "id {id}");
    }

    // Each key is on the primary of its slot, as the cluster itself says.
    for id in [0u32, 77, 199] {
        let key = format!("svc:item:{id}");
        let mut conn = cluster.connection(cluster.primary_for_key(&key));
        let stored: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(stored, format!("{{\"n\":{}}}", id * 10));
    }

    let mut listed: Vec<u32> = store
        .ids::<Item>()
        .map(|id| id.unwrap())
        .collect::<Vec<_>>()
        .await;
    listed.sort_unstable();
    assert_eq!(listed, ids, "ids lists every id exactly once");

    // Removal across slots: counts summed, ids that do not exist not counted.
    let mut doomed: Vec<u32> = (0..100).collect();
    doomed.push(5000);
    assert_eq!(store.remove_many::<Item>(&doomed).await.unwrap(), 100);
    let left = store.get_many::<Item>(&ids).await.unwrap();
    assert_eq!(left.iter().filter(|v| v.is_some()).count(), 100);
    assert!(left[..100].iter().all(Option::is_none));
    let mut listed: Vec<u32> = store
        .ids::<Item>()
        .map(|id| id.unwrap())
        .collect::<Vec<_>>()
        .await;
    listed.sort_unstable();
    assert_eq!(listed, (100..200).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_changes_and_expiries_from_every_primary() {
    let cluster = RedisCluster::start();
    let (_, backend) = fresh(&cluster).await;
    backend_enable_expiry_events(&backend).await;
    let store = store(&backend);
    let mut changes = store.watch::<Item>().await.unwrap();

    // One id per primary.
    let mut per_primary: Vec<(u16, u32)> = Vec::new();
    for id in 0u32.. {
        let owner = cluster.primary_for_key(&format!("svc:item:{id}"));
        if per_primary.iter().all(|(port, _)| *port != owner) {
            per_primary.push((owner, id));
        }
        if per_primary.len() == 3 {
            break;
        }
    }
    let ids: Vec<u32> = per_primary.iter().map(|(_, id)| *id).collect();

    let items: Vec<(u32, Item)> = ids.iter().map(|&id| (id, Item { n: id })).collect();
    store.set_many::<Item>(&items).await.unwrap();
    store.remove_many::<Item>(&ids).await.unwrap();
    for &id in &ids {
        store
            .set_with::<Item>(
                id,
                &Item { n: id + 1 },
                SetOptions::new().ttl(Duration::from_millis(200)),
            )
            .await
            .unwrap();
    }

    let mut set = HashSet::new();
    let mut removed = HashSet::new();
    let mut expired = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while expired.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let change = tokio::time::timeout(left, changes.next())
            .await
            .unwrap_or_else(|_| {
                panic!("set {set:?}, removed {removed:?}, expired {expired:?} by the deadline")
            })
            .expect("the feed ended")
            .unwrap();
        match change {
            Change::Set { id, .. } => set.insert(id),
            Change::Removed { id } => removed.insert(id),
            Change::Expired { id } => expired.insert(id),
        };
    }
    let all: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(set, all);
    assert_eq!(removed, all);
    assert_eq!(expired, all, "an expiry from each of the 3 primaries");
}

async fn backend_enable_expiry_events(backend: &RedisBackend) {
    backend.enable_expiry_events().await.unwrap();
}

/// Writers run while the primary of one of their keys is killed. Operations on its slots fail
/// with errors (never hang) until its replica is promoted, then succeed again through the same
/// store; writes acknowledged by the replica before the kill are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_the_same_store_recovers() {
    let mut cluster = RedisCluster::start();
    let (_, backend) = fresh(&cluster).await;
    let store = store(&backend);

    // Writes before the kill, confirmed on every replica.
    let before: Vec<(u64, Session)> = (0..300).map(|id| (id as u64, session(id))).collect();
    store.set_many::<Session>(&before).await.unwrap();
    for primary in cluster.primaries() {
        support::replicated(&mut cluster.connection(primary.port), primary.port);
    }

    // Writer tasks, each on its own id; the victim serves writer 0's key.
    let writers = 8u32;
    let victim = cluster.primary_for_key("svc:beat:0");
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = store.set::<Beat>(writer, &Beat { writer, n }).await;
                longest = longest.max(started.elapsed());
                match result {
                    Ok(()) => n += 1,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (n, longest)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed_at = Instant::now();
    cluster.kill_node(victim);
    let failover = tokio::task::spawn_blocking({
        // The harness polls with blocking connections.
        let cluster = std::sync::Mutex::new(cluster);
        move || {
            let took = cluster.lock().unwrap().wait_for_failover(victim);
            (cluster.into_inner().unwrap(), took)
        }
    });
    let (cluster, failover_took) = failover.await.unwrap();

    // The same store writes and reads the victim's slots again.
    let recovered = loop {
        let probe = store
            .set::<Beat>(
                0,
                &Beat {
                    writer: 0,
                    n: u64::MAX,
                },
            )
            .await;
        if probe.is_ok() && store.get::<Beat>(0).await.is_ok() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no recovery 60 s after the kill: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut longest = Duration::ZERO;
    for task in tasks {
        let (n, slowest) = task.await.unwrap();
        assert!(n > 0, "a writer never wrote");
        longest = longest.max(slowest);
    }
    eprintln!(
        "cluster failover: promoted after {failover_took:?}, the store wrote again {recovered:?} \
         after the kill; {} failed writes meanwhile, slowest call {longest:?}",
        errors.load(Ordering::Relaxed)
    );
    // No call hung: each failed or succeeded within the response timeout and the retries.
    assert!(longest < Duration::from_secs(15), "a call took {longest:?}");

    // Everything acknowledged by the replicas before the kill is readable.
    let ids: Vec<u64> = before.iter().map(|(id, _)| *id).collect();
    let after = store.get_many::<Session>(&ids).await.unwrap();
    for ((id, expected), got) in before.iter().zip(after) {
        assert_eq!(got.as_ref(), Some(expected), "session {id}");
    }
    // And the writers' keys are all readable, on the new primary too.
    for writer in 0..writers {
        assert!(store.get::<Beat>(writer).await.unwrap().is_some());
    }
    assert!(cluster.primaries().iter().all(|p| p.port != victim));
}

/// The service user of the guide's ACL line (production_redis), created on every node.
const ACL_LINE: &str = "ACL SETUSER user-service on >secret resetchannels ~user-service:* \
                        &user-service:* &__keyevent@0__:expired +@all -@dangerous";

/// The guide's ACL line holds on a Cluster too: the service user runs every kind of operation of
/// its namespace, `watch` and `ids` included (`CLUSTER NODES`, the feed's barrier), and is refused
/// another namespace's, with nothing written. Its password shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_user_works_on_a_cluster_and_stays_in_its_namespace() {
    let cluster = RedisCluster::start();
    for port in cluster.live_ports() {
        let mut cmd = redis::cmd("ACL");
        for word in ACL_LINE.split_whitespace().skip(1) {
            cmd.arg(word);
        }
        let () = cmd.query(&mut cluster.connection(port)).unwrap();
    }
    let urls: Vec<String> = cluster
        .ports()
        .iter()
        .map(|port| format!("redis://user-service:secret@127.0.0.1:{port}"))
        .collect();
    let backend = RedisBackend::cluster(&urls).await.unwrap();
    for shown in [
        format!("{backend:?}"),
        format!("{:?}", backend.connection()),
    ] {
        assert!(!shown.contains("secret"), "{shown}");
    }
    let own = Store::new(backend.clone())
        .namespace("user-service")
        .enable_set()
        .enable_remove();
    let mut changes = own.watch::<Item>().await.unwrap();
    let items: Vec<(u32, Item)> = (0..50).map(|id| (id, Item { n: id })).collect();
    own.set_many::<Item>(&items).await.unwrap();
    own.set::<Item>(7, &Item { n: 70 }).await.unwrap();
    let ids: Vec<u32> = (0..50).collect();
    let got = own.get_many::<Item>(&ids).await.unwrap();
    assert_eq!(got[7], Some(Item { n: 70 }));
    let mut listed: Vec<u32> = own
        .ids::<Item>()
        .map(|id| id.unwrap())
        .collect::<Vec<_>>()
        .await;
    listed.sort_unstable();
    assert_eq!(listed, ids);
    assert_eq!(own.remove_many::<Item>(&ids).await.unwrap(), 50);
    // 50 sets, one more, 50 removals: all heard.
    for n in 0..101 {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .unwrap_or_else(|_| panic!("change {n} of 101 never came"))
            .unwrap()
            .unwrap();
        assert!(matches!(
            change,
            Change::Set { .. } | Change::Removed { .. }
        ));
    }

    let other = Store::new(backend)
        .namespace("billing")
        .enable_set()
        .enable_remove();
    let refused = |what: &str, e: state_store::Error| {
        let shown = format!("{e}");
        assert!(shown.contains("billing:item:"), "{what}: {shown}");
        assert!(support::is_noperm(&e), "{what}: not NOPERM: {shown}");
        assert!(!format!("{e} {e:?}").contains("secret"), "{what}: {e:?}");
    };
    refused("get", other.get::<Item>(1).await.unwrap_err());
    refused(
        "set",
        other.set::<Item>(1, &Item { n: 1 }).await.unwrap_err(),
    );
    refused(
        "set_many",
        other.set_many::<Item>(&items).await.unwrap_err(),
    );
    refused(
        "remove_many",
        other.remove_many::<Item>(&ids).await.unwrap_err(),
    );
    for primary in cluster.primaries() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("billing:*")
            .query(&mut cluster.connection(primary.port))
            .unwrap();
        assert!(keys.is_empty(), "written on {}: {keys:?}", primary.port);
    }

    // A wrong password: a connect error that names a node, not the password.
    let wrong: Vec<String> = urls
        .iter()
        .map(|u| u.replace("secret", "wr0ng-pw"))
        .collect();
    let e = RedisBackend::cluster(&wrong).await.unwrap_err();
    let shown = format!("{e}\n{e:?}");
    assert!(!shown.contains("wr0ng-pw"), "{shown}");
    assert!(shown.contains("127.0.0.1:"), "{shown}");
}

/// Leases on a Cluster: the lease and the state it guards live in different slots, on different
/// primaries. A holder paused past its ttl while another takes over is refused by the record of
/// accepted tokens kept in the guarded key's slot; the guarded key stays plain JSON, and every
/// record sits in the slot of the key it belongs to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_lease_holder_is_fenced_out_across_slots() {
    use support::leases::{Report, a_paused_holder_is_fenced_out, report};

    let cluster = RedisCluster::start();
    let (_, backend) = fresh(&cluster).await;
    let store = Store::new(backend).enable_set().enable_remove();
    // Ids whose lease and report are on different primaries.
    let ids: Vec<u64> = (1..200)
        .filter(|id| {
            cluster.primary_for_key(&format!("report-lease:{id}"))
                != cluster.primary_for_key(&format!("report:{id}"))
        })
        .take(2)
        .collect();
    assert_eq!(ids.len(), 2);
    for &id in &ids {
        a_paused_holder_is_fenced_out(&store, id).await;
        assert_eq!(
            store.get::<Report>(id).await.unwrap(),
            Some(report("done", "b"))
        );
    }

    // Where everything is: each key on the primary of its own slot's owner.
    let id = ids[0];
    let report_node = cluster.primary_for_key(&format!("report:{id}"));
    let lease_node = cluster.primary_for_key(&format!("report-lease:{id}"));
    let mut on_report_node = cluster.connection(report_node);
    let plain: String = redis::cmd("GET")
        .arg(format!("report:{id}"))
        .query(&mut on_report_node)
        .unwrap();
    assert_eq!(plain, r#"{"status":"done","by":"b"}"#);
    let fence: Vec<String> = redis::cmd("KEYS")
        .arg(format!("report#fence*:{id}"))
        .query(&mut on_report_node)
        .unwrap();
    assert_eq!(fence.len(), 1, "the fence record of report:{id}: {fence:?}");
    let tokens: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&fence[0])
        .query(&mut on_report_node)
        .unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(
        tokens.contains_key(&format!("report-lease:{id}")),
        "{tokens:?}"
    );
    let counters: Vec<String> = redis::cmd("KEYS")
        .arg("report-lease#tokens*")
        .query(&mut cluster.connection(lease_node))
        .unwrap();
    assert!(!counters.is_empty(), "the token counter is with the lease");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "ledger", id = u64, durable)]
struct Ledger {
    n: u64,
}

/// On a Cluster a durable write waits on the replica of the primary that took it: with one
/// primary's replica stalled (SIGSTOP), durable writes to that primary's slots are `NotDurable`
/// while those to the other primaries succeed, and all succeed again once it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_write_waits_on_its_own_primarys_replica() {
    let cluster = RedisCluster::start();
    let (_, _) = fresh(&cluster).await;
    // Long enough for a replica's acknowledgement on a loaded 2-core machine running the
    // other cluster tests' 36 nodes beside these 6; the stalled write costs this once.
    let durability = state_store::Durability::Replicas {
        count: 1,
        timeout: Duration::from_secs(1),
    };
    let options = state_store::RedisOptions::default().durability(durability);
    let backend = RedisBackend::cluster_with(cluster.urls(), options)
        .await
        .unwrap();
    let store = Store::new(backend).enable_set();
    let primaries: Vec<u16> = cluster.primaries().iter().map(|p| p.port).collect();
    // One id on each primary.
    let ids: Vec<(u16, u64)> = primaries
        .iter()
        .map(|&port| {
            let id = (0..1000)
                .find(|id| cluster.primary_for_key(&format!("ledger:{id}")) == port)
                .unwrap();
            (port, id)
        })
        .collect();
    // Every replica acknowledges a first durable write (the harness waited until each primary
    // counts its replica online; this also waits out a replica that is slow to answer).
    for &(_, id) in &ids {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.set::<Ledger>(id, &Ledger { n: 1 }).await {
                Ok(()) => break,
                Err(state_store::Error::NotDurable { .. }) if Instant::now() < deadline => {}
                Err(e) => panic!("the first durable write of ledger:{id}: {e}"),
            }
        }
    }
    let (stalled_primary, stalled_id) = ids[0];
    let replica = cluster.replicas_of(stalled_primary)[0].port;
    let signal = |signal: &str| {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(cluster.pid(replica).to_string())
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("STOP");
    let err = store
        .set::<Ledger>(stalled_id, &Ledger { n: 2 })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, state_store::Error::NotDurable { acked: 0, required: 1, key } if *key == format!("ledger:{stalled_id}")),
        "{err:?}"
    );
    for &(_, id) in &ids[1..] {
        store.set::<Ledger>(id, &Ledger { n: 2 }).await.unwrap();
    }
    signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .set::<Ledger>(stalled_id, &Ledger { n: 3 })
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the replica never caught up again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
