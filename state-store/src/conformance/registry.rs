//! The table of checks: every check [`conformance_tests!`](crate::conformance_tests) runs, with
//! its group, what it needs of a backend, and for each need the check that runs instead when
//! the backend lacks it.
//!
//! The table is written once, in the exported macro `__conformance_checks!` below, and read
//! twice: here, where it becomes [`Check`] and [`CHECKS`] and the function that runs a check by
//! its [`Check`], and by [`conformance_tests!`](crate::conformance_tests), which writes one test
//! per row of its `checks` part. A substitute is named by its row, so that renaming or removing a
//! check is a compile error in the table, never a substitute silently dropped.

use super::*;

/// The table. Not public API: [`conformance_tests!`](crate::conformance_tests) reads it, as does
/// the registry module. Called with a macro path in parentheses and the tokens to give that
/// macro first; it calls that macro with those tokens and then the table, in two parts:
/// `checks { .. }`, each of which gets a test of its own, and `substitutes { .. }`, which run
/// only instead of another. A row is `name: Group [Need => substitute, ..];`, its needs in the
/// order they are looked at; `name(via runner): ..` runs `runner(backend, &capabilities)` for a
/// check whose function takes other arguments.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    (($($then:tt)*) { $($args:tt)* }) => {
        $($then)*! { $($args)*
            checks {
                round_trip: Kv;
                writes_and_removes_are_opt_in: Kv;
                set_applies_the_type_ttl: Kv;
                set_resets_the_expiry_to_the_types: Kv [PerKeyExpiry => expiry_is_the_types_alone];
                values_expire: Kv [PerKeyExpiry => expiry_is_the_types_alone];
                invalid_ttls_are_rejected: Limits [NoTtlLimit => expiry_up_to_the_limit];
                namespaces_separate_services: Kv;
                invalid_namespaces_touch_nothing: Kv;
                ids_are_escaped_and_never_collide: Kv;
                corrupt_values_are_decode_errors: Kv;
                unencodable_values_write_nothing: Kv;
                concurrent_tasks_share_a_store: Kv;
                incr_counts_and_starts_the_window_once: Counters
                    [KeepsRemainingExpiry => kept_expiry_restarts];
                incr_is_a_write: Counters;
                incr_refuses_non_integers_and_overflow: Counters;
                concurrent_increments_are_exact: Counters;
                rate_limits_allow_exactly_the_quota_under_concurrency: RateLimits;
                rate_limit_checks_report_what_is_left: RateLimits;
                smooth_rate_limits_have_no_window_edge: RateLimits
                    [KeepsRemainingExpiry => kept_expiry_restarts];
                rate_limits_refuse_values_that_are_not_counters: RateLimits;
                update_changes_only_what_the_closure_accepts: Cas;
                update_keeps_the_remaining_expiry: Cas [PerKeyExpiry => expiry_is_the_types_alone];
                update_and_touch_slides_the_expiry: Cas
                    [PerKeyExpiry => expiry_is_the_types_alone];
                update_outcome_says_what_happened: Cas;
                remove_if_removes_only_what_the_check_accepts: Cas
                    [ConditionalRemove => remove_if_is_unsupported];
                string_ids_can_be_given_as_str: Kv;
                touch_slides_the_expiry: Cas [PerKeyExpiry => expiry_is_the_types_alone];
                update_of_a_corrupt_value_is_a_decode_error: Cas;
                concurrent_updates_lose_nothing: Cas;
                set_if_absent_never_overwrites: Cas;
                bulk_reads_and_writes: Bulk;
                bulk_errors_name_the_key: Bulk;
                ids_lists_the_type_in_its_namespace: Listing;
                ids_report_foreign_keys_and_go_on: Listing;
                ids_walk_large_key_spaces: Listing;
                usage_counts_the_namespace_per_prefix: Listing;
                large_values_and_ids_round_trip: Limits [NoValueLimit => values_up_to_the_limit];
                previous_shapes_are_read_converted: Shapes
                    [KeepsRemainingExpiry => kept_expiry_restarts];
                migrate_rewrites_older_values_and_only_those: Shapes;
                migrate_loses_no_concurrent_update: Shapes;
                writes_publish_their_changes: FeedPublish [Feed => feed_is_unsupported];
                writes_that_change_nothing_publish_nothing: FeedPublish
                    [Feed => feed_is_unsupported];
                types_without_notify_publish_nothing: FeedPublish
                    [Feed => feed_is_unsupported, AnnouncedWritesOnly => every_write_is_heard];
                watch_id_sees_only_its_id: FeedWatchers [Feed => feed_is_unsupported];
                changes_of_one_id_arrive_in_order: FeedOrder [
                    Feed => feed_is_unsupported,
                    EveryChangeDelivered => changes_arrive_in_order_and_converge,
                ];
                follow_gives_the_value_then_its_changes: FeedOrder [Feed => feed_is_unsupported];
                concurrent_writers_deliver_every_change: FeedOrder [
                    Feed => feed_is_unsupported,
                    EveryChangeDelivered => changes_arrive_in_order_and_converge,
                ];
                changes_stay_in_their_namespace_and_type: FeedPublish
                    [Feed => feed_is_unsupported];
                expiries_are_changes: FeedExpiry
                    [Feed => feed_is_unsupported, ExpiryEvents => expiry_events_are_unsupported];
                follow_gives_none_after_an_expiry: FeedExpiry
                    [Feed => feed_is_unsupported, ExpiryEvents => expiry_events_are_unsupported];
                expiries_stay_in_their_namespace: FeedExpiry
                    [Feed => feed_is_unsupported, ExpiryEvents => expiry_events_are_unsupported];
                rate_limit_checks_publish_only_their_windows_expiry: FeedExpiry
                    [Feed => feed_is_unsupported, ExpiryEvents => expiry_events_are_unsupported];
                undecodable_changes_are_errors_and_the_feed_goes_on: FeedWatchers
                    [Feed => feed_is_unsupported];
                slow_watchers_lag_and_keep_the_newest: FeedWatchers
                    [Feed => feed_is_unsupported, SharedSubscription => each_watcher_lags_alone];
                changes_are_send_and_static: FeedWatchers [Feed => feed_is_unsupported];
                watchers_come_and_go: FeedWatchers [Feed => feed_is_unsupported];
                watchers_hear_nothing_from_before_watch: FeedWatchers
                    [Feed => feed_is_unsupported];
                previous_shapes_reach_watchers_converted: Shapes [Feed => feed_is_unsupported];
                leases_exclude_each_other: Leases [Leases => leases_are_unsupported];
                lease_tokens_only_grow: Leases [Leases => leases_are_unsupported];
                lost_leases_cannot_be_extended_or_released: Leases
                    [Leases => leases_are_unsupported];
                acquire_within_waits_for_the_holder: Leases [Leases => leases_are_unsupported];
                kept_leases_outlive_their_ttl: Leases [Leases => leases_are_unsupported];
                plain_writes_to_a_lease_key_end_the_lease: Leases
                    [Leases => leases_are_unsupported];
                fenced_writes_after_loss_are_refused: Leases [
                    Leases => leases_are_unsupported,
                    FencedWrites => fenced_writes_are_unsupported,
                ];
                lost_leases_cannot_write_before_a_newer_holder: Leases [
                    Leases => leases_are_unsupported,
                    FencedWrites => fenced_writes_are_unsupported,
                    CurrentLease => only_newer_tokens_fence_out_lost_leases,
                ];
                journals_replay_exactly_once_from_a_cursor: Journal
                    [Journal => journals_are_unsupported];
                journals_have_no_seam_between_history_and_live: Journal
                    [Journal => journals_are_unsupported];
                journals_trim_and_say_so: Journal [Journal => journals_are_unsupported];
                expiries_are_journaled: Journal [
                    Journal => journals_are_unsupported,
                    ExpiryEvents => expiry_events_are_unsupported,
                ];
                worker_groups_share_every_change_once: Journal
                    [Journal => journals_are_unsupported];
                dead_consumers_changes_are_delivered_again: Journal
                    [Journal => journals_are_unsupported];
            }
            substitutes {
                expiry_is_the_types_alone: Differences;
                kept_expiry_restarts: Differences;
                expiry_events_are_unsupported: Differences;
                each_watcher_lags_alone: Differences [Feed => feed_is_unsupported];
                every_write_is_heard: Differences [Feed => feed_is_unsupported];
                changes_arrive_in_order_and_converge: Differences [Feed => feed_is_unsupported];
                values_up_to_the_limit(via values_up_to_the_declared_limit): Differences;
                expiry_up_to_the_limit(via expiry_up_to_the_declared_limit): Differences;
                remove_if_is_unsupported: Differences;
                feed_is_unsupported: Differences;
                leases_are_unsupported: Differences;
                fenced_writes_are_unsupported: Differences;
                only_newer_tokens_fence_out_lost_leases: Differences;
                journals_are_unsupported: Differences;
            }
        }
    };
}

/// What a check needs of a backend beyond the core, each the counterpart of a field of
/// [`Capabilities`]. A backend that lacks one runs, instead of the check, the substitute the
/// table names for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Need {
    /// A change feed ([`Capabilities::feed`]); detected: [`ChangeFeed::watch`](crate::backend::ChangeFeed::watch) answering
    /// [`Error::Unsupported`] means none.
    Feed,
    /// Any expiry on any write ([`Capabilities::per_key_expiry`]).
    PerKeyExpiry,
    /// Writes that keep the expiry keep the time left
    /// ([`Capabilities::keeps_remaining_expiry`]).
    KeepsRemainingExpiry,
    /// Expired keys announced on the feed ([`Capabilities::expiry_events`]).
    ExpiryEvents,
    /// One subscription for every watcher ([`Capabilities::shared_subscription`]).
    SharedSubscription,
    /// Only announced writes reach watchers ([`Capabilities::announced_writes_only`]).
    AnnouncedWritesOnly,
    /// Every change of a key delivered ([`Capabilities::every_change_delivered`]).
    EveryChangeDelivered,
    /// A compare-and-delete ([`Capabilities::conditional_remove`]); detected:
    /// [`Backend::remove`](crate::Backend::remove) with `if_version` answering [`Error::Unsupported`] means none.
    ConditionalRemove,
    /// No value size limit below the suite's values ([`Capabilities::max_value_bytes`] is
    /// `None`).
    NoValueLimit,
    /// No expiry limit below the derive's ceiling ([`Capabilities::max_ttl`] is `None`).
    NoTtlLimit,
    /// Leases ([`Capabilities::leases`]); detected: no `leases` in
    /// [`Backend::extensions`](crate::Backend::extensions) means none.
    Leases,
    /// Fenced writes ([`Capabilities::fenced_writes`]); detected: the leases' `fenced_writes`
    /// answering `FencedWrites::Unsupported` means none.
    FencedWrites,
    /// Fenced writes that check the lease is current ([`Capabilities::current_lease`]);
    /// detected: `fenced_writes` answering anything but `FencedWrites::CurrentLease` means none.
    CurrentLease,
    /// Journals ([`Capabilities::journal`]); detected: no `journals` in
    /// [`Backend::extensions`](crate::Backend::extensions) means none.
    Journal,
}

impl Need {
    /// Whether `capabilities` declare what this need asks for.
    pub fn declared(self, capabilities: &Capabilities) -> bool {
        let c = capabilities;
        match self {
            Need::Feed => c.feed,
            Need::PerKeyExpiry => c.per_key_expiry,
            Need::KeepsRemainingExpiry => c.keeps_remaining_expiry,
            Need::ExpiryEvents => c.expiry_events,
            Need::SharedSubscription => c.shared_subscription,
            Need::AnnouncedWritesOnly => c.announced_writes_only,
            Need::EveryChangeDelivered => c.every_change_delivered,
            Need::ConditionalRemove => c.conditional_remove,
            Need::NoValueLimit => c.max_value_bytes.is_none(),
            Need::NoTtlLimit => c.max_ttl.is_none(),
            Need::Leases => c.leases,
            Need::FencedWrites => c.fenced_writes,
            Need::CurrentLease => c.current_lease,
            Need::Journal => c.journal,
        }
    }

    /// Marks this need as lacking in `capabilities`, as a detection found it.
    pub(super) fn lacking(self, capabilities: &mut Capabilities) {
        match self {
            Need::Feed => capabilities.feed = false,
            Need::ConditionalRemove => capabilities.conditional_remove = false,
            Need::Leases => capabilities.leases = false,
            Need::FencedWrites => capabilities.fenced_writes = false,
            Need::CurrentLease => capabilities.current_lease = false,
            Need::Journal => capabilities.journal = false,
            // Only the needs above are detected.
            _ => {}
        }
    }

    /// What this need asks for, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Need::Feed => "a change feed",
            Need::PerKeyExpiry => "per-key expiry",
            Need::KeepsRemainingExpiry => "writes that keep the remaining expiry",
            Need::ExpiryEvents => "expiry events",
            Need::SharedSubscription => "one subscription shared by every watcher",
            Need::AnnouncedWritesOnly => "a feed of announced writes only",
            Need::EveryChangeDelivered => "every change delivered",
            Need::ConditionalRemove => "a compare-and-delete (`remove_if`)",
            Need::NoValueLimit => "values of any size",
            Need::NoTtlLimit => "expiries up to the derive's ceiling",
            Need::Leases => "leases",
            Need::FencedWrites => "fenced writes",
            Need::CurrentLease => "fenced writes that check the lease is current",
            Need::Journal => "journals (`history`, `journal`, `consume`)",
        }
    }
}

/// The topic of a check: the file of `conformance/` it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Group {
    /// Single values: round trips, expiry, namespaces, ids, decode errors.
    Kv,
    /// Counters (`incr`).
    Counters,
    /// Rate limits.
    RateLimits,
    /// Compare-and-set: `update`, `touch`, `remove_if`, `set_if_absent`.
    Cas,
    /// The bulk calls.
    Bulk,
    /// Listings: `ids`, `usage`.
    Listing,
    /// Size and expiry limits.
    Limits,
    /// Previous shapes and `migrate`.
    Shapes,
    /// The change feed: what writes publish.
    FeedPublish,
    /// The change feed: order and concurrency.
    FeedOrder,
    /// The change feed: expiries.
    FeedExpiry,
    /// The change feed: watchers.
    FeedWatchers,
    /// Leases and fenced writes.
    Leases,
    /// Journals and worker groups.
    Journal,
    /// The checks of a declared or detected difference, which run instead of others.
    Differences,
}

/// One row of the table ([`CHECKS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The check.
    pub check: Check,
    /// Its name: the name of its function, and of its test.
    pub name: &'static str,
    /// Its topic.
    pub group: Group,
    /// What it needs, in the order they are looked at, each with the check that runs instead
    /// when the backend lacks it.
    pub needs: &'static [(Need, Check)],
    /// Whether it runs only instead of another (no test of its own).
    pub substitute: bool,
}

/// Picks the function that runs a row: its `via` runner, or the check of its name.
macro_rules! runner {
    ($name:ident) => {
        super::$name
    };
    ($name:ident, $via:ident) => {
        super::differences::$via
    };
}

/// Writes [`Check`], [`CHECKS`] and `run` from the table.
macro_rules! define_registry {
    (
        checks { $($name:ident $((via $via:ident))? : $group:ident
            $([$($need:ident => $instead:ident),* $(,)?])?;)* }
        substitutes { $($sub:ident $((via $sub_via:ident))? : $sub_group:ident
            $([$($sub_need:ident => $sub_instead:ident),* $(,)?])?;)* }
    ) => {
        /// Every check of the table, by name: the typed handle of a row of [`CHECKS`].
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Check {
            $(
                #[doc = concat!("[`", stringify!($name), "`](super::", stringify!($name), ")")]
                $name,
            )*
            $(
                #[doc = concat!("[`", stringify!($sub), "`](super::", stringify!($sub), ")")]
                $sub,
            )*
        }

        /// The table: every check, those with a test of their own first, in the order
        /// [`Check`] lists them.
        pub static CHECKS: &[Entry] = &[
            $(Entry {
                check: Check::$name,
                name: stringify!($name),
                group: Group::$group,
                needs: &[$($((Need::$need, Check::$instead)),*)?],
                substitute: false,
            },)*
            $(Entry {
                check: Check::$sub,
                name: stringify!($sub),
                group: Group::$sub_group,
                needs: &[$($((Need::$sub_need, Check::$sub_instead)),*)?],
                substitute: true,
            },)*
        ];

        /// Runs `check` itself on `backend`, whatever it needs.
        pub(super) async fn run<B: Backend + Clone>(
            check: Check,
            backend: B,
            capabilities: Capabilities,
        ) {
            match check {
                $(Check::$name => {
                    Box::pin(__Check::__run(runner!($name $(, $via)?), backend, capabilities))
                        .await
                })*
                $(Check::$sub => {
                    Box::pin(__Check::__run(runner!($sub $(, $sub_via)?), backend, capabilities))
                        .await
                })*
            }
        }
    };
}

crate::__conformance_checks!((define_registry) {});

impl Check {
    /// Its row of [`CHECKS`].
    pub fn entry(self) -> &'static Entry {
        &CHECKS[self as usize]
    }

    /// Its name: the name of its function, and of its test.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// The check of the name `name`, if the table has one.
    pub fn named(name: &str) -> Option<Check> {
        CHECKS.iter().find(|e| e.name == name).map(|e| e.check)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_the_order_of_their_checks() {
        for (n, entry) in CHECKS.iter().enumerate() {
            assert_eq!(entry.check as usize, n, "{}", entry.name);
            assert_eq!(Check::named(entry.name), Some(entry.check));
        }
    }

    #[test]
    fn substitutes_are_checks_of_differences() {
        for entry in CHECKS {
            for (_, instead) in entry.needs {
                assert!(instead.entry().substitute, "{} -> {instead}", entry.name);
            }
            let feed = entry.needs.iter().any(|(need, _)| *need == Need::Feed);
            let is_feed = matches!(
                entry.group,
                Group::FeedPublish | Group::FeedOrder | Group::FeedExpiry | Group::FeedWatchers
            );
            assert!(!is_feed || feed, "{} needs a feed", entry.name);
        }
    }
}
