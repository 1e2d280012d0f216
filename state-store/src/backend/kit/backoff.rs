//! Retries of a lost conditional write.

use std::time::Duration;

use crate::{Error, Result};

/// How many times a provided loop that the caller does not bound (a touch, a counter) retries a
/// lost conditional write before [`Error::Conflict`](crate::Error::Conflict). Each try is two or three round trips on the
/// contended key, and the backoff between tries grows to 10 ms, so this bounds a call to about
/// three seconds of waiting.
pub const RETRIES: u32 = 256;

/// Retries of a lost conditional write: a random wait of up to a few hundred microseconds,
/// growing with each attempt to at most 10 ms, and [`Error::Conflict`](crate::Error::Conflict) once `attempts` are
/// spent.
///
/// The provided `update`, counter and conditional-remove loops use it; an engine that writes
/// its own retry loop uses it too, so that contenders stop colliding in lockstep:
///
/// ```
/// # async fn demo() -> state_store::Result<()> {
/// use state_store::backend::kit::Backoff;
///
/// let mut backoff = Backoff::new(64);
/// loop {
///     let won_the_race = true; // read, then write conditionally
///     if won_the_race {
///         break;
///     }
///     backoff.wait("svc:task:42").await?; // `Error::Conflict` once 64 attempts are spent
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    attempts: u32,
    jitter: std::collections::hash_map::RandomState,
}

impl Backoff {
    /// A backoff that allows `attempts` tries in all (at least one).
    pub fn new(attempts: u32) -> Backoff {
        Backoff {
            attempt: 0,
            attempts: attempts.max(1),
            jitter: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Waits before the next attempt on `key`, or answers [`Error::Conflict`](crate::Error::Conflict) naming `key` when
    /// the attempts are spent.
    pub async fn wait(&mut self, key: &str) -> Result<()> {
        use std::hash::BuildHasher;
        self.attempt += 1;
        if self.attempt >= self.attempts {
            return Err(Error::Conflict {
                key: key.to_owned(),
                attempts: self.attempts,
            });
        }
        let ceiling = 200u64.saturating_mul(1 << self.attempt.min(6)).min(10_000);
        let wait = self.jitter.hash_one(self.attempt) % ceiling;
        tokio::time::sleep(Duration::from_micros(wait)).await;
        Ok(())
    }
}
