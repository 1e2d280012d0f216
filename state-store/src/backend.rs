//! The small trait every storage backend implements.

use std::future::Future;
use std::time::Duration;

use crate::Result;

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
}
