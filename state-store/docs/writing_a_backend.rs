// A complete backend: values in a `HashMap` behind a mutex, expiry on tokio's clock. It writes
// only the five core methods; counters, rate limits, bulk calls and `update` come from the
// provided methods, built on its conditional `put`. It has no change feed: it ignores the
// `notify` channel of writes, and `watch` keeps its default, `Error::Unsupported`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use state_store::backend::{
    Backend, BoxFuture, BoxStream, Expiry, Notify, PutMode, Version, Versioned,
};
use state_store::{Error, Result};
use tokio::time::Instant;

/// Clones share the data.
#[derive(Debug, Default, Clone)]
pub struct MapBackend {
    map: Arc<Mutex<Map>>,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    /// Every write takes the next number as its version, so a version names one write.
    writes: u64,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    version: u64,
    expires: Option<Instant>,
}

impl Map {
    /// The entry under `key` unless it has expired (as in Redis, a key lives through its
    /// deadline). Expired entries stay until overwritten or removed: a real engine purges them.
    fn live(&self, key: &str) -> Option<&Entry> {
        let now = Instant::now();
        self.entries
            .get(key)
            .filter(|entry| entry.expires.is_none_or(|at| at >= now))
    }
}

impl MapBackend {
    fn lock(&self) -> MutexGuard<'_, Map> {
        // Every change is one `insert` or `remove`, so a panic elsewhere cannot leave the map
        // half-changed: keep serving instead of poisoning every later call.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            operation,
            backend: self.name(),
        }
    }
}

// Each method does its work inside the returned future, so that a future dropped unpolled
// changes nothing. The lock is never held across an `.await`.
impl Backend for MapBackend {
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            let map = self.lock();
            Ok(map.live(key).map(|entry| {
                Versioned::new(entry.value.clone(), Version::from_number(entry.version))
            }))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        mode: PutMode,
        expiry: Expiry,
        _notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut map = self.lock();
            let current = map.live(key);
            let allowed = match &mode {
                PutMode::Overwrite => true,
                PutMode::Create => current.is_none(),
                PutMode::Update(version) => {
                    current.is_some_and(|entry| version.as_number() == Some(entry.version))
                }
                // A kind of write added after this backend was written.
                _ => return Err(self.unsupported("put with this mode")),
            };
            let expires = match expiry {
                Expiry::Never => None,
                Expiry::After(ttl) => match Instant::now().checked_add(ttl) {
                    Some(at) => Some(at),
                    None => {
                        return Err(Error::InvalidTtl {
                            key: key.to_owned(),
                            ttl,
                            reason: "the expiry is too far in the future for this clock",
                        });
                    }
                },
                Expiry::Keep => current.and_then(|entry| entry.expires),
                _ => return Err(self.unsupported("put with this expiry")),
            };
            if allowed {
                map.writes += 1;
                let version = map.writes;
                let entry = Entry {
                    value,
                    version,
                    expires,
                };
                map.entries.insert(key.to_owned(), entry);
            }
            Ok(allowed)
        })
    }

    fn remove<'a>(&'a self, key: &'a str, _notify: Notify<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut map = self.lock();
            let existed = map.live(key).is_some();
            map.entries.remove(key);
            Ok(existed)
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        Box::pin(async move {
            let map = self.lock();
            Ok(map.live(key).and_then(|entry| entry.expires).map(|at| {
                // Whole milliseconds, as Redis reports them.
                let left = at.saturating_duration_since(Instant::now());
                Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
            }))
        })
    }

    // A snapshot of the keys when called: keys written while the stream runs may or may not
    // appear, as the contract allows.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        let map = self.lock();
        let keys: Vec<Result<String>> = map
            .entries
            .keys()
            .filter(|key| key.starts_with(prefix) && map.live(key).is_some())
            .map(|key| Ok(key.clone()))
            .collect();
        Box::pin(futures_util::stream::iter(keys))
    }
}
