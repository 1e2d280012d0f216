// A complete backend: values in a `HashMap` behind a mutex. It writes only the five core
// methods; `get`, counters, rate limits, bulk calls and `update` come from the provided methods,
// built on its conditional `put` and `remove`. It has no change feed: it ignores the `notify`
// channel of writes, and the `Store` answers `watch` with `Error::Unsupported`.
//
// Time: one clock for everything, the wall clock (`SystemTime`), as the provided rate limiters
// read it; a deadline kept as wall-clock time also means the same after a restart, should the
// map ever be saved. (An engine on tokio's clock, which a test can pause, overrides `count` and
// passes a closure reading that clock to `kit::count`.)
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use state_store::backend::{
    Backend, BoxFuture, BoxStream, Expiry, PutMode, PutOptions, RemoveOptions, Version, Versioned,
};
use state_store::{Error, Result};

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
    expires: Option<SystemTime>,
}

impl Map {
    /// The entry under `key` unless it has expired (a key lives through its deadline). Expired
    /// entries stay until overwritten or removed: a real engine purges them.
    fn live(&self, key: &str) -> Option<&Entry> {
        let now = SystemTime::now();
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

// Each method does its work inside the returned future (or stream), so that one dropped unpolled
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
        options: PutOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut map = self.lock();
            let current = map.live(key);
            let allowed = match &options.mode {
                PutMode::Overwrite => true,
                PutMode::Create => current.is_none(),
                PutMode::Update(version) => {
                    current.is_some_and(|entry| version.as_number() == Some(entry.version))
                }
                // A kind of write added after this backend was written.
                _ => return Err(self.unsupported("put with this mode")),
            };
            // Per-key expiry: "at least" a duration is exactly that duration here.
            let expires = match options.expiry.per_key() {
                Expiry::Never => None,
                Expiry::After(ttl) => match SystemTime::now().checked_add(ttl) {
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

    fn remove<'a>(
        &'a self,
        key: &'a str,
        options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut map = self.lock();
            let Some(entry) = map.live(key) else {
                return Ok(false);
            };
            // A compare-and-delete (`Store::remove_if`): only the value with that version.
            if let Some(version) = &options.if_version
                && version.as_number() != Some(entry.version)
            {
                return Ok(false);
            }
            map.entries.remove(key);
            Ok(true)
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        Box::pin(async move {
            let map = self.lock();
            Ok(map.live(key).and_then(|entry| entry.expires).map(|at| {
                // Whole milliseconds, as the contract counts them.
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
            }))
        })
    }

    // The keys as they are when the stream is first polled: keys written while it runs may or
    // may not appear, as the contract allows.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        let backend = self.clone();
        let prefix = prefix.to_owned();
        let snapshot = async move {
            let map = backend.lock();
            let keys: Vec<Result<String>> = map
                .entries
                .keys()
                .filter(|key| key.starts_with(&prefix) && map.live(key).is_some())
                .map(|key| Ok(key.clone()))
                .collect();
            futures_util::stream::iter(keys)
        };
        Box::pin(futures_util::StreamExt::flatten(futures_util::stream::once(
            snapshot,
        )))
    }
}
