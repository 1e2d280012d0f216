//! The one error type of this crate.

use std::time::Duration;

/// A boxed error from a backend or its driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a [`Store`](crate::Store) call.
///
/// Every variant that concerns one key names the full key, namespace included, so a log line
/// says where to look.
///
/// `Debug` prints the message and the variant (what `fn main() -> Result<(), Error>` shows):
/// `cannot decode the value under `session:1`: expected value at line 1 column 1
/// (Error::Decode)`. Match on the variant to handle one kind of failure.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operation is off for this store: writes and deletes are opt-in
    /// ([`Store::enable_set`](crate::Store::enable_set),
    /// [`Store::enable_remove`](crate::Store::enable_remove)). Nothing was written.
    #[error("`{operation}` is disabled on this store; turn it on with `Store::{enable}()`")]
    Disabled {
        /// The operation that was refused, such as `set`.
        operation: &'static str,
        /// The builder method that turns it on.
        enable: &'static str,
    },

    /// The value stored under `key` is not valid JSON for the state type: corrupt, written by
    /// something else, or from an older shape of the type. The stored value is left as it is.
    /// For a type declared with `previous`, the value decodes as neither shape, and `source`'s
    /// message holds both of serde's messages (`...; as the previous shape `SessionV1`: ...`).
    #[error("cannot decode the value under `{key}`: {source}")]
    Decode {
        /// The full key.
        key: String,
        /// What serde_json found wrong.
        source: serde_json::Error,
    },

    /// The value could not be serialized to JSON (for example a map with non-string keys).
    /// Nothing was written.
    #[error("cannot encode the value for `{key}`: {source}")]
    Encode {
        /// The full key.
        key: String,
        /// What serde_json found wrong.
        source: serde_json::Error,
    },

    /// The store's namespace is not a valid key segment. Checked by
    /// [`Store::namespace`](crate::Store::namespace) and reported by every operation of that
    /// store, before any key is read or written.
    #[error("invalid namespace `{namespace}`: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A key could not be used as given: it holds a value of another Redis type
    /// (`WRONGTYPE`), or, when listing ids, a key under the prefix does not parse as an id.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The full key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A counter operation (`incr`, a rate-limit check) found a value that is not a counter (the
    /// exact decimal text of an `i64`), or its result would leave the `i64` range. Nothing was
    /// changed.
    #[error("not a counter at `{key}`: {reason}")]
    NotACounter {
        /// The full key.
        key: String,
        /// What is wrong with the value, or with the result.
        reason: String,
    },

    /// A duration cannot be used as an expiry: zero, or more milliseconds than Redis accepts.
    #[error("invalid ttl {ttl:?} for `{key}`: {reason}")]
    InvalidTtl {
        /// The full key.
        key: String,
        /// The duration given.
        ttl: Duration,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// [`Store::update`](crate::Store::update) lost the race against other writers of `key` on
    /// every attempt (or a counter or rate-limit check did, on a backend that runs them as a
    /// read and a conditional write). The value is as the last winner left it; nothing of this
    /// call was written.
    #[error("`{key}`: gave up after {attempts} attempts lost to concurrent writers")]
    Conflict {
        /// The full key.
        key: String,
        /// How many times the update was tried.
        attempts: u32,
    },

    /// The lease with `token` under `key` is no longer the current one (expired, released,
    /// removed, or taken by a newer holder), so the call made under it was refused and wrote
    /// nothing: a [`Lease::extend`](crate::Lease::extend) (which does not revive a lost lease),
    /// or a write through [`Store::fenced`](crate::Store::fenced), which the engine checks in
    /// the same atomic step as the write. Stop the work the lease guarded: another holder may
    /// be doing it.
    #[error("the lease `{key}` with token {token} is lost; nothing was written")]
    LeaseLost {
        /// The full key of the lease.
        key: String,
        /// The token of the lost lease.
        token: u64,
    },

    /// A write of a durable type (`#[state(durable)]`) was applied on the primary but did not
    /// reach the copies the backend's [`Durability`](crate::Durability) asks for within its
    /// timeout: `acked` of `required` (replicas, plus the primary's append-only file for
    /// `Durability::Persisted { local: true, .. }`). The write stands on the primary, and a
    /// failover before it reaches a replica may lose it; writing it again is safe.
    #[error(
        "the write of `{key}` reached {acked} of the {required} copies its durability requires; \
         it was applied on the primary and may be lost in a failover"
    )]
    NotDurable {
        /// The full key.
        key: String,
        /// How many copies acknowledged it.
        acked: u32,
        /// How many the durability requires.
        required: u32,
    },

    /// The backend cannot carry out this operation (or this form of it): an engine without
    /// per-key expiry asked for one, say. Nothing was written.
    #[error("`{operation}` is not supported by the {backend} backend")]
    Unsupported {
        /// The operation, such as `set_with_ttl`.
        operation: &'static str,
        /// The backend's [`name`](crate::Backend::name).
        backend: &'static str,
    },

    /// An item of a change feed ([`Store::watch`](crate::Store::watch)): the watcher fell
    /// `missed` changes behind its buffer, which kept the newest; the oldest were dropped. The
    /// stream goes on with the changes it kept. Read the state to catch up.
    #[error("the watcher fell behind and missed {missed} changes; read the state to catch up")]
    Lagged {
        /// How many changes were dropped.
        missed: u64,
    },

    /// The journal no longer holds the changes right after `cursor`: they were trimmed (a
    /// journal keeps about the last `history = N` changes). [`Store::journal`](crate::Store::journal)
    /// with [`Position::After`](crate::Position::After) of such a cursor fails with it; a
    /// reader that falls behind the trimming gets it once as an item, then goes on with the
    /// oldest change kept. `Position::After(resume)` replays everything still kept: read the
    /// state to catch up on what is lost, then resume from there.
    #[error(
        "the journal was trimmed past cursor {cursor}: the changes after it up to {resume} are \
         lost; read the state to catch up, then resume after {resume}"
    )]
    Trimmed {
        /// The cursor the reader asked to resume after, or the last one it delivered.
        cursor: crate::Cursor,
        /// The cursor after which everything still kept follows.
        resume: crate::Cursor,
    },

    /// An item of a change feed ([`Store::watch`](crate::Store::watch)): the connection under
    /// the feed broke and has been restored. Changes stored while it was down were not
    /// delivered (pub/sub keeps nothing for absent subscribers); the stream goes on with the
    /// changes stored from now on. Read the state to catch up.
    #[error(
        "the change feed `{channel}` was interrupted and has resumed; changes stored meanwhile \
         may be missing: read the state to catch up"
    )]
    Interrupted {
        /// The feed's channel.
        channel: String,
    },

    /// Could not connect to the backend, or the connection settings are invalid.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Where the connection was going (never with a password).
        target: String,
        /// The driver's error.
        source: BoxError,
    },

    /// The backend failed to carry out an operation: the connection broke, the server answered
    /// with an error, or no answer came within the response timeout. Whether a write took effect
    /// is unknown when the connection broke after it was sent.
    #[error("{operation} `{key}` failed: {source}")]
    Backend {
        /// The operation, such as `get`.
        operation: &'static str,
        /// The full key (or the first of several).
        key: String,
        /// The driver's error.
        source: BoxError,
    },
}

impl Error {
    /// Whether this is a change feed's report that changes went undelivered
    /// ([`Error::Lagged`], [`Error::Interrupted`], a journal's [`Error::Trimmed`]): the stream
    /// goes on, and the state, read again, is the way to catch up.
    pub fn missed_changes(&self) -> bool {
        matches!(
            self,
            Error::Lagged { .. } | Error::Interrupted { .. } | Error::Trimmed { .. }
        )
    }

    /// Whether the backend did not answer in time (the response or connect timeout of
    /// [`RedisOptions`](crate::RedisOptions)): the server may be overloaded, stopped or
    /// unreachable. A write that timed out may still have been carried out.
    pub fn is_timeout(&self) -> bool {
        let source = match self {
            Error::Backend { source, .. } | Error::Connect { source, .. } => source,
            _ => return false,
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(error) = cause {
            #[cfg(feature = "redis")]
            let redis_timeout = error
                .downcast_ref::<redis::RedisError>()
                .is_some_and(redis::RedisError::is_timeout);
            #[cfg(not(feature = "redis"))]
            let redis_timeout = false;
            let io_timeout = error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            if redis_timeout || io_timeout {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

impl std::fmt::Debug for Error {
    /// The message, then the variant: as readable as `Display` where `Debug` is what gets shown
    /// (`main` returning an error, `unwrap`, `{:?}` in logs). The fields are the message's parts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self} (Error::{})", self.variant())
    }
}

impl Error {
    /// The variant's name (`Decode`), for `Debug` and the `error.type` of a call's span.
    pub(crate) fn variant(&self) -> &'static str {
        // Each name once, spelled as the variant is (the match is exhaustive inside the crate).
        macro_rules! names {
            ($($variant:ident),* $(,)?) => {
                match self {
                    $(Error::$variant { .. } => stringify!($variant),)*
                }
            };
        }
        names!(
            Disabled,
            Decode,
            Encode,
            InvalidNamespace,
            InvalidKey,
            NotACounter,
            InvalidTtl,
            Conflict,
            LeaseLost,
            NotDurable,
            Unsupported,
            Lagged,
            Trimmed,
            Interrupted,
            Connect,
            Backend,
        )
    }
}
