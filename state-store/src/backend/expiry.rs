//! Time in the contract: a write's [`Expiry`], and the whole units engines keep time in
//! (milliseconds for expiries, microseconds for the rate limiters' clocks).

use std::time::Duration;

/// What expiry a key has after a [`Backend::put`](crate::Backend::put).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expiry {
    /// None: the key stays until it is removed (an earlier expiry is cleared).
    Never,
    /// Expires this long after the write. The [`Store`](crate::Store) passes whole
    /// milliseconds, at least one.
    After(Duration),
    /// An existing key keeps its remaining expiry (or its lack of one); a key the write creates
    /// gets none.
    Keep,
    /// Expires no sooner than this long after the write; an engine may keep the key longer
    /// (one whose expiry is set per type, not per key, keeps it for the type's). For values
    /// that stay right however long they are kept, such as a rate limiter's absolute arrival
    /// time. An engine with per-key expiry treats it as [`After`](Expiry::After).
    AtLeast(Duration),
}

impl Expiry {
    /// For an engine with per-key expiry: [`AtLeast`](Expiry::AtLeast) as
    /// [`After`](Expiry::After), every other rule as it is.
    pub fn per_key(self) -> Expiry {
        match self {
            Expiry::AtLeast(ttl) => Expiry::After(ttl),
            other => other,
        }
    }

    /// `After(ttl)`, or `Never` for `None`.
    pub fn from_ttl(ttl: Option<Duration>) -> Expiry {
        ttl.map_or(Expiry::Never, Expiry::After)
    }
}

/// `d` in whole milliseconds, rounded up, saturating. In `u64` arithmetic: it runs on every
/// write, and `as_nanos` would divide in `u128`.
pub(crate) fn ceil_millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)))
}

/// `d` in microseconds as the `i64` the rate limiters count in, saturating.
pub(crate) fn micros_i64(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_up() {
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::new(2, 1_000_000)), 2_001);
        assert_eq!(ceil_millis(Duration::MAX), u64::MAX);
    }
}
