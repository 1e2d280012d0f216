//! Durable types on a JetStream cluster of three `nats-server -js` processes that the tests start
//! themselves (free loopback ports, their own store directories; never the NATS on 4222): the
//! bucket of a durable type has 3 replicas, that of a plain type 1, a durable type's bucket made
//! with 1 replica is raised to 3, and no acknowledged durable write is lost when a server is
//! SIGKILLed under load.
#![cfg(feature = "nats")]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use state_store::async_nats::jetstream;
use state_store::{NatsBackend, NatsOptions, StateKey, Store};
use support::nats::NatsCluster;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "payment", id = u64, durable)]
struct Payment {
    writer: u64,
    seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "hit", id = u64)]
struct Hit {
    n: u64,
}

/// A plain type and a durable one sharing a prefix, so a bucket: the plain type's first write
/// makes the bucket with 1 replica, the durable type's then raises it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "ledger", id = u64)]
struct LedgerBefore {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "ledger", id = u64, durable)]
struct Ledger {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "archive", id = u64)]
struct ArchiveBefore {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "archive", id = u64, durable)]
struct Archive {
    n: u64,
}

/// The stream config and cluster state of a type's bucket, as the servers report them (asked
/// again for up to 30 s while a leader change leaves the request unanswered).
async fn stream_info(backend: &NatsBackend, bucket: &str) -> jetstream::stream::Info {
    let js = jetstream::new(backend.client().clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_stream(format!("KV_{bucket}")).await {
            Ok(stream) => return stream.cached_info().clone(),
            Err(e) if Instant::now() < deadline => {
                eprintln!("stream info of {bucket}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("stream info of {bucket}: {e}"),
        }
    }
}

impl Payment {
    fn is(&self, id: u64, seq: u64) -> bool {
        self.writer == id / 1_000_000_000 && self.seq == seq
    }
}

/// The payments under `ids` (id, seq), read 256 at a time; a read that fails is asked again
/// (for 5 s) rather than taken for a missing value.
async fn read_back(
    store: &Store<NatsBackend>, ids: &[(u64, u64)],
) -> Vec<(u64, u64, Option<Payment>)> {
    let mut found = Vec::new();
    for chunk in ids.chunks(256) {
        let reads = chunk.iter().map(|&(id, seq)| async move {
            let mut read = store.get::<Payment>(id).await;
            for _ in 0..20 {
                if read.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                read = store.get::<Payment>(id).await;
            }
            match read {
                Ok(read) => (id, seq, read),
                Err(e) => panic!("payment {id} cannot be read: {e}"),
            }
        });
        found.extend(futures_util::future::join_all(reads).await);
    }
    found
}

/// The leader of `stream`, once it is not `server`: asks the leader to step down while it is.
async fn leader_off(backend: &NatsBackend, stream: &str, server: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let bucket = stream.strip_prefix("KV_").unwrap();
        let info = stream_info(backend, bucket).await;
        match info.cluster.and_then(|c| c.leader) {
            Some(leader) if leader != server => return leader,
            Some(_) => {
                let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}");
                let answer = backend
                    .client()
                    .request(subject, "".into())
                    .await
                    .map(|reply| String::from_utf8_lossy(&reply.payload).into_owned());
                eprintln!("asked {server} to step down as leader of {stream}: {answer:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{stream} kept its leader on {server}");
}

/// A store on all three servers, answers awaited 2 s (a leader change takes a few seconds; a
/// writer that times out tries its next write).
async fn connect(cluster: &NatsCluster) -> (NatsBackend, Store<NatsBackend>) {
    let options = NatsOptions::new().request_timeout(Duration::from_secs(2));
    let backend = NatsBackend::connect_with(&cluster.urls(), options)
        .await
        .unwrap();
    let store = Store::new(backend.clone()).enable_set().enable_remove();
    (backend, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_buckets_get_three_replicas_plain_ones_one() {
    let cluster = NatsCluster::start();
    let (backend, store) = connect(&cluster).await;
    assert_eq!(backend.durable_replicas(), 3, "automatic on a cluster");
    store
        .set::<Payment>(1, &Payment { writer: 0, seq: 1 })
        .await
        .unwrap();
    store.set::<Hit>(1, &Hit { n: 1 }).await.unwrap();
    let payment = stream_info(&backend, "payment").await;
    assert_eq!(payment.config.num_replicas, 3);
    assert!(!payment.config.allow_direct, "reads from the leader");
    assert_eq!(
        payment.cluster.unwrap().replicas.len(),
        2,
        "a leader and two more"
    );
    let hit = stream_info(&backend, "hit").await;
    assert_eq!(hit.config.num_replicas, 1);
    assert!(hit.config.allow_direct);

    // Every read sees the write acknowledged before it (with direct gets, answered by any
    // replica, about 1 in 300 did not on NATS 2.9.10).
    let mut stale = 0;
    for seq in 0..1000 {
        let payment = Payment { writer: 9, seq };
        store.set::<Payment>(9, &payment).await.unwrap();
        store.set::<Payment>(1000 + seq, &payment).await.unwrap();
        if store.get::<Payment>(9).await.unwrap() != Some(payment.clone()) {
            stale += 1;
        }
        if store.get::<Payment>(1000 + seq).await.unwrap() != Some(payment) {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "stale reads in 2,000");

    // A bucket made with 1 replica (by a plain type of the same prefix here; in practice by a
    // version of the type without `durable`) gets 3 at the durable type's first write, and
    // keeps what it held.
    store
        .set::<LedgerBefore>(1, &LedgerBefore { n: 1 })
        .await
        .unwrap();
    assert_eq!(stream_info(&backend, "ledger").await.config.num_replicas, 1);
    store.set::<Ledger>(2, &Ledger { n: 2 }).await.unwrap();
    let ledger = stream_info(&backend, "ledger").await;
    assert_eq!(ledger.config.num_replicas, 3);
    assert!(!ledger.config.allow_direct);
    assert_eq!(store.get::<Ledger>(1).await.unwrap(), Some(Ledger { n: 1 }));
    assert_eq!(store.get::<Ledger>(2).await.unwrap(), Some(Ledger { n: 2 }));
    // A plain write never lowers the count.
    store
        .set::<LedgerBefore>(3, &LedgerBefore { n: 3 })
        .await
        .unwrap();
    assert_eq!(stream_info(&backend, "ledger").await.config.num_replicas, 3);
    // A removal of a durable type raises them too.
    store
        .set::<ArchiveBefore>(1, &ArchiveBefore { n: 1 })
        .await
        .unwrap();
    assert_eq!(
        stream_info(&backend, "archive").await.config.num_replicas,
        1
    );
    assert!(store.remove::<Archive>(1).await.unwrap());
    assert_eq!(
        stream_info(&backend, "archive").await.config.num_replicas,
        3
    );

    // A count the cluster cannot give is a clear error, and writes nothing.
    let options = NatsOptions::new().durable_replicas(4);
    let greedy = NatsBackend::connect_with(&cluster.urls(), options)
        .await
        .unwrap();
    let greedy_store = Store::new(greedy).namespace("greedy").enable_set();
    let err = greedy_store
        .set::<Payment>(1, &Payment { writer: 0, seq: 1 })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            state_store::Error::Backend {
                operation: "create bucket",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("durable_replicas"), "{text}");
    assert_eq!(greedy_store.get::<Payment>(1).await.unwrap(), None);
}

/// Eight writers of a durable type through one store on all three servers; the server that
/// leads the bucket's stream (moved off the one the client is connected to) SIGKILLed after a
/// second. Every write that was acknowledged, before or after the kill, is readable
/// afterwards, and the store goes on writing on the two servers left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_durable_write_is_lost_when_a_server_is_killed() {
    const WRITERS: u64 = 8;
    let started = Instant::now();
    let mut cluster = NatsCluster::start();
    let cluster_ready = started.elapsed();
    let (backend, store) = connect(&cluster).await;
    // The bucket, made before the writers start.
    store
        .set::<Payment>(0, &Payment { writer: 0, seq: 0 })
        .await
        .unwrap();
    assert_eq!(
        stream_info(&backend, "payment").await.config.num_replicas,
        3
    );
    // The server to kill: the bucket's stream leader (the hardest case, a leader change), moved
    // off the server the client is connected to (whose loss would be a reconnection too).
    let connected = backend.client().server_info().server_name;
    let leader = leader_off(&backend, "KV_payment", &connected).await;
    let victim = cluster.index_of(&leader).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let after_kill = Arc::new(AtomicU64::new(0));
    // Until the kill: never.
    let killed_at = Arc::new(Mutex::new(Duration::MAX));
    let t0 = Instant::now();
    let writers: Vec<_> = (1..=WRITERS)
        .map(|writer| {
            let store = store.clone();
            let stop = stop.clone();
            let failed = failed.clone();
            let after_kill = after_kill.clone();
            let killed_at = killed_at.clone();
            tokio::spawn(async move {
                // (id, seq, when it was sent, when it was acknowledged), times since t0
                let mut acked = Vec::new();
                // What the failures said (without the key), and how many said it.
                let mut errors: HashMap<String, u64> = HashMap::new();
                // (id, seq, whether it timed out) of the writes that failed.
                let mut failures = Vec::new();
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let id = writer * 1_000_000_000 + seq;
                    let sent = t0.elapsed();
                    match store.set::<Payment>(id, &Payment { writer, seq }).await {
                        Ok(()) => {
                            let at = t0.elapsed();
                            if sent > *killed_at.lock().unwrap() {
                                after_kill.fetch_add(1, Ordering::Relaxed);
                            }
                            acked.push((id, seq, sent, at));
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let text = e.to_string();
                            let text = text.split_once("failed: ").map_or(&*text, |(_, t)| t);
                            failures.push((id, seq, text.contains("timed out")));
                            *errors.entry(text.to_owned()).or_default() += 1;
                            // As a service would: a short pause before the next write.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (writer, acked, errors, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill_time = t0.elapsed();
    *killed_at.lock().unwrap() = kill_time;
    cluster.kill(victim);
    let killed_at = kill_time;
    eprintln!(
        "client on {connected}, bucket leader {leader}: killed {} at {killed_at:?}",
        cluster.server_name(victim)
    );

    // Until writes sent after the kill have been acknowledged for 2 s, and at least 4 s (a
    // leader change takes a few seconds); at most 30 s.
    let since_kill = Instant::now();
    let mut resumed: Option<Instant> = None;
    while since_kill.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if resumed.is_none() && after_kill.load(Ordering::Relaxed) > 0 {
            resumed = Some(Instant::now());
        }
        if let Some(resumed) = resumed
            && resumed.elapsed() >= Duration::from_secs(2)
            && since_kill.elapsed() >= Duration::from_secs(4)
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let write_phase = t0.elapsed();

    let mut acked = Vec::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut failures = Vec::new();
    let mut resumed_per_writer = Vec::new();
    for writer in writers {
        let (writer, writes, errs, failed) = writer.await.unwrap();
        failures.extend(failed);
        // The first write sent after the kill that was acknowledged.
        let resumed = writes.iter().find(|w| w.2 > killed_at).map(|w| w.3);
        resumed_per_writer.push((writer, resumed));
        acked.extend(writes);
        for (text, n) in errs {
            *errors.entry(text).or_default() += n;
        }
    }
    let failed = failed.load(Ordering::Relaxed);
    let after = acked.iter().filter(|w| w.2 > killed_at).count();
    let in_flight = acked
        .iter()
        .filter(|w| w.2 <= killed_at && w.3 > killed_at)
        .count();
    let first_after = acked
        .iter()
        .filter(|w| w.2 > killed_at)
        .map(|w| w.3)
        .min()
        .map(|at| at - killed_at);
    let all_resumed = resumed_per_writer
        .iter()
        .map(|(_, at)| at.map(|at| at - killed_at))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    // The longest time without any acknowledgement, from the kill on.
    let mut times: Vec<Duration> = acked.iter().map(|w| w.3).collect();
    times.push(killed_at);
    times.sort();
    let longest_pause = times
        .windows(2)
        .filter(|w| w[1] > killed_at)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();

    // Every acknowledged write, read back through the two servers left: none is missing.
    let checked = Instant::now();
    let ids: Vec<(u64, u64)> = acked.iter().map(|w| (w.0, w.1)).collect();
    let lost: Vec<(u64, Option<Payment>)> = read_back(&store, &ids)
        .await
        .into_iter()
        .filter(|(id, seq, read)| read.as_ref().is_none_or(|p| !p.is(*id, *seq)))
        .map(|(id, _, read)| (id, read))
        .collect();
    let read_back_in = checked.elapsed();
    // The writes that failed: did any stand all the same? (One that timed out may have.)
    let ids: Vec<(u64, u64)> = failures.iter().map(|f| (f.0, f.1)).collect();
    let stood = read_back(&store, &ids)
        .await
        .into_iter()
        .zip(&failures)
        .filter(|((id, seq, read), _)| read.as_ref().is_some_and(|p| p.is(*id, *seq)))
        .map(|(_, failure)| failure.2)
        .collect::<Vec<_>>();
    let timed_out = failures.iter().filter(|f| f.2).count();
    let stood_timed_out = stood.iter().filter(|t| **t).count();
    eprintln!(
        "durable writes on a 3-node cluster, leader {} killed: acknowledged {} ({after} sent \
         after the kill, {in_flight} sent before and acknowledged after), lost {}; failed \
         {failed} ({timed_out} timed out), of which stored all the same {} ({stood_timed_out} \
         of those that timed out); first write sent after the kill acknowledged \
         {first_after:?} after it, every writer acknowledged again after {all_resumed:?}, \
         longest pause without an acknowledgement {longest_pause:?}; write phase \
         {write_phase:?}, cluster ready in {cluster_ready:?}, acknowledged writes read back in \
         {read_back_in:?}",
        cluster.server_name(victim),
        acked.len(),
        lost.len(),
        stood.len(),
    );
    let mut errors: Vec<_> = errors.into_iter().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    eprintln!("failures: {errors:?}");
    let info = stream_info(&backend, "payment").await;
    let cluster_state = info.cluster.unwrap_or_default();
    eprintln!(
        "stream leader now {:?}, replicas {:?}",
        cluster_state.leader,
        cluster_state
            .replicas
            .iter()
            .map(|p| format!("{} current={} offline={}", p.name, p.current, p.offline))
            .collect::<Vec<_>>(),
    );
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
    assert!(after > 0, "no write sent after the kill was acknowledged");
    assert_eq!(info.config.num_replicas, 3);
}
