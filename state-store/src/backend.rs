//! The small trait every storage backend implements.

use std::future::Future;
use std::time::Duration;

use futures_core::Stream;

use crate::Result;
use crate::rate_limit::Decision;

/// Storage under a [`Store`](crate::Store): bytes under full string keys, with expiry.
///
/// The typed API lives in `Store`, so a backend only moves bytes. Each method is one atomic
/// operation on the server (one command or script, one round trip); the conformance suite in this
/// repository's `tests/` holds every backend to the same observable behaviour.
///
/// Errors name the key they concern (see [`Error`](crate::Error)).
pub trait Backend: Send + Sync + 'static {
    /// The value under `key`, or `None` when there is none or it has expired.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Stores `value` under `key`, replacing any value, with the given expiry; `None` removes any
    /// earlier expiry. Value and expiry are written by one atomic operation.
    fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes `key`; `true` when it existed.
    fn remove(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Whether `key` holds a value.
    fn exists(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Time left before `key` expires; `None` when it is missing or has no expiry.
    fn ttl(&self, key: &str) -> impl Future<Output = Result<Option<Duration>>> + Send;

    /// Stores `value` under `key` with the given expiry only if `key` holds nothing; `true`
    /// when it was written.
    fn set_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Replaces the value under `key` with `new` only if it is still `expected` (`None`: only if
    /// `key` holds nothing); `true` when it was written. A replaced value keeps the key's
    /// remaining expiry; a created one gets `ttl_if_created`.
    fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl_if_created: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The values under `keys`, in the same order, in one round trip.
    fn get_many(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>>> + Send;

    /// Stores every `(key, value)` with the same expiry, atomically and in one round trip.
    fn set_many(
        &self,
        items: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes `keys` in one round trip; how many existed.
    fn remove_many(&self, keys: &[String]) -> impl Future<Output = Result<u64>> + Send;

    /// Adds `by` to the integer under `key` (a missing key counts as 0) and returns the new
    /// value. A key it creates gets `ttl_if_created`; an existing key keeps its expiry. A value
    /// that is not an integer, or a result out of the `i64` range, is an error and changes
    /// nothing.
    fn incr(
        &self,
        key: &str,
        by: i64,
        ttl_if_created: Option<Duration>,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// One fixed-window rate-limit check: allows the call and counts it when fewer than `limit`
    /// calls were counted in the window, which starts with its first call and lasts `window`.
    fn fixed_window(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> impl Future<Output = Result<Decision>> + Send;

    /// One GCRA rate-limit check: calls spaced `interval` apart on average, with up to `burst`
    /// at once.
    fn gcra(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> impl Future<Output = Result<Decision>> + Send;

    /// Every key that starts with `prefix`, each once, in no particular order. Keys written
    /// while the stream runs may or may not appear.
    fn scan_prefix(&self, prefix: &str) -> impl Stream<Item = Result<String>> + Send + use<Self>;
}
