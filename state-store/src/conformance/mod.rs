//! One behaviour, every backend: the checks every [`Backend`] passes, as async functions that a
//! backend's tests call. Each check takes a fresh, empty backend and panics, naming what
//! differs, when the backend does not behave as the contract says.
//!
//! # Running the suite
//! The suite is the `conformance` feature of `state-store`. An engine that does not need the
//! Redis client turns the default features off:
//!
//! ```toml
//! [dev-dependencies]
//! state-store = { version = "0.2", default-features = false, features = ["conformance"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! [`conformance_tests!`](crate::conformance_tests) writes one `#[test]` per check, named as
//! the check, in a module `conformance_checks`; a failing check is named by the test harness.
//! One form serves every backend:
//!
//! ```ignore
//! state_store::conformance_tests!(
//!     tokio::test(flavor = "multi_thread", worker_threads = 2),
//!     async { ((), my_engine::MyBackend::new()) } // (a guard kept alive for the test, backend)
//! );
//! ```
//!
//! # Detection
//! What a check needs beyond the core ([`Need`]) is in the table of checks ([`CHECKS`]), with,
//! for each need, the check that runs instead when the backend lacks it. Two needs are
//! detected before the check runs, on the check's own backend:
//! - a change feed: [`ChangeFeed::watch`] on a throwaway channel answering [`Error::Unsupported`]
//!   means none, and every change-feed check runs [`feed_is_unsupported`] instead;
//! - a compare-and-delete: [`Backend::remove`] with `if_version` of a missing key answering
//!   [`Error::Unsupported`] means none, and [`remove_if_removes_only_what_the_check_accepts`]
//!   runs [`remove_if_is_unsupported`] instead.
//!
//! A replaced check prints one line to stderr naming the check, its substitute and why, so a
//! backend without a feed runs the form above as it is. Nothing is skipped: the substitute
//! checks that the backend says what it lacks ([`Error::Unsupported`]) and writes nothing.
//!
//! # Declared differences
//! What cannot be detected is declared with [`Capabilities`], starting from
//! [`Capabilities::FULL`] (everything Redis and the memory backend do):
//!
//! ```ignore
//! fn capabilities() -> state_store::conformance::Capabilities {
//!     let mut caps = state_store::conformance::Capabilities::FULL;
//!     caps.per_key_expiry = false; // one expiry per bucket
//!     caps.max_value_bytes = Some(1024 * 1024);
//!     caps
//! }
//!
//! state_store::conformance_tests!(
//!     tokio::test(flavor = "multi_thread", worker_threads = 2),
//!     async { ((), my_engine::MyBackend::new()) },
//!     capabilities = capabilities()
//! );
//! ```
//!
//! Each capability declared lacking replaces the checks that need it by the check of the
//! difference (the substitutes of [`CHECKS`], in [`Group::Differences`]). Detection still
//! applies on top. The form `conformance_tests!($flavor, $new_backend, without_feed)` declares
//! [`Capabilities::feed`] lacking up front and is otherwise the default form.
//!
//! # Time
//! The checks use tokio's clock: a backend that keeps time itself on `tokio::time::Instant`,
//! and runs its rate limiters on that clock too (overriding [`Backend::count`] to call
//! [`kit::count`](crate::backend::kit::count) with it), may run them with a paused clock
//! (`tokio::test(start_paused = true)`, which needs tokio's `test-util` feature in the
//! engine's dev-dependencies), which makes the expiry checks instant; any other backend runs
//! them in real time (the slowest checks sleep about a second).
//!
//! # Change feeds
//! The change-feed checks ([`Store::watch`], [`ChangeFeed::watch`]) cover what each write
//! announces and what announces nothing, `watch_id`, order, concurrency, namespaces, expiry
//! (after [`ChangeFeed::enable_expiry_events`]), undecodable values and lagging watchers. Each
//! waits at most a few seconds for a change, so a missing one fails the check instead of
//! hanging it; absence is proved by writing a sentinel change and reading it next.
//!
//! # State types
//! The state types below are the ones the checks store; their keys are what a check that
//! writes raw bytes under a key expects.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use crate::BackendExt;
use crate::backend::{BoxStream, ChangeFeed, Event, GetOptions, RemoveOptions, Watch};
use crate::{Backend, Change, Changes, Error, Policy, Quota, RateLimit, StateKey, Store, Version};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

mod bulk;
mod cas;
mod counters;
mod differences;
mod feed;
mod fixtures;
mod journal;
mod kv;
mod leases;
mod limits;
mod listing;
mod rate_limits;
mod registry;
mod shapes;

pub use bulk::*;
pub use cas::*;
pub use counters::*;
pub use differences::*;
pub use feed::*;
pub use fixtures::*;
pub use journal::*;
pub use kv::*;
pub use leases::*;
pub use limits::*;
pub use listing::*;
pub use rate_limits::*;
pub use registry::{CHECKS, Check, Entry, Group, Need};
pub use shapes::*;

/// One test per check of [`conformance`](crate::conformance), each on a fresh backend.
///
/// `$flavor` is the test attribute without `#[...]` (such as `tokio::test` or
/// `tokio::test(flavor = "multi_thread", worker_threads = 2)`); `$new_backend` is a future
/// giving `(guard, backend)`, where the guard (a server process, a temp dir, or `()`) lives until
/// the check ends. The tests go in a module `conformance_checks`, one per check of the table
/// ([`CHECKS`](crate::conformance::CHECKS)) that is not a substitute, named as the check.
///
/// Before a check runs, what it needs is looked at (see the module docs): a need the backend
/// lacks, declared or detected, runs the substitute the table names instead, and prints one
/// line to stderr saying so.
///
/// The forms:
/// - `conformance_tests!($flavor, $new_backend)`: every check, for any backend; the change
///   feed and the compare-and-delete are detected.
/// - `conformance_tests!($flavor, $new_backend, capabilities = $caps)`: the same, with the
///   differences `$caps` declares (a [`Capabilities`](crate::conformance::Capabilities)).
/// - `conformance_tests!($flavor, $new_backend, without_feed)`: the same as
///   `capabilities = ..` with only [`feed`](crate::conformance::Capabilities::feed) lacking:
///   the change-feed checks run
///   [`feed_is_unsupported`](crate::conformance::feed_is_unsupported) instead.
/// - `conformance_tests!($flavor, in_one_test($shared = $start), $new_backend)`: every check,
///   one after another in one `#[test]` `conformance_checks::in_one_test`, for a deployment
///   too costly to start once per check (a Redis Cluster, say). `$start` runs once and is bound
///   to `$shared`, which `$new_backend` may use to give each check a clean backend. Each check
///   runs on a runtime of its own with two worker threads (`$flavor` is not used), so tasks a
///   check leaves behind end with it. Each check's name is printed before it runs, so a failure
///   is found by the last name printed.
#[macro_export]
macro_rules! conformance_tests {
    // The table's rows, from `__conformance_checks!`: a test per row of `checks`.
    (@each $flavor:meta, ($new_backend:expr, $caps:expr)
        checks { $($check:ident $(($($via:tt)*))? : $group:ident $([$($needs:tt)*])?;)* }
        substitutes { $($substitutes:tt)* }) => {
        mod conformance_checks {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$flavor]
                async fn $check() {
                    let (guard, backend) = $new_backend.await;
                    let caps: $crate::conformance::Capabilities = $caps;
                    $crate::conformance::__run($crate::conformance::Check::$check, caps, backend)
                        .await;
                    drop(guard);
                }
            )*
        }
    };
    (@sequence $flavor:meta, ($shared:ident, $start:expr, $new_backend:expr)
        checks { $($check:ident $(($($via:tt)*))? : $group:ident $([$($needs:tt)*])?;)* }
        substitutes { $($substitutes:tt)* }) => {
        mod conformance_checks {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn in_one_test() {
                let $shared = $start;
                $(
                    eprintln!("conformance check: {}", stringify!($check));
                    // A runtime per check, as in the other forms: dropping it ends whatever
                    // tasks the check left running, which would otherwise write into the next.
                    $crate::conformance::__runtime().block_on(async {
                        let (guard, backend) = $new_backend.await;
                        $crate::conformance::__run(
                            $crate::conformance::Check::$check,
                            $crate::conformance::Capabilities::FULL,
                            backend,
                        )
                        .await;
                        drop(guard);
                    });
                )*
                drop($shared);
            }
        }
    };
    ($flavor:meta, $new_backend:expr, without_feed $(,)?) => {
        $crate::__conformance_checks!(($crate::conformance_tests) {
            @each $flavor, ($new_backend, {
                let mut caps = $crate::conformance::Capabilities::FULL;
                caps.feed = false;
                caps
            })
        });
    };
    ($flavor:meta, $new_backend:expr, capabilities = $caps:expr $(,)?) => {
        $crate::__conformance_checks!(($crate::conformance_tests) {
            @each $flavor, ($new_backend, $caps)
        });
    };
    ($flavor:meta, in_one_test($shared:ident = $start:expr), $new_backend:expr $(,)?) => {
        $crate::__conformance_checks!(($crate::conformance_tests) {
            @sequence $flavor, ($shared, $start, $new_backend)
        });
    };
    ($flavor:meta, $new_backend:expr $(,)?) => {
        $crate::__conformance_checks!(($crate::conformance_tests) {
            @each $flavor, ($new_backend, $crate::conformance::Capabilities::FULL)
        });
    };
}

/// What a backend does differently from Redis, declared to the suite by the `capabilities = ...`
/// form of [`conformance_tests!`](crate::conformance_tests): each capability a backend lacks
/// replaces the checks that need it by one that checks the difference instead (the table
/// [`CHECKS`] says which). Nothing is skipped silently: a backend that declares nothing
/// ([`Capabilities::FULL`]) runs every check as the default form does. Five capabilities are
/// detected as well ([`feed`](Capabilities::feed),
/// [`conditional_remove`](Capabilities::conditional_remove), [`leases`](Capabilities::leases),
/// [`fenced_writes`](Capabilities::fenced_writes),
/// [`current_lease`](Capabilities::current_lease)): a backend lacks them when it declares so or
/// when the probe finds them missing.
///
/// A few checks take the capabilities as their second argument and adapt a part of what they
/// check to them ([`writes_publish_their_changes`],
/// [`writes_that_change_nothing_publish_nothing`],
/// [`migrate_rewrites_older_values_and_only_those`], [`migrate_loses_no_concurrent_update`]);
/// the other forms of the macro give them [`Capabilities::FULL`], less what is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// A change feed ([`ChangeFeed::watch`], and the `notify` channel of writes). Without: every
    /// change-feed check runs [`feed_is_unsupported`] instead. Detected: a backend whose
    /// `extensions()` has no `feed` lacks it.
    pub feed: bool,
    /// A compare-and-delete ([`Backend::remove`] with `if_version`, under [`Store::remove_if`]).
    /// Without: `remove_if` is [`Error::Unsupported`] and removes nothing
    /// ([`remove_if_is_unsupported`], instead of
    /// [`remove_if_removes_only_what_the_check_accepts`]). Detected: a backend whose `remove`
    /// with `if_version` answers [`Error::Unsupported`] lacks it.
    pub conditional_remove: bool,
    /// Any expiry on any write (`set_with_ttl` with any duration, no expiry under a type with
    /// a ttl). Without: only the type's ttl, and any other is [`Error::Unsupported`] naming
    /// `set_with_ttl`, writing nothing ([`expiry_is_the_types_alone`]).
    pub per_key_expiry: bool,
    /// A write that keeps the expiry (`update`, `incr` of an existing counter, a fixed
    /// window's count) keeps the time left. Without: it restarts the type's ttl
    /// ([`kept_expiry_restarts`]).
    pub keeps_remaining_expiry: bool,
    /// Expired keys are announced on the change feed. Without: `enable_expiry_events` is
    /// [`Error::Unsupported`] ([`expiry_events_are_unsupported`]).
    pub expiry_events: bool,
    /// Every watcher of a backend is fed by one subscription, so a change that reached one
    /// watcher has reached the queues of all. Without: each watcher has its own subscription,
    /// and a slow one still lags and keeps the newest ([`each_watcher_lags_alone`]).
    pub shared_subscription: bool,
    /// A write reaches watchers only when it announces itself (a `notify` type's write, a
    /// [`BackendExt::set`] given a channel): writes of types without `notify`, writes without a
    /// channel, `touch` and rate-limit checks are heard by no watcher. Without: a watcher hears
    /// every write to its type's storage, as a change to the value stored
    /// ([`every_write_is_heard`]).
    pub announced_writes_only: bool,
    /// A listing ([`Backend::list`]: `ids`, `usage`, `migrate`) returns every key that exists
    /// from its start to its end, even one rewritten meanwhile. Without: such a key may be
    /// missed, and [`migrate_loses_no_concurrent_update`] accepts a first migration that
    /// scanned fewer keys, then checks that a second one finds them all.
    pub stable_listing: bool,
    /// A watcher that keeps up gets every change of a key, each once, in order. Without: the
    /// changes of one key may be coalesced when writes come faster than they are delivered
    /// (a bucket keeping one revision per key drops a value replaced before the watcher read
    /// it); each key's changes still arrive in order and never twice, and its last value
    /// always arrives ([`changes_arrive_in_order_and_converge`], instead of
    /// [`concurrent_writers_deliver_every_change`] and [`changes_of_one_id_arrive_in_order`]).
    pub every_change_delivered: bool,
    /// The largest value stored, `None` for no limit below the suite's 10 MB values. With one:
    /// [`values_up_to_the_limit`].
    pub max_value_bytes: Option<usize>,
    /// The longest expiry kept as asked, `None` for the derive's ceiling of 73 million years.
    /// With one: [`expiry_up_to_the_limit`].
    pub max_ttl: Option<Duration>,
    /// Leases with fencing tokens (the [`Leases`](crate::backend::Leases) capability). Without:
    /// `acquire` and `holder` are [`Error::Unsupported`] ([`leases_are_unsupported`]).
    /// Detected: a backend whose `extensions()` has no `leases` lacks it.
    pub leases: bool,
    /// Fenced writes ([`Store::fenced`]). Without: each is [`Error::Unsupported`]
    /// ([`fenced_writes_are_unsupported`]). Detected from the leases' `fenced_writes`.
    pub fenced_writes: bool,
    /// Fenced writes refused as soon as the lease is lost (the currency rule). Without: only
    /// once a newer token has written the key (the fencing rule,
    /// [`only_newer_tokens_fence_out_lost_leases`]). Detected from the leases' `fenced_writes`.
    pub current_lease: bool,
    /// Journals of `#[state(notify, history = N)]` types ([`Store::journal`],
    /// [`Store::consume`]). Without: both are [`Error::Unsupported`]
    /// ([`journals_are_unsupported`]). Detected: a backend whose `extensions()` has no
    /// `journals` lacks it.
    pub journal: bool,
}

impl Capabilities {
    /// Everything Redis and the memory backend do.
    pub const FULL: Capabilities = Capabilities {
        feed: true,
        conditional_remove: true,
        per_key_expiry: true,
        keeps_remaining_expiry: true,
        expiry_events: true,
        shared_subscription: true,
        announced_writes_only: true,
        stable_listing: true,
        every_change_delivered: true,
        max_value_bytes: None,
        max_ttl: None,
        leases: true,
        fenced_writes: true,
        current_lease: true,
        journal: true,
    };
}

/// Runs `check` on `backend`, or, when the backend lacks what it needs (declared lacking in
/// `declared`, or detected), the substitute the table names for that need, saying so on
/// stderr. Not public API: [`conformance_tests!`](crate::conformance_tests) calls it.
#[doc(hidden)]
pub async fn __run<B: Backend + Clone>(check: Check, declared: Capabilities, backend: B) {
    let mut capabilities = declared;
    let mut present: Vec<Need> = Vec::new();
    let mut current = check;
    'replace: loop {
        for &(need, instead) in current.entry().needs {
            let why = if !need.declared(&declared) {
                "its capabilities declare so".to_string()
            } else if !need.declared(&capabilities) {
                "detected before".to_string()
            } else if present.contains(&need) {
                continue;
            } else if let Some(probe) = detect_lacking(need, &backend).await {
                need.lacking(&mut capabilities);
                format!("detected: {probe} answered `Unsupported`")
            } else {
                present.push(need);
                continue;
            };
            eprintln!(
                "conformance: `{current}` replaced by `{instead}`: the backend lacks {} ({why})",
                need.describe()
            );
            current = instead;
            continue 'replace;
        }
        break;
    }
    registry::run(current, backend, capabilities).await;
}

/// The change feed of `backend`, which a feed check needs (the runner replaces feed checks by
/// `feed_is_unsupported` for a backend without one).
pub(crate) fn feed_of<B: Backend>(backend: &B) -> &dyn ChangeFeed {
    backend
        .extensions()
        .feed
        .expect("a feed check ran on a backend without a change feed")
}

/// Asserts that `err` is [`Error::Disabled`] naming `operation`: a write the store was not
/// enabled for.
pub(crate) fn assert_disabled(err: &Error, operation: &str) {
    assert!(
        matches!(err, Error::Disabled { operation: refused, .. } if *refused == operation),
        "{err:?}"
    );
}

/// Stores `value` under `id`, expiring after `ttl` instead of the type's ttl.
pub(crate) async fn set_for<S: StateKey>(
    store: &Store<impl Backend>, id: impl crate::IdArg<S::Id>, value: &S, ttl: Duration,
) {
    let options = crate::SetOptions::new().ttl(ttl);
    store.set_with::<S>(id, value, options).await.unwrap();
}

/// The time the value of `id` has left before it expires; a panic saying `what` when it has no
/// expiry.
pub(crate) async fn expiry_left<S: StateKey>(
    store: &Store<impl Backend>, id: impl crate::IdArg<S::Id>, what: &str,
) -> Duration {
    store.ttl::<S>(id).await.unwrap().expect(what)
}

/// The bytes `backend` stores under `key`, read as they are.
pub(crate) async fn stored(backend: &impl Backend, key: &str) -> Option<Vec<u8>> {
    backend.get(key, GetOptions::new()).await.unwrap()
}

/// How many of `tasks`, racing for one thing, say they won it.
pub(crate) async fn winners(tasks: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    winners
}

/// The probe that found `need` missing from `backend`, if it is one the suite detects and
/// the backend lacks it.
async fn detect_lacking<B: Backend>(need: Need, backend: &B) -> Option<&'static str> {
    let unsupported = |r: &crate::Result<_>| matches!(r, Err(Error::Unsupported { .. }));
    match need {
        Need::Feed => backend
            .extensions()
            .feed
            .is_none()
            .then_some("`Backend::extensions` has no `feed`"),
        Need::ConditionalRemove => {
            let missing = "conformance-probe:missing";
            let options = RemoveOptions::new().if_version(Version::from_number(0));
            let answer = backend.remove(missing, options).await.map(drop);
            unsupported(&answer).then_some("`Backend::remove` with `if_version`")
        }
        Need::Leases => backend
            .extensions()
            .leases
            .is_none()
            .then_some("`Backend::extensions` has no `leases`"),
        Need::Journal => backend
            .extensions()
            .journals
            .is_none()
            .then_some("`Backend::extensions` has no `journals`"),
        Need::FencedWrites | Need::CurrentLease => {
            let rules = backend.extensions().leases.map(|l| l.fenced_writes());
            let lacking = match need {
                Need::FencedWrites => rules == Some(crate::backend::FencedWrites::Unsupported),
                _ => rules != Some(crate::backend::FencedWrites::CurrentLease),
            };
            lacking.then_some("the leases' `fenced_writes`")
        }
        _ => None,
    }
}

/// Runs instead of `check` the check of a difference `capabilities` declares, if `check` needs a
/// capability the backend lacks (a lookup in [`CHECKS`]); else gives `backend` back for `check`.
/// Not public API, kept for callers of earlier versions of the macro; it detects nothing.
#[doc(hidden)]
pub async fn __declared<B: Backend + Clone>(
    check: &str, capabilities: &Capabilities, backend: B,
) -> Option<B> {
    let Some(check) = Check::named(check) else {
        return Some(backend);
    };
    let needs = check.entry().needs;
    match needs.iter().find(|(need, _)| !need.declared(capabilities)) {
        Some(&(_, instead)) => {
            registry::run(instead, backend, *capabilities).await;
            None
        }
        None => Some(backend),
    }
}

/// How the table of checks calls a check: `check(backend)`, or, for a check that
/// adapts to what a backend declares, `check(backend, &capabilities)` (those declared, less
/// what is detected missing). `Form` tells the two apart: `()` for the first,
/// `Capabilities` for the second. Not public API.
#[doc(hidden)]
pub trait __Check<B, Form> {
    /// Runs the check on `backend`.
    fn __run(self, backend: B, capabilities: Capabilities) -> impl Future<Output = ()>;
}

impl<B, F: AsyncFnOnce(B)> __Check<B, ()> for F {
    fn __run(self, backend: B, _: Capabilities) -> impl Future<Output = ()> {
        self(backend)
    }
}

impl<B, F: for<'c> AsyncFnOnce(B, &'c Capabilities)> __Check<B, Capabilities> for F {
    async fn __run(self, backend: B, capabilities: Capabilities) {
        self(backend, &capabilities).await
    }
}

/// The runtime of one check in the `in_one_test` form of [`conformance_tests!`]: two worker
/// threads, as the other forms are usually run with. Not public API.
#[doc(hidden)]
pub fn __runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for a conformance check")
}
