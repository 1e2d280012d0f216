// The rules that the derive checks at compile time and the runtime checks on every call.
//
// This file is compiled twice from one source: as a module of the derive, and into `state_store`
// through the derive's hidden `__rules!()` macro, which expands to this text. So a prefix the
// derive accepts is a namespace segment the store accepts, and a ttl that compiles is a ttl
// every write takes. Plain Rust only (no `crate::` paths): it must compile in both crates.

/// The longest expiry, in milliseconds. Redis rejects an expiry whose deadline (now plus the
/// expiry) overflows a signed 64-bit count of milliseconds; a quarter of that range leaves room
/// for any clock.
pub const MAX_TTL_MILLIS: u64 = (i64::MAX / 4) as u64;

/// The longest ttl the derive accepts, in whole seconds.
pub const MAX_TTL_SECS: u64 = MAX_TTL_MILLIS / 1000;

/// Whether `c` may appear in a prefix or a namespace: ASCII letters, digits, `_`, `-` and `.`.
///
/// Keys are `{namespace}:{prefix}:{id}`, listed with glob patterns, and may live on Redis
/// Cluster, so a segment must hold no separator, glob or hash-tag character; the small set
/// also keeps keys readable in `redis-cli` and valid in engines with stricter key rules.
pub const fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The characters allowed in a prefix or namespace, in words, for error messages.
pub const SEGMENT_CHARS: &str = "ASCII letters, digits, `_`, `-` and `.`";
