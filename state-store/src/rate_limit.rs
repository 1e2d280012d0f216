//! Rate limits declared as types: a [`Quota`], a [`Policy`], and the [`Decision`] of one check.

use std::time::Duration;

use crate::backend::expiry::{Expiry, ceil_millis, micros_i64};
use crate::key::Counter;

/// How many calls a rate limit lets through, in the words of the `governor` crate: `count` cells
/// per `period`, of which up to `burst` may be spent at once.
///
/// Build it in a `const` so that a zero count is a compile-time error:
///
/// ```
/// use state_store::Quota;
/// const API: Quota = Quota::per_minute(100).allow_burst(10);
/// const LOGIN: Quota = Quota::per_hour(5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Quota {
    /// `count` calls per `period`, all of which may come at once.
    ///
    /// # Panics
    /// When `count` is zero or `period` is shorter than a millisecond (in a `const`, this stops
    /// the build).
    pub const fn new(count: u32, period: Duration) -> Quota {
        assert!(count > 0, "a quota must allow at least one call");
        assert!(
            period.as_millis() >= 1,
            "a quota's period must be at least a millisecond"
        );
        Quota {
            count,
            period,
            burst: count,
        }
    }

    /// `count` calls per second.
    pub const fn per_second(count: u32) -> Quota {
        Quota::new(count, Duration::from_secs(1))
    }

    /// `count` calls per minute.
    pub const fn per_minute(count: u32) -> Quota {
        Quota::new(count, Duration::from_secs(60))
    }

    /// `count` calls per hour.
    pub const fn per_hour(count: u32) -> Quota {
        Quota::new(count, Duration::from_secs(3600))
    }

    /// The most calls allowed at once (the smooth policy's burst; the fixed-window policy
    /// ignores it and allows `count` per window). By default the whole `count`.
    ///
    /// # Panics
    /// When `burst` is zero.
    pub const fn allow_burst(mut self, burst: u32) -> Quota {
        assert!(burst > 0, "a burst must allow at least one call");
        self.burst = burst;
        self
    }

    /// Calls allowed per period.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Calls allowed at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The smooth policy's spacing between calls: `period / count`, at least a microsecond.
    pub(crate) fn emission_interval(&self) -> Duration {
        (self.period / self.count).max(Duration::from_micros(1))
    }
}

/// How a [`RateLimit`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// At most `count` calls in each window of `period`, the window starting with its first
    /// call. Cheap and easy to explain, but a client can spend one window's quota at its end and
    /// the next window's at the start of the next: up to twice the rate across the edge.
    FixedWindow,
    /// The generic cell rate algorithm (GCRA, as in `governor` and redis-cell): calls are spaced
    /// `period / count` apart on average, with up to `burst` at once; there are no window edges
    /// to exploit.
    Smooth,
}

/// A rate limit declared as a state type, checked with
/// [`Store::check`](crate::Store::check).
///
/// The type is a `counter` state (a tuple struct of one integer): the fixed-window policy stores
/// the window's count in it, the smooth policy its theoretical arrival time. Its `ttl` is not
/// used by `check`: the limit's own state expires as soon as it no longer matters.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use state_store::{Policy, Quota, RateLimit, StateKey};
///
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "api-rate", id = String, counter)]
/// struct ApiRate(i64);
///
/// impl RateLimit for ApiRate {
///     const QUOTA: Quota = Quota::per_second(10).allow_burst(20);
///     const POLICY: Policy = Policy::Smooth;
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a rate limit",
    label = "no `impl RateLimit`",
    note = "a rate limit is a `counter` state type with `impl RateLimit for {Self} {{ const QUOTA: \
            Quota = ...; const POLICY: Policy = ...; }}`"
)]
pub trait RateLimit: Counter {
    /// How many calls are allowed.
    const QUOTA: Quota;
    /// How they are counted.
    const POLICY: Policy;
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether this call may go ahead. A refused call is not counted.
    pub allowed: bool,
    /// How many more calls would be allowed right now.
    pub remaining: u64,
    /// When refused, how long until a call would be allowed; zero when allowed.
    pub retry_after: Duration,
    /// How long until the limit is back to its full quota (the window's end, or the smooth
    /// policy's full replenishment).
    pub reset_after: Duration,
}

// The two algorithms, once, as pure steps: what a check answers and what it writes. The memory
// backend runs them under its lock, the provided `Backend` methods around a conditional write;
// the Redis backend's scripts are the same steps in Lua, held to the same tests.

/// One fixed-window check on a counter holding `count` calls (`None`: no counter yet) whose
/// window has `left` to run (`None`: the counter has no expiry). Returns the decision and the
/// write to make, if any: the counter's new value and its expiry.
pub(crate) fn fixed_window(
    count: Option<i64>, left: Option<Duration>, limit: u64, window: Duration,
) -> (Decision, Option<(i64, Expiry)>) {
    // A missing counter counts 0 and starts a window; one without expiry would refuse forever
    // once full, so it gets a window too.
    let existed = count.is_some();
    let (stored, left, expiry) = match (count, left) {
        (None, _) => (0, window, Expiry::After(window)),
        (Some(stored), Some(left)) => (stored, left, Expiry::Keep),
        (Some(stored), None) => (stored, window, Expiry::After(window)),
    };
    let count = u64::try_from(stored).unwrap_or(0);
    if count >= limit {
        let decision = Decision {
            allowed: false,
            remaining: 0,
            retry_after: left,
            reset_after: left,
        };
        // A refused call is not counted; only an existing counter without expiry is written
        // (its value as it is, with a window).
        let write = (existed && expiry != Expiry::Keep).then_some((stored, expiry));
        return (decision, write);
    }
    let decision = Decision {
        allowed: true,
        remaining: limit - count - 1,
        retry_after: Duration::ZERO,
        reset_after: left,
    };
    let next = i64::try_from(count + 1).unwrap_or(i64::MAX);
    (decision, Some((next, expiry)))
}

/// One GCRA check at `now` (microseconds) against the stored theoretical arrival time `tat`
/// (`None`: no state yet). Returns the decision and, when allowed, the new arrival time with how
/// long to keep it (whole milliseconds, rounded up, as Redis keeps it).
pub(crate) fn gcra(
    tat: Option<i64>, now: i64, interval: Duration, burst: u32,
) -> (Decision, Option<(i64, Duration)>) {
    let interval = micros_i64(interval).max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval);
    let allow_at = new_tat.saturating_sub(interval.saturating_mul(i64::from(burst)));
    if now < allow_at {
        let decision = Decision {
            allowed: false,
            remaining: 0,
            retry_after: micros(allow_at - now),
            reset_after: micros(tat - now),
        };
        return (decision, None);
    }
    let keep = Duration::from_millis(ceil_millis(micros(new_tat - now)));
    let decision = Decision {
        allowed: true,
        remaining: u64::try_from((now - allow_at) / interval).unwrap_or(0),
        retry_after: Duration::ZERO,
        reset_after: micros(new_tat - now),
    };
    (decision, Some((new_tat, keep)))
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn fixed_window_counts_then_refuses() {
        let (first, write) = fixed_window(None, None, 2, SECOND);
        assert!(first.allowed && first.remaining == 1);
        assert_eq!(write, Some((1, Expiry::After(SECOND))));
        let left = Duration::from_millis(400);
        let (second, write) = fixed_window(Some(1), Some(left), 2, SECOND);
        assert!(second.allowed && second.remaining == 0 && second.reset_after == left);
        assert_eq!(write, Some((2, Expiry::Keep)));
        let (third, write) = fixed_window(Some(2), Some(left), 2, SECOND);
        assert!(!third.allowed && third.retry_after == left);
        assert_eq!(write, None, "a refused call is not counted");
    }

    #[test]
    fn fixed_window_gives_a_counter_without_expiry_a_window() {
        let (full, write) = fixed_window(Some(5), None, 2, SECOND);
        assert!(!full.allowed);
        assert_eq!(
            write,
            Some((5, Expiry::After(SECOND))),
            "value kept, window given"
        );
        let (negative, write) = fixed_window(Some(-3), None, 2, SECOND);
        assert!(negative.allowed && negative.remaining == 1);
        assert_eq!(write, Some((1, Expiry::After(SECOND))));
    }

    #[test]
    fn gcra_spaces_calls_after_the_burst() {
        let interval = Duration::from_millis(100);
        let mut tat = None;
        for remaining in (0..3).rev() {
            let (decision, write) = gcra(tat, 0, interval, 3);
            assert!(
                decision.allowed && decision.remaining == remaining,
                "{decision:?}"
            );
            tat = write.map(|(t, _)| t);
        }
        assert_eq!(tat, Some(300_000));
        let (refused, write) = gcra(tat, 0, interval, 3);
        assert!(!refused.allowed && write.is_none());
        assert_eq!(refused.retry_after, interval);
        let (later, write) = gcra(tat, 100_000, interval, 3);
        assert!(later.allowed);
        assert_eq!(write, Some((400_000, Duration::from_millis(300))));
    }
}
