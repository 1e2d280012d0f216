//! What a call of the contract asks for, as option structs that grow by a field: the next
//! capability of a write (durability, fencing, a journal) is a new field with a default, not a
//! new method or parameter. Each is `#[non_exhaustive]`: build one with `new()` and its setters.

use std::time::Duration;

use super::expiry::Expiry;
use super::lease::Fence;
use super::{Notify, Version};
use crate::rate_limit::Decision;
use crate::setters::setters;

/// Which write [`Backend::put`](crate::Backend::put)(super::Backend::put) makes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutMode {
    /// Write whatever the key holds.
    Overwrite,
    /// Write only if the key holds nothing (a missing or expired key).
    Create,
    /// Write only if the key still holds the value that
    /// [`Backend::get_versioned`](super::Backend::get_versioned) returned with this version.
    Update(Version),
}

/// How [`Backend::put`](crate::Backend::put)(super::Backend::put) writes: its condition, the key's expiry after it,
/// and the change feed that hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions<'a> {
    /// The condition: [`PutMode::Overwrite`] by default.
    pub mode: PutMode,
    /// The key's expiry after the write: [`Expiry::Never`] by default.
    pub expiry: Expiry,
    /// The channel whose feed announces the write ([`Notify`]): none by default.
    pub notify: Notify<'a>,
    /// The lease the write is made under ([`Fence`]), checked in the same step; none by
    /// default. Only given to an engine whose [`Leases`](super::Leases) offer fenced writes.
    pub fence: Option<Fence<'a>>,
    /// The write is of a durable type: answer once it got as far as the engine's
    /// [`Durability`](super::Durability) asks. `false` by default.
    pub durable: bool,
    /// Appends the change to the journal of `notify`'s channel, kept to about this many entries
    /// (a `#[state(notify, history = N)]` type), in the same atomic step as the write. Set only
    /// together with `notify`, and only for an engine with [`Journals`](super::Journals).
    /// `None` by default.
    pub history: Option<u64>,
}

impl<'a> PutOptions<'a> {
    /// An unconditional write that leaves the key without expiry, announced nowhere.
    pub fn new() -> PutOptions<'a> {
        PutOptions {
            mode: PutMode::Overwrite,
            expiry: Expiry::Never,
            notify: None,
            fence: None,
            durable: false,
            history: None,
        }
    }
}

setters! {
    impl['a] PutOptions<'a> {
        /// The write's condition.
        mode(mode: PutMode);
        /// The key's expiry after the write.
        expiry(expiry: Expiry);
        /// The channel whose feed announces the write.
        notify(notify: Notify<'a>);
        /// The lease the write is made under.
        fence(fence: Fence<'a>) = Some(fence);
        /// Whether the write is of a durable type.
        durable(durable: bool);
        /// Journals the change, keeping about `history` entries.
        history(history: Option<u64>);
    }
}

impl Default for PutOptions<'_> {
    fn default() -> Self {
        PutOptions::new()
    }
}

/// How [`Backend::remove`](super::Backend::remove) removes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RemoveOptions<'a> {
    /// Remove only if the key still holds the value that
    /// [`Backend::get_versioned`](super::Backend::get_versioned) returned with this version (a
    /// compare-and-delete); `None` (the default) removes whatever it holds. An engine that
    /// cannot compare and delete in one step answers [`Error::Unsupported`](crate::Error)
    /// naming `remove_if` when this is set.
    pub if_version: Option<Version>,
    /// The channel whose feed announces the removal: none by default.
    pub notify: Notify<'a>,
    /// The lease the removal is made under ([`Fence`]), checked in the same step; none by
    /// default.
    pub fence: Option<Fence<'a>>,
    /// The removal is of a durable type ([`PutOptions::durable`]). `false` by default.
    pub durable: bool,
    /// Journals the change ([`PutOptions::history`]). `None` by default.
    pub history: Option<u64>,
}

impl<'a> RemoveOptions<'a> {
    /// An unconditional removal, announced nowhere.
    pub fn new() -> RemoveOptions<'a> {
        RemoveOptions::default()
    }
}

setters! {
    impl['a] RemoveOptions<'a> {
        /// Removes only the value with this version.
        if_version(version: Version) = Some(version);
        /// The channel whose feed announces the removal.
        notify(notify: Notify<'a>);
        /// The lease the removal is made under.
        fence(fence: Fence<'a>) = Some(fence);
        /// Whether the removal is of a durable type.
        durable(durable: bool);
        /// Journals the change, keeping about `history` entries.
        history(history: Option<u64>);
    }
}

/// How [`Backend::get`](super::Backend::get) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct GetOptions {
    /// Also reset the key's expiry to this, in the same step (`Store::get_and_touch`,
    /// `Store::touch`). Not a change of the value: nothing is announced. `None` (the default)
    /// reads only.
    pub touch: Option<Expiry>,
    /// Only whether the key exists matters (`Store::exists`, `Store::touch`): an engine may
    /// answer `Some` of any bytes instead of the value (Redis sends `EXISTS`, or `PEXPIRE`
    /// with a touch). `false` by default.
    pub exists_only: bool,
    /// A touch of a durable type ([`PutOptions::durable`]). `false` by default.
    pub durable: bool,
}

impl GetOptions {
    /// A plain read.
    pub fn new() -> GetOptions {
        GetOptions::default()
    }

    /// Asks only whether the key exists.
    pub fn exists_only(mut self) -> GetOptions {
        self.exists_only = true;
        self
    }
}

setters! {
    impl[] GetOptions {
        /// Resets the key's expiry to `expiry` in the same step as the read.
        touch(expiry: Expiry) = Some(expiry);
        /// Whether a touch is of a durable type.
        durable(durable: bool);
    }
}

/// How [`Backend::update`](super::Backend::update) writes what its closure returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateOptions<'a> {
    /// The expiry of a value the update replaces: [`Expiry::Keep`] by default (the time it has
    /// left); `Expiry::After(ttl)` for sliding expiry.
    pub replaced: Expiry,
    /// The expiry of a value the update creates: [`Expiry::Never`] by default.
    pub created: Expiry,
    /// How many attempts before [`Error::Conflict`](crate::Error::Conflict)(crate::Error::Conflict): 64 by default.
    pub attempts: u32,
    /// The channel whose feed announces the write: none by default.
    pub notify: Notify<'a>,
    /// The lease the write is made under ([`Fence`]): each attempt's write carries it. None
    /// by default.
    pub fence: Option<Fence<'a>>,
    /// The write is of a durable type ([`PutOptions::durable`]). `false` by default.
    pub durable: bool,
    /// Journals the change ([`PutOptions::history`]). `None` by default.
    pub history: Option<u64>,
}

impl<'a> UpdateOptions<'a> {
    /// A replaced value keeps its expiry, a created one gets none; 64 attempts; announced
    /// nowhere.
    pub fn new() -> UpdateOptions<'a> {
        UpdateOptions {
            replaced: Expiry::Keep,
            created: Expiry::Never,
            attempts: 64,
            notify: None,
            fence: None,
            durable: false,
            history: None,
        }
    }
}

setters! {
    impl['a] UpdateOptions<'a> {
        /// The expiry of a replaced value.
        replaced(expiry: Expiry);
        /// The expiry of a created value.
        created(expiry: Expiry);
        /// How many attempts in all (at least one).
        attempts(attempts: u32) = attempts.max(1);
        /// The channel whose feed announces the write.
        notify(notify: Notify<'a>);
        /// The lease each attempt's write is made under.
        fence(fence: Fence<'a>) = Some(fence);
        /// Whether the write is of a durable type.
        durable(durable: bool);
        /// Journals the change, keeping about `history` entries.
        history(history: Option<u64>);
    }
}

impl Default for UpdateOptions<'_> {
    fn default() -> Self {
        UpdateOptions::new()
    }
}

/// What [`Backend::count`](super::Backend::count) does to the counter under a key. Counters are
/// decimal text (see [`kit::parse_counter`](super::kit::parse_counter)); the steps are the pure
/// functions every engine shares, so an engine that overrides `count` decides exactly as the
/// provided one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CountOp {
    /// Adds `by` (a missing counter counts 0) and answers the new value
    /// ([`Counted::Value`]). A counter it creates gets `ttl_if_created`; an existing one keeps
    /// its expiry.
    Increment {
        /// What to add (negative to subtract).
        by: i64,
        /// The expiry of a counter the call creates.
        ttl_if_created: Option<Duration>,
    },
    /// One fixed-window rate-limit check ([`Counted::Decision`]): allows the call and counts it
    /// when fewer than `limit` calls were counted in the window, which starts with its first
    /// call and lasts `window`.
    FixedWindow {
        /// Calls allowed per window.
        limit: u64,
        /// The window's length.
        window: Duration,
    },
    /// One GCRA rate-limit check ([`Counted::Decision`]): calls spaced `interval` apart on
    /// average, with up to `burst` at once. The key holds the theoretical arrival time in
    /// microseconds since the Unix epoch.
    Gcra {
        /// The average spacing of calls.
        interval: Duration,
        /// How many calls may come at once.
        burst: u32,
    },
}

/// The answer of [`Backend::count`](super::Backend::count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counted {
    /// The counter's new value, for [`CountOp::Increment`].
    Value(i64),
    /// The rate limit's decision, for [`CountOp::FixedWindow`] and [`CountOp::Gcra`].
    Decision(Decision),
}

/// How [`Backend::count`](super::Backend::count) writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CountOptions<'a> {
    /// The channel whose feed announces an increment (rate-limit checks never announce: their
    /// counts are bookkeeping, not state changes): none by default.
    pub notify: Notify<'a>,
    /// The count is of a durable type ([`PutOptions::durable`]). `false` by default.
    pub durable: bool,
    /// Journals the change ([`PutOptions::history`]). `None` by default.
    pub history: Option<u64>,
}

impl<'a> CountOptions<'a> {
    /// Announced nowhere.
    pub fn new() -> CountOptions<'a> {
        CountOptions::default()
    }
}

setters! {
    impl['a] CountOptions<'a> {
        /// The channel whose feed announces an increment.
        notify(notify: Notify<'a>);
        /// Whether the count is of a durable type.
        durable(durable: bool);
        /// Journals the change, keeping about `history` entries.
        history(history: Option<u64>);
    }
}

/// The writes of [`Backend::write_many`](super::Backend::write_many): many keys in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteMany<'a> {
    /// Stores every `(key, value)` as `options` say; answers how many were written. The
    /// built-in engines write all or nothing for [`PutMode::Overwrite`].
    Put {
        /// The keys and their values.
        items: Vec<(String, Vec<u8>)>,
        /// How each is written.
        options: PutOptions<'a>,
    },
    /// Removes every key as `options` say; answers how many existed.
    Remove {
        /// The full keys.
        keys: &'a [String],
        /// How each is removed.
        options: RemoveOptions<'a>,
    },
}
