//! The in-memory backend: the embedded default, with the same semantics as Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::Result;
use crate::backend::Backend;

/// State kept in this process, with the same observable behaviour as
/// [`RedisBackend`](crate::RedisBackend): for tests, development and single-process services.
///
/// Expiry runs on tokio's clock, so tests that pause time (`tokio::time::pause`, `advance`) see
/// keys expire. Expired entries are removed, not just hidden: every operation first purges what
/// has expired, oldest first, so memory stays bounded by the live keys however many short-lived
/// keys are written.
///
/// Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
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
        Self::default()
    }

    /// How many live (unexpired) keys it holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
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
            if entry.key().0 > now {
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
        let inner = self.lock();
        let Some((deadline, _)) = inner.entries.get(key).and_then(|e| e.expiry) else {
            return Ok(None);
        };
        // Redis reports whole milliseconds; so do we, for identical behaviour.
        let left = deadline.saturating_duration_since(Instant::now());
        Ok(Some(Duration::from_millis(left.as_millis() as u64)))
    }
}
