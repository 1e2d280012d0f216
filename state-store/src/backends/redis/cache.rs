//! The Redis backend's client-side cache of decoded values, for types declared with `cache`.
//!
//! A dedicated RESP3 connection asks the server to track the types' key prefixes
//! (`CLIENT TRACKING ON BCAST NOLOOP PREFIX ...`): from then on the server pushes an invalidation on that
//! connection for every change of a key under them, by any client. The push is applied as soon as
//! the connection reads it (the `redis` crate calls our push handler from its reader).
//!
//! Correctness rests on three rules:
//! - A value read from the server is kept only if no invalidation of its key arrived between the
//!   moment the read was sent and the moment it is kept (an invalidation for a write that
//!   happened after the read reaches the client before or after the read's answer, through
//!   another connection; either way the old value is not kept past it).
//! - This backend's own writes of a covered key go through the tracking connection with
//!   `NOLOOP` (the server pushes nothing back for them). They drop the key before they are sent
//!   and again once answered, count as an invalidation for reads in flight, and while one is in
//!   flight no read of the key is kept; a write given up or timed out is waited for with a
//!   `PING` on the same connection. So a task that wrote and then reads never sees the value from
//!   before its write, without waiting for a push.
//! - When the tracking connection breaks (or the server sends a flush), everything is dropped,
//!   and nothing is kept until tracking is on again on a new connection. A `PING` every five
//!   seconds finds a connection that was dropped without a word.
//!
//! Entries expire with their key's remaining ttl (read with the value) and the cache holds at most
//! a fixed number of entries, the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::time::Instant;

use crate::backend::Decoded;

/// The cache and its tracking connection, shared by a backend's clones.
pub(crate) struct Tracker {
    client: Client,
    state: Arc<Mutex<State>>,
    /// Whether any prefix is tracked: writes skip the cache's lock when none is.
    active: Arc<AtomicBool>,
    /// The tracking connection and its number; set up by one caller at a time.
    connection: tokio::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    timeout: Duration,
}

struct State {
    capacity: usize,
    /// The number of the tracking connection the prefixes below are tracked on; pushes of an
    /// older one are ignored. Advanced when a connection breaks.
    connection: u64,
    /// Whether that connection is alive.
    alive: bool,
    /// The prefixes tracked on it.
    tracked: Vec<String>,
    /// The tracking connection while it is alive: writes of covered keys go through it, and
    /// with `NOLOOP` the server sends it no invalidation for them (the cache drops their keys
    /// itself), which would otherwise cost every cached write a push to parse.
    writer: Option<MultiplexedConnection>,
    /// Every prefix the server agreed to track, tracked again on a new connection.
    wanted: Vec<String>,
    /// After a failed attempt to set tracking up, when to try again (until then, reads of
    /// cached types go uncached).
    retry_after: Option<Instant>,
    entries: HashMap<String, Entry>,
    /// Keys in the order they were kept, with the stamp of that entry, for eviction.
    order: VecDeque<(String, u64)>,
    next_stamp: u64,
    /// Reads in flight per key, and whether an invalidation arrived since the first began.
    reads: HashMap<String, Reads>,
    /// Writes of this backend in flight per key: while any is, no read of the key is kept. A
    /// write goes through the tracking connection with `NOLOOP`, so no push follows it; until it
    /// has run, a read sent on the other connection may still see the value before it.
    writing: HashMap<String, usize>,
}

struct Entry {
    value: Decoded,
    expires: Option<Instant>,
    stamp: u64,
}

#[derive(Default)]
struct Reads {
    count: usize,
    /// Bumped by each invalidation of the key: a read keeps its value only if the key was not
    /// invalidated since that read began (not since the first overlapping read began, which
    /// under steady traffic would keep a hot key from ever being cached).
    invalidations: u64,
}

impl State {
    fn forget(&mut self, key: &str) {
        self.entries.remove(key);
        if let Some(reads) = self.reads.get_mut(key) {
            reads.invalidations += 1;
        }
    }

    fn forget_all(&mut self) {
        self.entries.clear();
        self.order.clear();
        for reads in self.reads.values_mut() {
            reads.invalidations += 1;
        }
    }

    fn covers(&self, key: &str) -> bool {
        self.alive
            && self
                .tracked
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str()))
    }

    /// Applies a push of the tracking connection `connection`.
    fn apply(&mut self, connection: u64, push: &PushInfo) {
        if connection != self.connection {
            return; // From a connection that has been replaced.
        }
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            Value::BulkString(key) => match std::str::from_utf8(key) {
                                Ok(key) => self.forget(key),
                                Err(_) => self.forget_all(),
                            },
                            _ => self.forget_all(),
                        }
                    }
                }
                // Nil: the server flushed its keys, or dropped its tracking state.
                _ => self.forget_all(),
            },
            PushKind::Disconnection => {
                self.alive = false;
                self.writer = None;
                self.tracked.clear();
                self.connection += 1;
                self.forget_all();
            }
            _ => {}
        }
    }
}

impl Tracker {
    /// A cache of at most `capacity` values, tracked through a connection of `client`'s.
    pub(crate) fn new(client: Client, capacity: usize, timeout: Duration) -> Tracker {
        Tracker {
            client,
            state: Arc::new(Mutex::new(State {
                capacity,
                connection: 0,
                alive: false,
                tracked: Vec::new(),
                writer: None,
                wanted: Vec::new(),
                retry_after: None,
                entries: HashMap::new(),
                order: VecDeque::new(),
                next_stamp: 0,
                reads: HashMap::new(),
                writing: HashMap::new(),
            })),
            active: Arc::new(AtomicBool::new(false)),
            connection: tokio::sync::Mutex::new(None),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the server tracks `prefix` for this cache; `false` when it cannot be done
    /// (the read then goes uncached).
    pub(crate) async fn track(&self, prefix: &str) -> bool {
        {
            let state = self.lock();
            if state.alive && state.tracked.iter().any(|p| p == prefix) {
                return true;
            }
            // A server that refused tracking is asked again only after a while; meanwhile reads
            // go to it uncached rather than each paying for a new connection.
            if state.retry_after.is_some_and(|at| Instant::now() < at) {
                return false;
            }
        }
        // One caller sets tracking up; the others read uncached meanwhile instead of queueing.
        let Ok(mut connection) = self.connection.try_lock() else {
            return false;
        };
        let (number, alive, known) = {
            let state = self.lock();
            if state.alive && state.tracked.iter().any(|p| p == prefix) {
                return true;
            }
            let known = state.wanted.iter().any(|p| p == prefix);
            (state.connection, state.alive, known)
        };
        let fresh = !alive || connection.as_ref().is_none_or(|(n, _)| *n != number);
        let result = if fresh {
            // Every prefix tracked so far, and this one.
            let mut prefixes = self.lock().wanted.clone();
            if !known {
                prefixes.push(prefix.to_owned());
            }
            self.reconnect(&mut connection, prefixes).await
        } else {
            match connection.as_mut() {
                Some((_, conn)) => self.tracking_on(conn, &[prefix.to_owned()]).await,
                None => Err("no tracking connection".into()),
            }
        };
        let mut state = self.lock();
        match result {
            Ok(()) => {
                // A new connection where one worked before (a prefix is wanted only once the
                // server took it): the old one broke.
                #[cfg(feature = "metrics")]
                if fresh && !state.wanted.is_empty() {
                    crate::metrics::reconnected("redis", "cache");
                }
                // Kept only once the server took it: a prefix it refused (overlapping another,
                // say) would otherwise make every later connection fail.
                if !known {
                    state.wanted.push(prefix.to_owned());
                }
                if fresh {
                    state.tracked = state.wanted.clone();
                } else if !state.tracked.iter().any(|p| p == prefix) {
                    state.tracked.push(prefix.to_owned());
                }
                state.retry_after = None;
                self.active.store(true, Ordering::Release);
                state.alive && state.tracked.iter().any(|p| p == prefix)
            }
            Err(_e) => {
                crate::backend::kit::warn_event!(
                    error = %_e,
                    "state_store: the client-side cache's tracking connection failed; reads go \
                     to the server until it is back"
                );
                state.retry_after = Some(Instant::now() + RETRY_TRACKING);
                false
            }
        }
    }

    /// A new tracking connection, tracking every wanted prefix.
    async fn reconnect(
        &self, connection: &mut Option<(u64, MultiplexedConnection)>, wanted: Vec<String>,
    ) -> Result<(), String> {
        *connection = None;
        let number = {
            let mut state = self.lock();
            // Pushes of whatever connection came before are ignored from here on.
            state.connection += 1;
            state.alive = false;
            state.writer = None;
            state.tracked.clear();
            state.forget_all();
            state.connection
        };
        let info = self.client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings)).map_err(|e| e.to_string())?;
        let state = self.state.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(move |push: PushInfo| {
                state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply(number, &push);
                Ok::<(), std::convert::Infallible>(())
            });
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        self.tracking_on(&mut conn, &wanted).await?;
        {
            let mut state = self.lock();
            if state.connection != number {
                return Err("the tracking connection broke while it was set up".into());
            }
            state.alive = true;
            state.writer = Some(conn.clone());
        }
        // A connection dropped silently (a NAT or a load balancer forgetting an idle flow)
        // would bring no invalidation and no disconnection: a `PING` every few seconds finds
        // out, and a failed one counts as a disconnection.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(keep_alive(
                Arc::downgrade(&self.state),
                number,
                conn.clone(),
                self.timeout,
            ));
        }
        *connection = Some((number, conn));
        Ok(())
    }

    async fn tracking_on(
        &self, conn: &mut MultiplexedConnection, prefixes: &[String],
    ) -> Result<(), String> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("TRACKING").arg("ON").arg("BCAST").arg("NOLOOP");
        for prefix in prefixes {
            cmd.arg("PREFIX").arg(prefix);
        }
        cmd.query_async::<()>(conn).await.map_err(|e| e.to_string())
    }

    /// The kept value of `key`, if any and not expired.
    pub(crate) fn lookup(&self, key: &str) -> Option<Decoded> {
        let mut state = self.lock();
        let entry = state.entries.get(key)?;
        if entry.expires.is_some_and(|at| at <= Instant::now()) {
            state.entries.remove(key);
            return None;
        }
        Some(entry.value.clone())
    }

    /// A read of `key` about to be sent: what it reads may be kept if nothing invalidates the key
    /// before [`Read::keep`].
    pub(crate) fn begin(&self, key: &str) -> Read<'_> {
        let mut state = self.lock();
        let covered = state.covers(key);
        let mut seen = 0;
        if covered {
            let reads = state.reads.entry(key.to_owned()).or_default();
            reads.count += 1;
            seen = reads.invalidations;
        }
        Read {
            tracker: self,
            key: covered.then(|| key.to_owned()),
            connection: state.connection,
            seen,
        }
    }

    /// A write of `keys` is about to be sent: each key under a tracked prefix is dropped and
    /// counted as written until [`end_write`](Self::end_write). Returns those keys.
    pub(crate) fn begin_write<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Vec<String> {
        if !self.active.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut state = self.lock();
        let mut covered = Vec::new();
        for key in keys {
            if state
                .tracked
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str()))
            {
                state.forget(key);
                *state.writing.entry(key.to_owned()).or_default() += 1;
                covered.push(key.to_owned());
            }
        }
        covered
    }

    /// The write of `keys` has run (its answer came): drop them again, for the reads that
    /// began meanwhile, and count the write done.
    pub(crate) fn end_write(&self, keys: &[String]) {
        let mut state = self.lock();
        for key in keys {
            state.forget(key);
            if let Some(count) = state.writing.get_mut(key.as_str()) {
                *count -= 1;
                if *count == 0 {
                    state.writing.remove(key.as_str());
                }
            }
        }
    }

    /// The write of `keys` ended without an answer (given up, timed out): it may still run. A
    /// `PING` on the tracking connection, which carries the write, answers after it has; then
    /// [`end_write`](Self::end_write). Without that connection (it broke, which dropped
    /// everything) or a runtime, at once.
    pub(crate) fn end_write_later(self: &Arc<Self>, keys: Vec<String>) {
        let writer = self.lock().writer.clone();
        match (writer, tokio::runtime::Handle::try_current()) {
            (Some(mut writer), Ok(runtime)) => {
                let tracker = self.clone();
                runtime.spawn(async move {
                    let ping = redis::cmd("PING");
                    let answered = ping.query_async::<()>(&mut writer);
                    let _ = tokio::time::timeout(tracker.timeout, answered).await;
                    tracker.end_write(&keys);
                });
            }
            _ => self.end_write(&keys),
        }
    }

    /// The connection to send commands on `key` through, when it is under a tracked prefix:
    /// the tracking connection (see [`State::writer`]).
    pub(crate) fn writer_for(&self, key: &str) -> Option<MultiplexedConnection> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let state = self.lock();
        if state.covers(key) {
            state.writer.clone()
        } else {
            None
        }
    }

    /// Whether writes need to tell the cache anything.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

/// How long after a failed attempt to set tracking up the next one is made.
const RETRY_TRACKING: Duration = Duration::from_secs(5);

/// How often the tracking connection is checked with a `PING`.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Pings tracking connection `number` every [`KEEP_ALIVE`] while it is the current one; one
/// without an answer within `timeout` is taken for broken: everything is dropped, and the next
/// cached read sets tracking up again.
async fn keep_alive(
    state: std::sync::Weak<Mutex<State>>, number: u64, mut conn: MultiplexedConnection,
    timeout: Duration,
) {
    loop {
        tokio::time::sleep(KEEP_ALIVE).await;
        let current = |state: &Arc<Mutex<State>>| {
            let state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.alive && state.connection == number
        };
        match state.upgrade() {
            Some(state) if current(&state) => {}
            _ => return,
        }
        let ping = redis::cmd("PING");
        let answered = tokio::time::timeout(timeout, ping.query_async::<()>(&mut conn)).await;
        if !matches!(answered, Ok(Ok(()))) {
            if let Some(state) = state.upgrade() {
                let broken = PushInfo {
                    kind: PushKind::Disconnection,
                    data: Vec::new(),
                };
                state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply(number, &broken);
            }
            return;
        }
    }
}

/// A read in flight (see [`Tracker::begin`]); ends when dropped.
pub(crate) struct Read<'a> {
    tracker: &'a Tracker,
    /// The key, when it is under a tracked prefix.
    key: Option<String>,
    connection: u64,
    /// The key's invalidation count when the read began.
    seen: u64,
}

impl Read<'_> {
    /// Keeps `value`, read for this key, for at most `ttl`, unless the key was invalidated since
    /// the read began or tracking broke meanwhile.
    pub(crate) fn keep(mut self, value: Decoded, ttl: Option<Duration>) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut state = self.tracker.lock();
        let invalidated = end(&mut state, &key) != self.seen;
        if invalidated
            || !state.alive
            || state.connection != self.connection
            || state.writing.contains_key(&key)
        {
            return;
        }
        let stamp = state.next_stamp;
        state.next_stamp += 1;
        let expires = ttl.map(|ttl| Instant::now() + ttl);
        state.order.push_back((key.clone(), stamp));
        state.entries.insert(
            key,
            Entry {
                value,
                expires,
                stamp,
            },
        );
        // The oldest go first; an order slot whose entry was replaced or dropped is skipped.
        while state.entries.len() > state.capacity {
            let Some((old, stamp)) = state.order.pop_front() else {
                break;
            };
            if state.entries.get(&old).is_some_and(|e| e.stamp == stamp) {
                state.entries.remove(&old);
            }
        }
        // Slots of entries long gone are dropped too, so the order stays bounded.
        if state.order.len() > 2 * state.capacity.max(1) {
            let State { order, entries, .. } = &mut *state;
            order.retain(|(key, stamp)| entries.get(key).is_some_and(|e| e.stamp == *stamp));
        }
    }
}

/// Ends one read of `key`: the key's invalidation count now (`u64::MAX` if its reads were lost,
/// which never matches).
fn end(state: &mut State, key: &str) -> u64 {
    let Some(reads) = state.reads.get_mut(key) else {
        return u64::MAX;
    };
    let invalidations = reads.invalidations;
    reads.count -= 1;
    if reads.count == 0 {
        state.reads.remove(key);
    }
    invalidations
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            end(&mut self.tracker.lock(), &key);
        }
    }
}
