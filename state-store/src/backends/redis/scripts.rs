//! The Lua scripts of the Redis backend, one file each in `scripts/`, run atomically on the
//! server in one round trip (`EVALSHA`). Each reports a value that is not an integer counter (by
//! Redis's own rule, checked with `INCRBY key 0`) as a `NOTCOUNTER` error instead of changing
//! anything.
//!
//! The scripts that write a notified type publish what they wrote on the type's channel, in the
//! same atomic step, as `{"op":"set","key":...}` followed by a newline and the value as stored,
//! or `{"op":"removed","key":...}` (see `feed.rs`, which parses them). For a journaled type
//! their feed argument also names the journal's stream, and they append the change to it in the
//! same step (`announce` in `may_publish.lua`; see `journal.rs`).

use std::sync::LazyLock;

use redis::Script;

/// The start of every script that publishes (`may_publish.lua`): on Redis 7, which can check a
/// user's permissions from a script, a user who may not publish on the feed's channel gets an
/// error before anything is written, not a write that happened and then failed to announce
/// itself (a script is not rolled back). Its argument is the feed argument: the wire channel,
/// with the journal's stream and size for a journaled type (`journal::feed_spec`).
macro_rules! publishing {
    ($($part:literal),+ $(,)?) => {
        concat!(include_str!("scripts/may_publish.lua"), $(include_str!($part)),+)
    };
}

/// The start of the counter scripts (`counter_error.lua`): an `INCRBY` refused for the stored
/// value (Redis's own "not an integer" and "overflow" errors) becomes a `NOTCOUNTER` error,
/// which is reported as `Error::NotACounter`; any other refusal (`OOM` under `maxmemory`, say)
/// is passed on as it is.
macro_rules! counting {
    ($part:literal) => {
        concat!(
            include_str!("scripts/counter_error.lua"),
            include_str!($part)
        )
    };
}

/// The start of the scripts that check a lease (`lease_current.lua`): `is_current(lease,
/// record, token)`.
macro_rules! leasing {
    ($part:literal) => {
        concat!(
            include_str!("scripts/lease_current.lua"),
            include_str!($part)
        )
    };
}

/// `INCRBY` that starts the key's expiry only when it creates the key; ARGV[3] is the channel to
/// announce the new count on, or empty.
pub(super) static INCR: LazyLock<Script> =
    LazyLock::new(|| Script::new(publishing!("scripts/counter_error.lua", "scripts/incr.lua")));

/// A conditional write of a notified type, announced when it happened. ARGV: channel, value,
/// condition ('nx': only a new key; otherwise the SHA-1 hex the current value must have), expiry
/// ('keep', 'never' or milliseconds). Returns 1 when written.
pub(super) static PUT_NOTIFY: LazyLock<Script> =
    LazyLock::new(|| Script::new(publishing!("scripts/put_notify.lua")));

/// Removal of notified keys: each that existed is announced. ARGV[1] channel. Returns how many
/// existed.
pub(super) static REMOVE_NOTIFY: LazyLock<Script> =
    LazyLock::new(|| Script::new(publishing!("scripts/remove_notify.lua")));

/// A removal only if the key still holds the value whose SHA-1 (hex) is ARGV[1]; ARGV[2] is the
/// channel to announce it on, or empty. Returns 1 when removed.
pub(super) static REMOVE_IF_VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(publishing!("scripts/remove_if_version.lua")));

/// A write only if the key still holds the value whose SHA-1 (hex) is ARGV[1]: the version
/// `get_versioned` computed, so the old value is not sent back. ARGV[2] is the new value, ARGV[3]
/// the expiry: 'keep', 'never', or milliseconds.
pub(super) static PUT_IF_VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/put_if_version.lua")));

/// Fixed window: ARGV limit, window in ms. Returns {allowed, remaining, retry_after_ms,
/// reset_after_ms}.
pub(super) static FIXED_WINDOW: LazyLock<Script> =
    LazyLock::new(|| Script::new(counting!("scripts/fixed_window.lua")));

/// GCRA on the server's clock, in microseconds: ARGV interval, burst. The key holds the
/// theoretical arrival time and expires when it has passed. Returns {allowed, remaining,
/// retry_after_us, reset_after_us}.
pub(super) static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::new(counting!("scripts/gcra.lua")));

/// Takes a lease that nobody holds (see `lease.rs`): KEYS the lease, its token record, the token
/// counter of its slot; ARGV value, ttl in ms, channel or empty. Returns the token, or 0.
pub(super) static LEASE_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(publishing!("scripts/lease_acquire.lua")));

/// Extends a lease still held with the token: KEYS the lease, its token record; ARGV token,
/// ttl in ms. Returns 1 when extended.
pub(super) static LEASE_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(leasing!("scripts/lease_extend.lua")));

/// Releases a lease still held with the token: KEYS the lease, its token record; ARGV token,
/// channel or empty. Returns 1 when released.
pub(super) static LEASE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(publishing!(
        "scripts/lease_current.lua",
        "scripts/lease_release.lua"
    ))
});

/// Who holds a lease: KEYS the lease, its token record. Returns nil or {value, token, ms left}.
pub(super) static LEASE_HOLDER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/lease_holder.lua")));

/// A write under a lease that is still the current one (one server, Sentinel): KEYS the written
/// key, the lease, its token record. ARGV as `fenced_write.lua` says.
pub(super) static FENCED_CURRENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(publishing!(
        "scripts/lease_current.lua",
        "scripts/fence_current.lua",
        "scripts/fenced_write.lua"
    ))
});

/// A write under a lease whose newer tokens have not written the key (Cluster): KEYS the written
/// key, its record of accepted tokens. ARGV as `fenced_write.lua` says.
pub(super) static FENCED_RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(publishing!(
        "scripts/fence_record.lua",
        "scripts/fenced_write.lua"
    ))
});

/// Journals a key's expiry once: KEYS the key, the stream, the key's marker; ARGV the size.
pub(super) static JOURNAL_EXPIRED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/journal_expired.lua")));
