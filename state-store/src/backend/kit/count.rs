//! The provided [`Backend::count`](crate::backend::Backend::count): counters and both rate-limit
//! policies over the core's read and conditional write, public so that an engine that keeps time
//! on another clock (tokio's, in a test with a paused clock) runs the same loop with its clock.

use std::time::Duration;

use super::counters::{incr_step, parse_counter};
use super::{Backoff, RETRIES};
use crate::backend::expiry::{Expiry, micros_i64};
use crate::backend::{Backend, CountOp, CountOptions, Counted, PutMode, PutOptions};
use crate::rate_limit;
use crate::{Error, Result};

/// Time since the Unix epoch: the clock of the provided [`count`](Backend::count)'s GCRA, which
/// every process sharing an engine agrees on (wall clocks kept in sync), as Redis's `TIME` does
/// for the Redis engine's script.
pub fn unix_time() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// [`Backend::count`] by reads and conditional writes of `backend`'s core, retried on a lost
/// race, with `now` as the GCRA's clock (time since an epoch every user of the engine shares:
/// [`unix_time`], or for an engine on tokio's clock a closure measuring from its start).
///
/// An increment adds to the counter (a created one gets its `ttl_if_created`, an existing one
/// keeps its expiry); a fixed window reads the counter and its time left and counts the call if
/// there is room; a GCRA check stores its theoretical arrival time with
/// [`Expiry::AtLeast`] the time it matters. Rate-limit checks never announce on a feed.
pub async fn count<B: Backend + ?Sized>(
    backend: &B, key: &str, op: CountOp, options: CountOptions<'_>,
    now: impl Fn() -> Duration + Send,
) -> Result<Counted> {
    match op {
        CountOp::Increment { by, ttl_if_created } => {
            counter_step(backend, key, false, options, move |current, _| {
                let (next, expiry) = incr_step(key, current, by, ttl_if_created)?;
                Ok((Counted::Value(next), Some((next, expiry))))
            })
            .await
        }
        CountOp::FixedWindow { limit, window } => {
            counter_step(
                backend,
                key,
                true,
                options.notify(None).history(None),
                move |count, left| {
                    let (decision, write) = rate_limit::fixed_window(count, left, limit, window);
                    Ok((Counted::Decision(decision), write))
                },
            )
            .await
        }
        CountOp::Gcra { interval, burst } => {
            counter_step(
                backend,
                key,
                false,
                options.notify(None).history(None),
                move |tat, _| {
                    let (decision, write) =
                        rate_limit::gcra(tat, micros_i64(now()), interval, burst);
                    let write = write.map(|(tat, keep)| (tat, Expiry::AtLeast(keep)));
                    Ok((Counted::Decision(decision), write))
                },
            )
            .await
        }
        #[allow(unreachable_patterns)]
        _ => Err(Error::Unsupported {
            operation: "count",
            backend: backend.name(),
        }),
    }
}

/// The one mechanism of [`count`]: reads the counter under `key` (and, with `read_ttl`, its time
/// left), lets `step` decide the answer and the write (a value and its expiry, or none), and
/// makes the write conditional on what was read, again from the read when another writer got
/// there first.
async fn counter_step<B, T>(
    backend: &B, key: &str, read_ttl: bool, options: CountOptions<'_>,
    mut step: impl FnMut(Option<i64>, Option<Duration>) -> Result<(T, Option<(i64, Expiry)>)>,
) -> Result<T>
where
    B: Backend + ?Sized,
{
    let mut backoff = Backoff::new(RETRIES);
    loop {
        let (count, left, mode) = match backend.get_versioned(key).await? {
            Some(v) => {
                let count = parse_counter(key, &v.value)?;
                let left = if read_ttl {
                    backend.ttl(key).await?
                } else {
                    None
                };
                (Some(count), left, PutMode::Update(v.version))
            }
            None => (None, None, PutMode::Create),
        };
        let (answer, write) = step(count, left)?;
        let Some((value, expiry)) = write else {
            return Ok(answer);
        };
        let put = PutOptions::new()
            .mode(mode)
            .expiry(expiry)
            .notify(options.notify)
            .durable(options.durable)
            .history(options.history);
        if backend
            .put(key, value.to_string().into_bytes(), put)
            .await?
        {
            return Ok(answer);
        }
        backoff.wait(key).await?;
    }
}
