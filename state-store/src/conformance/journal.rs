//! Checks of journals: exactly-once replay from a cursor, no seam between history and live,
//! order per id, trimming, expiries, and worker groups.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::{ConsumeOptions, Cursor, Delivery, Entry, Journal, Journaled, Position};

/// A journaled type of the checks, keeping far more than any check writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "journaled", id = u64, notify, history = 100_000)]
pub struct Journaled1 {
    /// A number that each id's writer counts up.
    pub n: u64,
}

/// A journaled type of the checks that keeps about 10 changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "short-journal", id = u64, notify, history = 10)]
pub struct ShortJournal {
    /// A number.
    pub n: u64,
}

/// A journaled type of the checks whose values expire after a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "expiring-journal", id = u64, ttl = 1, notify, history = 1_000)]
pub struct ExpiringJournal {
    /// A number.
    pub n: u64,
}

const WAIT: Duration = Duration::from_secs(10);

/// The next entry of `journal`, failing the check after ten seconds without one.
async fn next_entry<S: Journaled>(journal: &mut Journal<S>) -> crate::Result<Entry<S>> {
    tokio::time::timeout(WAIT, journal.next())
        .await
        .expect("no journal entry within ten seconds")
        .expect("the journal ended")
}

/// The next delivery of `consumer`, or `None` after `wait`.
async fn next_delivery<S: Journaled>(
    consumer: &mut crate::Consumer<S>, wait: Duration,
) -> Option<Delivery<S>> {
    match tokio::time::timeout(wait, consumer.next()).await {
        Ok(Some(delivery)) => Some(delivery.expect("a delivery")),
        Ok(None) => panic!("the consumer ended"),
        Err(_) => None,
    }
}

fn one(n: u64) -> Journaled1 {
    Journaled1 { n }
}

/// What a change says, as `(id, n)`, `n` being `u64::MAX` for a removal or an expiry.
fn seen(change: &Change<Journaled1>) -> (u64, u64) {
    match change {
        Change::Set { id, value } => (*id, value.n),
        Change::Removed { id } | Change::Expired { id } => (*id, u64::MAX),
    }
}

/// Checks: a journal read from the start, dropped halfway and read again after the last cursor
/// handled (as a process resuming after a restart does), yields every change exactly once, in
/// the order they were made; cursors grow and read back from their string form.
pub async fn journals_replay_exactly_once_from_a_cursor<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set().enable_remove();
    let mut made = Vec::new();
    for n in 0..200u64 {
        store.set::<Journaled1>(n % 7, &one(n)).await.unwrap();
        made.push((n % 7, n));
        if n % 50 == 49 {
            store.remove::<Journaled1>(n % 7).await.unwrap();
            made.push((n % 7, u64::MAX));
        }
    }
    let mut journal = store.journal::<Journaled1>(Position::Start).await.unwrap();
    let mut got = Vec::new();
    let mut last = Cursor::ZERO;
    for _ in 0..100 {
        let entry = next_entry(&mut journal).await.unwrap();
        assert!(entry.cursor() > last, "cursors grow");
        last = entry.cursor();
        got.push(seen(entry.change()));
    }
    drop(journal);
    // Resumed from the stored form of the cursor, as a restarted process would.
    let stored = last.to_string();
    let resumed: Cursor = stored.parse().expect("a cursor reads back from its string");
    assert_eq!(resumed, last);
    let mut journal = store
        .journal::<Journaled1>(Position::After(resumed))
        .await
        .unwrap();
    while got.len() < made.len() {
        let entry = next_entry(&mut journal).await.unwrap();
        assert!(entry.cursor() > last, "cursors grow across the resumption");
        last = entry.cursor();
        got.push(seen(entry.change()));
    }
    assert_eq!(got, made, "every change exactly once, in order");
    // Nothing more: a sentinel change comes next.
    store.set::<Journaled1>(999, &one(999)).await.unwrap();
    let next = next_entry(&mut journal).await.unwrap();
    assert_eq!(
        seen(next.change()),
        (999, 999),
        "nothing repeated after the last change"
    );
}

/// Checks: writers racing the `journal` call lose nothing and repeat nothing at the seam
/// between what the journal held and what comes live: from [`Position::Start`] every id's
/// values come once each, in order; from [`Position::Now`] each id's values are consecutive
/// from the first one seen to the last one written.
pub async fn journals_have_no_seam_between_history_and_live<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set();
    const WRITERS: u64 = 8;
    const EACH: u64 = 150;
    // The writers hold their last few writes until both readers are open, so that changes come
    // both before the calls (the history), while they run (the seam) and after (live), however
    // fast the engine is.
    const HELD: u64 = 10;
    let (opened, open) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for id in 0..WRITERS {
        let (store, mut open) = (store.clone(), open.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..EACH {
                if n == EACH - HELD {
                    open.wait_for(|open| *open).await.unwrap();
                }
                store.set::<Journaled1>(id, &one(n)).await.unwrap();
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Both readers open while the writers run: once every id has its first value.
    for id in 0..WRITERS {
        while store.get::<Journaled1>(id).await.unwrap().is_none() {
            tokio::task::yield_now().await;
        }
    }
    let mut from_start = store.journal::<Journaled1>(Position::Start).await.unwrap();
    let mut from_now = store.journal::<Journaled1>(Position::Now).await.unwrap();
    opened.send(true).unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    // A change after all the writers' ends the reading from now.
    store.set::<Journaled1>(WRITERS, &one(0)).await.unwrap();
    let mut start: HashMap<u64, Vec<u64>> = HashMap::new();
    for _ in 0..WRITERS * EACH {
        let (id, n) = seen(next_entry(&mut from_start).await.unwrap().change());
        start.entry(id).or_default().push(n);
    }
    for id in 0..WRITERS {
        let want: Vec<u64> = (0..EACH).collect();
        assert_eq!(start.get(&id), Some(&want), "id {id} from the start");
    }
    // From now: each id's tail, consecutive, ending at the last value.
    let mut now: HashMap<u64, Vec<u64>> = HashMap::new();
    loop {
        let (id, n) = seen(next_entry(&mut from_now).await.unwrap().change());
        if id == WRITERS {
            break;
        }
        now.entry(id).or_default().push(n);
    }
    for (id, values) in &now {
        let first = values[0];
        let want: Vec<u64> = (first..EACH).collect();
        assert_eq!(values, &want, "id {id} from now: no gap, no repeat");
    }
}

/// Checks: a journal keeps about its `history` (at least that many changes, at most twice);
/// `Position::After` a trimmed cursor fails with [`Error::Trimmed`], whose `resume` replays
/// what is kept; a reader that falls behind the trimming gets `Trimmed` once, then the oldest
/// kept change, and goes on to the last.
pub async fn journals_trim_and_say_so<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set();
    let mut first = None;
    for n in 0..50u64 {
        store
            .set::<ShortJournal>(1, &ShortJournal { n })
            .await
            .unwrap();
        if n == 0 {
            let mut journal = store
                .journal::<ShortJournal>(Position::Start)
                .await
                .unwrap();
            first = Some(next_entry(&mut journal).await.unwrap().cursor());
        }
    }
    let first = first.unwrap();
    let resume = match store.journal::<ShortJournal>(Position::After(first)).await {
        Err(Error::Trimmed { cursor, resume }) => {
            assert_eq!(cursor, first, "the error names the cursor asked for");
            assert!(resume > first);
            resume
        }
        other => panic!("expected Error::Trimmed, got {:?}", other.map(drop)),
    };
    let mut kept = store
        .journal::<ShortJournal>(Position::After(resume))
        .await
        .unwrap();
    let mut values = Vec::new();
    loop {
        let entry = next_entry(&mut kept).await.unwrap();
        let n = entry.change().value().unwrap().n;
        values.push(n);
        if n == 49 {
            break;
        }
    }
    assert!(
        (10..=20).contains(&values.len()),
        "about 10 changes kept (at least 10, at most 20): {values:?}"
    );
    let want: Vec<u64> = (50 - values.len() as u64..50).collect();
    assert_eq!(values, want, "the kept changes, in order");

    // A reader that falls behind while it reads.
    let mut slow = store
        .journal::<ShortJournal>(Position::Start)
        .await
        .unwrap();
    let oldest = next_entry(&mut slow).await.unwrap();
    assert!(oldest.change().value().unwrap().n >= 30);
    for n in 50..150u64 {
        store
            .set::<ShortJournal>(1, &ShortJournal { n })
            .await
            .unwrap();
    }
    let mut trimmed = 0;
    let mut last = None;
    while last != Some(149) {
        match tokio::time::timeout(WAIT, slow.next())
            .await
            .unwrap()
            .unwrap()
        {
            Ok(entry) => last = Some(entry.change().value().unwrap().n),
            Err(Error::Trimmed { resume, .. }) => {
                trimmed += 1;
                assert!(resume > oldest.cursor());
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(trimmed, 1, "a reader behind the trimming hears it once");
}

/// Checks: the expiry of a journaled value is journaled as [`Change::Expired`] (after
/// [`ChangeFeed::enable_expiry_events`]), once, after the write.
pub async fn expiries_are_journaled<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set();
    store.enable_expiry_events().await.unwrap();
    // A reader first: on Redis, a process that reads or writes the type journals its expiries.
    let mut journal = store
        .journal::<ExpiringJournal>(Position::Now)
        .await
        .unwrap();
    store
        .set::<ExpiringJournal>(5, &ExpiringJournal { n: 1 })
        .await
        .unwrap();
    let set = next_entry(&mut journal).await.unwrap();
    assert!(matches!(set.change(), Change::Set { id: 5, .. }));
    let expired = next_entry(&mut journal).await.unwrap();
    assert!(
        matches!(expired.change(), Change::Expired { id: 5 }),
        "expected the expiry, got another change"
    );
    assert!(expired.cursor() > set.cursor());
    // Once: the next entry is a later write.
    store
        .set::<ExpiringJournal>(6, &ExpiringJournal { n: 2 })
        .await
        .unwrap();
    let next = next_entry(&mut journal).await.unwrap();
    assert!(matches!(next.change(), Change::Set { id: 6, .. }));
}

/// Checks: four consumers of one worker group share 10,000 changes written while they read:
/// every change is delivered to one of them and acknowledged exactly once overall; the group
/// starts with the changes made after its first `consume` returned.
pub async fn worker_groups_share_every_change_once<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set();
    const TOTAL: u64 = 10_000;
    // Made before the group: not delivered.
    store.set::<Journaled1>(u64::MAX, &one(0)).await.unwrap();
    let mut consumers = Vec::new();
    // Small batches, so that every consumer has its share to do while the others take theirs.
    let options = ConsumeOptions::new().batch(8);
    for c in 0..4 {
        let name = format!("c{c}");
        let consumer = store.consume_with::<Journaled1>("workers", &name, options);
        consumers.push(consumer.await.unwrap());
    }
    let acked: Arc<Mutex<BTreeMap<(u64, u64), u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for (c, mut consumer) in consumers.into_iter().enumerate() {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut handled = 0u64;
            loop {
                let Some(delivery) = next_delivery(&mut consumer, Duration::from_secs(3)).await
                else {
                    return handled;
                };
                let key = seen(delivery.change());
                assert_eq!(delivery.deliveries(), 1, "consumer {c}: a first delivery");
                delivery.ack().await.unwrap();
                *acked.lock().unwrap().entry(key).or_default() += 1;
                handled += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..TOTAL / 8 {
                store.set::<Journaled1>(w, &one(n)).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let mut per_consumer = Vec::new();
    for task in tasks {
        per_consumer.push(task.await.unwrap());
    }
    let acked = acked.lock().unwrap();
    assert!(
        !acked.contains_key(&(u64::MAX, 0)),
        "a change made before the group was delivered"
    );
    assert_eq!(acked.len() as u64, TOTAL, "every change delivered");
    assert!(acked.values().all(|&n| n == 1), "each acknowledged once");
    assert_eq!(per_consumer.iter().sum::<u64>(), TOTAL);
    assert!(
        per_consumer.iter().filter(|&&n| n > 0).count() >= 2,
        "the changes were shared: {per_consumer:?}"
    );
}

/// Checks: what a consumer was given and did not acknowledge before it died goes, after
/// `claim_after`, to a live consumer of the group, as a second delivery; the dead consumer's
/// late `ack` of it is a no-op that succeeds, and the entry is done.
pub async fn dead_consumers_changes_are_delivered_again<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set();
    let options = ConsumeOptions::new().claim_after(Duration::from_millis(300));
    let mut doomed = store
        .consume_with::<Journaled1>("claims", "doomed", options)
        .await
        .unwrap();
    let mut live = store
        .consume_with::<Journaled1>("claims", "live", options)
        .await
        .unwrap();
    for n in 0..20u64 {
        store.set::<Journaled1>(n, &one(n)).await.unwrap();
    }
    // The doomed consumer takes what it can before the live one asks.
    let mut taken = Vec::new();
    while let Some(delivery) = next_delivery(&mut doomed, Duration::from_millis(200)).await {
        taken.push(delivery);
    }
    assert!(!taken.is_empty(), "the doomed consumer got nothing");
    let lost: HashSet<u64> = taken.iter().map(|d| *d.change().id()).collect();
    drop(doomed);
    // The live consumer gets the rest once, and the doomed one's again.
    let mut again: HashMap<u64, u64> = HashMap::new();
    let mut fresh = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while again.len() < lost.len() || fresh.len() + lost.len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every change reached the live consumer: again {again:?}, fresh {fresh:?}"
        );
        let Some(delivery) = next_delivery(&mut live, Duration::from_millis(500)).await else {
            continue;
        };
        let id = *delivery.change().id();
        if lost.contains(&id) {
            again.insert(id, delivery.deliveries());
        } else {
            assert_eq!(delivery.deliveries(), 1);
            fresh.insert(id);
        }
        delivery.ack().await.unwrap();
    }
    assert!(
        again.values().all(|&n| n >= 2),
        "a delivery again counts as one more: {again:?}"
    );
    // The dead consumer's deliveries, acknowledged late: no error, nothing comes back.
    for delivery in taken {
        delivery.ack().await.unwrap();
    }
    assert!(
        next_delivery(&mut live, Duration::from_millis(800))
            .await
            .is_none(),
        "an acknowledged change came back"
    );
}

/// Checks (a backend without journals): `journal` and `consume` are [`Error::Unsupported`],
/// and writes of a journaled type still land.
pub async fn journals_are_unsupported<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).enable_set();
    assert!(matches!(
        store.journal::<Journaled1>(Position::Start).await,
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        store.consume::<Journaled1>("g", "c").await,
        Err(Error::Unsupported { .. })
    ));
    store.set::<Journaled1>(1, &one(1)).await.unwrap();
    assert_eq!(store.get::<Journaled1>(1).await.unwrap(), Some(one(1)));
}
