//! The in-memory backend: the embedded default, with the same semantics as Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify as Wake;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::kit::feed::{Hub, Watcher};
use crate::backend::kit::journal::Log;
use crate::backend::kit::{self, incr_step, parse_counter};
use crate::backend::{
    Backend, BoxFuture, BoxStream, ChangeFeed, ConsumeOptions, CountOp, CountOptions, Counted,
    Event, Expiry, Extensions, Fence, FencedWrites, GetOptions, HeldLease, JournalRecord, Journals,
    LeaseKey, Leases, Notify, Position, PutMode, PutOptions, RemoveOptions, UsageScan, Version,
    Versioned, Watch, WriteMany, micros_i64,
};
use crate::rate_limit;
use crate::{Error, Result, Usage, UsageOptions, UsageTally};

/// State kept in this process, with the same observable behaviour as
/// [`RedisBackend`](crate::RedisBackend): for tests, development and single-process services.
///
/// Expiry runs on tokio's clock, so tests that pause time (`tokio::time::pause`, `advance`) see
/// keys expire. Expired entries are removed, not just hidden: every operation first purges what
/// has expired, oldest first, so memory stays bounded by the live keys however many short-lived
/// keys are written.
///
/// Writes of types declared with `#[state(notify)]` are announced to
/// [`watch`](crate::Store::watch)ers under the same lock as the write, so watchers see changes
/// in the order they were stored. Expiries are announced when tokio's clock passes the
/// deadline (a background task runs while there are watchers), so reactive code is testable
/// with a paused clock. As on Redis, whose server announces every key that expires, the expiry
/// of any key under a watched type's prefix is announced, whichever call wrote it (a rate-limit
/// window too).
///
/// Writes of `#[state(durable)]` types are acknowledged as any write: the process is the only
/// copy of its state, and nothing it holds survives it, durable or not.
///
/// Clones share the same data.
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
    feed: Arc<Feed>,
}

/// The change feed's parts outside the data lock.
struct Feed {
    hub: Arc<Hub>,
    /// Wakes the expiry announcer when a watched key gets an expiry that may be sooner than
    /// the one it sleeps until.
    wake: Arc<Wake>,
    /// The expiry announcer, while there are watchers.
    announcer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        // The backend is gone: the announcer wakes, finds nothing to hold on to, and ends.
        self.wake.notify_one();
    }
}

struct Inner {
    hub: Arc<Hub>,
    wake: Arc<Wake>,
    /// Origin of the smooth rate limiter's clock readings.
    epoch: Instant,
    entries: HashMap<Arc<str>, Entry>,
    /// Expiry queue ordered by deadline; the sequence number keeps deadlines unique so each
    /// entry owns exactly one queue slot, which an overwrite removes.
    expiries: BTreeMap<(Instant, u64), Arc<str>>,
    next_seq: u64,
    /// The last version handed out: every write takes the next, so a version names one write.
    next_version: u64,
    /// The journals, by channel: appended under this lock, in the order of the writes.
    journals: HashMap<String, Arc<Log>>,
}

struct Entry {
    value: Vec<u8>,
    version: u64,
    expiry: Option<(Instant, u64)>,
    /// The token of the lease this value is, when `acquire` wrote it (the version it was
    /// written with); any other write clears it.
    lease: Option<u64>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        let hub = Arc::new(Hub::default());
        let wake = Arc::new(Wake::new());
        MemoryBackend {
            feed: Arc::new(Feed {
                hub: hub.clone(),
                wake: wake.clone(),
                announcer: Mutex::new(None),
            }),
            inner: Arc::new(Mutex::new(Inner {
                hub,
                wake,
                epoch: Instant::now(),
                entries: HashMap::new(),
                expiries: BTreeMap::new(),
                next_seq: 0,
                next_version: 0,
                journals: HashMap::new(),
            })),
        }
    }

    /// How many live (unexpired) keys it holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// How many entries and expiry deadlines it holds right now, expired or not, without
    /// purging first: for tests that check expired entries do not linger.
    #[doc(hidden)]
    pub fn held(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.entries.len(), inner.expiries.len())
    }

    /// Whether it holds no live keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data, with everything that has expired purged.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the whole store, so keep serving rather than poisoning every caller.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.purge(Instant::now());
        inner
    }
}

impl Inner {
    fn purge(&mut self, now: Instant) {
        while let Some(entry) = self.expiries.first_entry() {
            // As in Redis, a key is gone once its deadline has passed, not at the deadline.
            if entry.key().0 >= now {
                break;
            }
            let key = entry.remove();
            if self.entries.remove(&key).is_some() {
                self.hub.publish_expired(&key);
                self.journal_expired(&key);
            }
        }
    }

    fn next_version(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    /// Writes `value` under `key` with the given expiry (`Keep`: an existing entry's, none for a
    /// new one), and announces it on `notify`'s feed.
    fn write(
        &mut self, key: &str, value: Vec<u8>, expiry: Expiry, notify: Notify<'_>,
        history: Option<u64>,
    ) {
        let expiry = expiry.per_key();
        let version = self.next_version();
        if let Some(channel) = notify {
            let event = || Event::Set {
                key: Arc::from(key),
                value: Arc::from(value.as_slice()),
            };
            match history {
                // Made once: the journal and the watchers share its key and value.
                Some(keep) => {
                    let event = event();
                    self.journal(channel).append(event.clone(), keep);
                    self.hub.publish(channel, || event);
                }
                None => self.hub.publish(channel, event),
            }
        }
        if let (Expiry::Keep, Some(entry)) = (expiry, self.entries.get_mut(key)) {
            entry.value = value;
            entry.version = version;
            entry.lease = None;
            return;
        }
        let key: Arc<str> = match self.entries.get_key_value(key) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(key),
        };
        let expiry = match expiry {
            Expiry::After(ttl) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let deadline = deadline(ttl);
                self.expiries.insert((deadline, seq), key.clone());
                if self.expiries.first_key_value().map(|(&slot, _)| slot) == Some((deadline, seq)) {
                    // The soonest deadline now: the announcer may sleep until a later one.
                    self.wake.notify_one();
                }
                Some((deadline, seq))
            }
            _ => None,
        };
        let entry = Entry {
            value,
            version,
            expiry,
            lease: None,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.forget_expiry(old.expiry);
        }
    }

    /// Whether the lease `fence` names is still the one with its token (the currency rule,
    /// which implies the fencing rule: a newer token means this lease was lost first).
    fn check_fence(&self, fence: Option<&Fence<'_>>) -> Result<()> {
        match fence {
            Some(fence) if !self.holds(fence.lease.key, fence.token) => Err(fence.lost()),
            _ => Ok(()),
        }
    }

    /// Whether `key` holds the lease with `token`.
    fn holds(&self, key: &str, token: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| entry.lease == Some(token))
    }

    /// The remaining time of `key`'s expiry, if it has one, in whole milliseconds as Redis
    /// reports it.
    fn ttl(&self, key: &str) -> Option<Duration> {
        let (deadline, _) = self.entries.get(key)?.expiry?;
        Some(whole_millis(
            deadline.saturating_duration_since(Instant::now()),
        ))
    }

    /// The integer under `key`, parsed as strictly as Redis does.
    fn integer(&self, key: &str) -> Result<Option<i64>> {
        self.entries
            .get(key)
            .map(|entry| parse_counter(key, &entry.value))
            .transpose()
    }

    fn forget_expiry(&mut self, expiry: Option<(Instant, u64)>) {
        if let Some(slot) = expiry {
            self.expiries.remove(&slot);
        }
    }

    /// Gives `key` a new expiry (`Keep`: unchanged), its value and version as they are; `false`
    /// when there is no such key.
    fn touch(&mut self, key: &str, expiry: Expiry) -> bool {
        let Some(old) = self.entries.get(key).map(|entry| entry.expiry) else {
            return false;
        };
        let new = match expiry.per_key() {
            Expiry::Keep => return true,
            Expiry::After(ttl) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let deadline = deadline(ttl);
                let shared = self
                    .entries
                    .get_key_value(key)
                    .map(|(shared, _)| shared.clone())
                    .unwrap_or_else(|| Arc::from(key));
                self.expiries.insert((deadline, seq), shared);
                if self.expiries.first_key_value().map(|(&slot, _)| slot) == Some((deadline, seq)) {
                    self.wake.notify_one();
                }
                Some((deadline, seq))
            }
            _ => None,
        };
        self.forget_expiry(old);
        if let Some(entry) = self.entries.get_mut(key) {
            entry.expiry = new;
        }
        true
    }

    fn remove(&mut self, key: &str, notify: Notify<'_>, history: Option<u64>) -> bool {
        match self.entries.remove_entry(key) {
            Some((key, old)) => {
                self.forget_expiry(old.expiry);
                if let Some(channel) = notify {
                    if let Some(keep) = history {
                        let removed = Event::Removed { key: key.clone() };
                        self.journal(channel).append(removed, keep);
                    }
                    self.hub.publish(channel, || Event::Removed { key });
                }
                true
            }
            None => false,
        }
    }

    /// The journal of `channel`, created empty when it has none yet.
    fn journal(&mut self, channel: &str) -> Arc<Log> {
        if let Some(log) = self.journals.get(channel) {
            return log.clone();
        }
        let log = Arc::new(Log::new());
        self.journals.insert(channel.to_owned(), log.clone());
        log
    }

    /// Journals the expiry of `key` in the journal whose channel it is under, if any. (The
    /// log keeps the `history` its last write gave.)
    fn journal_expired(&mut self, key: &Arc<str>) {
        let log = self.journals.iter().find_map(|(channel, log)| {
            let under = key.strip_prefix(channel.as_str())?.starts_with(':');
            under.then(|| log.clone())
        });
        if let Some(log) = log {
            let keep = log.keep();
            log.append(Event::Expired { key: key.clone() }, keep);
        }
    }
}

/// `d` truncated to whole milliseconds, as Redis reports time left.
fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `now + ttl`, saturating far in the future instead of overflowing the clock.
fn deadline(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("keys", &self.len())
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// The core, and every provided method that one lock does better than a read and a
/// conditional write: each runs as one step under the lock, when its future is first polled.
/// `update` keeps the provided loop, since its closure is the caller's code and must not run
/// under the lock.
impl Backend for MemoryBackend {
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            let found = self
                .lock()
                .entries
                .get(key)
                .map(|e| Versioned::new(e.value.clone(), Version::from_number(e.version)));
            Ok(found)
        })
    }

    fn put<'a>(
        &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.check_fence(options.fence.as_ref())?;
            let allowed = match &options.mode {
                PutMode::Overwrite => true,
                PutMode::Create => !inner.entries.contains_key(key),
                PutMode::Update(version) => inner
                    .entries
                    .get(key)
                    .is_some_and(|e| version.as_number() == Some(e.version)),
                #[allow(unreachable_patterns)]
                _ => return Err(unsupported(self, "put with this mode")),
            };
            if allowed {
                inner.write(key, value, options.expiry, options.notify, options.history);
            }
            Ok(allowed)
        })
    }

    fn remove<'a>(
        &'a self, key: &'a str, options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.check_fence(options.fence.as_ref())?;
            if let Some(version) = &options.if_version {
                let current = inner.entries.get(key).map(|entry| entry.version);
                if current.is_none() || current != version.as_number() {
                    return Ok(false);
                }
            }
            Ok(inner.remove(key, options.notify, options.history))
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        Box::pin(async move { Ok(self.lock().ttl(key)) })
    }

    /// The keys as they are when the stream is first polled.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        let backend = self.clone();
        let prefix = prefix.to_owned();
        let keys = futures_util::stream::once(async move {
            let keys: Vec<Result<String>> = backend
                .lock()
                .entries
                .keys()
                .filter(|key| key.starts_with(prefix.as_str()))
                .map(|key| Ok(key.to_string()))
                .collect();
            futures_util::stream::iter(keys)
        });
        Box::pin(futures_util::StreamExt::flatten(keys))
    }

    fn get<'a>(
        &'a self, key: &'a str, options: GetOptions,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let mut inner = self.lock();
            if let Some(expiry) = options.touch
                && !inner.touch(key, expiry)
            {
                return Ok(None);
            }
            Ok(inner.entries.get(key).map(|e| e.value.clone()))
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(async move {
            let inner = self.lock();
            let values = keys
                .iter()
                .map(|key| inner.entries.get(key.as_str()).map(|e| e.value.clone()))
                .collect();
            Ok(values)
        })
    }

    /// All or nothing, under one lock.
    fn write_many<'a>(&'a self, batch: WriteMany<'a>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            match batch {
                WriteMany::Put { items, options }
                    if options.mode == PutMode::Overwrite && options.fence.is_none() =>
                {
                    let mut inner = self.lock();
                    let written = items.len() as u64;
                    for (key, value) in items {
                        inner.write(&key, value, options.expiry, options.notify, options.history);
                    }
                    Ok(written)
                }
                WriteMany::Remove { keys, options }
                    if options.if_version.is_none() && options.fence.is_none() =>
                {
                    let mut inner = self.lock();
                    let removed = keys
                        .iter()
                        .filter(|key| inner.remove(key, options.notify, options.history));
                    Ok(removed.count() as u64)
                }
                // Conditional or fenced writes of many keys: one by one, each under the lock.
                other => kit::write_each(self, other).await,
            }
        })
    }

    /// Under the lock, with tokio's clock for the GCRA, so that a paused test clock drives the
    /// smooth rate limit.
    fn count<'a>(
        &'a self, key: &'a str, op: CountOp, options: CountOptions<'a>,
    ) -> BoxFuture<'a, Result<Counted>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let current = inner.integer(key)?;
            let (answer, write, notify) = match op {
                CountOp::Increment { by, ttl_if_created } => {
                    let (next, expiry) = incr_step(key, current, by, ttl_if_created)?;
                    (Counted::Value(next), Some((next, expiry)), options.notify)
                }
                CountOp::FixedWindow { limit, window } => {
                    let left = inner.ttl(key);
                    let (decision, write) = rate_limit::fixed_window(current, left, limit, window);
                    (Counted::Decision(decision), write, None)
                }
                CountOp::Gcra { interval, burst } => {
                    let now = micros_i64(Instant::now().saturating_duration_since(inner.epoch));
                    let (decision, write) = rate_limit::gcra(current, now, interval, burst);
                    let write = write.map(|(tat, keep)| (tat, Expiry::After(keep)));
                    (Counted::Decision(decision), write, None)
                }
                #[allow(unreachable_patterns)]
                _ => return Err(unsupported(self, "count")),
            };
            if let Some((value, expiry)) = write {
                let value = value.to_string().into_bytes();
                inner.write(key, value, expiry, notify, options.history);
            }
            Ok(answer)
        })
    }

    fn extensions(&self) -> Extensions<'_> {
        Extensions::new()
            .system_name("memory")
            .feed(self)
            .usage(self)
            .leases(self)
            .journals(self)
    }
}

/// Leases under the lock: a lease's token is the version its value was written with, which
/// grows with every write of this backend, so it is greater than every token before it on any
/// key. Fenced writes check that the lease is still the current one (both rules).
impl Leases for MemoryBackend {
    fn acquire<'a>(
        &'a self, lease: LeaseKey<'a>, value: Vec<u8>, ttl: Duration, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            let mut inner = self.lock();
            if inner.entries.contains_key(lease.key) {
                return Ok(None);
            }
            inner.write(lease.key, value, Expiry::After(ttl), notify, lease.history);
            let entry = inner.entries.get_mut(lease.key).expect("just written");
            entry.lease = Some(entry.version);
            Ok(Some(entry.version))
        })
    }

    fn holder<'a>(&'a self, lease: LeaseKey<'a>) -> BoxFuture<'a, Result<Option<HeldLease>>> {
        Box::pin(async move {
            let inner = self.lock();
            let Some(entry) = inner.entries.get(lease.key) else {
                return Ok(None);
            };
            let left = inner.ttl(lease.key).unwrap_or(Duration::MAX);
            let token = entry.lease.unwrap_or(0);
            Ok(Some(HeldLease::new(entry.value.clone(), token, left)))
        })
    }

    fn extend<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut inner = self.lock();
            Ok(inner.holds(lease.key, token) && inner.touch(lease.key, Expiry::After(ttl)))
        })
    }

    fn release<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut inner = self.lock();
            Ok(inner.holds(lease.key, token) && inner.remove(lease.key, notify, lease.history))
        })
    }

    fn fenced_writes(&self) -> FencedWrites {
        FencedWrites::CurrentLease
    }
}

/// The error for a variant of the contract this engine does not know.
fn unsupported(backend: &MemoryBackend, operation: &'static str) -> crate::Error {
    crate::Error::Unsupported {
        operation,
        backend: backend.name(),
    }
}

crate::backend::inherent_enable_expiry_events!(MemoryBackend);

impl ChangeFeed for MemoryBackend {
    fn watch<'a>(
        &'a self, watch: &'a Watch,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
        Box::pin(async move {
            let queue = self.feed.hub.subscribe(watch, true);
            // The last watcher's departure wakes the announcer, which then ends.
            let wake = self.feed.wake.clone();
            let on_drop = move |last: bool| {
                if last {
                    wake.notify_one();
                }
            };
            let watcher = Watcher::new(queue, &self.feed.hub, Some(Box::new(on_drop)));
            // Dropped (and unsubscribed) again if the announcer cannot start.
            self.start_announcer(&watch.channel)?;
            let stream: BoxStream<'static, Result<Event>> = Box::pin(watcher);
            Ok(stream)
        })
    }

    /// Expiries are always announced.
    fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The journals under the data lock: an entry is appended in the same step as its write, so
/// the journal holds exactly the writes made, in their order. Expiries are journaled as the
/// announcer purges them (it runs while a journal is read), or at the latest by the next call.
impl Journals for MemoryBackend {
    fn read<'a>(
        &'a self, channel: &'a str, from: Position,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<JournalRecord>>>> {
        Box::pin(async move {
            let log = self.lock().journal(channel);
            let records = log.read(from)?;
            self.start_announcer(channel)?;
            Ok(records)
        })
    }

    fn consume<'a>(
        &'a self, channel: &'a str, group: &'a str, consumer: &'a str, options: ConsumeOptions,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<JournalRecord>>>> {
        Box::pin(async move {
            let log = self.lock().journal(channel);
            let records = log.consume(group, consumer, options);
            self.start_announcer(channel)?;
            Ok(records)
        })
    }
}

impl UsageScan for MemoryBackend {
    /// Exact figures, under one lock: every key counted, and its size taken as the length of
    /// the key plus the length of the value (what this process holds for it, without the
    /// maps' overhead). No sample, no time limit: the walk is one pass over a `HashMap`.
    fn usage<'a>(
        &'a self, prefix: &'a str, options: &'a UsageOptions,
    ) -> BoxFuture<'a, Result<Usage>> {
        Box::pin(async move {
            let mut tally = UsageTally::new(prefix, options);
            let examined = {
                let inner = self.lock();
                tally.set_database_keys(inner.entries.len() as u64);
                let now = Instant::now();
                for (key, entry) in &inner.entries {
                    if !key.starts_with(prefix) {
                        continue;
                    }
                    let ttl = entry
                        .expiry
                        .map(|(deadline, _)| whole_millis(deadline.saturating_duration_since(now)));
                    let bytes = (key.len() + entry.value.len()) as u64;
                    tally.count_measured(key.as_bytes(), ttl, bytes);
                }
                inner.entries.len() as u64
            };
            // The callback is the caller's code: never under the lock.
            tally.progress(examined);
            Ok(tally.finish(true))
        })
    }
}

impl MemoryBackend {
    /// Starts the task that announces expiries at their deadline, unless it runs already. It
    /// ends once there are no watchers, and holds the data only weakly.
    fn start_announcer(&self, channel: &str) -> Result<()> {
        let mut announcer = self
            .feed
            .announcer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if announcer.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::Backend {
            operation: "watch",
            key: channel.to_owned(),
            source: Box::new(e),
        })?;
        let data = Arc::downgrade(&self.inner);
        let feed = Arc::downgrade(&self.feed);
        *announcer = Some(runtime.spawn(announce_expiries(data, feed)));
        Ok(())
    }
}

/// Purges (and so announces) expired entries as their deadlines pass, while there are
/// watchers.
async fn announce_expiries(data: Weak<Mutex<Inner>>, feed: Weak<Feed>) {
    loop {
        let (next, wake) = {
            let (Some(data), Some(feed)) = (data.upgrade(), feed.upgrade()) else {
                return;
            };
            {
                let mut announcer = feed.announcer.lock().unwrap_or_else(|e| e.into_inner());
                let journaled = || {
                    let inner = data.lock().unwrap_or_else(|e| e.into_inner());
                    !inner.journals.is_empty()
                };
                if feed.hub.is_empty() && !journaled() {
                    // Under the announcer's lock, so that a new watcher either sees this task
                    // gone or is seen here.
                    *announcer = None;
                    return;
                }
            }
            let mut inner = data.lock().unwrap_or_else(|e| e.into_inner());
            inner.purge(Instant::now());
            let next = inner.expiries.first_key_value().map(|(&(at, _), _)| at);
            (next, feed.wake.clone())
        };
        let woken = wake.notified();
        match next {
            // Just past the deadline: a key lives through it, as in Redis.
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at + Duration::from_millis(1)) => {}
                    () = woken => {}
                }
            }
            None => woken.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcing(backend: &MemoryBackend) -> bool {
        backend.feed.announcer.lock().unwrap().is_some()
    }

    async fn until_quiet(backend: &MemoryBackend) -> bool {
        for _ in 0..1_000 {
            if !announcing(backend) {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    #[tokio::test]
    async fn the_expiry_announcer_runs_only_while_there_are_watchers() {
        let backend = MemoryBackend::new();
        assert!(!announcing(&backend));
        let first = backend.watch(&Watch::new("a")).await.unwrap();
        let second = backend.watch(&Watch::new("b")).await.unwrap();
        assert!(announcing(&backend));
        drop(first);
        tokio::task::yield_now().await;
        assert!(announcing(&backend), "a watcher of `b` is left");
        drop(second);
        assert!(
            until_quiet(&backend).await,
            "the announcer outlived the watchers"
        );
        // And starts again for the next watcher.
        let _third = backend.watch(&Watch::new("a")).await.unwrap();
        assert!(announcing(&backend));
    }

    #[tokio::test]
    async fn the_expiry_announcer_ends_with_the_backend() {
        let backend = MemoryBackend::new();
        let watcher = backend.watch(&Watch::new("a")).await.unwrap();
        let task = backend.feed.announcer.lock().unwrap().take().unwrap();
        drop(backend);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the announcer ended")
            .unwrap();
        drop(watcher);
    }
}
