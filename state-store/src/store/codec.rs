//! Values as JSON, and expiries as the whole milliseconds every engine keeps.

use std::cell::RefCell;
use std::time::Duration;

use crate::backend::ceil_millis;
use crate::key::StateKey;
use crate::rules;
use crate::{Error, Result};

/// The type's expiry, checked like any other: a hand-written `StateKey` may hold any duration.
pub(super) fn type_ttl<S: StateKey>(key: &str) -> Result<Option<Duration>> {
    S::TTL.map(|ttl| check_ttl(key, ttl)).transpose()
}

/// Rounds `ttl` up to whole milliseconds and checks that Redis accepts it.
pub(super) fn check_ttl(key: &str, ttl: Duration) -> Result<Duration> {
    let ms = ceil_millis(ttl);
    let reason = if ms == 0 {
        "an expiry must be at least one millisecond"
    } else if ms > rules::MAX_TTL_MILLIS {
        "the expiry is too far in the future for Redis"
    } else {
        return Ok(Duration::from_millis(ms));
    };
    Err(Error::InvalidTtl {
        key: key.to_owned(),
        ttl,
        reason,
    })
}

pub(super) fn encode<S: StateKey>(key: &str, value: &S) -> Result<Vec<u8>> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let failed = |source| Error::Encode {
        key: key.to_owned(),
        source,
    };
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let encoded = serde_json::to_writer(&mut *buffer, value).map(|()| buffer.to_vec());
            if buffer.capacity() > SCRATCH_KEPT {
                *buffer = Vec::new();
            }
            encoded.map_err(failed)
        }
        // A `Serialize` impl that encodes a state value itself, on this thread.
        Err(_) => serde_json::to_vec(value).map_err(failed),
    })
}

/// A value is encoded into a buffer kept per thread and copied out at its exact size.
/// `serde_json::to_vec` starts at 128 bytes and grows by `realloc`, and under concurrent writes
/// those reallocations contend in glibc's allocator under many concurrent writers (BENCHMARKS.md,
/// "Design choices measured once", has the measurement). The exact-size copy is also what the
/// memory backend keeps, without spare capacity. A buffer grown past this many bytes is let go rather than
/// kept.
const SCRATCH_KEPT: usize = 64 * 1024;

/// `bytes` as an `S`: in the current shape, else in the type's `previous` shape converted.
/// Every read decodes through here (the change feed too).
pub(crate) fn decode<S: StateKey>(key: &str, bytes: &[u8]) -> Result<S> {
    // One UTF-8 check of the whole value, then a parse that need not check each string again:
    // `from_slice` checks string by string, which costs more (a measurable part of a
    // memory-backend `get`). Bytes that are not UTF-8 go to `from_slice`, whose error says where.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    // The current shape first, exactly as without `previous`: a current value pays nothing.
    match parsed {
        Ok(value) => Ok(value),
        Err(current) => decode_previous(key, bytes, current),
    }
}

/// The previous shape, once the current one failed with `current`.
#[cold]
#[inline(never)]
fn decode_previous<S: StateKey>(key: &str, bytes: &[u8], current: serde_json::Error) -> Result<S> {
    let source = match S::__decode_previous(bytes) {
        None => current,
        Some((_, Ok(value))) => return Ok(value),
        Some((name, Err(previous))) => serde::de::Error::custom(format_args!(
            "{current}; as the previous shape `{name}`: {previous}"
        )),
    };
    Err(Error::Decode {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(
            check_ttl("k", Duration::from_micros(1500)).unwrap(),
            Duration::from_millis(2)
        );
        assert_eq!(
            check_ttl("k", Duration::from_secs(5)).unwrap(),
            Duration::from_secs(5)
        );
        assert!(check_ttl("k", Duration::ZERO).is_err());
        assert!(check_ttl("k", Duration::MAX).is_err());
        let ceiling = Duration::from_millis(rules::MAX_TTL_MILLIS);
        assert_eq!(check_ttl("k", ceiling).unwrap(), ceiling);
        assert!(check_ttl("k", ceiling + Duration::from_nanos(1)).is_err());
    }
}
