//! Counters as decimal text: the rule every engine reads and writes them by.

use std::time::Duration;

use crate::backend::expiry::Expiry;
use crate::{Error, Result};

/// The integer under `key` by Redis's rule: the exact decimal form of an `i64`, no sign, space
/// or leading zero. Shared by every engine that keeps counters as text.
pub fn parse_counter(key: &str, value: &[u8]) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok().filter(|n| n.to_string() == text))
        .ok_or_else(|| not_a_counter(key, "value is not an integer or out of range"))
}

/// One increment of the counter holding `current` (`None`: no counter yet): the new value, and
/// the expiry to write it with (a created counter starts its window, an existing one keeps its
/// own). Shared by the memory backend and the provided `count`.
pub fn incr_step(
    key: &str, current: Option<i64>, by: i64, ttl_if_created: Option<Duration>,
) -> Result<(i64, Expiry)> {
    let next = current
        .unwrap_or(0)
        .checked_add(by)
        .ok_or_else(|| not_a_counter(key, "increment or decrement would overflow"))?;
    let expiry = match current {
        Some(_) => Expiry::Keep,
        None => Expiry::from_ttl(ttl_if_created),
    };
    Ok((next, expiry))
}

/// The error for a counter operation on a value that is not a counter.
pub fn not_a_counter(key: &str, reason: &str) -> Error {
    Error::NotACounter {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_redis_integer_rule() {
        assert_eq!(parse_counter("k", b"42").unwrap(), 42);
        assert_eq!(parse_counter("k", b"-7").unwrap(), -7);
        for bad in [
            "007",
            "-0",
            "+1",
            " 1",
            "1.5",
            "",
            "1e3",
            "9223372036854775808",
        ] {
            assert!(parse_counter("k", bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_counter("k", b"\xff").is_err(), "not UTF-8");
    }
}
