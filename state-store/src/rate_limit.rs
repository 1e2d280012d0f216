//! Rate limits declared as types: a [`Quota`], a [`Policy`], and the [`Decision`] of one check.

use std::time::Duration;

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
