//! Journals under faults, against real `redis-server`s the tests start (and, where it makes
//! sense, on the memory backend):
//!
//! - a reader whose connection is killed (`CLIENT KILL`) and whose server is SIGKILLed and
//!   restarted (AOF, `appendfsync always`) while 8 writers run: resuming after the last cursor
//!   it handled, it reads every change exactly once, in per-id order;
//! - a worker group's consumer killed mid-batch (a separate process on Redis, an aborted task
//!   in memory): another consumer of the group gets what it was given, delivered again, and
//!   every change is acknowledged exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::{Backend, Change, ConsumeOptions, Consumer, Cursor, StateKey, Store};

/// A job whose every change is journaled; `n` only grows for a given id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, notify, history = 100_000)]
struct Job {
    n: u64,
}

const NS: &str = "journal-test";

/// The worker group of the take-over tests, and how many changes they write.
const GROUP: &str = "workers";
const CHANGES: u64 = 600;
/// How many changes a consumer takes at a time, and how many the doomed one handles before it
/// hangs (in its second batch).
const BATCH: usize = 64;
const HANDLED: usize = 100;

fn store_of<B: Backend>(backend: B) -> Store<B> {
    Store::new(backend).namespace(NS).enable_set()
}

/// What the surviving consumer got: per cursor, the change as `(id, n)` and how many times the
/// group had delivered it.
type Got = BTreeMap<Cursor, ((u64, u64), u64)>;

/// Consumes with `survivor` (which claims after 500 ms) until it has acknowledged a change for
/// each of the `CHANGES` written, acknowledging everything it gets; fails if a cursor comes to
/// it twice. Returns what it got and how long it took.
async fn take_over(mut survivor: Consumer<Job>) -> (Got, Duration) {
    let started = Instant::now();
    let mut got = Got::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < CHANGES as usize {
        let item = tokio::time::timeout_at(deadline, survivor.next())
            .await
            .unwrap_or_else(|_| panic!("only {} changes reached the survivor", got.len()))
            .expect("the consumer ended");
        let delivery = item.expect("a delivery");
        let change = match delivery.change() {
            Change::Set { id, value } => (*id, value.n),
            other => panic!("only sets were written: {other:?}"),
        };
        let before = got.insert(delivery.cursor(), (change, delivery.deliveries()));
        assert!(before.is_none(), "{} came twice", delivery.cursor());
        delivery.ack().await.expect("ack");
    }
    (got, started.elapsed())
}

/// The take-over's claims: the survivor acknowledged every change written, once each; those
/// the doomed consumer was given (`handled` the ones it handed on before it died) came again,
/// delivered twice; the others once.
fn check_take_over(got: &Got, handled: &BTreeSet<Cursor>) {
    let changes: BTreeSet<(u64, u64)> = got.values().map(|(change, _)| *change).collect();
    let written: BTreeSet<(u64, u64)> = (0..CHANGES).map(|i| (i, i)).collect();
    assert_eq!(changes, written, "every change written, acknowledged once");
    let again: BTreeSet<Cursor> = got
        .iter()
        .filter(|(_, (_, deliveries))| *deliveries >= 2)
        .map(|(cursor, _)| *cursor)
        .collect();
    assert!(
        handled.is_subset(&again),
        "what the doomed consumer handled came again: {:?}",
        handled.difference(&again).collect::<Vec<_>>()
    );
    // It took two batches, and died in the second: the rest of that batch was its too.
    assert_eq!(again.len(), 2 * BATCH, "{again:?}");
    assert!(
        got.values().all(|(_, deliveries)| *deliveries <= 2),
        "delivered to the doomed consumer and the survivor only"
    );
}

/// Writes the changes the take-over tests share: job `i` set to `n = i`.
async fn write_changes<B: Backend>(store: &Store<B>) {
    for i in 0..CHANGES {
        store.set::<Job>(i, &Job { n: i }).await.unwrap();
    }
}

fn options() -> ConsumeOptions {
    ConsumeOptions::new()
        .batch(BATCH)
        .claim_after(Duration::from_millis(500))
}

/// In memory, the doomed consumer is a task that handles `HANDLED` deliveries without
/// acknowledging them, hangs, and is aborted.
#[tokio::test]
async fn in_memory_a_consumer_aborted_mid_batch_has_its_changes_taken_over() {
    let store = store_of(state_store::MemoryBackend::new());
    // The group starts with the changes made after it was created: create it first.
    let survivor = store
        .consume_with::<Job>(GROUP, "survivor", options())
        .await
        .unwrap();
    write_changes(&store).await;
    let mut doomed = store
        .consume_with::<Job>(GROUP, "doomed", options())
        .await
        .unwrap();
    let (handed, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(delivery) = doomed.next().await {
            let delivery = delivery.expect("a delivery");
            handed.send(delivery.cursor()).unwrap();
            held.push(delivery); // never acknowledged
            if held.len() == HANDLED {
                std::future::pending::<()>().await;
            }
        }
    });
    let mut cursors = BTreeSet::new();
    while cursors.len() < HANDLED {
        cursors.insert(
            handled
                .recv()
                .await
                .expect("the doomed consumer's deliveries"),
        );
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let (got, took) = take_over(survivor).await;
    eprintln!("memory: the survivor had all {CHANGES} changes acknowledged after {took:?}");
    check_take_over(&got, &cursors);
}

#[cfg(feature = "redis")]
mod on_redis {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use futures_util::StreamExt;
    use state_store::{Cursor, Error, Position, RedisBackend, Store};
    use tokio::sync::watch;

    use super::support::RedisServer;
    use super::*;

    async fn store_at(url: &str) -> Store<RedisBackend> {
        store_of(RedisBackend::connect(url).await.unwrap())
    }

    /// Journals and worker groups over RESP3, where `XREADGROUP` answers a map instead of an
    /// array, work as over RESP2.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journals_and_groups_work_over_resp3() {
        use state_store::conformance;
        let server = RedisServer::start();
        let url = format!("{}?protocol=resp3", server.url());
        let backend = RedisBackend::connect(&url).await.unwrap();
        conformance::journals_replay_exactly_once_from_a_cursor(backend.clone()).await;
        conformance::journals_trim_and_say_so(backend.clone()).await;
        conformance::worker_groups_share_every_change_once(backend.clone()).await;
        conformance::dead_consumers_changes_are_delivered_again(backend).await;
    }

    /// The journal's stream on the server.
    const STREAM: &str = "journal-test:job#journal";

    /// A journal emptied by another client (`XTRIM ... MAXLEN 0`) goes on numbering from its
    /// last id: a reader from the start or from now gets the next change without a false
    /// `Trimmed`, and a cursor from before the emptying is told it was trimmed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_emptied_journal_is_read_without_a_false_trimmed() {
        let server = RedisServer::start();
        let store = store_at(&server.url()).await;
        for n in 1..=5 {
            store.set::<Job>(1, &Job { n }).await.unwrap();
        }
        let emptied: u64 = redis::cmd("XTRIM")
            .arg(STREAM)
            .arg("MAXLEN")
            .arg(0)
            .query(&mut server.raw())
            .unwrap();
        assert_eq!(emptied, 5);
        let mut from_start = store.journal::<Job>(Position::Start).await.unwrap();
        let mut from_now = store.journal::<Job>(Position::Now).await.unwrap();
        match store
            .journal::<Job>(Position::After("0-2".parse().unwrap()))
            .await
        {
            Err(Error::Trimmed { cursor, resume }) => {
                assert_eq!(cursor.to_string(), "0-2");
                assert_eq!(resume.to_string(), "0-5");
            }
            other => panic!("expected Trimmed, got {:?}", other.map(drop)),
        }
        store.set::<Job>(1, &Job { n: 6 }).await.unwrap();
        for journal in [&mut from_start, &mut from_now] {
            let entry = tokio::time::timeout(Duration::from_secs(10), journal.next())
                .await
                .expect("an entry in time")
                .expect("the journal goes on")
                .expect("the next change, not an error");
            assert_eq!(entry.cursor().to_string(), "0-6");
            assert_eq!(entry.change().value(), Some(&Job { n: 6 }));
        }
    }

    const WRITERS: u64 = 8;
    const IDS_PER_WRITER: u64 = 4;
    const WRITES: u64 = 2_000;

    /// What a writer did: per id, the values it knows are stored, in the order it wrote them;
    /// how many writes failed, and how many of those had landed all the same.
    #[derive(Default)]
    struct Written {
        values: BTreeMap<u64, Vec<u64>>,
        failures: u64,
        landed_anyway: u64,
    }

    /// Writer `w`: `WRITES` writes over ids of its own, `n` counting up. A write that fails is
    /// looked for before it is tried again (its reply may have been lost after it landed), so
    /// that every value is stored, and journaled, exactly once.
    async fn writer(store: Store<RedisBackend>, w: u64, acked: Arc<AtomicU64>) -> Written {
        let mut written = Written::default();
        for n in 1..=WRITES {
            let id = w * IDS_PER_WRITER + n % IDS_PER_WRITER;
            while store.set::<Job>(id, &Job { n }).await.is_err() {
                written.failures += 1;
                let stored = loop {
                    match store.get::<Job>(id).await {
                        Ok(stored) => break stored,
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                if stored.as_ref().map(|job| job.n) == Some(n) {
                    written.landed_anyway += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written.values.entry(id).or_default().push(n);
            acked.fetch_add(1, Ordering::SeqCst);
        }
        written
    }

    /// What the reader saw: every entry as `(cursor, id, n)`, and the error items and failed
    /// `journal` calls it went through.
    #[derive(Default)]
    struct Read {
        entries: Vec<(Cursor, u64, u64)>,
        errors: Vec<String>,
        resumes: u64,
    }

    /// What the reader has done so far: entries read, errors met.
    #[derive(Debug, Clone, Copy, Default)]
    struct Progress {
        read: usize,
        errors: usize,
    }

    /// Reads the journal from the start until it has handled `until`'s cursor, starting again
    /// after the last cursor handled whenever the stream yields an error (or the `journal`
    /// call fails). Reports how many it read, and how many errors it met, on `progress`.
    async fn reader(
        store: Store<RedisBackend>, progress: watch::Sender<Progress>,
        mut until: watch::Receiver<Option<Cursor>>,
    ) -> Read {
        let mut read = Read::default();
        let mut last: Option<Cursor> = None;
        let done = |last: Option<Cursor>, until: &watch::Receiver<Option<Cursor>>| {
            last.is_some() && *until.borrow() == last
        };
        loop {
            let from = last.map_or(Position::Start, Position::After);
            let mut journal = match store.journal::<Job>(from).await {
                Ok(journal) => journal,
                Err(e) => {
                    assert!(!matches!(e, Error::Trimmed { .. }), "{e}");
                    read.errors.push(format!("journal({from:?}): {e}"));
                    progress.send_modify(|p| p.errors = read.errors.len());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            read.resumes += u64::from(last.is_some());
            loop {
                if done(last, &until) {
                    return read;
                }
                let item = tokio::select! {
                    item = journal.next() => item,
                    _ = until.changed() => continue,
                };
                match item {
                    Some(Ok(entry)) => {
                        let Change::Set { id, value } = entry.change() else {
                            panic!("only sets were written: {entry:?}");
                        };
                        read.entries.push((entry.cursor(), *id, value.n));
                        last = Some(entry.cursor());
                        progress.send_modify(|p| p.read = read.entries.len());
                    }
                    Some(Err(e)) => {
                        // Any error but `Trimmed`: while the server cannot be reached, the
                        // engine's (`Error::Backend` on Redis; shown in the test's output).
                        assert!(!matches!(e, Error::Trimmed { .. }), "{e}");
                        read.errors.push(format!("{e:?}"));
                        progress.send_modify(|p| p.errors = read.errors.len());
                        break;
                    }
                    None => {
                        read.errors.push("the journal ended".into());
                        progress.send_modify(|p| p.errors = read.errors.len());
                        break;
                    }
                }
            }
        }
    }

    /// Kills the journal readers' connections: those that were not there `before` the reader
    /// started and last ran a journal read (`XREAD`, or the `MULTI` of `XRANGE`s); how many.
    fn kill_readers(raw: &mut redis::Connection, before: &BTreeSet<u64>) -> usize {
        let reading = |line: &str| {
            line.split(' ').any(|field| {
                matches!(
                    field,
                    "cmd=xread" | "cmd=multi" | "cmd=xrange" | "cmd=xrevrange" | "cmd=exec"
                )
            })
        };
        let ids = support::client_ids(raw, reading);
        let ids: Vec<&u64> = ids.difference(before).collect();
        for id in &ids {
            let killed: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(*id)
                .query(raw)
                .unwrap();
            assert_eq!(killed, 1);
        }
        ids.len()
    }

    /// Waits until `rx` holds a value for which `ready` holds, for at most `within`.
    async fn wait_for<T>(
        rx: &mut watch::Receiver<T>, within: Duration, ready: impl Fn(&T) -> bool,
    ) {
        tokio::time::timeout(within, rx.wait_for(|v| ready(v)))
            .await
            .expect("not reached in time")
            .expect("sender gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_killed_reader_connection_and_a_restart_lose_and_repeat_no_change() {
        let mut server =
            RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
        let store = store_at(&server.url()).await;
        let started = Instant::now();
        let total = WRITERS * WRITES;
        let acked = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(store.clone(), w, acked.clone())))
            .collect();
        let (progress, mut read_so_far) = watch::channel(Progress::default());
        let (until, last_wanted) = watch::channel(None);
        // The connections there before the reader: the writers' among them.
        let before =
            tokio::task::block_in_place(|| support::client_ids(&mut server.raw(), |_| true));
        let reader = tokio::spawn(reader(store.clone(), progress, last_wanted));

        // 1. Midway, the reader's connection is killed.
        wait_for(&mut read_so_far, Duration::from_secs(60), |p| {
            p.read >= 2_000
        })
        .await;
        let (killed, at) = tokio::task::block_in_place(|| {
            let at = acked.load(Ordering::SeqCst);
            (kill_readers(&mut server.raw(), &before), at)
        });
        assert!(killed >= 1, "no reader connection to kill");
        assert!(at < total, "the writers were done before the kill");
        let read_at_kill = read_so_far.borrow().read;
        eprintln!(
            "{:?}: killed {killed} reader connection(s) after {read_at_kill} entries read, {at} \
             writes acknowledged",
            started.elapsed()
        );
        // It reads on afterwards.
        wait_for(&mut read_so_far, Duration::from_secs(30), |p| {
            p.read >= read_at_kill + 1_000
        })
        .await;

        // 2. The server is SIGKILLed while the writers run, and comes back from its AOF.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < total / 2 {
            assert!(Instant::now() < deadline, "the writers are stuck");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at = acked.load(Ordering::SeqCst);
        let errors_before = read_so_far.borrow().errors;
        tokio::task::block_in_place(|| server.kill());
        assert!(at < total, "the writers were done before the restart");
        eprintln!(
            "{:?}: SIGKILLed the server after {at} writes acknowledged, {} entries read",
            started.elapsed(),
            read_so_far.borrow().read
        );
        // Down until the reader has ridden out its quiet retries and its stream yields an
        // error: it then starts again after its last cursor.
        wait_for(&mut read_so_far, Duration::from_secs(30), |p| {
            p.errors > errors_before
        })
        .await;
        tokio::task::block_in_place(|| server.restart());
        eprintln!("{:?}: restarted", started.elapsed());

        // 3. The writers finish; the reader reads up to the journal's last entry.
        let mut written: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let (mut failures, mut landed_anyway) = (0, 0);
        for writer in writers {
            let w = tokio::time::timeout(Duration::from_secs(120), writer)
                .await
                .expect("the writers did not finish in time")
                .expect("a writer panicked");
            written.extend(w.values);
            failures += w.failures;
            landed_anyway += w.landed_anyway;
        }
        let last: Vec<(String, HashMap<String, String>)> = tokio::task::block_in_place(|| {
            redis::cmd("XREVRANGE")
                .arg(STREAM)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(&mut server.raw())
        })
        .unwrap();
        let last: Cursor = last[0].0.parse().unwrap();
        until.send_replace(Some(last));
        let read = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("the reader did not reach the journal's end")
            .expect("the reader panicked");
        eprintln!(
            "{:?}: {total} writes ({failures} failed, {landed_anyway} of those had landed), \
             {} entries read, journal created {} time(s) after the first; errors seen: {}",
            started.elapsed(),
            read.entries.len(),
            read.resumes,
            read.errors.len(),
        );
        for e in read.errors.iter().take(8) {
            eprintln!("  {e}");
        }
        assert!(
            failures > 0,
            "no write failed: the server was never down under them"
        );
        assert!(
            read.resumes > 0,
            "the reader never had to start again: {:?}",
            read.errors
        );

        // 4. Every change exactly once: the cursors `0-1` .. the last, each once, in order...
        let cursors: Vec<Cursor> = read.entries.iter().map(|(c, _, _)| *c).collect();
        let expected: Vec<Cursor> = (1..=total).map(|n| Cursor::new(0, n)).collect();
        if cursors != expected {
            let seen: BTreeSet<Cursor> = cursors.iter().copied().collect();
            let missing: Vec<_> = expected
                .iter()
                .filter(|c| !seen.contains(c))
                .take(10)
                .collect();
            let repeated = cursors.len() - seen.len();
            panic!(
                "{} entries read for {total} writes (last cursor {last}): {repeated} repeated, \
                 missing for example {missing:?}",
                cursors.len()
            );
        }
        // ... and per id, exactly the values written, in the order written.
        let mut per_id: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (_, id, n) in &read.entries {
            per_id.entry(*id).or_default().push(*n);
        }
        for (id, values) in &written {
            let seen = per_id.remove(id).unwrap_or_default();
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "id {id}: out of order or repeated"
            );
            assert_eq!(&seen, values, "id {id}: what was read is what was written");
        }
        assert!(per_id.is_empty(), "ids never written: {:?}", per_id.keys());
    }

    /// Set by the take-over test for its child process: the server's URL.
    const CHILD_ENV: &str = "STATE_STORE_JOURNAL_TEST_CHILD";
    /// What the child prints before each cursor it was handed.
    const HANDED: &str = "journal-child handed ";

    /// The child process of the test below (run by it, as `current_exe() on_redis::doomed_consumer
    /// --exact --ignored`): one consumer of the group that prints each cursor it is handed,
    /// acknowledges none, and hangs after `HANDLED` of them until it is killed.
    #[tokio::test]
    #[ignore = "the child process of a_consumer_process_killed_mid_batch_has_its_changes_taken_over"]
    async fn doomed_consumer() {
        let Ok(url) = std::env::var(CHILD_ENV) else {
            eprintln!("only as the child of the take-over test");
            return;
        };
        let store = store_at(&url).await;
        let mut consumer = store
            .consume_with::<Job>(GROUP, "doomed", options())
            .await
            .unwrap();
        let mut held = Vec::new();
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.expect("a delivery");
            println!("{HANDED}{}", delivery.cursor());
            held.push(delivery);
            if held.len() == HANDLED {
                // Killed from here; gone anyway should the test not kill it.
                tokio::time::sleep(Duration::from_secs(60)).await;
                std::process::exit(3);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_process_killed_mid_batch_has_its_changes_taken_over() {
        let server = RedisServer::start();
        let store = store_at(&server.url()).await;
        // The group starts with the changes made after it was created: create it first.
        let survivor = store
            .consume_with::<Job>(GROUP, "survivor", options())
            .await
            .unwrap();
        write_changes(&store).await;

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "on_redis::doomed_consumer",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, server.url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let handled = tokio::task::spawn_blocking(move || {
            let mut cursors = BTreeSet::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                // (The first comes after libtest's `test ... ` on the same line.)
                if let Some((_, cursor)) = line.split_once(HANDED) {
                    cursors.insert(cursor.parse::<Cursor>().unwrap());
                    if cursors.len() == HANDLED {
                        break;
                    }
                }
            }
            cursors
        });
        let handled = tokio::time::timeout(Duration::from_secs(60), handled)
            .await
            .expect("the child did not hand on its deliveries in time")
            .unwrap();
        assert_eq!(handled.len(), HANDLED, "the child ended early");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{status}");

        let (got, took) = take_over(survivor).await;
        eprintln!(
            "redis: the child killed after it handed on {HANDLED}; the survivor had all {CHANGES} \
             changes acknowledged after {took:?}, {} of them delivered twice",
            got.values().filter(|(_, d)| *d >= 2).count()
        );
        check_take_over(&got, &handled);
        // Nothing left pending for the group.
        let pending: (u64, Option<String>, Option<String>, redis::Value) =
            tokio::task::block_in_place(|| {
                redis::cmd("XPENDING")
                    .arg(STREAM)
                    .arg(GROUP)
                    .query(&mut server.raw())
            })
            .unwrap();
        assert_eq!(pending.0, 0, "{pending:?}");
    }
}
