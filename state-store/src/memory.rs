//! The in-memory backend: the embedded default, with the same semantics as Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::rate_limit::Decision;
use crate::{Error, Result};

/// State kept in this process, with the same observable behaviour as
/// [`RedisBackend`](crate::RedisBackend): for tests, development and single-process services.
///
/// Expiry runs on tokio's clock, so tests that pause time (`tokio::time::pause`, `advance`) see
/// keys expire. Expired entries are removed, not just hidden: every operation first purges what
/// has expired, oldest first, so memory stays bounded by the live keys however many short-lived
/// keys are written.
///
/// Clones share the same data.
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Origin of the smooth rate limiter's clock readings.
    epoch: Instant,
    entries: HashMap<Arc<str>, Entry>,
    /// Expiry queue ordered by deadline; the sequence number keeps deadlines unique so each
    /// entry owns exactly one queue slot, which an overwrite removes.
    expiries: BTreeMap<(Instant, u64), Arc<str>>,
    next_seq: u64,
}

struct Entry {
    value: Vec<u8>,
    expiry: Option<(Instant, u64)>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        MemoryBackend {
            inner: Arc::new(Mutex::new(Inner {
                epoch: Instant::now(),
                entries: HashMap::new(),
                expiries: BTreeMap::new(),
                next_seq: 0,
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
            self.entries.remove(&key);
        }
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, ttl: Option<Duration>) {
        let key: Arc<str> = match self.entries.get_key_value(key) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(key),
        };
        let expiry = ttl.map(|ttl| {
            let seq = self.next_seq;
            self.next_seq += 1;
            let deadline = deadline(ttl);
            self.expiries.insert((deadline, seq), key.clone());
            (deadline, seq)
        });
        if let Some(old) = self.entries.insert(key, Entry { value, expiry }) {
            self.forget_expiry(old.expiry);
        }
    }

    /// The remaining time of `key`'s expiry, if it has one, in whole milliseconds as Redis
    /// reports it.
    fn ttl(&self, key: &str) -> Option<Duration> {
        let (deadline, _) = self.entries.get(key)?.expiry?;
        Some(whole_millis(
            deadline.saturating_duration_since(Instant::now()),
        ))
    }

    /// Writes `value`, keeping an existing entry's expiry; a new entry gets `ttl_if_created`
    /// (Redis's `KEEPTTL`, or an expiry set only on creation).
    fn write_keeping_ttl(&mut self, key: &str, value: Vec<u8>, ttl_if_created: Option<Duration>) {
        match self.entries.get_mut(key) {
            Some(entry) => entry.value = value,
            None => self.insert(key, value, ttl_if_created),
        }
    }

    /// The integer under `key`, parsed as strictly as Redis does.
    fn integer(&self, key: &str) -> Result<Option<i64>> {
        self.entries
            .get(key)
            .map(|entry| parse_integer(key, &entry.value))
            .transpose()
    }

    fn forget_expiry(&mut self, expiry: Option<(Instant, u64)>) {
        if let Some(slot) = expiry {
            self.expiries.remove(&slot);
        }
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(old) => {
                self.forget_expiry(old.expiry);
                true
            }
            None => false,
        }
    }
}

/// Redis's integer rule: the exact decimal form of an `i64`, no sign, space or leading zero.
fn parse_integer(key: &str, value: &[u8]) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok().filter(|n| n.to_string() == text))
        .ok_or_else(|| not_a_counter(key, "value is not an integer or out of range"))
}

pub(crate) fn not_a_counter(key: &str, reason: &str) -> Error {
    Error::InvalidKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `d` truncated to whole milliseconds, as Redis reports time left.
fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn duration_to_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
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

impl Backend for MemoryBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().entries.get(key).map(|e| e.value.clone()))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<()> {
        self.lock().insert(key, value, ttl);
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        Ok(self.lock().remove(key))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.lock().entries.contains_key(key))
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        Ok(self.lock().ttl(key))
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let mut inner = self.lock();
        if inner.entries.contains_key(key) {
            return Ok(false);
        }
        inner.insert(key, value, ttl);
        Ok(true)
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl_if_created: Option<Duration>,
    ) -> Result<bool> {
        let mut inner = self.lock();
        let current = inner.entries.get(key).map(|e| e.value.as_slice());
        if current != expected {
            return Ok(false);
        }
        inner.write_keeping_ttl(key, new, ttl_if_created);
        Ok(true)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let inner = self.lock();
        Ok(keys
            .iter()
            .map(|key| inner.entries.get(key.as_str()).map(|e| e.value.clone()))
            .collect())
    }

    async fn set_many(&self, items: Vec<(String, Vec<u8>)>, ttl: Option<Duration>) -> Result<()> {
        let mut inner = self.lock();
        for (key, value) in items {
            inner.insert(&key, value, ttl);
        }
        Ok(())
    }

    async fn remove_many(&self, keys: &[String]) -> Result<u64> {
        let mut inner = self.lock();
        Ok(keys.iter().filter(|key| inner.remove(key)).count() as u64)
    }

    async fn incr(&self, key: &str, by: i64, ttl_if_created: Option<Duration>) -> Result<i64> {
        let mut inner = self.lock();
        let current = inner.integer(key)?;
        let next = current
            .unwrap_or(0)
            .checked_add(by)
            .ok_or_else(|| not_a_counter(key, "increment or decrement would overflow"))?;
        inner.write_keeping_ttl(key, next.to_string().into_bytes(), ttl_if_created);
        Ok(next)
    }

    async fn fixed_window(&self, key: &str, limit: u64, window: Duration) -> Result<Decision> {
        let mut inner = self.lock();
        let count = inner.integer(key)?;
        let left = match count {
            Some(_) => match inner.ttl(key) {
                Some(left) => left,
                None => {
                    // A counter without expiry would refuse forever once full: give it a window.
                    let value = inner.entries[key].value.clone();
                    inner.insert(key, value, Some(window));
                    window
                }
            },
            None => window,
        };
        let count = u64::try_from(count.unwrap_or(0)).unwrap_or(0);
        if count >= limit {
            return Ok(Decision {
                allowed: false,
                remaining: 0,
                retry_after: left,
                reset_after: left,
            });
        }
        inner.write_keeping_ttl(key, (count + 1).to_string().into_bytes(), Some(window));
        Ok(Decision {
            allowed: true,
            remaining: limit - count - 1,
            retry_after: Duration::ZERO,
            reset_after: left,
        })
    }

    async fn gcra(&self, key: &str, interval: Duration, burst: u32) -> Result<Decision> {
        let mut inner = self.lock();
        let now = duration_to_micros(Instant::now().saturating_duration_since(inner.epoch));
        let interval = duration_to_micros(interval).max(1);
        let tat = inner.integer(key)?.unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(interval);
        let allow_at = new_tat.saturating_sub(interval.saturating_mul(i64::from(burst)));
        if now < allow_at {
            return Ok(Decision {
                allowed: false,
                remaining: 0,
                retry_after: micros(allow_at - now),
                reset_after: micros(tat - now),
            });
        }
        // Redis keeps the state for whole milliseconds, rounded up; so do we.
        let keep = micros(new_tat - now).as_nanos().div_ceil(1_000_000);
        let keep = Duration::from_millis(u64::try_from(keep).unwrap_or(u64::MAX));
        inner.insert(key, new_tat.to_string().into_bytes(), Some(keep));
        Ok(Decision {
            allowed: true,
            remaining: u64::try_from((now - allow_at) / interval).unwrap_or(0),
            retry_after: Duration::ZERO,
            reset_after: micros(new_tat - now),
        })
    }

    fn scan_prefix(&self, prefix: &str) -> impl Stream<Item = Result<String>> + Send + use<> {
        let keys: Vec<Result<String>> = self
            .lock()
            .entries
            .keys()
            .filter(|key| key.starts_with(prefix))
            .map(|key| Ok(key.to_string()))
            .collect();
        futures_util::stream::iter(keys)
    }
}
