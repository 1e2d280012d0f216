//! The [`StateKey`] trait that ties a value type to its key, and typed keys.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::id::StateId;

/// A type stored as state: its key prefix, id type and expiry.
///
/// Derive it rather than implementing it by hand; the derive checks the prefix and the ttl at
/// compile time:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use state_store::StateKey;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
/// #[state(prefix = "session", id = u64, ttl = "30m")]
/// pub struct Session {
///     pub cart: Vec<String>,
/// }
///
/// assert_eq!(Session::key(&42).to_string(), "session:42");
/// assert_eq!(<Session as StateKey>::TTL, Some(std::time::Duration::from_secs(30 * 60)));
/// ```
///
/// `#[state(...)]` takes:
/// - `prefix = "..."` (required): ASCII letters, digits, `_`, `-` and `.`;
/// - `id = Type` (required): a [`StateId`], such as an integer, `String` or a tuple of ids;
/// - `ttl = "1h30m"` (optional): the expiry `set`, `set_many`, `set_if_absent`, `touch` and the
///   `_and_touch` calls give the key, counted from that call (`update` keeps the time left, and
///   a counter keeps the window it started with), in `d`, `h`, `m`, `s` units or as an integer
///   number of seconds; without it keys do not expire;
/// - `counter` (optional): on a tuple struct with one integer field, allows `Store::incr`;
/// - `notify` (optional): every write announces itself on the type's change feed, which
///   [`Store::watch`](crate::Store::watch) reads (see [`Notified`]);
/// - `cache` (optional, on a `Clone` type): reads keep the decoded value in the backend's
///   client-side cache (see [`CACHE`](StateKey::CACHE));
/// - `previous = Type` (optional): the older shape stored values may still have, a
///   `Deserialize` type the state type implements `From`; reads convert such values, and
///   [`Store::migrate`](crate::Store::migrate) rewrites them in the current shape (see
///   [Changing a state type](#changing-a-state-type)).
///
/// # Changing a state type
/// Values outlive the code that wrote them: during a rolling deploy the old release and the new
/// one read each other's writes. A field added with `#[serde(default)]` and a field renamed with
/// `#[serde(alias = "old_name")]` read older values as they are. For a real reshape, declare the
/// older shape as `previous`:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use state_store::{MemoryBackend, StateKey, Store};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
/// #[state(prefix = "session", id = u64, ttl = "30m", previous = SessionV1)]
/// pub struct Session {
///     pub cart: Vec<CartItem>,
///     pub updated_at: i64,
/// }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct CartItem {
///     pub sku: String,
///     pub quantity: u32,
/// }
///
/// /// What the release before this one stored.
/// #[derive(Deserialize)]
/// pub struct SessionV1 {
///     pub cart: Vec<String>,
/// }
///
/// impl From<SessionV1> for Session {
///     fn from(old: SessionV1) -> Self {
///         let cart = old.cart.into_iter().map(|sku| CartItem { sku, quantity: 1 }).collect();
///         Session { cart, updated_at: 0 }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> state_store::Result<()> {
/// let store = Store::new(MemoryBackend::new()).enable_set();
/// # use state_store::BackendExt;
/// # let key = store.full_key::<Session>(7)?;
/// # store.backend().set(&key, br#"{"cart":["book"]}"#.to_vec(), None, None).await?;
/// // Under `session:7`, an older release stored `{"cart":["book"]}`.
/// let session = store.get::<Session>(7).await?.unwrap();
/// assert_eq!(session.cart, [CartItem { sku: "book".into(), quantity: 1 }]);
///
/// let report = store.migrate::<Session>().await?; // rewrites it as a `Session`
/// assert_eq!(report.rewritten, 1);
/// # Ok(())
/// # }
/// ```
///
/// A value in the current shape decodes as before, at no extra cost: the previous shape is
/// tried only when the current one fails. A value that decodes as neither is an
/// [`Error::Decode`](crate::Error::Decode) naming the key, with both of serde's messages.
/// Reads do not write; `update` writes what its closure returns, in the current shape.
///
/// For a longer history, make `previous` an enum of the older shapes that serde tells apart,
/// with one `From`:
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use state_store::StateKey;
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "session", id = u64, previous = OlderSession)]
/// pub struct Session {
///     pub items: Vec<String>,
///     pub updated_at: i64,
/// }
///
/// #[derive(Deserialize)]
/// #[serde(untagged)]
/// pub enum OlderSession {
///     /// Release 2: the cart as items, no timestamp.
///     V2 { items: Vec<String> },
///     /// Release 1: a single item.
///     V1 { item: String },
/// }
///
/// impl From<OlderSession> for Session {
///     fn from(old: OlderSession) -> Self {
///         let items = match old {
///             OlderSession::V2 { items } => items,
///             OlderSession::V1 { item } => vec![item],
///         };
///         Session { items, updated_at: 0 }
///     }
/// }
/// ```
pub trait StateKey: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The id that tells values of this type apart.
    type Id: StateId;

    /// The key prefix, unique per state type within a namespace.
    const PREFIX: &'static str;

    /// The expiry `set`, `set_many`, `set_if_absent`, `touch` and the `_and_touch` calls give
    /// the key, from that call (`update` keeps the time left; an `incr` gives it to the counter
    /// it creates only); `None` stores without expiry.
    const TTL: Option<Duration>;

    /// Whether writes publish their changes on the type's change feed: `true` with
    /// `#[state(notify)]`, which also implements [`Notified`]. Writes of other types send
    /// nothing extra.
    const NOTIFY: bool = false;

    /// Whether reads keep the decoded value in the backend's client-side cache: `true` with
    /// `#[state(cache)]`, for types read often and written rarely. The Redis backend keeps such
    /// values decoded and drops them when the server says the key changed (client-side caching,
    /// `CLIENT TRACKING`); other backends read as usual.
    const CACHE: bool = false;

    /// Whether every write waits until it got as far as the backend's
    /// [`Durability`](crate::Durability) asks (replicas, append-only files): `true` with
    /// `#[state(durable)]`, else [`Error::NotDurable`](crate::Error::NotDurable). Writes of other
    /// types never wait.
    const DURABLE: bool = false;

    /// How many changes the type's journal keeps, about (at least this many, at most twice):
    /// `Some(N)` with `#[state(notify, history = N)]`, which also implements
    /// [`Journaled`](crate::Journaled). Every write then appends its change to the journal in
    /// the same atomic step, for [`Store::journal`](crate::Store::journal) and
    /// [`Store::consume`](crate::Store::consume). `None`: no journal.
    const HISTORY: Option<u64> = None;

    /// A copy of a cached value to hand out; the derive implements it with `Clone` for types
    /// declared with `cache`. Not public API.
    #[doc(hidden)]
    fn __cached_clone(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// `bytes` decoded as the `previous` shape and converted, with that shape's name; `None`
    /// for a type without `previous`. The derive implements it. Not public API.
    #[doc(hidden)]
    fn __decode_previous(bytes: &[u8]) -> Option<(&'static str, Result<Self, serde_json::Error>)>
    where
        Self: Sized,
    {
        let _ = bytes;
        None
    }
}

/// A [`StateKey`] whose writes publish their changes, declared with `#[state(notify)]`: only
/// such types can be watched ([`Store::watch`](crate::Store::watch)).
///
/// Implement it through the derive, which also sets [`StateKey::NOTIFY`]; a type that
/// implements it by hand must set `NOTIFY = true` too, or its watchers hear nothing.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no change feed to watch",
    label = "not declared with `notify`",
    note = "declare the type with `#[state(..., notify)]` so that its writes publish their changes"
)]
pub trait Notified: StateKey {}

/// A [`StateKey`] whose value is a Redis integer counter, declared with `#[state(counter)]`.
///
/// Only counters can be incremented with `Store::incr`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a counter",
    label = "not declared with `counter`",
    note = "add `counter` to `#[state(...)]` on a tuple struct of one integer, like \
            `#[state(prefix = \"hits\", id = u64, counter)] struct Hits(i64);`"
)]
pub trait Counter: StateKey {}

/// A [`StateKey`] whose values are leases, declared with `#[state(lease)]` (which needs a
/// `ttl`): only such types can be taken with [`Store::acquire`](crate::Store::acquire). The
/// value says who holds the lease, as plain JSON under the type's key; the engine keeps the
/// lease's fencing token beside it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a lease type",
    label = "not declared with `lease`",
    note = "add `lease` (and a `ttl`) to its `#[state(...)]`, like \
            `#[state(prefix = \"job-lease\", id = u64, ttl = \"30s\", lease)]`"
)]
pub trait Leased: StateKey {}

/// A [`StateKey`] with a journal, declared with `#[state(notify, history = N)]`: only such
/// types can be read with [`Store::journal`](crate::Store::journal) and shared among workers
/// with [`Store::consume`](crate::Store::consume). Every change of the type is appended to
/// its journal in the same atomic step as the write, which keeps about the last `N`
/// ([`StateKey::HISTORY`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` keeps no journal",
    label = "not declared with `history`",
    note = "add `notify` and `history = N` (how many changes to keep) to its `#[state(...)]`, \
            like `#[state(prefix = \"job\", id = u64, notify, history = 10_000)]`"
)]
pub trait Journaled: Notified {}

/// The key of one `S` value: `{prefix}:{id}`, without the store's namespace.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use state_store::StateKey;
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "job", id = (String, u32))]
/// struct Job { status: String }
///
/// assert_eq!(Job::key(&("a:b".into(), 7)).to_string(), "job:a%3Ab:7");
/// ```
pub struct Key<S> {
    key: String,
    state: PhantomData<fn() -> S>,
}

impl<S: StateKey> Key<S> {
    /// The key of the value with this id.
    pub fn new(id: &S::Id) -> Self {
        let mut key = String::with_capacity(S::PREFIX.len() + 1 + 16);
        key.push_str(S::PREFIX);
        key.push(':');
        id.write_key(&mut key);
        Key {
            key,
            state: PhantomData,
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl<S> fmt::Display for Key<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl<S> fmt::Debug for Key<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Key").field(&self.key).finish()
    }
}

impl<S> Clone for Key<S> {
    fn clone(&self) -> Self {
        Key {
            key: self.key.clone(),
            state: PhantomData,
        }
    }
}

impl<S> PartialEq for Key<S> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<S> Eq for Key<S> {}

impl<S> PartialOrd for Key<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<S> Ord for Key<S> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl<S> Hash for Key<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl<S> AsRef<str> for Key<S> {
    fn as_ref(&self) -> &str {
        &self.key
    }
}
