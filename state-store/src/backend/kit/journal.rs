//! A journal inside this process: one channel's entries under sequence numbers, its readers and
//! its worker groups, with the semantics of [`Journals`](crate::backend::Journals). The memory
//! engine keeps one [`Log`] per journaled channel and appends under the same lock as the write;
//! an engine of your own that keeps its state in process can do the same.
//!
//! Entries are numbered from 1; an entry's cursor is `0-{number}`, as on Redis. The log keeps exactly the
//! last `keep` entries (the `history` of the latest append).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{
    BoxFuture, BoxStream, ConsumeOptions, Cursor, Event, JournalRecord, Position,
};
use crate::{Error, Result};

/// How many entries a reader takes from the log at a time.
const READ_BATCH: usize = 512;

/// One channel's journal. Share it as `Arc<Log>`: readers and consumers hold it weakly, and
/// their streams end once it is dropped.
#[derive(Debug)]
pub struct Log {
    state: Mutex<State>,
    /// Woken on every append, and when the log is dropped.
    wake: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    keep: u64,
    entries: VecDeque<(u64, Event)>,
    /// The number of the last entry appended (0: none yet).
    last: u64,
    /// The number of the last entry trimmed (0: none).
    trimmed: u64,
    groups: HashMap<String, Group>,
}

#[derive(Debug)]
struct Group {
    /// The number of the last entry handed out as new.
    delivered: u64,
    /// Entries handed out and not acknowledged, by number.
    pending: BTreeMap<u64, Pending>,
}

#[derive(Debug)]
struct Pending {
    consumer: String,
    since: Instant,
    deliveries: u64,
}

impl Drop for Log {
    fn drop(&mut self) {
        // Readers waiting for the next entry wake, find the log gone, and end.
        self.wake.notify_waiters();
    }
}

impl Default for Log {
    fn default() -> Self {
        Log::new()
    }
}

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log {
            state: Mutex::new(State::default()),
            wake: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `event`, keeping the last `keep` entries (at least 1); its cursor.
    pub fn append(&self, event: Event, keep: u64) -> Cursor {
        let mut state = self.lock();
        state.keep = keep.max(1);
        state.last += 1;
        let number = state.last;
        state.entries.push_back((number, event));
        while state.entries.len() as u64 > state.keep {
            if let Some((gone, _)) = state.entries.pop_front() {
                state.trimmed = gone;
            }
        }
        drop(state);
        self.wake.notify_waiters();
        Cursor::new(0, number)
    }

    /// How many entries it keeps: the `keep` of the last append (0 before the first).
    pub fn keep(&self) -> u64 {
        self.lock().keep
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries from `from` ([`Journals::read`](crate::backend::Journals::read)), on a log
    /// the stream holds weakly.
    pub fn read(
        self: &Arc<Self>, from: Position,
    ) -> Result<BoxStream<'static, Result<JournalRecord>>> {
        let after = {
            let state = self.lock();
            match from {
                Position::Start => state.trimmed,
                Position::Now => state.last,
                Position::After(cursor) => {
                    let after = number_of(cursor);
                    if after < state.trimmed {
                        return Err(Error::Trimmed {
                            cursor,
                            resume: Cursor::new(0, state.trimmed),
                        });
                    }
                    after
                }
            }
        };
        let reader = Reader {
            log: Arc::downgrade(self),
            wake: self.wake.clone(),
            after,
            ready: VecDeque::new(),
        };
        Ok(Box::pin(futures_util::stream::unfold(reader, Reader::next)))
    }

    /// The entries for `consumer` of worker group `group`
    /// ([`Journals::consume`](crate::backend::Journals::consume)), on a log the stream holds
    /// weakly. The group is created here when it is new, after the last entry appended.
    pub fn consume(
        self: &Arc<Self>, group: &str, consumer: &str, options: ConsumeOptions,
    ) -> BoxStream<'static, Result<JournalRecord>> {
        {
            let mut state = self.lock();
            let last = state.last;
            state
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| Group {
                    delivered: last,
                    pending: BTreeMap::new(),
                });
        }
        let worker = Worker {
            log: Arc::downgrade(self),
            wake: self.wake.clone(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            options,
            returning: true,
            ready: VecDeque::new(),
        };
        Box::pin(futures_util::stream::unfold(worker, Worker::next))
    }

    /// Marks entry `number` done for `group`: a no-op when it is not pending.
    fn ack(&self, group: &str, number: u64) {
        if let Some(group) = self.lock().groups.get_mut(group) {
            group.pending.remove(&number);
        }
    }
}

/// The entry number a cursor names: `0-{number}` (any other comes after every entry).
fn number_of(cursor: Cursor) -> u64 {
    if cursor.high() == 0 {
        cursor.low()
    } else {
        u64::MAX
    }
}

/// The entry numbered `number` in `entries`, if still kept.
fn entry(entries: &VecDeque<(u64, Event)>, number: u64) -> Option<&Event> {
    let first = entries.front()?.0;
    let index = usize::try_from(number.checked_sub(first)?).ok()?;
    entries.get(index).map(|(_, event)| event)
}

/// The entries after number `after`, at most `limit` of them.
fn after(
    entries: &VecDeque<(u64, Event)>, after: u64, limit: usize,
) -> impl Iterator<Item = &(u64, Event)> {
    let first = entries.front().map_or(after.saturating_add(1), |(n, _)| *n);
    let skip = after.saturating_add(1).saturating_sub(first);
    entries
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(limit)
}

struct Reader {
    log: Weak<Log>,
    wake: Arc<Notify>,
    /// The number of the last entry taken.
    after: u64,
    ready: VecDeque<Result<JournalRecord>>,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<JournalRecord>, Reader)> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some((item, self));
            }
            let woken = self.wake.clone();
            let notified = woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let log = self.log.upgrade()?;
                let state = log.lock();
                if self.after < state.trimmed {
                    self.ready.push_back(Err(Error::Trimmed {
                        cursor: Cursor::new(0, self.after),
                        resume: Cursor::new(0, state.trimmed),
                    }));
                    self.after = state.trimmed;
                }
                for (number, event) in after(&state.entries, self.after, READ_BATCH) {
                    self.ready.push_back(Ok(JournalRecord::new(
                        Cursor::new(0, *number),
                        event.clone(),
                    )));
                    self.after = *number;
                }
            }
            if self.ready.is_empty() {
                notified.await;
            }
        }
    }
}

struct Worker {
    log: Weak<Log>,
    wake: Arc<Notify>,
    group: String,
    consumer: String,
    options: ConsumeOptions,
    /// Whether this consumer has yet to take back what it was given under its name before.
    returning: bool,
    ready: VecDeque<JournalRecord>,
}

impl Worker {
    async fn next(mut self) -> Option<(Result<JournalRecord>, Worker)> {
        loop {
            if let Some(record) = self.ready.pop_front() {
                return Some((Ok(record), self));
            }
            let woken = self.wake.clone();
            let notified = woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let log = self.log.upgrade()?;
            let next_claim = self.take(&log);
            drop(log);
            if self.ready.is_empty() {
                match next_claim {
                    Some(at) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(at) => {}
                            () = &mut notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        }
    }

    /// Takes what this consumer gets now: its own pending entries when it comes back, the
    /// entries others left unacknowledged past `claim_after`, then new ones. Returns when the
    /// next pending entry becomes claimable, if any.
    fn take(&mut self, log: &Arc<Log>) -> Option<Instant> {
        let now = Instant::now();
        let claim_after = self.options.claim_after;
        let mut state = log.lock();
        let State {
            entries,
            trimmed,
            groups,
            ..
        } = &mut *state;
        let group = groups.get_mut(&self.group)?;
        let mut taken: Vec<(u64, u64)> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        for (number, pending) in group.pending.iter_mut() {
            let mine = self.returning && pending.consumer == self.consumer;
            let stale = now.saturating_duration_since(pending.since) >= claim_after;
            if !(mine || stale) {
                continue;
            }
            if taken.len() >= self.options.batch {
                break;
            }
            pending.consumer.clone_from(&self.consumer);
            pending.since = now;
            pending.deliveries += 1;
            taken.push((*number, pending.deliveries));
        }
        self.returning = false;
        for (number, deliveries) in taken {
            match entry(entries, number) {
                Some(event) => {
                    let record = JournalRecord::new(Cursor::new(0, number), event.clone());
                    self.ready
                        .push_back(record.delivered(deliveries, self.acker(log, number)));
                }
                // Trimmed while pending (numbers pending are never past the last entry):
                // nothing is left to deliver.
                None => gone.push(number),
            }
        }
        for number in gone {
            group.pending.remove(&number);
        }
        if self.ready.len() < self.options.batch {
            let room = self.options.batch - self.ready.len();
            let fresh: Vec<(u64, Event)> = after(entries, group.delivered.max(*trimmed), room)
                .map(|(n, e)| (*n, e.clone()))
                .collect();
            for (number, event) in fresh {
                group.delivered = number;
                group.pending.insert(
                    number,
                    Pending {
                        consumer: self.consumer.clone(),
                        since: now,
                        deliveries: 1,
                    },
                );
                let record = JournalRecord::new(Cursor::new(0, number), event);
                self.ready
                    .push_back(record.delivered(1, self.acker(log, number)));
            }
        }
        group
            .pending
            .values()
            .map(|pending| pending.since + claim_after)
            .min()
            .map(|at| at.max(now) + Duration::from_millis(1))
    }

    fn acker(&self, log: &Arc<Log>, number: u64) -> crate::backend::Ack {
        let log = Arc::downgrade(log);
        let group = self.group.clone();
        Box::new(move || -> BoxFuture<'static, Result<()>> {
            Box::pin(async move {
                if let Some(log) = log.upgrade() {
                    log.ack(&group, number);
                }
                Ok(())
            })
        })
    }
}
