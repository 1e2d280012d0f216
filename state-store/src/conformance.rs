//! One behaviour, every backend: the checks every [`Backend`] passes, as async functions that a
//! backend's tests call (feature `conformance`). Each check takes a fresh, empty backend and
//! panics, naming what differs, when the backend does not behave as the contract says.
//!
//! [`conformance_tests!`](crate::conformance_tests) writes one test per check. A backend in
//! another crate runs the whole suite with a few lines in its `tests/`:
//!
//! ```ignore
//! // Cargo.toml: [dev-dependencies] state-store = { version = "0.1", features = ["conformance"] }
//! //             tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! state_store::conformance_tests!(
//!     tokio::test(flavor = "multi_thread", worker_threads = 2),
//!     async { ((), my_engine::MyBackend::new()) } // (a guard kept alive for the test, backend)
//! );
//! ```
//!
//! The checks use tokio's clock: a backend that keeps time itself on `tokio::time::Instant`,
//! and overrides [`Backend::now`] with that clock too, may run them with a paused clock
//! (`tokio::test(start_paused = true)`), which makes the expiry checks instant; any other
//! backend runs them in real time (the slowest checks sleep about a second). The state types
//! below are the ones the checks store; their keys are what a check that writes raw bytes under
//! a key expects.
//!
//! # Change feeds
//! The default form runs the change-feed checks too ([`Store::watch`], [`Backend::watch`]):
//! what each write announces and what announces nothing, `watch_id`, order, concurrency,
//! namespaces, expiry (after [`Backend::enable_expiry_events`]), undecodable values, lagging
//! watchers. Each waits at most a few seconds for a change, so a missing one fails the check
//! instead of hanging it; absence is proved by writing a sentinel change and reading it next.
//! A backend without a feed, which keeps the provided `watch` (`Error::Unsupported`), runs
//! every other check and [`feed_is_unsupported`] instead:
//!
//! ```ignore
//! state_store::conformance_tests!(
//!     tokio::test(flavor = "multi_thread", worker_threads = 2),
//!     async { ((), my_engine::MyBackend::new()) },
//!     without_feed
//! );
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use crate::backend::{BoxStream, Event, Watch};
use crate::{Backend, Change, Changes, Error, Policy, Quota, RateLimit, StateKey, Store};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// A state type of the checks: `Session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
pub struct Session {
    /// Items.
    pub cart: Vec<String>,
    /// A timestamp.
    pub updated_at: i64,
}

/// A state type of the checks: `Job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = (String, u32))]
pub struct Job {
    /// Its status.
    pub status: String,
}

/// Same id type as `Session`, another prefix: must never see Session's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "marker", id = u64)]
pub struct Marker(pub u64);

/// Serializing a map with non-string keys fails in serde_json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "unencodable", id = u8)]
pub struct Unencodable {
    /// Not encodable as JSON when not empty.
    pub by_pair: HashMap<(u8, u8), u8>,
}

/// A counter whose window is its ttl.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "ratelimit", id = String, ttl = "1m")]
pub struct ApiCalls(pub i64);

/// A counter without expiry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "total", id = u8)]
pub struct Total(pub i64);

/// Rate limits whose windows outlast a test: exact counts under concurrency.
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "hourly-fixed", id = String)]
pub struct HourlyFixed(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for HourlyFixed {
    const QUOTA: Quota = Quota::per_hour(100);
    const POLICY: Policy = Policy::FixedWindow;
}

/// A state type of the checks: `HourlySmooth`.
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "hourly-smooth", id = String)]
pub struct HourlySmooth(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for HourlySmooth {
    const QUOTA: Quota = Quota::per_hour(100);
    const POLICY: Policy = Policy::Smooth;
}

/// Ten a second, both ways: for windows and edges.
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "fast-fixed", id = u32)]
pub struct FastFixed(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for FastFixed {
    const QUOTA: Quota = Quota::per_second(10);
    const POLICY: Policy = Policy::FixedWindow;
}

/// A state type of the checks: `FastSmooth`.
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "fast-smooth", id = u32)]
pub struct FastSmooth(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for FastSmooth {
    const QUOTA: Quota = Quota::per_second(10);
    const POLICY: Policy = Policy::Smooth;
}

/// The longest ttl the derive accepts: every backend must take it (one more second does not
/// compile, `tests/ui/ttl_over_ceiling.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "forever", id = u8, ttl = "2305843009213693s")]
pub struct Forever(pub u8);

/// A job record for compare-and-set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "task", id = u64, ttl = "1h")]
pub struct Task {
    /// Its status.
    pub status: String,
    /// How often it ran.
    pub runs: u64,
}

// The counters implement `Counter` by hand rather than through `#[state(counter)]`, so that
// `do_not_recommend` keeps them out of users' compiler messages ("the following other types
// implement trait `Counter`") when the `conformance` feature is on.
#[diagnostic::do_not_recommend]
impl crate::Counter for ApiCalls {}
#[diagnostic::do_not_recommend]
impl crate::Counter for Total {}
#[diagnostic::do_not_recommend]
impl crate::Counter for HourlyFixed {}
#[diagnostic::do_not_recommend]
impl crate::Counter for HourlySmooth {}
#[diagnostic::do_not_recommend]
impl crate::Counter for FastFixed {}
#[diagnostic::do_not_recommend]
impl crate::Counter for FastSmooth {}
#[diagnostic::do_not_recommend]
impl crate::Counter for WatchedCount {}
#[diagnostic::do_not_recommend]
impl crate::Counter for WatchedFixed {}
#[diagnostic::do_not_recommend]
impl crate::Counter for WatchedSmooth {}
#[diagnostic::do_not_recommend]
impl crate::Counter for WatchedWindow {}
#[diagnostic::do_not_recommend]
impl crate::Counter for WatchedPace {}

/// A state type of the change-feed checks: `Watched`, notified (its writes announce
/// themselves, so [`Store::watch`] reads them), with a String id and a ttl of seven days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    /// Its status.
    pub status: String,
    /// Which write of a sequence stored it.
    pub step: u64,
}

/// A notified counter: `incr` announces the new count. Its prefix starts with `Watched`'s, so
/// that a feed that routes keys by prefix alone shows up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatchedCount(pub i64);

/// A notified fixed-window rate limit, three calls an hour: its checks announce nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatchedFixed(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for WatchedFixed {
    const QUOTA: Quota = Quota::per_hour(3);
    const POLICY: Policy = Policy::FixedWindow;
}

/// A notified smooth rate limit, three calls an hour: its checks announce nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatchedSmooth(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for WatchedSmooth {
    const QUOTA: Quota = Quota::per_hour(3);
    const POLICY: Policy = Policy::Smooth;
}

/// A notified fixed-window rate limit, ten calls a second: its window ends a second after its
/// first check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatchedWindow(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for WatchedWindow {
    const QUOTA: Quota = Quota::per_second(10);
    const POLICY: Policy = Policy::FixedWindow;
}

/// A notified smooth rate limit, ten calls a second: its key ends a tenth of a second after a
/// lone check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatchedPace(pub i64);
#[diagnostic::do_not_recommend]
impl RateLimit for WatchedPace {
    const QUOTA: Quota = Quota::per_second(10);
    const POLICY: Policy = Policy::Smooth;
}

// The notified types implement `StateKey` and `Notified` by hand rather than through
// `#[derive(StateKey)]` with `#[state(..., notify)]`, whose `Notified` impl would list them in
// users' compiler messages ("the following other types implement trait `Notified`") when the
// `conformance` feature is on; `do_not_recommend` keeps them out, as for the counters above.
// What the derive would write: `#[state(prefix = "watched", id = String, ttl = "7d", notify)]`,
// and `#[state(prefix = "...", id = String, notify)]` for the others.
macro_rules! notified {
    ($($ty:ty => $prefix:literal, $ttl:expr;)*) => {$(
        #[diagnostic::do_not_recommend]
        impl StateKey for $ty {
            type Id = String;
            const PREFIX: &'static str = $prefix;
            const TTL: Option<Duration> = $ttl;
            const NOTIFY: bool = true;
        }
        #[diagnostic::do_not_recommend]
        impl crate::Notified for $ty {}
    )*};
}
notified! {
    Watched => "watched", Some(Duration::from_secs(7 * 24 * 3600));
    WatchedCount => "watched-count", None;
    WatchedFixed => "watched-fixed", None;
    WatchedSmooth => "watched-smooth", None;
    WatchedWindow => "watched-window", None;
    WatchedPace => "watched-pace", None;
}

/// The `Watched` the checks store with `status` and `step`.
pub fn watched(status: &str, step: u64) -> Watched {
    Watched {
        status: status.into(),
        step,
    }
}

/// The `Session` the checks store for `n`.
pub fn session(n: i64) -> Session {
    Session {
        cart: vec![format!("item-{n}"), "book".into()],
        updated_at: n,
    }
}

fn writable<B: Backend + Clone>(backend: &B) -> Store<B> {
    Store::new(backend.clone()).enable_set().enable_remove()
}

const THIRTY_MINUTES: Duration = Duration::from_secs(30 * 60);

/// Checks: round trip.
pub async fn round_trip<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    assert_eq!(store.get::<Session>(42).await.unwrap(), None);
    assert!(!store.exists::<Session>(42).await.unwrap());

    store.set::<Session>(42, &session(1)).await.unwrap();
    assert_eq!(store.get::<Session>(&42).await.unwrap(), Some(session(1)));
    assert!(store.exists::<Session>(42).await.unwrap());
    assert_eq!(
        store.get::<Marker>(42).await.unwrap(),
        None,
        "prefixes are separate"
    );

    store.set::<Session>(42, &session(2)).await.unwrap();
    assert_eq!(
        store.get::<Session>(42).await.unwrap(),
        Some(session(2)),
        "set overwrites"
    );

    assert!(store.remove::<Session>(42).await.unwrap());
    assert!(
        !store.remove::<Session>(42).await.unwrap(),
        "second remove finds nothing"
    );
    assert_eq!(store.get::<Session>(42).await.unwrap(), None);
    assert!(!store.exists::<Session>(42).await.unwrap());
}

/// Checks: writes and removes are opt in.
pub async fn writes_and_removes_are_opt_in<B: Backend + Clone>(backend: B) {
    let read_only = Store::new(backend.clone());
    let err = read_only.set::<Session>(1, &session(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "set",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("enable_set"), "{err}");
    let err = read_only
        .set_with_ttl::<Session>(1, &session(1), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "set",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !read_only.exists::<Session>(1).await.unwrap(),
        "nothing written"
    );

    let writer = Store::new(backend.clone()).enable_set();
    writer.set::<Session>(1, &session(1)).await.unwrap();
    let err = writer.remove::<Session>(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "remove",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("enable_remove"), "{err}");
    assert_eq!(
        read_only.get::<Session>(1).await.unwrap(),
        Some(session(1)),
        "reads are on by default and the refused remove kept the value"
    );
}

/// Checks: set applies the type ttl.
pub async fn set_applies_the_type_ttl<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Session>(7, &session(7)).await.unwrap();
    let left = store
        .ttl::<Session>(7)
        .await
        .unwrap()
        .expect("a session expires");
    assert!(
        left <= THIRTY_MINUTES && left > THIRTY_MINUTES - Duration::from_secs(5),
        "{left:?}"
    );

    let job_id = ("build".to_string(), 1);
    store
        .set::<Job>(
            &job_id,
            &Job {
                status: "queued".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.ttl::<Job>(&job_id).await.unwrap(),
        None,
        "no ttl: no expiry"
    );
    assert_eq!(
        store.ttl::<Session>(999).await.unwrap(),
        None,
        "missing key"
    );
}

/// Checks: set resets the expiry to the types.
pub async fn set_resets_the_expiry_to_the_types<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    // A type without ttl: a plain set clears an expiry set earlier.
    let job_id = ("deploy".to_string(), 2);
    let job = Job {
        status: "queued".into(),
    };
    store
        .set_with_ttl::<Job>(&job_id, &job, Duration::from_secs(60))
        .await
        .unwrap();
    let left = store
        .ttl::<Job>(&job_id)
        .await
        .unwrap()
        .expect("expiry set");
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(55),
        "{left:?}"
    );
    store.set::<Job>(&job_id, &job).await.unwrap();
    assert_eq!(store.ttl::<Job>(&job_id).await.unwrap(), None);

    // A type with ttl: a plain set replaces a custom expiry with the type's.
    store
        .set_with_ttl::<Session>(8, &session(8), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(store.ttl::<Session>(8).await.unwrap().unwrap() <= Duration::from_secs(5));
    store.set::<Session>(8, &session(8)).await.unwrap();
    assert!(store.ttl::<Session>(8).await.unwrap().unwrap() > Duration::from_secs(29 * 60));
}

/// Uses tokio's clock: real time on Redis, paused time on the memory backend.
pub async fn values_expire<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store
        .set_with_ttl::<Session>(5, &session(5), Duration::from_millis(150))
        .await
        .unwrap();
    store.set::<Session>(6, &session(6)).await.unwrap();
    assert!(store.exists::<Session>(5).await.unwrap());
    let left = store.ttl::<Session>(5).await.unwrap().unwrap();
    assert!(left <= Duration::from_millis(150), "{left:?}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get::<Session>(5).await.unwrap(), None);
    assert!(!store.exists::<Session>(5).await.unwrap());
    assert_eq!(store.ttl::<Session>(5).await.unwrap(), None);
    assert!(
        !store.remove::<Session>(5).await.unwrap(),
        "an expired key is gone"
    );
    assert_eq!(
        store.get::<Session>(6).await.unwrap(),
        Some(session(6)),
        "others stay"
    );
}

/// Checks: invalid ttls are rejected.
pub async fn invalid_ttls_are_rejected<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for ttl in [Duration::ZERO, Duration::MAX] {
        let err = store
            .set_with_ttl::<Session>(3, &session(3), ttl)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTtl { .. }), "{ttl:?}: {err:?}");
        assert!(err.to_string().contains("session:3"), "{err}");
    }
    assert!(
        !store.exists::<Session>(3).await.unwrap(),
        "nothing written"
    );
    // The derive's ceiling is the store's: the longest ttl that compiles is written.
    store.set::<Forever>(1, &Forever(1)).await.unwrap();
    let left = store.ttl::<Forever>(1).await.unwrap().expect("expires");
    assert!(
        left > Duration::from_secs(2_305_843_009_213_693 - 60),
        "{left:?}"
    );
    // A fraction of a millisecond rounds up instead of becoming "no expiry" or an error.
    store
        .set_with_ttl::<Session>(3, &session(3), Duration::from_micros(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store.exists::<Session>(3).await.unwrap());
}

/// Checks: namespaces separate services.
pub async fn namespaces_separate_services<B: Backend + Clone>(backend: B) {
    let plain = writable(&backend);
    let users = writable(&backend).namespace("user-service");
    let billing = writable(&backend).namespace("billing");
    plain.set::<Session>(1, &session(10)).await.unwrap();
    users.set::<Session>(1, &session(11)).await.unwrap();
    billing.set::<Session>(1, &session(12)).await.unwrap();
    assert_eq!(plain.get::<Session>(1).await.unwrap(), Some(session(10)));
    assert_eq!(users.get::<Session>(1).await.unwrap(), Some(session(11)));
    assert_eq!(billing.get::<Session>(1).await.unwrap(), Some(session(12)));
    assert_eq!(
        users.full_key::<Session>(1).unwrap(),
        "user-service:session:1"
    );
    assert_eq!(plain.full_key::<Session>(1).unwrap(), "session:1");
    assert!(users.remove::<Session>(1).await.unwrap());
    assert_eq!(billing.get::<Session>(1).await.unwrap(), Some(session(12)));
}

/// Checks: invalid namespaces touch nothing.
pub async fn invalid_namespaces_touch_nothing<B: Backend + Clone>(backend: B) {
    for bad in ["", "a:b", "svc*", "{svc}", "my svc", "sérvice"] {
        let store = writable(&backend).namespace(bad);
        let err = store.set::<Session>(1, &session(1)).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidNamespace { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("invalid namespace"), "{err}");
        assert!(matches!(
            store.get::<Session>(1).await.unwrap_err(),
            Error::InvalidNamespace { .. }
        ));
        assert!(matches!(
            store.remove::<Session>(1).await.unwrap_err(),
            Error::InvalidNamespace { .. }
        ));
        assert!(writable(&backend).try_namespace(bad).is_err());
        // Where a careless implementation would have written.
        assert!(!backend.exists(&format!("{bad}:session:1")).await.unwrap());
        assert!(!backend.exists("session:1").await.unwrap());
    }
}

/// Checks: ids are escaped and never collide.
pub async fn ids_are_escaped_and_never_collide<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let ids = [
        ("a:b".to_string(), 7),
        ("a%3Ab".to_string(), 7),
        ("a".to_string(), 7),
        (String::new(), 7),
        ("*".to_string(), 7),
        ("{tag} [x]?\\".to_string(), 7),
        ("ünïcødé 🦀".to_string(), 7),
        ("a".to_string(), 8),
    ];
    for (n, id) in ids.iter().enumerate() {
        let job = Job {
            status: format!("job-{n}"),
        };
        store.set::<Job>(id, &job).await.unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        let job = store.get::<Job>(id).await.unwrap().expect("stored");
        assert_eq!(job.status, format!("job-{n}"), "{id:?}");
    }
    assert_eq!(store.full_key::<Job>(&ids[0]).unwrap(), "job:a%3Ab:7");
    assert_eq!(store.full_key::<Job>(&ids[1]).unwrap(), "job:a%253Ab:7");
}

/// Checks: corrupt values are decode errors.
pub async fn corrupt_values_are_decode_errors<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    for (n, raw) in [
        &b"{not json"[..],
        br#"{"cart": "not a list", "updated_at": 1}"#,
        br#"[1, 2, 3]"#,
        b"\xff\xfe\x00garbage",
        b"",
    ]
    .into_iter()
    .enumerate()
    {
        let key = store.full_key::<Session>(n as u64).unwrap();
        backend
            .set(&key, raw.to_vec(), Session::TTL, None)
            .await
            .unwrap();
        let err = store.get::<Session>(n as u64).await.unwrap_err();
        let Error::Decode { key: reported, .. } = &err else {
            panic!("expected a decode error for {raw:?}, got {err:?}");
        };
        assert_eq!(reported, &format!("svc:session:{n}"));
        assert!(err.to_string().contains(&key), "{err}");
        assert_eq!(
            backend.get(&key).await.unwrap().as_deref(),
            Some(raw),
            "value kept"
        );
    }
    // The store keeps working.
    store.set::<Session>(0, &session(0)).await.unwrap();
    assert_eq!(store.get::<Session>(0).await.unwrap(), Some(session(0)));
}

/// Checks: unencodable values write nothing.
pub async fn unencodable_values_write_nothing<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let value = Unencodable {
        by_pair: HashMap::from([((1, 2), 3)]),
    };
    let err = store.set::<Unencodable>(1, &value).await.unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    assert!(err.to_string().contains("unencodable:1"), "{err}");
    assert!(!store.exists::<Unencodable>(1).await.unwrap());
}

/// Many tasks share one store (and, on Redis, one connection) without mixing answers.
pub async fn concurrent_tasks_share_a_store<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20u64 {
                let id = task * 1000 + n;
                store.set::<Session>(id, &session(id as i64)).await.unwrap();
                assert_eq!(
                    store.get::<Session>(id).await.unwrap(),
                    Some(session(id as i64))
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for task in 0..64u64 {
        for n in 0..20u64 {
            assert!(store.exists::<Session>(task * 1000 + n).await.unwrap());
        }
    }
}

// ---- counters -------------------------------------------------------------------------------

/// Checks: incr counts and starts the window once.
pub async fn incr_counts_and_starts_the_window_once<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let user = "alice".to_string();
    assert_eq!(store.incr::<ApiCalls>(&user, 1).await.unwrap(), 1);
    let first = store
        .ttl::<ApiCalls>(&user)
        .await
        .unwrap()
        .expect("window started");
    assert!(
        first <= Duration::from_secs(60) && first > Duration::from_secs(59),
        "{first:?}"
    );
    assert_eq!(
        store.get::<ApiCalls>(&user).await.unwrap(),
        Some(ApiCalls(1))
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.incr::<ApiCalls>(&user, 4).await.unwrap(), 5);
    assert_eq!(store.incr::<ApiCalls>(&user, -5).await.unwrap(), 0);
    // Back at zero is not a new window: the expiry keeps running down.
    assert_eq!(store.incr::<ApiCalls>(&user, 1).await.unwrap(), 1);
    let later = store.ttl::<ApiCalls>(&user).await.unwrap().unwrap();
    assert!(
        later <= first - Duration::from_millis(40),
        "{first:?} then {later:?}"
    );
    assert_eq!(
        store.get::<ApiCalls>(&user).await.unwrap(),
        Some(ApiCalls(1))
    );

    // A counter type without ttl never expires.
    assert_eq!(store.incr::<Total>(1, 7).await.unwrap(), 7);
    assert_eq!(store.ttl::<Total>(1).await.unwrap(), None);
}

/// Checks: incr is a write.
pub async fn incr_is_a_write<B: Backend + Clone>(backend: B) {
    let err = Store::new(backend.clone())
        .incr::<Total>(1, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "incr",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!backend.exists("total:1").await.unwrap());
}

/// Checks: incr refuses non integers and overflow.
pub async fn incr_refuses_non_integers_and_overflow<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for (raw, by) in [
        (&b"{\"a\":1}"[..], 1),
        (b"1.5", 1),
        (b" 7", 1),
        (b"007", 1),
        (b"9223372036854775807", 1),
        (b"-9223372036854775808", -1),
    ] {
        backend
            .set("total:2", raw.to_vec(), None, None)
            .await
            .unwrap();
        let err = store.incr::<Total>(2, by).await.unwrap_err();
        let Error::InvalidKey { key, .. } = &err else {
            panic!("{raw:?}: expected InvalidKey, got {err:?}");
        };
        assert_eq!(key, "total:2");
        assert_eq!(
            backend.get("total:2").await.unwrap().as_deref(),
            Some(raw),
            "unchanged"
        );
    }
}

/// Checks: concurrent increments are exact.
pub async fn concurrent_increments_are_exact<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    store.incr::<Total>(3, 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.get::<Total>(3).await.unwrap(), Some(Total(64 * 50)));
}

// ---- rate limits ----------------------------------------------------------------------------

async fn allowed_of_concurrent_checks<B: Backend + Clone, S: RateLimit<Id = String>>(
    store: &Store<B>,
) -> usize {
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..5 {
                    if store
                        .check::<S>("client".to_string())
                        .await
                        .unwrap()
                        .allowed
                    {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    allowed
}

/// Checks: rate limits allow exactly the quota under concurrency.
pub async fn rate_limits_allow_exactly_the_quota_under_concurrency<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    assert_eq!(
        allowed_of_concurrent_checks::<B, HourlyFixed>(&store).await,
        100
    );
    assert_eq!(
        allowed_of_concurrent_checks::<B, HourlySmooth>(&store).await,
        100
    );

    let refused = store
        .check::<HourlyFixed>("client".to_string())
        .await
        .unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    assert!(
        refused.retry_after > Duration::from_secs(3500),
        "{refused:?}"
    );
    let refused = store
        .check::<HourlySmooth>("client".to_string())
        .await
        .unwrap();
    assert!(!refused.allowed);
    // One call is replenished every 36 s.
    assert!(
        refused.retry_after > Duration::from_secs(30)
            && refused.retry_after <= Duration::from_secs(36),
        "{refused:?}"
    );
    // Another client has its own quota.
    let other = store
        .check::<HourlyFixed>("other".to_string())
        .await
        .unwrap();
    assert!(other.allowed);
    assert_eq!(other.remaining, 99);
}

/// Checks: rate limit checks report what is left.
pub async fn rate_limit_checks_report_what_is_left<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for expected in (0..10).rev() {
        let fixed = store.check::<FastFixed>(1).await.unwrap();
        assert!(fixed.allowed);
        assert_eq!(fixed.remaining, expected);
        assert_eq!(fixed.retry_after, Duration::ZERO);
        assert!(fixed.reset_after <= Duration::from_secs(1));
        let smooth = store.check::<FastSmooth>(1).await.unwrap();
        assert!(smooth.allowed);
        assert_eq!(smooth.remaining, expected);
    }
    let fixed = store.check::<FastFixed>(1).await.unwrap();
    assert!(!fixed.allowed && fixed.retry_after > Duration::ZERO);
    let smooth = store.check::<FastSmooth>(1).await.unwrap();
    assert!(!smooth.allowed);
    assert!(
        smooth.retry_after > Duration::ZERO && smooth.retry_after <= Duration::from_millis(100),
        "{smooth:?}"
    );

    // Refused calls are not counted, and the limit's state expires with its window.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(!store.exists::<FastFixed>(1).await.unwrap(), "window over");
    assert!(
        !store.exists::<FastSmooth>(1).await.unwrap(),
        "fully replenished"
    );
    assert_eq!(store.check::<FastFixed>(1).await.unwrap().remaining, 9);
    assert_eq!(store.check::<FastSmooth>(1).await.unwrap().remaining, 9);

    let err = Store::new(backend.clone())
        .check::<FastFixed>(2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "check",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Values under a limit's key that are not Redis integers are errors on every backend, by the
/// same rule as `incr`, and are left as they are.
pub async fn rate_limits_refuse_values_that_are_not_counters<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    for raw in [
        &b"007"[..],
        b"-0",
        b"+1",
        b"1e3",
        b"1.5",
        b"abc",
        b"99999999999999999999",
        b"",
    ] {
        for key in ["fast-fixed:1", "fast-smooth:1"] {
            backend.set(key, raw.to_vec(), None, None).await.unwrap();
        }
        let fixed = store.check::<FastFixed>(1).await.unwrap_err();
        let smooth = store.check::<FastSmooth>(1).await.unwrap_err();
        for (err, key) in [(fixed, "fast-fixed:1"), (smooth, "fast-smooth:1")] {
            assert!(
                matches!(err, Error::InvalidKey { key: ref k, .. } if k == key),
                "{raw:?}: {err:?}"
            );
            assert_eq!(
                backend.get(key).await.unwrap().as_deref(),
                Some(raw),
                "unchanged"
            );
        }
    }
    // Integers written by others count: a window already at 9 allows one more call.
    backend
        .set("fast-fixed:2", b"9".to_vec(), None, None)
        .await
        .unwrap();
    let decision = store.check::<FastFixed>(2).await.unwrap();
    assert!(decision.allowed && decision.remaining == 0, "{decision:?}");
    assert!(!store.check::<FastFixed>(2).await.unwrap().allowed);
    assert!(
        store.ttl::<FastFixed>(2).await.unwrap().is_some(),
        "a window was given"
    );
}

/// The fixed window lets a client spend one window's quota at its end and the next window's at
/// the start of the next; the smooth policy does not.
pub async fn smooth_rate_limits_have_no_window_edge<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    async fn burst<B: Backend, S: RateLimit<Id = u32>>(store: &Store<B>, calls: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..calls {
            allowed += usize::from(store.check::<S>(7).await.unwrap().allowed);
        }
        allowed
    }
    // One call opens the fixed window; the rest of its quota goes just before it ends, the next
    // window's just after.
    assert_eq!(burst::<B, FastFixed>(&store, 1).await, 1);
    assert_eq!(burst::<B, FastSmooth>(&store, 1).await, 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    // tokio's clock: the paused clock of the memory suite, real time on Redis.
    let edge_started = tokio::time::Instant::now();
    let fixed_before = burst::<B, FastFixed>(&store, 20).await;
    let smooth_before = burst::<B, FastSmooth>(&store, 20).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let fixed_after = burst::<B, FastFixed>(&store, 20).await;
    let smooth_after = burst::<B, FastSmooth>(&store, 20).await;
    let edge = edge_started.elapsed();

    assert_eq!(fixed_before, 9);
    assert_eq!(fixed_after, 10);
    // GCRA allows at most its burst plus one call per 100 ms of the span.
    let bound = 10 + (edge.as_millis() / 100) as usize + 1;
    assert!(
        smooth_before + smooth_after <= bound,
        "smooth allowed {smooth_before} + {smooth_after} in {edge:?}"
    );
    assert!(fixed_before + fixed_after > smooth_before + smooth_after);
}

// ---- compare-and-set ------------------------------------------------------------------------

/// Checks: update changes only what the closure accepts.
pub async fn update_changes_only_what_the_closure_accepts<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let claim = |current: Option<Task>| match current {
        Some(mut task) if task.status == "queued" => {
            task.status = "running".into();
            task.runs += 1;
            Some(task)
        }
        _ => None,
    };
    assert_eq!(
        store.update::<Task>(1, claim).await.unwrap(),
        None,
        "nothing to claim"
    );
    assert!(
        !store.exists::<Task>(1).await.unwrap(),
        "None creates nothing"
    );

    let queued = Task {
        status: "queued".into(),
        runs: 0,
    };
    assert!(store.set_if_absent::<Task>(1, &queued).await.unwrap());
    let running = Task {
        status: "running".into(),
        runs: 1,
    };
    assert_eq!(
        store.update::<Task>(1, claim).await.unwrap(),
        Some(running.clone())
    );
    // A second claim sees it running, leaves it, and returns what is stored.
    assert_eq!(
        store.update::<Task>(1, claim).await.unwrap(),
        Some(running.clone())
    );
    assert_eq!(store.get::<Task>(1).await.unwrap(), Some(running));

    // Creating through update gives the type's ttl.
    let created = store
        .update::<Task>(2, |current| {
            assert!(current.is_none());
            Some(Task {
                status: "new".into(),
                runs: 0,
            })
        })
        .await
        .unwrap();
    assert_eq!(created.unwrap().status, "new");
    let left = store.ttl::<Task>(2).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(3590), "{left:?}");

    let err = Store::new(backend.clone())
        .update::<Task>(3, |_| {
            Some(Task {
                status: "x".into(),
                runs: 0,
            })
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "update",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!store.exists::<Task>(3).await.unwrap());
}

/// Checks: `touch` and `get_and_touch` reset a key's expiry to its type's `ttl` from now (or
/// clear it, for a type without `ttl`) and leave the value as it is; a missing key stays
/// missing; both are writes.
pub async fn touch_slides_the_expiry<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let short = Duration::from_secs(60);
    store
        .set_with_ttl::<Session>(1, &session(1), short)
        .await
        .unwrap();
    assert!(store.touch::<Session>(1).await.unwrap());
    let left = store.ttl::<Session>(1).await.unwrap().expect("expires");
    assert!(left > short && left <= THIRTY_MINUTES, "touch: {left:?}");
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));

    store
        .set_with_ttl::<Session>(2, &session(2), short)
        .await
        .unwrap();
    assert_eq!(
        store.get_and_touch::<Session>(2).await.unwrap(),
        Some(session(2))
    );
    let left = store.ttl::<Session>(2).await.unwrap().expect("expires");
    assert!(
        left > short && left <= THIRTY_MINUTES,
        "get_and_touch: {left:?}"
    );

    assert!(!store.touch::<Session>(3).await.unwrap());
    assert_eq!(store.get_and_touch::<Session>(3).await.unwrap(), None);
    assert!(
        !store.exists::<Session>(3).await.unwrap(),
        "touch created a key"
    );

    // A type without `ttl`: touching clears an expiry given by `set_with_ttl`.
    store
        .set_with_ttl::<Marker>(1, &Marker(1), short)
        .await
        .unwrap();
    assert!(store.touch::<Marker>(1).await.unwrap());
    assert_eq!(store.ttl::<Marker>(1).await.unwrap(), None);
    store
        .set_with_ttl::<Marker>(2, &Marker(2), short)
        .await
        .unwrap();
    assert_eq!(
        store.get_and_touch::<Marker>(2).await.unwrap(),
        Some(Marker(2))
    );
    assert_eq!(store.ttl::<Marker>(2).await.unwrap(), None);

    let read_only = Store::new(backend.clone());
    assert!(matches!(
        read_only.touch::<Session>(1).await,
        Err(Error::Disabled { .. })
    ));
    assert!(matches!(
        read_only.get_and_touch::<Session>(1).await,
        Err(Error::Disabled { .. })
    ));
}

/// Checks: `update_and_touch` gives a value it replaces the type's `ttl` from now (where
/// `update` keeps the remaining expiry); a change the closure declines writes nothing and leaves
/// the expiry; a value it creates gets the type's `ttl`.
pub async fn update_and_touch_slides_the_expiry<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let short = Duration::from_secs(60);
    let bump = |s: Option<Session>| {
        s.map(|mut s| {
            s.updated_at += 1;
            s
        })
    };
    store
        .set_with_ttl::<Session>(1, &session(1), short)
        .await
        .unwrap();
    store.update::<Session>(1, bump).await.unwrap();
    let left = store.ttl::<Session>(1).await.unwrap().expect("expires");
    assert!(left <= short, "update: {left:?}");
    let now = store.update_and_touch::<Session>(1, bump).await.unwrap();
    assert!(now.is_written());
    assert_eq!(now.into_value().map(|s| s.updated_at), Some(3));
    let left = store.ttl::<Session>(1).await.unwrap().expect("expires");
    assert!(
        left > short && left <= THIRTY_MINUTES,
        "update_and_touch: {left:?}"
    );

    store
        .set_with_ttl::<Session>(2, &session(2), short)
        .await
        .unwrap();
    let now = store
        .update_and_touch::<Session>(2, |_| None)
        .await
        .unwrap();
    assert_eq!(now, crate::Updated::Unchanged(Some(session(2))));
    let left = store.ttl::<Session>(2).await.unwrap().expect("expires");
    assert!(
        left <= short,
        "a declined change extended the expiry: {left:?}"
    );

    store
        .update_and_touch::<Session>(3, |_| Some(session(3)))
        .await
        .unwrap();
    let left = store.ttl::<Session>(3).await.unwrap().expect("expires");
    assert!(left > short && left <= THIRTY_MINUTES, "created: {left:?}");
}

/// Checks: `update_outcome` says whether the closure's value was written, without comparing
/// values; of many workers claiming one queued job at once, exactly one hears `Written`.
pub async fn update_outcome_says_what_happened<B: Backend + Clone>(backend: B) {
    use crate::Updated;
    let store = writable(&backend);
    let task = |status: &str, runs: u64| Task {
        status: status.into(),
        runs,
    };
    assert_eq!(
        store.update_outcome::<Task>(1, |_| None).await.unwrap(),
        Updated::Unchanged(None)
    );
    assert!(
        !store.exists::<Task>(1).await.unwrap(),
        "declined, yet written"
    );
    assert_eq!(
        store
            .update_outcome::<Task>(1, |_| Some(task("queued", 0)))
            .await
            .unwrap(),
        Updated::Written(task("queued", 0))
    );
    assert_eq!(
        store.update_outcome::<Task>(1, |_| None).await.unwrap(),
        Updated::Unchanged(Some(task("queued", 0)))
    );

    let claims: Vec<_> = (0..32u64)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update_outcome::<Task>(1, move |current| match current {
                        Some(t) if t.status == "queued" => Some(Task {
                            status: "running".into(),
                            runs: worker + 1,
                        }),
                        _ => None,
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for claim in claims {
        match claim.await.unwrap() {
            Updated::Written(t) => winners.push(t),
            Updated::Unchanged(current) => {
                assert_eq!(current.map(|t| t.status), Some("running".into()));
            }
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        store.get::<Task>(1).await.unwrap(),
        Some(winners[0].clone())
    );
}

/// Checks: `remove_if` removes a value only when the check accepts it, atomically: of many
/// tasks removing one finished job at once, exactly one hears `true`. It is a delete (needs
/// `enable_remove`). An engine without a compare-and-delete says
/// [`Error::Unsupported`], naming the operation.
pub async fn remove_if_removes_only_what_the_check_accepts<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let task = |status: &str| Task {
        status: status.into(),
        runs: 1,
    };
    store.set::<Task>(1, &task("done")).await.unwrap();
    match store.remove_if::<Task>(1, |t| t.status == "done").await {
        Err(Error::Unsupported { operation, .. }) => {
            assert_eq!(operation, "remove_if");
            assert!(
                store.exists::<Task>(1).await.unwrap(),
                "refused, yet removed"
            );
            return;
        }
        other => assert!(other.unwrap(), "a finished task was not removed"),
    }
    assert!(!store.exists::<Task>(1).await.unwrap());
    assert!(
        !store.remove_if::<Task>(1, |_| true).await.unwrap(),
        "removed a value that does not exist"
    );
    store.set::<Task>(1, &task("running")).await.unwrap();
    assert!(
        !store
            .remove_if::<Task>(1, |t| t.status == "done")
            .await
            .unwrap()
    );
    assert_eq!(store.get::<Task>(1).await.unwrap(), Some(task("running")));

    store.set::<Task>(2, &task("done")).await.unwrap();
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .remove_if::<Task>(2, |t| t.status == "done")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut removed = 0;
    for racer in racers {
        removed += usize::from(racer.await.unwrap());
    }
    assert_eq!(removed, 1);

    let no_remove = Store::new(backend.clone()).enable_set();
    no_remove.set::<Task>(3, &task("done")).await.unwrap();
    assert!(matches!(
        no_remove.remove_if::<Task>(3, |_| true).await,
        Err(Error::Disabled { .. })
    ));
    assert!(store.exists::<Task>(3).await.unwrap());
}

/// Checks: the id of a type declared `id = String` can be given as a `&str`, escaped exactly as
/// the `String` is, in single-key calls and in `get_many`/`remove_many`.
pub async fn string_ids_can_be_given_as_str<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let tricky = "a:b *?[]{x}";
    let owned = tricky.to_string();
    assert_eq!(
        store.full_key::<Watched>(tricky).unwrap(),
        store.full_key::<Watched>(&owned).unwrap()
    );
    store
        .set::<Watched>(tricky, &watched("str", 1))
        .await
        .unwrap();
    assert_eq!(
        store.get::<Watched>(&owned).await.unwrap(),
        Some(watched("str", 1))
    );
    assert_eq!(
        store.get::<Watched>(tricky).await.unwrap(),
        Some(watched("str", 1))
    );
    assert_eq!(
        store
            .get_many::<Watched>(&[tricky, "missing"])
            .await
            .unwrap(),
        vec![Some(watched("str", 1)), None]
    );
    assert_eq!(
        store
            .remove_many::<Watched>(["missing", tricky])
            .await
            .unwrap(),
        1
    );
    assert!(!store.exists::<Watched>(owned).await.unwrap());
}

/// Checks: update keeps the remaining expiry.
pub async fn update_keeps_the_remaining_expiry<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let task = Task {
        status: "queued".into(),
        runs: 0,
    };
    store
        .set_with_ttl::<Task>(1, &task, Duration::from_secs(10))
        .await
        .unwrap();
    store
        .update::<Task>(1, |t| {
            t.map(|t| Task {
                runs: t.runs + 1,
                ..t
            })
        })
        .await
        .unwrap();
    let left = store.ttl::<Task>(1).await.unwrap().expect("still expires");
    assert!(
        left <= Duration::from_secs(10),
        "update reset the ttl: {left:?}"
    );
    assert_eq!(store.get::<Task>(1).await.unwrap().unwrap().runs, 1);

    // A key without expiry stays without.
    store
        .set::<Job>(("j".to_string(), 1), &Job { status: "a".into() })
        .await
        .unwrap();
    store
        .update::<Job>(("j".to_string(), 1), |_| Some(Job { status: "b".into() }))
        .await
        .unwrap();
    assert_eq!(store.ttl::<Job>(("j".to_string(), 1)).await.unwrap(), None);
}

/// Checks: update of a corrupt value is a decode error.
pub async fn update_of_a_corrupt_value_is_a_decode_error<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    backend
        .set("task:9", b"{oops".to_vec(), None, None)
        .await
        .unwrap();
    let mut called = false;
    let err = store
        .update::<Task>(9, |_| {
            called = true;
            None
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref key, .. } if key == "task:9"),
        "{err:?}"
    );
    assert!(
        !called,
        "the closure never sees a value that did not decode"
    );
    assert_eq!(
        backend.get("task:9").await.unwrap().as_deref(),
        Some(&b"{oops"[..])
    );
}

/// 64 tasks each add 1 through `update` 50 times: the final count equals the successful
/// updates, so no update was lost.
pub async fn concurrent_updates_lose_nothing<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store
        .set::<Task>(
            5,
            &Task {
                status: "count".into(),
                runs: 0,
            },
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let (mut ok, mut conflicts) = (0u64, 0u64);
                for _ in 0..50 {
                    match store
                        .update::<Task>(5, |t| {
                            t.map(|t| Task {
                                runs: t.runs + 1,
                                ..t
                            })
                        })
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, conflicts)
            })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        let (o, c) = task.await.unwrap();
        ok += o;
        conflicts += c;
    }
    let runs = store.get::<Task>(5).await.unwrap().unwrap().runs;
    assert_eq!(runs, ok, "{conflicts} conflicts");
    assert_eq!(ok + conflicts, 64 * 50);
    assert!(ok > 0);
}

/// Checks: set if absent never overwrites.
pub async fn set_if_absent_never_overwrites<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    assert!(
        store
            .set_if_absent::<Session>(1, &session(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_if_absent::<Session>(1, &session(2))
            .await
            .unwrap()
    );
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));
    let left = store.ttl::<Session>(1).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(29 * 60), "{left:?}");
    let err = Store::new(backend.clone())
        .set_if_absent::<Session>(2, &session(2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disabled { .. }), "{err:?}");

    // Exactly one of many concurrent creators wins.
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .set_if_absent::<Session>(3, &session(n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

// ---- bulk -----------------------------------------------------------------------------------

/// Checks: bulk reads and writes.
pub async fn bulk_reads_and_writes<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("bulk");
    let items: Vec<(u64, Session)> = (0..10).map(|n| (n, session(n as i64))).collect();
    store.set_many::<Session>(&items).await.unwrap();
    store
        .set_many::<Session>(vec![(100u64, session(100))])
        .await
        .unwrap();
    store
        .set_many::<Session>(Vec::<(u64, Session)>::new())
        .await
        .unwrap();

    let ids = vec![9u64, 50, 0, 100, 9];
    let got = store.get_many::<Session>(&ids).await.unwrap();
    assert_eq!(
        got,
        vec![
            Some(session(9)),
            None,
            Some(session(0)),
            Some(session(100)),
            Some(session(9))
        ]
    );
    assert!(
        store
            .get_many::<Session>(Vec::<u64>::new())
            .await
            .unwrap()
            .is_empty()
    );
    let left = store.ttl::<Session>(3).await.unwrap().unwrap();
    assert!(
        left > Duration::from_secs(29 * 60),
        "each key has the type's ttl: {left:?}"
    );

    assert_eq!(
        store
            .remove_many::<Session>([0u64, 1, 2, 50])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .remove_many::<Session>(Vec::<u64>::new())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.get_many::<Session>([0u64, 3]).await.unwrap(),
        vec![None, Some(session(3))]
    );

    let read_only = Store::new(backend.clone()).namespace("bulk");
    assert!(matches!(
        read_only.set_many::<Session>(&items).await.unwrap_err(),
        Error::Disabled {
            operation: "set_many",
            ..
        }
    ));
    assert!(matches!(
        read_only.remove_many::<Session>([3u64]).await.unwrap_err(),
        Error::Disabled {
            operation: "remove_many",
            ..
        }
    ));
    assert!(read_only.exists::<Session>(3).await.unwrap());
}

/// Checks: bulk errors name the key.
pub async fn bulk_errors_name_the_key<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Session>(1, &session(1)).await.unwrap();
    backend
        .set("session:2", b"not json".to_vec(), Session::TTL, None)
        .await
        .unwrap();
    let err = store.get_many::<Session>([1u64, 2]).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref key, .. } if key == "session:2"),
        "{err:?}"
    );

    // One value that cannot be encoded: nothing is written.
    let items = vec![
        (
            1u8,
            Unencodable {
                by_pair: HashMap::new(),
            },
        ),
        (
            2u8,
            Unencodable {
                by_pair: HashMap::from([((1, 1), 1)]),
            },
        ),
    ];
    let err = store.set_many::<Unencodable>(&items).await.unwrap_err();
    assert!(
        matches!(err, Error::Encode { ref key, .. } if key == "unencodable:2"),
        "{err:?}"
    );
    assert!(!store.exists::<Unencodable>(1).await.unwrap());
}

// ---- listing ids ----------------------------------------------------------------------------

async fn collect_ids<B: Backend, S: StateKey>(store: &Store<B>) -> (Vec<S::Id>, Vec<Error>)
where
    S::Id: Ord,
{
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    let mut stream = std::pin::pin!(store.ids::<S>());
    while let Some(item) = stream.next().await {
        match item {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(e),
        }
    }
    ids.sort();
    (ids, errors)
}

/// Checks: ids lists the type in its namespace.
pub async fn ids_lists_the_type_in_its_namespace<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    for n in [3u64, 1, 2, 1_000_000] {
        store.set::<Session>(n, &session(0)).await.unwrap();
    }
    store.set::<Marker>(9, &Marker(9)).await.unwrap();
    writable(&backend)
        .set::<Session>(8, &session(0))
        .await
        .unwrap();
    writable(&backend)
        .namespace("other")
        .set::<Session>(7, &session(0))
        .await
        .unwrap();

    let (ids, errors) = collect_ids::<B, Session>(&store).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, vec![1, 2, 3, 1_000_000]);

    let nasty: BTreeSet<(String, u32)> = [
        ("a:b", 1),
        ("*", 2),
        ("[x]?", 3),
        ("{tag}", 4),
        ("", 5),
        ("100%", 6),
        ("back\\slash", 7),
        ("ünï 🦀", 8),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect();
    for id in &nasty {
        store
            .set::<Job>(id, &Job { status: "x".into() })
            .await
            .unwrap();
    }
    let (ids, errors) = collect_ids::<B, Job>(&store).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, nasty.into_iter().collect::<Vec<_>>());
}

/// Checks: ids report foreign keys and go on.
pub async fn ids_report_foreign_keys_and_go_on<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    store.set::<Session>(1, &session(0)).await.unwrap();
    store.set::<Session>(2, &session(0)).await.unwrap();
    for foreign in ["session:abc", "session:1:2", "session:007", "session:"] {
        backend
            .set(foreign, b"{}".to_vec(), Session::TTL, None)
            .await
            .unwrap();
    }
    let (ids, errors) = collect_ids::<B, Session>(&store).await;
    assert_eq!(ids, vec![1, 2]);
    let mut bad: Vec<String> = errors
        .into_iter()
        .map(|e| match e {
            Error::InvalidKey { key, .. } => key,
            other => panic!("{other:?}"),
        })
        .collect();
    bad.sort();
    assert_eq!(
        bad,
        vec!["session:", "session:007", "session:1:2", "session:abc"]
    );

    let invalid = writable(&backend).namespace("bad ns");
    let (ids, errors) = collect_ids::<B, Session>(&invalid).await;
    assert!(ids.is_empty());
    assert!(
        matches!(errors.as_slice(), [Error::InvalidNamespace { .. }]),
        "{errors:?}"
    );
}

/// Checks: ids walk large key spaces.
pub async fn ids_walk_large_key_spaces<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let items: Vec<(u64, Marker)> = (0..2_500).map(|n| (n, Marker(n))).collect();
    store.set_many::<Marker>(&items).await.unwrap();
    store
        .set_many::<Session>((0..500u64).map(|n| (n, session(0))))
        .await
        .unwrap();
    let (ids, errors) = collect_ids::<B, Marker>(&store).await;
    assert!(errors.is_empty());
    assert_eq!(ids, (0..2_500).collect::<Vec<u64>>());
}

/// Checks: [`Store::usage`] counts the keys of its namespace per prefix, exactly, with and
/// without expiry, and nothing of other namespaces; it reads only, and reports progress.
pub async fn usage_counts_the_namespace_per_prefix<B: Backend + Clone>(backend: B) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let store = writable(&backend).namespace("usage");
    store
        .set_many::<Session>((0..300u64).map(|n| (n, session(n as i64))))
        .await
        .unwrap();
    let job = Job {
        status: "queued".into(),
    };
    let jobs: Vec<((String, u32), Job)> = (0..120u32)
        .map(|n| (("a:b*[c]".to_string(), n), job.clone()))
        .collect();
    store.set_many::<Job>(&jobs).await.unwrap();
    // A key of the namespace written by another client, without a prefix.
    backend
        .set("usage:loose", b"x".to_vec(), None, None)
        .await
        .unwrap();
    // Other namespaces, one of them sharing the start of the name, and none.
    let other = writable(&backend).namespace("usage2");
    other.set::<Session>(1, &session(1)).await.unwrap();
    writable(&backend)
        .set::<Session>(1, &session(1))
        .await
        .unwrap();

    let reports = Arc::new(AtomicU64::new(0));
    let options = crate::UsageOptions::new()
        .scan_count(100)
        .sample(50)
        .on_progress({
            let reports = reports.clone();
            move |_| {
                reports.fetch_add(1, Ordering::Relaxed);
            }
        });
    // A read: a store without `enable_set` may ask.
    let reader = Store::new(backend.clone()).namespace("usage");
    let usage = reader.usage_with(options).await.unwrap();
    assert!(usage.complete, "{usage:?}");
    assert!(reports.load(Ordering::Relaxed) >= 1, "progress reported");
    assert_eq!((usage.keys, usage.without_expiry), (421, 121), "{usage:?}");
    assert_eq!(usage.prefixes.len(), 3, "{usage:?}");

    let sessions = usage.prefix("session").expect("a row for sessions");
    assert_eq!((sessions.keys, sessions.without_expiry), (300, 0));
    assert!((50..=300).contains(&sessions.sampled), "{sessions:?}");
    assert!(sessions.estimated_bytes > 0, "{sessions:?}");
    let ttl = sessions.ttl.expect("sessions expire");
    assert!(
        ttl.min > Duration::from_secs(29 * 60) && ttl.max <= Duration::from_secs(30 * 60),
        "{ttl:?}"
    );
    let jobs = usage.prefix("job").expect("a row for jobs");
    assert_eq!((jobs.keys, jobs.without_expiry, jobs.ttl), (120, 120, None));
    let loose = usage
        .prefix(crate::PrefixUsage::NO_PREFIX)
        .expect("a row for keys without prefix");
    assert_eq!((loose.keys, loose.without_expiry), (1, 1));
}

// ---- size limits ----------------------------------------------------------------------------

/// Checks: large values and ids round trip.
pub async fn large_values_and_ids_round_trip<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let big = Session {
        cart: vec!["x".repeat(10 * 1024 * 1024)],
        updated_at: 1,
    };
    store.set::<Session>(1, &big).await.unwrap();
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(big));

    // A 10 KB id full of characters that must be escaped.
    let long_id = (
        format!("{}:{}", "a".repeat(5_000), "*{} ".repeat(1_250)),
        7u32,
    );
    let job = Job {
        status: "long".into(),
    };
    store.set::<Job>(&long_id, &job).await.unwrap();
    assert_eq!(store.get::<Job>(&long_id).await.unwrap(), Some(job));
    let (ids, errors) = collect_ids::<B, Job>(&store).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, vec![long_id]);
}

// ---- change feeds ---------------------------------------------------------------------------

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of the key, or of its `{hash tag}`,
/// modulo 16384), for checks whose keys must share one.
fn redis_cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// How long a feed check waits for the next item before it fails: a change that never comes
/// fails the check instead of hanging it. On a paused clock the wait passes at once when nothing
/// else is scheduled.
const FEED_WAIT: Duration = Duration::from_secs(5);

/// The next item of `changes`, or a panic naming `what` when none comes within [`FEED_WAIT`] or
/// the feed ends.
async fn next_item<S: StateKey>(changes: &mut Changes<S>, what: &str) -> crate::Result<Change<S>> {
    match tokio::time::timeout(FEED_WAIT, changes.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("{what}: the change feed ended"),
        Err(_) => panic!("{what}: no change arrived within {FEED_WAIT:?}"),
    }
}

/// The next change of `changes`, which must not be an error.
async fn next_change<S>(changes: &mut Changes<S>, what: &str) -> Change<S>
where
    S: StateKey + fmt::Debug,
    S::Id: fmt::Debug,
{
    match next_item(changes, what).await {
        Ok(change) => change,
        Err(e) => panic!("{what}: expected a change, got the error {e:?}"),
    }
}

/// Reads the next change of `changes`, which must be `expected`.
async fn expect_change<S>(changes: &mut Changes<S>, expected: Change<S>, what: &str)
where
    S: StateKey + fmt::Debug + PartialEq,
    S::Id: fmt::Debug + PartialEq,
{
    match next_item(changes, what).await {
        Ok(change) => assert_eq!(change, expected, "{what}: another change came first"),
        Err(e) => panic!("{what}: expected {expected:?}, got the error {e:?}"),
    }
}

/// Reads `expected.len()` changes, which must be `expected` key by key: the changes of each id
/// in `expected`'s order (the contract orders the changes of one key, not of different keys).
async fn expect_changes<S>(changes: &mut Changes<S>, expected: Vec<Change<S>>, what: &str)
where
    S: StateKey + fmt::Debug + PartialEq,
    S::Id: fmt::Debug + PartialEq,
{
    let mut got = Vec::with_capacity(expected.len());
    for n in 0..expected.len() {
        got.push(
            next_change(
                changes,
                &format!("{what} (change {n} of {})", expected.len()),
            )
            .await,
        );
    }
    let mut ids: Vec<&S::Id> = Vec::new();
    for change in &expected {
        if !ids.contains(&change.id()) {
            ids.push(change.id());
        }
    }
    for id in ids {
        let of = |list: &[Change<S>]| -> Vec<String> {
            list.iter()
                .filter(|c| c.id() == id)
                .map(|c| format!("{c:?}"))
                .collect()
        };
        assert_eq!(
            of(&got),
            of(&expected),
            "{what}: the changes of {id:?} differ; all that arrived: {got:?}"
        );
    }
}

/// Proves that `changes` holds nothing unread: writes `value` under `id` (a sentinel that the
/// checks write nowhere else) and asserts that the next change is that very write. `what` names
/// the writes that were to publish nothing.
async fn nothing_before_sentinel<B, S>(
    store: &Store<B>,
    changes: &mut Changes<S>,
    id: S::Id,
    value: S,
    what: &str,
) where
    B: Backend,
    S: crate::Notified + fmt::Debug + PartialEq + Clone,
    S::Id: fmt::Debug + PartialEq + Clone,
{
    store.set::<S>(&id, &value).await.unwrap();
    match next_item(changes, what).await {
        Ok(Change::Set { id: got, value: v }) if got == id && v == value => {}
        other => panic!("{what} published: {other:?} came before the sentinel write {value:?}"),
    }
}

/// The sentinel `Watched` for `what`: a status no other write of the checks stores.
fn sentinel(what: &str) -> Watched {
    watched(&format!("sentinel after {what}"), u64::MAX)
}

/// `Change::Set` of a `Watched`.
fn set_of(id: &str, value: Watched) -> Change<Watched> {
    Change::Set {
        id: id.to_string(),
        value,
    }
}

/// `Change::Removed` of a `Watched`.
fn removed_of(id: &str) -> Change<Watched> {
    Change::Removed { id: id.to_string() }
}

/// Every write that stores something announces it as [`Change::Set`] with the value written:
/// `set`, `set_with_ttl`, a winning `set_if_absent`, an `update` that wrote (replacing or
/// creating), `set_many` (one change per item), and `incr` (the new count). `remove` and
/// `remove_many` announce [`Change::Removed`] for each key that existed. Ids that need escaping
/// and a large value arrive as written.
///
/// `capabilities` size the check to the backend: without
/// [`per_key_expiry`](Capabilities::per_key_expiry), `set_with_ttl` is given the type's own
/// ttl (any other is refused, [`expiry_is_the_types_alone`]); the large value is 1 MB, or half
/// of [`max_value_bytes`](Capabilities::max_value_bytes) when that is less.
pub async fn writes_publish_their_changes<B: Backend + Clone>(
    backend: B,
    capabilities: &Capabilities,
) {
    let store = writable(&backend);
    let ttl = match Watched::TTL {
        Some(types) if !capabilities.per_key_expiry => types,
        _ => Duration::from_secs(60),
    };
    let big_len = capabilities
        .max_value_bytes
        .map_or(1024 * 1024, |limit| (limit / 2).min(1024 * 1024));
    let mut jobs = store.watch::<Watched>().await.unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    let id = |s: &str| s.to_string();

    store
        .set::<Watched>(id("a"), &watched("queued", 1))
        .await
        .unwrap();
    expect_change(&mut jobs, set_of("a", watched("queued", 1)), "set").await;
    store
        .set_with_ttl::<Watched>(id("a"), &watched("queued", 2), ttl)
        .await
        .unwrap();
    expect_change(&mut jobs, set_of("a", watched("queued", 2)), "set_with_ttl").await;
    assert!(
        store
            .set_if_absent::<Watched>(id("b"), &watched("new", 1))
            .await
            .unwrap()
    );
    expect_change(
        &mut jobs,
        set_of("b", watched("new", 1)),
        "a winning set_if_absent",
    )
    .await;
    store
        .update::<Watched>(id("a"), |w| {
            w.map(|w| Watched {
                status: "running".into(),
                step: w.step + 1,
            })
        })
        .await
        .unwrap();
    expect_change(
        &mut jobs,
        set_of("a", watched("running", 3)),
        "an update that replaced a value",
    )
    .await;
    store
        .update::<Watched>(id("c"), |w| match w {
            None => Some(watched("created", 1)),
            Some(w) => panic!("c holds {w:?}"),
        })
        .await
        .unwrap();
    expect_change(
        &mut jobs,
        set_of("c", watched("created", 1)),
        "an update that created the key",
    )
    .await;

    let items: Vec<(String, Watched)> = (1..=3)
        .map(|n| (format!("many-{n}"), watched("bulk", n)))
        .collect();
    store.set_many::<Watched>(&items).await.unwrap();
    let expected = items
        .iter()
        .map(|(id, value)| set_of(id, value.clone()))
        .collect();
    expect_changes(&mut jobs, expected, "set_many: one change per item").await;

    assert!(store.remove::<Watched>(id("b")).await.unwrap());
    expect_change(&mut jobs, removed_of("b"), "remove of a key that existed").await;
    assert_eq!(
        store
            .remove_many::<Watched>([id("c"), id("never-written"), id("many-2")])
            .await
            .unwrap(),
        2
    );
    expect_changes(
        &mut jobs,
        vec![removed_of("c"), removed_of("many-2")],
        "remove_many: a change for each key that existed",
    )
    .await;

    // Ids that must be escaped in the key, and a large value, arrive as written.
    let nasty = [
        "a:b",
        "a%3Ab",
        "*",
        "{tag} [x]?\\",
        "\"quoted\" and /slashed/",
        "ünïcødé 🦀",
        "tab\tnew\nline",
        "",
    ];
    for (n, nasty_id) in nasty.into_iter().enumerate() {
        let value = watched(&format!("nasty-{n}"), n as u64);
        store.set::<Watched>(id(nasty_id), &value).await.unwrap();
        expect_change(
            &mut jobs,
            set_of(nasty_id, value),
            &format!("set of the id {nasty_id:?}"),
        )
        .await;
    }
    let big = watched(&"x".repeat(big_len), 7);
    store.set::<Watched>(id("big"), &big).await.unwrap();
    let what = format!("set of a {big_len}-byte value");
    expect_change(&mut jobs, set_of("big", big), &what).await;

    // A counter announces each new count.
    for (by, count) in [(5, 5), (-2, 3), (0, 3)] {
        assert_eq!(
            store.incr::<WatchedCount>(id("hits"), by).await.unwrap(),
            count
        );
        expect_change(
            &mut counts,
            Change::Set {
                id: id("hits"),
                value: WatchedCount(count),
            },
            &format!("incr by {by}"),
        )
        .await;
    }

    nothing_before_sentinel(
        &store,
        &mut jobs,
        id("sentinel"),
        sentinel("the writes"),
        "the writes above, beyond their own changes,",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut counts,
        id("sentinel"),
        WatchedCount(-1),
        "the increments above, beyond their own changes,",
    )
    .await;
}

/// What changes nothing announces nothing: a losing `set_if_absent`, an `update` whose closure
/// returned `None`, removes of keys that did not exist, empty bulk calls, `incr` of a value
/// that is not a counter or would overflow, writes that fail (refused, invalid ttl, a value
/// that does not decode), and rate-limit checks, allowed or refused.
///
/// Without [`announced_writes_only`](Capabilities::announced_writes_only), the values the check
/// writes through [`Backend::set`] without a channel must be heard (as the decode errors they
/// are), and the rate-limit checks, which write, are left to [`every_write_is_heard`].
pub async fn writes_that_change_nothing_publish_nothing<B: Backend + Clone>(
    backend: B,
    capabilities: &Capabilities,
) {
    let store = writable(&backend);
    let read_only = Store::new(backend.clone());
    let mut jobs = store.watch::<Watched>().await.unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    let id = |s: &str| s.to_string();
    let quiet = async |jobs: &mut Changes<Watched>, what: &str| {
        nothing_before_sentinel(&store, jobs, id("sentinel"), sentinel(what), what).await;
    };

    store
        .set::<Watched>(id("a"), &watched("first", 1))
        .await
        .unwrap();
    expect_change(&mut jobs, set_of("a", watched("first", 1)), "set").await;

    assert!(
        !store
            .set_if_absent::<Watched>(id("a"), &watched("second", 1))
            .await
            .unwrap()
    );
    quiet(&mut jobs, "a losing set_if_absent").await;

    assert_eq!(
        store.update::<Watched>(id("a"), |_| None).await.unwrap(),
        Some(watched("first", 1))
    );
    assert_eq!(
        store
            .update::<Watched>(id("missing"), |_| None)
            .await
            .unwrap(),
        None
    );
    quiet(&mut jobs, "an update whose closure returned None").await;

    assert!(!store.remove::<Watched>(id("missing")).await.unwrap());
    assert_eq!(
        store
            .remove_many::<Watched>([id("missing"), id("gone")])
            .await
            .unwrap(),
        0
    );
    store
        .set_many::<Watched>(Vec::<(String, Watched)>::new())
        .await
        .unwrap();
    assert_eq!(
        store
            .remove_many::<Watched>(Vec::<String>::new())
            .await
            .unwrap(),
        0
    );
    quiet(
        &mut jobs,
        "removes of missing keys and empty set_many/remove_many",
    )
    .await;

    let refused = [
        read_only
            .set::<Watched>(id("a"), &watched("refused", 1))
            .await
            .unwrap_err(),
        read_only
            .set_with_ttl::<Watched>(id("a"), &watched("refused", 1), Duration::from_secs(5))
            .await
            .unwrap_err(),
        read_only
            .set_if_absent::<Watched>(id("new"), &watched("refused", 1))
            .await
            .unwrap_err(),
        read_only
            .update::<Watched>(id("a"), |_| Some(watched("refused", 1)))
            .await
            .unwrap_err(),
        read_only
            .set_many::<Watched>(vec![(id("a"), watched("refused", 1))])
            .await
            .unwrap_err(),
        read_only
            .incr::<WatchedCount>(id("hits"), 1)
            .await
            .unwrap_err(),
        Store::new(backend.clone())
            .enable_set()
            .remove::<Watched>(id("a"))
            .await
            .unwrap_err(),
        Store::new(backend.clone())
            .enable_set()
            .remove_many::<Watched>([id("a")])
            .await
            .unwrap_err(),
    ];
    for err in refused {
        assert!(matches!(err, Error::Disabled { .. }), "{err:?}");
    }
    let err = store
        .set_with_ttl::<Watched>(id("a"), &watched("invalid ttl", 1), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTtl { .. }), "{err:?}");
    quiet(&mut jobs, "refused writes and an invalid ttl").await;

    // A value that does not decode, written without announcement: the update fails before
    // writing.
    let corrupt = store.full_key::<Watched>(id("corrupt")).unwrap();
    backend
        .set(&corrupt, b"{oops".to_vec(), Watched::TTL, None)
        .await
        .unwrap();
    if !capabilities.announced_writes_only {
        heard_as_decode_error(&mut jobs, &corrupt).await;
    }
    let err = store
        .update::<Watched>(id("corrupt"), |_| Some(watched("never", 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    quiet(&mut jobs, "an update of a value that does not decode").await;

    // Increments that fail change nothing and announce nothing.
    let text = store.full_key::<WatchedCount>(id("text")).unwrap();
    backend
        .set(&text, b"1.5".to_vec(), WatchedCount::TTL, None)
        .await
        .unwrap();
    if !capabilities.announced_writes_only {
        heard_as_decode_error(&mut counts, &text).await;
    }
    let err = store.incr::<WatchedCount>(id("text"), 1).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    store
        .set::<WatchedCount>(id("max"), &WatchedCount(i64::MAX))
        .await
        .unwrap();
    expect_change(
        &mut counts,
        Change::Set {
            id: id("max"),
            value: WatchedCount(i64::MAX),
        },
        "set of a counter",
    )
    .await;
    let err = store.incr::<WatchedCount>(id("max"), 1).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    nothing_before_sentinel(
        &store,
        &mut counts,
        id("sentinel"),
        WatchedCount(-1),
        "incr of a value that is not a counter, and one that would overflow,",
    )
    .await;

    // Rate-limit checks keep their counts without announcing them, allowed or refused.
    let mut fixed = store.watch::<WatchedFixed>().await.unwrap();
    let mut smooth = store.watch::<WatchedSmooth>().await.unwrap();
    let mut allowed = (0, 0);
    for _ in 0..5 {
        allowed.0 += u32::from(
            store
                .check::<WatchedFixed>(id("client"))
                .await
                .unwrap()
                .allowed,
        );
        allowed.1 += u32::from(
            store
                .check::<WatchedSmooth>(id("client"))
                .await
                .unwrap()
                .allowed,
        );
    }
    assert_eq!(allowed, (3, 3), "three calls an hour");
    if !capabilities.announced_writes_only {
        // Their writes are heard: `every_write_is_heard` checks that.
        return;
    }
    nothing_before_sentinel(
        &store,
        &mut fixed,
        id("sentinel"),
        WatchedFixed(-1),
        "fixed-window rate-limit checks",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut smooth,
        id("sentinel"),
        WatchedSmooth(-1),
        "smooth rate-limit checks",
    )
    .await;
}

/// For a backend without [`announced_writes_only`](Capabilities::announced_writes_only): the
/// next item of `changes` is the decode error of the value written under `key` without a
/// channel.
async fn heard_as_decode_error<S>(changes: &mut Changes<S>, key: &str)
where
    S: StateKey + fmt::Debug,
    S::Id: fmt::Debug,
{
    let what = format!("the write of an undecodable value under {key}, without a channel");
    match next_item(changes, &what).await {
        Err(Error::Decode { key: reported, .. }) => assert_eq!(reported, key, "{what}"),
        other => panic!("{what}: expected a decode error naming {key}, got {other:?}"),
    }
}

/// Types declared without `notify` announce nothing, whatever the write: a watcher of their
/// channel, subscribed through [`Backend::watch`], hears only a write that announces itself.
pub async fn types_without_notify_publish_nothing<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let next_event = async |events: &mut BoxStream<'static, crate::Result<Event>>, what: &str| {
        match tokio::time::timeout(FEED_WAIT, events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => panic!("{what}: expected a change, got the error {e:?}"),
            Ok(None) => panic!("{what}: the change feed ended"),
            Err(_) => panic!("{what}: no change arrived within {FEED_WAIT:?}"),
        }
    };
    let mut sessions = backend.watch(&Watch::new("session")).await.unwrap();
    let mut totals = backend.watch(&Watch::new("total")).await.unwrap();

    store.set::<Session>(1, &session(1)).await.unwrap();
    store
        .set_with_ttl::<Session>(1, &session(2), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        store
            .set_if_absent::<Session>(2, &session(2))
            .await
            .unwrap()
    );
    store
        .update::<Session>(1, |s| s.map(|s| Session { updated_at: 3, ..s }))
        .await
        .unwrap();
    store
        .set_many::<Session>(vec![(3u64, session(3)), (4, session(4))])
        .await
        .unwrap();
    assert!(store.remove::<Session>(1).await.unwrap());
    assert_eq!(store.remove_many::<Session>([2u64, 3]).await.unwrap(), 2);
    assert_eq!(store.incr::<Total>(1, 5).await.unwrap(), 5);

    // Sentinels: writes through the backend that do announce on the same channels.
    let value = serde_json::to_vec(&session(99)).unwrap();
    backend
        .set("session:99", value.clone(), Session::TTL, Some("session"))
        .await
        .unwrap();
    let expected = Event::Set {
        key: "session:99".into(),
        value: value.into(),
    };
    let event = next_event(&mut sessions, "writes of Session").await;
    assert_eq!(
        event, expected,
        "a Session write published though Session is not declared with `notify`"
    );
    backend
        .set("total:99", b"7".to_vec(), Total::TTL, Some("total"))
        .await
        .unwrap();
    let expected = Event::Set {
        key: "total:99".into(),
        value: b"7".as_slice().into(),
    };
    let event = next_event(&mut totals, "incr of Total").await;
    assert_eq!(
        event, expected,
        "incr of Total published though Total is not declared with `notify`"
    );
}

/// `watch_id` delivers the changes of its one id, every kind of them, and nothing of other ids
/// (not even ids whose key starts the same, or the same id of another type).
pub async fn watch_id_sees_only_its_id<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store.watch_id::<Watched>(id("a")).await.unwrap();
    let mut escaped = store.watch_id::<Watched>(id("a:b")).await.unwrap();
    let mut counter = store.watch_id::<WatchedCount>(id("a")).await.unwrap();

    store
        .set::<Watched>(id("a"), &watched("a", 1))
        .await
        .unwrap();
    store
        .set::<Watched>(id("b"), &watched("b", 1))
        .await
        .unwrap();
    store
        .set::<Watched>(id("ab"), &watched("ab", 1))
        .await
        .unwrap();
    store
        .set::<Watched>(id("a:b"), &watched("a:b", 1))
        .await
        .unwrap();
    store
        .set::<Watched>(id("a%3Ab"), &watched("a%3Ab", 1))
        .await
        .unwrap();
    store
        .set_many::<Watched>(vec![(id("b"), watched("b", 2)), (id("a"), watched("a", 2))])
        .await
        .unwrap();
    store
        .update::<Watched>(id("a"), |w| w.map(|w| watched("a", w.step + 1)))
        .await
        .unwrap();
    assert_eq!(store.incr::<WatchedCount>(id("a"), 1).await.unwrap(), 1);
    assert_eq!(store.incr::<WatchedCount>(id("b"), 1).await.unwrap(), 1);
    assert!(store.remove::<Watched>(id("b")).await.unwrap());
    assert!(store.remove::<Watched>(id("a")).await.unwrap());
    assert!(store.remove::<Watched>(id("a:b")).await.unwrap());

    expect_changes(
        &mut one,
        vec![
            set_of("a", watched("a", 1)),
            set_of("a", watched("a", 2)),
            set_of("a", watched("a", 3)),
            removed_of("a"),
        ],
        "watch_id(\"a\")",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut one,
        id("a"),
        sentinel("other ids' writes"),
        "writes of other ids than \"a\"",
    )
    .await;
    expect_changes(
        &mut escaped,
        vec![set_of("a:b", watched("a:b", 1)), removed_of("a:b")],
        "watch_id(\"a:b\")",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut escaped,
        id("a:b"),
        sentinel("other ids' writes"),
        "writes of other ids than \"a:b\"",
    )
    .await;
    expect_change(
        &mut counter,
        Change::Set {
            id: id("a"),
            value: WatchedCount(1),
        },
        "watch_id::<WatchedCount>(\"a\")",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut counter,
        id("a"),
        WatchedCount(-1),
        "writes of other ids than the counter \"a\", and of Watched \"a\",",
    )
    .await;
    // The watcher of every id got all 11 changes and the two sentinels.
    let mut got = Vec::new();
    for n in 0..13 {
        got.push(next_change(&mut all, &format!("watch(): change {n} of 13")).await);
    }
    let mut ids: Vec<&str> = got.iter().map(|c| c.id().as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "a", "a", "a", "a", "a", "a%3Ab", "a:b", "a:b", "a:b", "ab", "b", "b", "b"
        ],
        "watch(): {got:?}"
    );
    nothing_before_sentinel(
        &store,
        &mut all,
        id("sentinel"),
        sentinel("every write"),
        "the writes above, beyond their own changes,",
    )
    .await;
}

/// The changes of one key arrive in the order they were stored: 200 updates of one id, between
/// writes of another, reach a watcher of the type and a watcher of the id step by step.
pub async fn changes_of_one_id_arrive_in_order<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store.watch_id::<Watched>(id("ordered")).await.unwrap();

    store
        .set::<Watched>(id("ordered"), &watched("step", 0))
        .await
        .unwrap();
    let mut expected = vec![set_of("ordered", watched("step", 0))];
    let mut others = Vec::new();
    for n in 1..=200u64 {
        store
            .update::<Watched>(id("ordered"), |w| w.map(|w| watched("step", w.step + 1)))
            .await
            .unwrap();
        expected.push(set_of("ordered", watched("step", n)));
        if n % 10 == 0 {
            store
                .set::<Watched>(id("other"), &watched("other", n))
                .await
                .unwrap();
            others.push(set_of("other", watched("other", n)));
        }
    }
    assert!(store.remove::<Watched>(id("ordered")).await.unwrap());
    expected.push(removed_of("ordered"));

    for (n, change) in expected.iter().enumerate() {
        expect_change(
            &mut one,
            change.clone(),
            &format!("watch_id: change {n} of {}", expected.len()),
        )
        .await;
    }
    let mut both = expected;
    both.extend(others);
    expect_changes(&mut all, both, "watch(): 200 updates between other writes").await;
    nothing_before_sentinel(
        &store,
        &mut all,
        id("sentinel"),
        sentinel("200 updates"),
        "the writes above, beyond their own changes,",
    )
    .await;
}

/// `writers` tasks, each setting its own id `writer-{w}` to steps 1 to `writes` and
/// incrementing the shared counter after each set.
fn spawn_writers<B: Backend>(
    store: &Store<B>,
    writers: u64,
    writes: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 1..=writes {
                    store
                        .set::<Watched>(format!("writer-{w}"), &watched("write", n))
                        .await
                        .unwrap();
                    store
                        .incr::<WatchedCount>("shared".to_string(), 1)
                        .await
                        .unwrap();
                }
            })
        })
        .collect()
}

/// Writers in several tasks at once: a watcher gets every change exactly once, each id's in
/// order. 8 tasks set their own id 25 times and increment one shared counter 25 times (so the
/// counts 1 to 200 arrive once each, in order), while 4 more race to `update` one key (every
/// successful update announces its value, in order, and failed attempts nothing).
pub async fn concurrent_writers_deliver_every_change<B: Backend + Clone>(backend: B) {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 25;
    const UPDATERS: u64 = 4;
    const UPDATES: u64 = 20;
    let store = writable(&backend);
    let mut jobs = store.watch::<Watched>().await.unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    store
        .set::<Watched>("contended".to_string(), &watched("race", 0))
        .await
        .unwrap();

    let writers = spawn_writers(&store, WRITERS, WRITES);
    let updaters: Vec<_> = (0..UPDATERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                for _ in 0..UPDATES {
                    match store
                        .update::<Watched>("contended".to_string(), |w| {
                            w.map(|w| watched("race", w.step + 1))
                        })
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                ok
            })
        })
        .collect();
    for task in writers {
        task.await.unwrap();
    }
    let mut updated = 0;
    for task in updaters {
        updated += task.await.unwrap();
    }
    assert!(updated > 0);

    let total = WRITERS * WRITES + 1 + updated;
    let mut next_step: HashMap<String, u64> = HashMap::new();
    next_step.insert("contended".into(), 0);
    for n in 0..total {
        let what = format!("change {n} of {total} from concurrent writers");
        let Change::Set { id, value } = next_change(&mut jobs, &what).await else {
            panic!("{what}: only sets were written");
        };
        let expected = next_step
            .entry(id.clone())
            .or_insert(if id == "contended" { 0 } else { 1 });
        assert_eq!(
            value.step, *expected,
            "{what}: {id} out of order or duplicated"
        );
        *expected += 1;
    }
    for w in 0..WRITERS {
        assert_eq!(
            next_step.get(&format!("writer-{w}")),
            Some(&(WRITES + 1)),
            "writer-{w}: {next_step:?}"
        );
    }
    assert_eq!(
        next_step["contended"],
        updated + 1,
        "one change per successful update"
    );
    for count in 1..=(WRITERS * WRITES) as i64 {
        expect_change(
            &mut counts,
            Change::Set {
                id: "shared".to_string(),
                value: WatchedCount(count),
            },
            &format!("concurrent increments: count {count}"),
        )
        .await;
    }
    nothing_before_sentinel(
        &store,
        &mut jobs,
        "sentinel".to_string(),
        sentinel("concurrent writes"),
        "concurrent writes, beyond their own changes,",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut counts,
        "sentinel".to_string(),
        WatchedCount(-1),
        "concurrent increments, beyond their own changes,",
    )
    .await;
}

/// Checks, for a backend that may coalesce the changes of one key (without
/// [`Capabilities::every_change_delivered`]): while 8 tasks each write their own id 25 times and
/// increment one shared counter, a watcher of the type, a watcher of one id and a watcher of the
/// counters get each key's changes in order and never twice, and each key's last value arrives.
pub async fn changes_arrive_in_order_and_converge<B: Backend + Clone>(backend: B) {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 25;
    let store = writable(&backend);
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store
        .watch_id::<Watched>("writer-0".to_string())
        .await
        .unwrap();
    let mut counts = store.watch::<WatchedCount>().await.unwrap();
    for task in spawn_writers(&store, WRITERS, WRITES) {
        task.await.unwrap();
    }

    let mut last: HashMap<String, u64> = HashMap::new();
    let done = |last: &HashMap<String, u64>| {
        (0..WRITERS).all(|w| last.get(&format!("writer-{w}")) == Some(&WRITES))
    };
    while !done(&last) {
        let what = format!("coalesced changes, each writer's last so far {last:?}");
        let Change::Set { id, value } = next_change(&mut all, &what).await else {
            panic!("{what}: only sets were written");
        };
        let before = last.insert(id.clone(), value.step).unwrap_or(0);
        assert!(
            value.step > before,
            "{id}: step {} after step {before}: out of order or twice",
            value.step
        );
    }
    let mut before = 0;
    while before < WRITES {
        let what = format!("the changes of writer-0 after step {before}");
        let Change::Set { id, value } = next_change(&mut one, &what).await else {
            panic!("{what}: only sets were written");
        };
        assert_eq!(id, "writer-0", "{what}");
        assert!(value.step > before, "{what}: got step {}", value.step);
        before = value.step;
    }
    let total = (WRITERS * WRITES) as i64;
    let mut before = 0;
    while before < total {
        let what = format!("the shared count after {before}");
        let Change::Set { id, value } = next_change(&mut counts, &what).await else {
            panic!("{what}: only sets were written");
        };
        assert_eq!(id, "shared", "{what}");
        assert!(value.0 > before, "{what}: got {}", value.0);
        before = value.0;
    }
    nothing_before_sentinel(
        &store,
        &mut all,
        "sentinel".to_string(),
        sentinel("coalesced writes"),
        "coalesced writes, beyond their own changes,",
    )
    .await;
}

/// A watcher hears its own namespace and type only: stores in different namespaces on one
/// backend, and two types (one's prefix starting the other's), do not see each other's changes.
pub async fn changes_stay_in_their_namespace_and_type<B: Backend + Clone>(backend: B) {
    let id = |s: &str| s.to_string();
    let plain = writable(&backend);
    let first = writable(&backend).namespace("feed-a");
    let second = writable(&backend).namespace("feed-b");
    let mut plain_jobs = plain.watch::<Watched>().await.unwrap();
    let mut first_jobs = first.watch::<Watched>().await.unwrap();
    let mut first_one = first.watch_id::<Watched>(id("1")).await.unwrap();
    let mut second_jobs = second.watch::<Watched>().await.unwrap();
    let mut first_counts = first.watch::<WatchedCount>().await.unwrap();

    plain
        .set::<Watched>(id("1"), &watched("plain", 1))
        .await
        .unwrap();
    first
        .set::<Watched>(id("1"), &watched("first", 1))
        .await
        .unwrap();
    second
        .set::<Watched>(id("1"), &watched("second", 1))
        .await
        .unwrap();
    second
        .set_many::<Watched>(vec![(id("1"), watched("second", 2))])
        .await
        .unwrap();
    assert_eq!(first.incr::<WatchedCount>(id("1"), 1).await.unwrap(), 1);
    assert_eq!(second.incr::<WatchedCount>(id("1"), 1).await.unwrap(), 1);
    assert_eq!(plain.incr::<WatchedCount>(id("1"), 1).await.unwrap(), 1);
    assert!(second.remove::<Watched>(id("1")).await.unwrap());
    assert!(plain.remove::<Watched>(id("1")).await.unwrap());

    expect_changes(
        &mut plain_jobs,
        vec![set_of("1", watched("plain", 1)), removed_of("1")],
        "no namespace",
    )
    .await;
    expect_change(
        &mut first_jobs,
        set_of("1", watched("first", 1)),
        "namespace feed-a",
    )
    .await;
    expect_change(
        &mut first_one,
        set_of("1", watched("first", 1)),
        "namespace feed-a, watch_id",
    )
    .await;
    expect_changes(
        &mut second_jobs,
        vec![
            set_of("1", watched("second", 1)),
            set_of("1", watched("second", 2)),
            removed_of("1"),
        ],
        "namespace feed-b",
    )
    .await;
    expect_change(
        &mut first_counts,
        Change::Set {
            id: id("1"),
            value: WatchedCount(1),
        },
        "namespace feed-a, WatchedCount",
    )
    .await;
    for (store, changes, name) in [
        (&plain, &mut plain_jobs, "no namespace"),
        (&first, &mut first_jobs, "namespace feed-a"),
        (&second, &mut second_jobs, "namespace feed-b"),
    ] {
        nothing_before_sentinel(
            store,
            changes,
            id("sentinel"),
            sentinel(name),
            &format!("writes of other namespaces or types, seen from {name},"),
        )
        .await;
    }
    nothing_before_sentinel(
        &first,
        &mut first_one,
        id("1"),
        sentinel("feed-a"),
        "writes of other namespaces or types, seen from watch_id in feed-a,",
    )
    .await;
    nothing_before_sentinel(
        &first,
        &mut first_counts,
        id("sentinel"),
        WatchedCount(-1),
        "writes of other namespaces or types, seen from WatchedCount in feed-a,",
    )
    .await;
}

/// A key that expires is announced as [`Change::Expired`], to watchers of the type and of the
/// id; a key removed or given the type's ttl again before its deadline is not, and an update
/// keeps the expiry it announces. Calls [`Backend::enable_expiry_events`] first; allows the few
/// seconds an engine such as Redis takes to expire keys in the background.
pub async fn expiries_are_changes<B: Backend + Clone>(backend: B) {
    backend.enable_expiry_events().await.unwrap();
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut all = store.watch::<Watched>().await.unwrap();
    let mut one = store.watch_id::<Watched>(id("short")).await.unwrap();
    let short = Duration::from_millis(100);

    store
        .set_with_ttl::<Watched>(id("short"), &watched("short", 1), short)
        .await
        .unwrap();
    store
        .set_with_ttl::<Watched>(id("removed"), &watched("removed", 1), short)
        .await
        .unwrap();
    assert!(store.remove::<Watched>(id("removed")).await.unwrap());
    store
        .set_with_ttl::<Watched>(id("renewed"), &watched("renewed", 1), short)
        .await
        .unwrap();
    store
        .set::<Watched>(id("renewed"), &watched("renewed", 2))
        .await
        .unwrap();
    store
        .set_with_ttl::<Watched>(id("updated"), &watched("updated", 1), short * 3)
        .await
        .unwrap();
    store
        .update::<Watched>(id("updated"), |w| w.map(|w| watched("updated", w.step + 1)))
        .await
        .unwrap();
    expect_changes(
        &mut all,
        vec![
            set_of("short", watched("short", 1)),
            set_of("removed", watched("removed", 1)),
            removed_of("removed"),
            set_of("renewed", watched("renewed", 1)),
            set_of("renewed", watched("renewed", 2)),
            set_of("updated", watched("updated", 1)),
            set_of("updated", watched("updated", 2)),
        ],
        "writes before the deadlines",
    )
    .await;
    expect_change(
        &mut one,
        set_of("short", watched("short", 1)),
        "watch_id before the deadline",
    )
    .await;

    let mut expired = Vec::new();
    for n in 0..2 {
        match next_change(&mut all, &format!("expiry {n} of 2")).await {
            Change::Expired { id } => expired.push(id),
            other => panic!("expected the expiry of short or updated, got {other:?}"),
        }
    }
    expired.sort();
    assert_eq!(expired, vec![id("short"), id("updated")]);
    expect_change(
        &mut one,
        Change::Expired { id: id("short") },
        "watch_id: the expiry",
    )
    .await;
    assert!(!store.exists::<Watched>(id("short")).await.unwrap());

    // Past every deadline: the removed and the renewed key announced no expiry.
    tokio::time::sleep(short * 5).await;
    assert!(store.exists::<Watched>(id("renewed")).await.unwrap());
    nothing_before_sentinel(
        &store,
        &mut all,
        id("sentinel"),
        sentinel("expiries"),
        "a key removed, or given the type's ttl, before its deadline",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut one,
        id("short"),
        sentinel("expiries"),
        "watch_id after the expiry",
    )
    .await;
}

/// A rate limit's count is bookkeeping, not state: rate-limit checks of a notified type publish
/// no `Set`. Their keys still expire, and an expiry is announced for every key under a watched
/// type's prefix, whichever call wrote it (Redis's server announces every key that expires and
/// cannot tell who wrote it; the memory backend does the same): when the windows end, the
/// watchers get `Expired`. Calls [`Backend::enable_expiry_events`] first.
pub async fn rate_limit_checks_publish_only_their_windows_expiry<B: Backend + Clone>(backend: B) {
    backend.enable_expiry_events().await.unwrap();
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let mut windows = store.watch::<WatchedWindow>().await.unwrap();
    let mut paces = store.watch::<WatchedPace>().await.unwrap();
    for _ in 0..2 {
        assert!(
            store
                .check::<WatchedWindow>(id("client"))
                .await
                .unwrap()
                .allowed
        );
        assert!(
            store
                .check::<WatchedPace>(id("client"))
                .await
                .unwrap()
                .allowed
        );
    }
    // Nothing for the checks themselves: the next item is a write made after them.
    nothing_before_sentinel(
        &store,
        &mut windows,
        id("sentinel"),
        WatchedWindow(-1),
        "a fixed-window check",
    )
    .await;
    nothing_before_sentinel(
        &store,
        &mut paces,
        id("sentinel"),
        WatchedPace(-1),
        "a smooth rate-limit check",
    )
    .await;
    // Both keys end within a second.
    expect_change(
        &mut windows,
        Change::Expired { id: id("client") },
        "the end of a fixed window",
    )
    .await;
    expect_change(
        &mut paces,
        Change::Expired { id: id("client") },
        "the end of a smooth rate limit's key",
    )
    .await;
}

/// A value on the feed that does not decode as the type is an [`Error::Decode`] item naming its
/// key, and a key that is not an id of the type an [`Error::InvalidKey`] item naming it; either
/// way the stream goes on with the next change. The values are written through
/// [`Backend::set`] with the type's channel, as another program could write them.
pub async fn undecodable_changes_are_errors_and_the_feed_goes_on<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    let channel = "svc:watched";
    let mut changes = store.watch::<Watched>().await.unwrap();
    let mut after = 0;
    let mut goes_on = async |changes: &mut Changes<Watched>, what: &str| {
        after += 1;
        let value = watched("after", after);
        store
            .set::<Watched>("good".to_string(), &value)
            .await
            .unwrap();
        expect_change(
            changes,
            set_of("good", value),
            &format!("the change after {what}"),
        )
        .await;
    };

    // A key under the channel that no `Watched` id gives (`:` is escaped in string ids).
    let foreign = format!("{}:b", store.full_key::<Watched>("a").unwrap());
    assert_eq!(foreign, "svc:watched:a:b");
    let value = serde_json::to_vec(&watched("foreign", 1)).unwrap();
    backend
        .set(&foreign, value, Watched::TTL, Some(channel))
        .await
        .unwrap();
    match next_item(&mut changes, "a foreign key").await {
        Err(Error::InvalidKey { key, .. }) => assert_eq!(key, foreign),
        other => panic!("expected an invalid-key error naming {foreign}, got {other:?}"),
    }
    goes_on(&mut changes, "a foreign key").await;

    // JSON of another shape first, then bytes that are not JSON at all.
    for (n, raw) in [
        &br#"{"status": 5, "step": 1}"#[..],
        br#"[1, 2, 3]"#,
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"",
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("the value {:?}", String::from_utf8_lossy(raw));
        let key = store.full_key::<Watched>(format!("bad-{n}")).unwrap();
        backend
            .set(&key, raw.to_vec(), Watched::TTL, Some(channel))
            .await
            .unwrap();
        match next_item(&mut changes, &what).await {
            Err(Error::Decode { key: reported, .. }) => assert_eq!(reported, key, "{what}"),
            other => panic!("{what}: expected a decode error naming {key}, got {other:?}"),
        }
        goes_on(&mut changes, &what).await;
    }
    nothing_before_sentinel(
        &store,
        &mut changes,
        "sentinel".to_string(),
        sentinel("undecodable changes"),
        "undecodable changes, beyond their errors,",
    )
    .await;
}

/// A watcher that reads nothing while more changes than its buffer arrive gets one
/// [`Error::Lagged`] with how many were dropped, then the newest ones in order, and is then in
/// step again; other watchers lose nothing. Watching with `watch_buffer(8)`, 100 writes give
/// `Lagged { missed: 92 }` and the last 8.
///
/// Before reading, the check waits until a write after the 100, to another id, has reached a
/// watcher of that id: a backend whose feed delivers asynchronously has then queued the 100.
pub async fn slow_watchers_lag_and_keep_the_newest<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let small = store.clone().watch_buffer(8);
    // The fence shares the burst's Redis Cluster hash slot: changes of keys on different nodes
    // may arrive in another order than written, those of one slot may not.
    let slot_of =
        |id: &str| redis_cluster_slot(&store.full_key::<Watched>(id.to_string()).unwrap());
    let fence_id = (0..)
        .map(|n| format!("fence-{n}"))
        .find(|fence| slot_of(fence) == slot_of("burst"))
        .unwrap();
    let fence_id = fence_id.as_str();
    let mut lagging = small.watch::<Watched>().await.unwrap();
    let mut lagging_one = small.watch_id::<Watched>(id("burst")).await.unwrap();
    let mut fence = store.watch_id::<Watched>(id(fence_id)).await.unwrap();
    let mut keeping_up = store.watch::<Watched>().await.unwrap();

    for (round, writes) in [(1u64, 100u64), (2, 20)] {
        for n in 0..writes {
            store
                .set::<Watched>(id("burst"), &watched("burst", n))
                .await
                .unwrap();
        }
        // Everything written is queued once a later change has arrived.
        let marker = watched("fence", round);
        store.set::<Watched>(id(fence_id), &marker).await.unwrap();
        expect_change(
            &mut fence,
            set_of(fence_id, marker.clone()),
            "the write after the burst",
        )
        .await;

        // The watcher of every id holds the newest 8 of the burst and the fence.
        let missed = writes + 1 - 8;
        let what = format!("round {round}: {writes} writes and one more into a buffer of 8");
        match next_item(&mut lagging, &what).await {
            Err(Error::Lagged { missed: m }) => assert_eq!(m, missed, "{what}"),
            other => panic!("{what}: expected Lagged {{ missed: {missed} }}, got {other:?}"),
        }
        for n in writes - 7..writes {
            expect_change(
                &mut lagging,
                set_of("burst", watched("burst", n)),
                &format!("{what}: the newest, {n}"),
            )
            .await;
        }
        expect_change(&mut lagging, set_of(fence_id, marker), &what).await;

        // The watcher of the id holds the newest 8 of the burst.
        let what = format!("round {round}: watch_id, {writes} writes into a buffer of 8");
        match next_item(&mut lagging_one, &what).await {
            Err(Error::Lagged { missed: m }) => assert_eq!(m, writes - 8, "{what}"),
            other => panic!(
                "{what}: expected Lagged {{ missed: {} }}, got {other:?}",
                writes - 8
            ),
        }
        for n in writes - 8..writes {
            expect_change(
                &mut lagging_one,
                set_of("burst", watched("burst", n)),
                &format!("{what}: the newest, {n}"),
            )
            .await;
        }
        nothing_before_sentinel(
            &store,
            &mut lagging_one,
            id("burst"),
            sentinel(&format!("round {round}")),
            &format!("{what}: more than the newest"),
        )
        .await;
        expect_change(
            &mut lagging,
            set_of("burst", sentinel(&format!("round {round}"))),
            "the sentinel, to the watcher of every id",
        )
        .await;
    }

    // A watcher with room for everything lost nothing.
    let mut expected = Vec::new();
    for (round, writes) in [(1u64, 100u64), (2, 20)] {
        expected.extend((0..writes).map(|n| set_of("burst", watched("burst", n))));
        expected.push(set_of(fence_id, watched("fence", round)));
        expected.push(set_of("burst", sentinel(&format!("round {round}"))));
    }
    expect_changes(
        &mut keeping_up,
        expected,
        "a watcher with the default buffer",
    )
    .await;
}

/// The stream is `Send + 'static`: it moves into a spawned task, which reads the changes
/// written here.
pub async fn changes_are_send_and_static<B: Backend + Clone>(backend: B) {
    fn send_static<T: Send + 'static>(value: T) -> T {
        value
    }
    let store = writable(&backend);
    let changes = send_static(store.watch::<Watched>().await.unwrap());
    let reader = tokio::spawn(async move {
        let mut changes = changes;
        let mut got = Vec::new();
        for n in 0..10 {
            got.push(
                next_change(
                    &mut changes,
                    &format!("in a spawned task: change {n} of 10"),
                )
                .await,
            );
        }
        got
    });
    let mut expected = Vec::new();
    for n in 0..10 {
        let value = watched("spawned", n);
        store
            .set::<Watched>(format!("id-{n}"), &value)
            .await
            .unwrap();
        expected.push(set_of(&format!("id-{n}"), value));
    }
    let mut got = reader.await.unwrap();
    // Ten ids, one change each: the contract orders the changes of one key, not of different
    // keys (on a Redis Cluster they come from different nodes).
    let order = |change: &Change<Watched>| format!("{change:?}");
    got.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(got, expected);
}

/// Watchers come and go independently: dropping one leaves the others their changes, and a
/// watcher made after the last one of its type was dropped hears every later change.
pub async fn watchers_come_and_go<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let first = store.watch::<Watched>().await.unwrap();
    let mut second = store.watch::<Watched>().await.unwrap();
    let first_one = store.watch_id::<Watched>(id("a")).await.unwrap();
    drop(first);
    drop(first_one);
    store
        .set::<Watched>(id("a"), &watched("a", 1))
        .await
        .unwrap();
    expect_change(
        &mut second,
        set_of("a", watched("a", 1)),
        "after another watcher was dropped",
    )
    .await;
    drop(second);
    for round in 0..3 {
        let mut again = store.watch::<Watched>().await.unwrap();
        let mut again_one = store.watch_id::<Watched>(id("a")).await.unwrap();
        store
            .set::<Watched>(id("a"), &watched("again", round))
            .await
            .unwrap();
        let what = format!("round {round}: watching again after the last watcher was dropped");
        expect_change(&mut again, set_of("a", watched("again", round)), &what).await;
        expect_change(&mut again_one, set_of("a", watched("again", round)), &what).await;
    }
}

/// A watcher hears the changes stored after it started, never one stored before `watch` was
/// called (which, arriving after a read of the state, would take a reader back to an older
/// value): neither beside a watcher of the type that has changes still on their way (10 rounds
/// of 50 writes and a `set_many` of 400, more than a task's scheduling budget lets a stream
/// yield at once), nor when the last watcher of the type was dropped just before (50 rounds).
pub async fn watchers_hear_nothing_from_before_watch<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    let busy = store.watch::<Watched>().await.unwrap();
    for round in 0..10 {
        for n in 0..50 {
            store
                .set::<Watched>(format!("busy-{n}"), &watched("before watch", round))
                .await
                .unwrap();
        }
        let burst: Vec<(String, Watched)> = (0..400)
            .map(|n| (format!("burst-{n}"), watched("before watch", round)))
            .collect();
        store.set_many::<Watched>(&burst).await.unwrap();
        let mut changes = store.watch::<Watched>().await.unwrap();
        store
            .set::<Watched>(id("a"), &watched("after watch", round))
            .await
            .unwrap();
        expect_change(
            &mut changes,
            set_of("a", watched("after watch", round)),
            &format!(
                "round {round}: the first change of a watcher made beside a busy one, after 450 \
                 writes"
            ),
        )
        .await;
    }
    drop(busy);

    for round in 0..50 {
        drop(store.watch::<Watched>().await.unwrap());
        store
            .set::<Watched>(id("a"), &watched("before watch", round))
            .await
            .unwrap();
        let mut changes = store.watch::<Watched>().await.unwrap();
        store
            .set::<Watched>(id("a"), &watched("after watch", round))
            .await
            .unwrap();
        expect_change(
            &mut changes,
            set_of("a", watched("after watch", round)),
            &format!(
                "round {round}: the first change of a watcher made after the last one was \
                 dropped and a write"
            ),
        )
        .await;
    }
}

/// Expiries reach the watchers of their namespace only, even where a namespace is named like
/// the type's prefix, so that its keys (`watched:watched:x`, `watched:session:1`) start with the
/// keys of the store without namespace (`watched:...`). Calls
/// [`Backend::enable_expiry_events`] first.
pub async fn expiries_stay_in_their_namespace<B: Backend + Clone>(backend: B) {
    backend.enable_expiry_events().await.unwrap();
    let id = |s: &str| s.to_string();
    let plain = writable(&backend);
    let named = writable(&backend).namespace(Watched::PREFIX);
    let other = writable(&backend).namespace("feed-a");
    let mut plain_jobs = plain.watch::<Watched>().await.unwrap();
    let mut named_jobs = named.watch::<Watched>().await.unwrap();
    let mut other_jobs = other.watch::<Watched>().await.unwrap();
    let short = Duration::from_millis(100);

    named
        .set_with_ttl::<Watched>(id("x"), &watched("named", 1), short)
        .await
        .unwrap();
    named
        .set_with_ttl::<Session>(1, &session(1), short)
        .await
        .unwrap();
    other
        .set_with_ttl::<Watched>(id("x"), &watched("other", 1), short)
        .await
        .unwrap();
    for (changes, name) in [
        (&mut named_jobs, "namespace `watched`"),
        (&mut other_jobs, "namespace `feed-a`"),
    ] {
        let status = if name.contains("feed-a") {
            "other"
        } else {
            "named"
        };
        expect_change(
            changes,
            set_of("x", watched(status, 1)),
            &format!("{name}: the write"),
        )
        .await;
        expect_change(
            changes,
            Change::Expired { id: id("x") },
            &format!("{name}: the expiry"),
        )
        .await;
    }
    // The Session has expired too, and had time to be announced.
    let deadline = tokio::time::Instant::now() + FEED_WAIT;
    while named.exists::<Session>(1).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Session did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(short * 3).await;

    nothing_before_sentinel(
        &named,
        &mut named_jobs,
        id("sentinel"),
        sentinel("expiries"),
        "the expiry of a Session in the namespace `watched`, and of a Watched in `feed-a`,",
    )
    .await;
    nothing_before_sentinel(
        &other,
        &mut other_jobs,
        id("sentinel"),
        sentinel("expiries"),
        "expiries in the namespace `watched`, seen from `feed-a`,",
    )
    .await;
    nothing_before_sentinel(
        &plain,
        &mut plain_jobs,
        id("sentinel"),
        sentinel("expiries"),
        "expiries in the namespaces `watched` and `feed-a`, seen from the store without namespace,",
    )
    .await;
}

/// For a backend without a change feed (run with `conformance_tests!(.., without_feed)`):
/// `watch` and `watch_id` are [`Error::Unsupported`] naming `watch` and the backend, and writes
/// of a notified type still work as any other.
pub async fn feed_is_unsupported<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let id = |s: &str| s.to_string();
    for err in [
        store.watch::<Watched>().await.unwrap_err(),
        store.watch_id::<Watched>(id("a")).await.unwrap_err(),
        store.watch::<WatchedCount>().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    operation: "watch",
                    backend: name,
                } if name == backend.name()
            ),
            "{err:?}"
        );
    }

    store
        .set::<Watched>(id("a"), &watched("set", 1))
        .await
        .unwrap();
    store
        .set_with_ttl::<Watched>(id("b"), &watched("ttl", 1), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        store
            .set_if_absent::<Watched>(id("c"), &watched("absent", 1))
            .await
            .unwrap()
    );
    store
        .update::<Watched>(id("a"), |w| w.map(|w| watched("updated", w.step + 1)))
        .await
        .unwrap();
    store
        .set_many::<Watched>(vec![(id("d"), watched("many", 1))])
        .await
        .unwrap();
    assert_eq!(store.incr::<WatchedCount>(id("n"), 2).await.unwrap(), 2);
    assert_eq!(
        store
            .get_many::<Watched>([id("a"), id("b"), id("c"), id("d")])
            .await
            .unwrap(),
        vec![
            Some(watched("updated", 2)),
            Some(watched("ttl", 1)),
            Some(watched("absent", 1)),
            Some(watched("many", 1)),
        ]
    );
    assert!(
        store.ttl::<Watched>(id("a")).await.unwrap().unwrap() > Duration::from_secs(6 * 86_400)
    );
    assert!(store.remove::<Watched>(id("a")).await.unwrap());
    assert_eq!(
        store
            .remove_many::<Watched>([id("b"), id("c"), id("none")])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.get::<WatchedCount>(id("n")).await.unwrap(),
        Some(WatchedCount(2))
    );
    assert!(!store.exists::<Watched>(id("a")).await.unwrap());
}

/// A state type of the checks with an older shape: a profile that used to hold one name
/// ([`ProfileV1`], its `previous`) and now holds several, with a visit count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "profile", id = u64, ttl = "1h", previous = ProfileV1)]
pub struct Profile {
    /// Names, the first one from the older shape.
    pub names: Vec<String>,
    /// Visits counted since the new shape.
    pub visits: u64,
}

/// The older shape of [`Profile`] (and of [`WatchedProfile`]), as an older release stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileV1 {
    /// The one name.
    pub name: String,
}

impl From<ProfileV1> for Profile {
    fn from(old: ProfileV1) -> Self {
        Profile {
            names: vec![old.name],
            visits: 0,
        }
    }
}

/// A notified state type with an older shape, [`ProfileV1`]: what the derive writes for
/// `#[state(prefix = "watched-profile", id = String, notify, previous = ProfileV1)]`, by hand
/// for the reason given for `Watched`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedProfile {
    /// Names, the first one from the older shape.
    pub names: Vec<String>,
    /// Visits counted since the new shape.
    pub visits: u64,
}

impl From<ProfileV1> for WatchedProfile {
    fn from(old: ProfileV1) -> Self {
        WatchedProfile {
            names: vec![old.name],
            visits: 0,
        }
    }
}

#[diagnostic::do_not_recommend]
impl StateKey for WatchedProfile {
    type Id = String;
    const PREFIX: &'static str = "watched-profile";
    const TTL: Option<Duration> = None;
    const NOTIFY: bool = true;
    fn __decode_previous(bytes: &[u8]) -> Option<(&'static str, serde_json::Result<Self>)> {
        Some((
            "ProfileV1",
            serde_json::from_slice::<ProfileV1>(bytes).map(Self::from),
        ))
    }
}
#[diagnostic::do_not_recommend]
impl crate::Notified for WatchedProfile {}

/// The JSON of a [`ProfileV1`] named `name`, as an older release wrote it.
fn profile_v1(name: &str) -> Vec<u8> {
    serde_json::to_vec(&ProfileV1 { name: name.into() }).unwrap()
}

/// The `Profile` a `ProfileV1` named `name` reads as.
fn profile_from_v1(name: &str) -> Profile {
    Profile::from(ProfileV1 { name: name.into() })
}

/// Reads of a type declared with `previous` (`get`, `get_many`, `get_and_touch`, the closures
/// of `update` and `remove_if`) return a value stored in the older shape converted, and do not
/// write it; `update` writes the current shape and keeps the key's expiry. A value in neither
/// shape is a decode error naming the key, with both shapes' messages.
pub async fn previous_shapes_are_read_converted<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    let raw = |id: u64| store.full_key::<Profile>(id).unwrap();
    let hour = Duration::from_secs(3600);
    for id in [1, 2, 3, 4] {
        let old = profile_v1(&format!("user-{id}"));
        backend.set(&raw(id), old, Some(hour), None).await.unwrap();
    }
    let current = Profile {
        names: vec!["new".into()],
        visits: 7,
    };
    store.set::<Profile>(5, &current).await.unwrap();

    assert_eq!(
        store.get::<Profile>(1).await.unwrap(),
        Some(profile_from_v1("user-1"))
    );
    assert_eq!(
        store.get_many::<Profile>([5, 1, 9, 2]).await.unwrap(),
        vec![
            Some(current.clone()),
            Some(profile_from_v1("user-1")),
            None,
            Some(profile_from_v1("user-2")),
        ]
    );
    assert_eq!(
        backend.get(&raw(1)).await.unwrap(),
        Some(profile_v1("user-1")),
        "reads do not write"
    );

    // `update` sees the converted value and writes the current shape, keeping the expiry.
    let before = store.ttl::<Profile>(2).await.unwrap().expect("an expiry");
    let mut seen = None;
    let updated = store
        .update::<Profile>(2, |p| {
            seen = p.clone();
            p.map(|p| Profile {
                visits: p.visits + 1,
                ..p
            })
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(profile_from_v1("user-2")), "update's input");
    let expected = Profile {
        visits: 1,
        ..profile_from_v1("user-2")
    };
    assert_eq!(updated, Some(expected.clone()));
    assert_eq!(
        backend.get(&raw(2)).await.unwrap(),
        Some(serde_json::to_vec(&expected).unwrap()),
        "update writes the current shape"
    );
    let after = store
        .ttl::<Profile>(2)
        .await
        .unwrap()
        .expect("still expires");
    assert!(
        after <= before,
        "update kept the expiry: {after:?} > {before:?}"
    );

    assert_eq!(
        store.get_and_touch::<Profile>(3).await.unwrap(),
        Some(profile_from_v1("user-3"))
    );
    let mut checked = None;
    let removed = store
        .remove_if::<Profile>(4, |p| {
            checked = Some(p.clone());
            false
        })
        .await;
    // A backend without a compare-and-delete answers `Unsupported` before any check runs.
    if !matches!(removed, Err(Error::Unsupported { .. })) {
        assert!(!removed.unwrap());
        assert_eq!(
            checked,
            Some(profile_from_v1("user-4")),
            "remove_if's input"
        );
    }

    // Neither shape: the key and both of serde's messages.
    backend
        .set(&raw(6), br#"{"title": 5}"#.to_vec(), None, None)
        .await
        .unwrap();
    let err = store.get::<Profile>(6).await.unwrap_err();
    let Error::Decode { key, .. } = &err else {
        panic!("expected a decode error, got {err:?}");
    };
    assert_eq!(key, "svc:profile:6");
    let message = err.to_string();
    for part in [
        "svc:profile:6",
        "missing field `names`",
        "`ProfileV1`",
        "missing field `name`",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    let err = store.get_many::<Profile>([1, 6]).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { key, .. } if key == "svc:profile:6"),
        "{err:?}"
    );
}

/// `migrate` rewrites exactly the values in the older shape, in the current one, each keeping
/// its expiry; it leaves current values byte for byte, reports undecodable values and foreign
/// keys without touching them, stays in its namespace, reports progress, needs `enable_set`,
/// and finds nothing to do the second time.
///
/// With [`per_key_expiry`](Capabilities::per_key_expiry), the values written raw have ten
/// minutes or no expiry, and each keeps its own; without, all have the type's ttl (the only
/// expiry such a backend gives). Without
/// [`keeps_remaining_expiry`](Capabilities::keeps_remaining_expiry), a rewrite may restart
/// the ttl ([`kept_expiry_restarts`]) but must keep an expiry.
pub async fn migrate_rewrites_older_values_and_only_those<B: Backend + Clone>(
    backend: B,
    capabilities: &Capabilities,
) {
    let store = writable(&backend).namespace("svc");
    let raw = |id: u64| store.full_key::<Profile>(id).unwrap();
    // `ttl` for a value given an expiry, `none` for one given none (where the backend can).
    let (ttl, none) = match Profile::TTL {
        Some(types) if !capabilities.per_key_expiry => (types, Some(types)),
        _ => (Duration::from_secs(600), None),
    };
    for id in 0..30u64 {
        let old = profile_v1(&format!("user-{id}"));
        let ttl = if id % 3 != 0 { Some(ttl) } else { none };
        backend.set(&raw(id), old, ttl, None).await.unwrap();
    }
    for id in 100..125u64 {
        let value = Profile {
            names: vec![format!("user-{id}")],
            visits: id,
        };
        store.set::<Profile>(id, &value).await.unwrap();
    }
    // Current, but not as this release would write it: left as it is.
    let spaced = br#"{ "visits": 1, "names": [] }"#.to_vec();
    backend
        .set(&raw(200), spaced.clone(), none, None)
        .await
        .unwrap();
    let undecodable = [(300, &b"{not json"[..]), (301, br#"{"title": 5}"#)];
    for (id, bytes) in undecodable {
        backend
            .set(&raw(id), bytes.to_vec(), none, None)
            .await
            .unwrap();
    }
    // Under the prefix but not a `Profile` id, in the older shape all the same.
    let foreign = "svc:profile:not-a-number";
    backend
        .set(foreign, profile_v1("x"), none, None)
        .await
        .unwrap();
    // Another namespace's older values are not this store's to migrate.
    let other = writable(&backend).namespace("other");
    let elsewhere = other.full_key::<Profile>(1).unwrap();
    backend
        .set(&elsewhere, profile_v1("x"), none, None)
        .await
        .unwrap();

    let read_only = Store::new(backend.clone()).namespace("svc");
    let err = read_only.migrate::<Profile>().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disabled {
                operation: "migrate",
                enable: "enable_set"
            }
        ),
        "{err:?}"
    );

    let mut before = HashMap::new();
    for id in (0..30).chain(100..125).chain([200, 300, 301]) {
        let bytes = backend.get(&raw(id)).await.unwrap().unwrap();
        before.insert(id, (bytes, store.ttl::<Profile>(id).await.unwrap()));
    }
    let mut calls = Vec::new();
    let options = crate::MigrateOptions::new()
        .batch(16)
        .on_progress(|so_far| calls.push(so_far.clone()));
    let report = store.migrate_with::<Profile>(options).await.unwrap();
    assert_eq!(
        (report.scanned, report.rewritten, report.current),
        (59, 30, 26),
        "{report:?}"
    );
    assert_eq!((report.undecodable, report.vanished), (3, 0), "{report:?}");
    let named: BTreeSet<&str> = report.undecodable_keys.iter().map(String::as_str).collect();
    let expected: BTreeSet<String> = [raw(300), raw(301), foreign.to_string()].into();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(named, expected);
    assert!(
        calls.len() >= 4,
        "progress after each batch of 16: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&report),
        "the last progress is the report"
    );
    assert!(
        calls.windows(2).all(|w| w[0].scanned < w[1].scanned),
        "{calls:?}"
    );

    for (id, (bytes, ttl_before)) in before {
        let now = backend.get(&raw(id)).await.unwrap().unwrap();
        let ttl_now = store.ttl::<Profile>(id).await.unwrap();
        if id < 30 {
            let converted = profile_from_v1(&format!("user-{id}"));
            assert_eq!(
                now,
                serde_json::to_vec(&converted).unwrap(),
                "{id} rewritten"
            );
            match (ttl_before, ttl_now) {
                (Some(b), Some(n)) => assert!(
                    (n <= b || !capabilities.keeps_remaining_expiry) && n > ttl / 2,
                    "{id}: {n:?} vs {b:?}"
                ),
                (None, None) => {}
                other => panic!("{id}: the expiry changed: {other:?}"),
            }
        } else {
            assert_eq!(now, bytes, "{id} left byte for byte");
            assert_eq!(ttl_now.is_some(), ttl_before.is_some(), "{id}");
        }
    }
    assert_eq!(backend.get(foreign).await.unwrap(), Some(profile_v1("x")));
    assert_eq!(
        backend.get(&elsewhere).await.unwrap(),
        Some(profile_v1("x"))
    );

    let again = store.migrate::<Profile>().await.unwrap();
    assert_eq!(
        (again.scanned, again.rewritten, again.current),
        (59, 0, 56),
        "{again:?}"
    );
    assert_eq!(again.undecodable, 3);
    assert!(
        again
            .to_string()
            .starts_with("59 scanned: 0 rewritten, 56 current"),
        "{again}"
    );

    // A type without `previous` rewrites nothing: an audit of what decodes.
    let audit = store.migrate::<Session>().await.unwrap();
    assert_eq!(audit, crate::MigrateReport::default());
}

/// Updates running while `migrate` rewrites the same keys lose nothing: the migration's
/// compare-and-set never overwrites a value written after it read, and every increment lands.
///
/// The race only happens on an engine whose calls wait: on the memory backend under a
/// current-thread runtime no call ever yields, so the migration runs to its end before the
/// updaters start, and this check only shows that both finish exactly. The race itself is
/// exercised on Redis (here and in `tests/migrate_redis.rs`), on a Cluster, and on the
/// "Writing a backend" engine that yields before every call.
///
/// The migration scans every key, and a second one, once the updates have ended, finds every
/// key current. Without [`stable_listing`](Capabilities::stable_listing), the first may miss
/// keys that the updates rewrote while it listed them (never more than there are).
pub async fn migrate_loses_no_concurrent_update<B: Backend + Clone>(
    backend: B,
    capabilities: &Capabilities,
) {
    let store = writable(&backend);
    const KEYS: u64 = 24;
    const TASKS: u64 = 4;
    const ROUNDS: u64 = 10;
    for id in 0..KEYS {
        let key = store.full_key::<Profile>(id).unwrap();
        let old = profile_v1(&format!("user-{id}"));
        backend.set(&key, old, Profile::TTL, None).await.unwrap();
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for id in (0..KEYS).filter(|id| (id + round + task) % 2 == 0) {
                    store
                        .update::<Profile>(id, |p| {
                            p.map(|p| Profile {
                                visits: p.visits + 1,
                                ..p
                            })
                        })
                        .await
                        .unwrap();
                }
            }
        }));
    }
    let report = store
        .migrate_with::<Profile>(crate::MigrateOptions::new().batch(4))
        .await
        .unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    if capabilities.stable_listing {
        assert_eq!(report.scanned, KEYS, "{report:?}");
    } else {
        assert!(report.scanned <= KEYS, "{report:?}");
    }
    assert_eq!(
        report.rewritten + report.current,
        report.scanned,
        "{report:?}"
    );
    let again = store.migrate::<Profile>().await.unwrap();
    assert_eq!(
        (again.scanned, again.rewritten, again.current),
        (KEYS, 0, KEYS),
        "{again:?}"
    );
    let mut total = 0;
    for id in 0..KEYS {
        let key = store.full_key::<Profile>(id).unwrap();
        let bytes = backend.get(&key).await.unwrap().unwrap();
        let profile: Profile = serde_json::from_slice(&bytes).expect("in the current shape");
        assert_eq!(profile.names, [format!("user-{id}")]);
        total += profile.visits;
    }
    assert_eq!(total, TASKS * ROUNDS * KEYS / 2, "no update lost");
}

/// A change-feed check: a value written in the older shape reaches watchers converted, and a
/// migration's rewrite is announced as a change (the stored bytes changed).
pub async fn previous_shapes_reach_watchers_converted<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    let channel = "svc:watched-profile";
    let mut changes = store.watch::<WatchedProfile>().await.unwrap();
    let key = store.full_key::<WatchedProfile>("a").unwrap();
    backend
        .set(&key, profile_v1("ann"), None, Some(channel))
        .await
        .unwrap();
    let converted = WatchedProfile::from(ProfileV1 { name: "ann".into() });
    let set = Change::Set {
        id: "a".to_string(),
        value: converted.clone(),
    };
    expect_change(&mut changes, set.clone(), "a write in the older shape").await;
    let report = store.migrate::<WatchedProfile>().await.unwrap();
    assert_eq!(report.rewritten, 1, "{report:?}");
    expect_change(&mut changes, set, "the migration's rewrite").await;
    assert_eq!(
        backend.get(&key).await.unwrap(),
        Some(serde_json::to_vec(&converted).unwrap())
    );
}

/// One test per check of [`conformance`](crate::conformance), each on a fresh backend.
///
/// `$flavor` is the test attribute without `#[...]` (such as `tokio::test` or
/// `tokio::test(flavor = "multi_thread", worker_threads = 2)`); `$new_backend` is a future
/// giving `(guard, backend)`, where the guard (a server process, a temp dir, or `()`) lives until
/// the check ends. The tests go in a module `conformance_checks`.
///
/// Two forms:
/// - `conformance_tests!($flavor, $new_backend)`: every check, the change-feed checks
///   ([`Store::watch`](crate::Store::watch)) included, for a backend with a change feed.
/// - `conformance_tests!($flavor, $new_backend, without_feed)`: every check but the change-feed
///   ones, and [`feed_is_unsupported`](crate::conformance::feed_is_unsupported) instead, for a
///   backend that keeps the provided [`Backend::watch`](crate::Backend::watch) (it ignores the
///   `notify` channel of writes and answers `watch` with
///   [`Error::Unsupported`](crate::Error::Unsupported)).
/// - `conformance_tests!($flavor, in_one_test($shared = $start), $new_backend)`: every check,
///   feed included, one after another in one `#[test]` `conformance_checks::in_one_test`, for a
///   deployment too costly to start once per check (a Redis Cluster, say). `$start` runs once
///   and is bound to `$shared`, which `$new_backend` may use to give each check a clean backend.
///   Each check runs on a runtime of its own with two worker threads (`$flavor` is not used),
///   so tasks a check leaves behind end with it. Each check's name is printed before it runs,
///   so a failure is found by the last name printed.
#[macro_export]
macro_rules! conformance_tests {
    ($flavor:meta, $new_backend:expr, without_feed $(,)?) => {
        $crate::conformance_tests!(@with each $flavor, $new_backend, [feed_is_unsupported]);
    };
    ($flavor:meta, $new_backend:expr, capabilities = $caps:expr $(,)?) => {
        $crate::conformance_tests!(@feed capable $flavor, ($new_backend, $caps));
    };
    (@capable $flavor:meta, ($new_backend:expr, $caps:expr), $($check:ident),* $(,)?) => {
        mod conformance_checks {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$flavor]
                async fn $check() {
                    let (_guard, backend) = $new_backend.await;
                    let caps: $crate::conformance::Capabilities = $caps;
                    let name = stringify!($check);
                    if let Some(backend) =
                        $crate::conformance::__declared(name, &caps, backend).await
                    {
                        $crate::conformance::__Check::__run(
                            $crate::conformance::$check,
                            backend,
                            caps,
                        )
                        .await;
                    }
                    drop(_guard);
                }
            )*
        }
    };
    ($flavor:meta, in_one_test($shared:ident = $start:expr), $new_backend:expr $(,)?) => {
        $crate::conformance_tests!(@feed sequence $flavor, ($shared, $start, $new_backend));
    };
    ($flavor:meta, $new_backend:expr $(,)?) => {
        $crate::conformance_tests!(@feed each $flavor, $new_backend);
    };
    (@feed $mode:ident $flavor:meta, $new_backend:tt) => {
        $crate::conformance_tests!(@with $mode $flavor, $new_backend, [
            writes_publish_their_changes,
            writes_that_change_nothing_publish_nothing,
            types_without_notify_publish_nothing,
            watch_id_sees_only_its_id,
            changes_of_one_id_arrive_in_order,
            concurrent_writers_deliver_every_change,
            changes_stay_in_their_namespace_and_type,
            expiries_are_changes,
            expiries_stay_in_their_namespace,
            rate_limit_checks_publish_only_their_windows_expiry,
            undecodable_changes_are_errors_and_the_feed_goes_on,
            slow_watchers_lag_and_keep_the_newest,
            changes_are_send_and_static,
            watchers_come_and_go,
            watchers_hear_nothing_from_before_watch,
            previous_shapes_reach_watchers_converted,
        ]);
    };
    // The checks every backend passes, then `$feed`: the feed checks or `feed_is_unsupported`.
    (@with $mode:ident $flavor:meta, $new_backend:tt, [$($feed:ident),* $(,)?]) => {
        $crate::conformance_tests!(@ $mode $flavor, $new_backend,
            round_trip,
            writes_and_removes_are_opt_in,
            set_applies_the_type_ttl,
            set_resets_the_expiry_to_the_types,
            values_expire,
            invalid_ttls_are_rejected,
            namespaces_separate_services,
            invalid_namespaces_touch_nothing,
            ids_are_escaped_and_never_collide,
            corrupt_values_are_decode_errors,
            unencodable_values_write_nothing,
            concurrent_tasks_share_a_store,
            incr_counts_and_starts_the_window_once,
            incr_is_a_write,
            incr_refuses_non_integers_and_overflow,
            concurrent_increments_are_exact,
            rate_limits_allow_exactly_the_quota_under_concurrency,
            rate_limit_checks_report_what_is_left,
            smooth_rate_limits_have_no_window_edge,
            rate_limits_refuse_values_that_are_not_counters,
            update_changes_only_what_the_closure_accepts,
            update_keeps_the_remaining_expiry,
            update_and_touch_slides_the_expiry,
            update_outcome_says_what_happened,
            remove_if_removes_only_what_the_check_accepts,
            string_ids_can_be_given_as_str,
            touch_slides_the_expiry,
            update_of_a_corrupt_value_is_a_decode_error,
            concurrent_updates_lose_nothing,
            set_if_absent_never_overwrites,
            bulk_reads_and_writes,
            bulk_errors_name_the_key,
            ids_lists_the_type_in_its_namespace,
            ids_report_foreign_keys_and_go_on,
            ids_walk_large_key_spaces,
            usage_counts_the_namespace_per_prefix,
            large_values_and_ids_round_trip,
            previous_shapes_are_read_converted,
            migrate_rewrites_older_values_and_only_those,
            migrate_loses_no_concurrent_update,
            $($feed,)*
        );
    };
    (@each $flavor:meta, $new_backend:expr, $($check:ident),* $(,)?) => {
        mod conformance_checks {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$flavor]
                async fn $check() {
                    let (_guard, backend) = $new_backend.await;
                    $crate::conformance::__Check::__run(
                        $crate::conformance::$check,
                        backend,
                        $crate::conformance::Capabilities::FULL,
                    )
                    .await;
                    drop(_guard);
                }
            )*
        }
    };
    (@sequence $flavor:meta, ($shared:ident, $start:expr, $new_backend:expr),
        $($check:ident),* $(,)?) => {
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
                        $crate::conformance::__Check::__run(
                            $crate::conformance::$check,
                            backend,
                            $crate::conformance::Capabilities::FULL,
                        )
                        .await;
                        drop(guard);
                    });
                )*
                drop($shared);
            }
        }
    };
}

/// What a backend does differently from Redis, declared to the suite by the `capabilities = ...`
/// form of [`conformance_tests!`](crate::conformance_tests): each capability a backend lacks
/// replaces the checks that need it by one that checks the declared difference instead (see
/// [`__declared`] for which). Nothing is skipped silently: a backend that declares nothing
/// ([`Capabilities::FULL`]) runs every check as the default form does.
///
/// A few checks take the capabilities as their second argument and adapt a part of what they
/// check to them ([`writes_publish_their_changes`],
/// [`writes_that_change_nothing_publish_nothing`],
/// [`migrate_rewrites_older_values_and_only_those`], [`migrate_loses_no_concurrent_update`]);
/// the other forms of the macro give them [`Capabilities::FULL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
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
    /// [`Backend::set`] given a channel): writes of types without `notify`, writes without a
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
}

impl Capabilities {
    /// Everything Redis and the memory backend do.
    pub const FULL: Capabilities = Capabilities {
        per_key_expiry: true,
        keeps_remaining_expiry: true,
        expiry_events: true,
        shared_subscription: true,
        announced_writes_only: true,
        stable_listing: true,
        every_change_delivered: true,
        max_value_bytes: None,
        max_ttl: None,
    };
}

/// Runs instead of `check` the check of a difference `capabilities` declares, if `check` needs a
/// capability the backend lacks; else gives `backend` back for `check`. Not public API: the
/// `capabilities = ...` form of [`conformance_tests!`](crate::conformance_tests) calls it.
#[doc(hidden)]
pub async fn __declared<B: Backend + Clone>(
    check: &str,
    capabilities: &Capabilities,
    backend: B,
) -> Option<B> {
    const PER_KEY_EXPIRY: &[&str] = &[
        "values_expire",
        "set_resets_the_expiry_to_the_types",
        "touch_slides_the_expiry",
        "update_and_touch_slides_the_expiry",
        "update_keeps_the_remaining_expiry",
    ];
    const KEPT_EXPIRY: &[&str] = &[
        "incr_counts_and_starts_the_window_once",
        "previous_shapes_are_read_converted",
        "smooth_rate_limits_have_no_window_edge",
    ];
    const EXPIRY_EVENTS: &[&str] = &[
        "expiries_are_changes",
        "expiries_stay_in_their_namespace",
        "rate_limit_checks_publish_only_their_windows_expiry",
    ];
    let c = capabilities;
    if !c.per_key_expiry && PER_KEY_EXPIRY.contains(&check) {
        expiry_is_the_types_alone(backend).await;
    } else if !c.keeps_remaining_expiry && KEPT_EXPIRY.contains(&check) {
        kept_expiry_restarts(backend).await;
    } else if !c.expiry_events && EXPIRY_EVENTS.contains(&check) {
        expiry_events_are_unsupported(backend).await;
    } else if !c.shared_subscription && check == "slow_watchers_lag_and_keep_the_newest" {
        each_watcher_lags_alone(backend).await;
    } else if !c.announced_writes_only && check == "types_without_notify_publish_nothing" {
        every_write_is_heard(backend).await;
    } else if !c.every_change_delivered
        && matches!(
            check,
            "concurrent_writers_deliver_every_change" | "changes_of_one_id_arrive_in_order"
        )
    {
        changes_arrive_in_order_and_converge(backend).await;
    } else if let (Some(limit), "large_values_and_ids_round_trip") = (c.max_value_bytes, check) {
        values_up_to_the_limit(backend, limit).await;
    } else if let (Some(limit), "invalid_ttls_are_rejected") = (c.max_ttl, check) {
        expiry_up_to_the_limit(backend, limit).await;
    } else {
        return Some(backend);
    }
    None
}

/// Checks, for a backend without per-key expiry: `set_with_ttl` with another duration than the
/// type's, or any on a type without ttl, is [`Error::Unsupported`] naming `set_with_ttl` and
/// writes nothing; the type's own ttl is given.
pub async fn expiry_is_the_types_alone<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).namespace("svc");
    for ttl in [Duration::from_secs(5), THIRTY_MINUTES * 2] {
        let err = store
            .set_with_ttl::<Session>(1, &session(1), ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    operation: "set_with_ttl",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(backend.name()), "{err}");
        assert_eq!(
            store.get::<Session>(1).await.unwrap(),
            None,
            "nothing written"
        );
    }
    let err = store
        .set_with_ttl::<Job>(
            ("a".to_string(), 1),
            &Job { status: "x".into() },
            THIRTY_MINUTES,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    store
        .set_with_ttl::<Session>(1, &session(1), THIRTY_MINUTES)
        .await
        .unwrap();
    store.set::<Session>(2, &session(2)).await.unwrap();
    for id in [1, 2] {
        let left = store.ttl::<Session>(id).await.unwrap().unwrap();
        assert!(left > THIRTY_MINUTES - Duration::from_secs(60), "{left:?}");
    }
}

/// Checks, for a backend whose writes cannot keep a remaining expiry: `update` and `incr` of an
/// existing value give it the type's whole ttl again.
pub async fn kept_expiry_restarts<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let window = Duration::from_secs(60);
    store.incr::<ApiCalls>("a".to_string(), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(store.incr::<ApiCalls>("a".to_string(), 1).await.unwrap(), 2);
    let left = store
        .ttl::<ApiCalls>("a".to_string())
        .await
        .unwrap()
        .unwrap();
    assert!(
        left > window - Duration::from_millis(500),
        "restarted: {left:?}"
    );
    let task = Task {
        status: "queued".into(),
        runs: 0,
    };
    store.set::<Task>(1, &task).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    store
        .update::<Task>(1, |t| {
            t.map(|t| Task {
                runs: t.runs + 1,
                ..t
            })
        })
        .await
        .unwrap();
    let left = store.ttl::<Task>(1).await.unwrap().unwrap();
    assert!(
        left > Duration::from_secs(3600) - Duration::from_millis(500),
        "{left:?}"
    );
}

/// Checks, for a backend that cannot announce expiries: `enable_expiry_events` says so.
pub async fn expiry_events_are_unsupported<B: Backend + Clone>(backend: B) {
    let err = backend.enable_expiry_events().await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

/// Checks, for a backend whose watchers each have their own subscription: a watcher that does
/// not read lags, says how many it missed, and keeps the newest changes.
pub async fn each_watcher_lags_alone<B: Backend + Clone>(backend: B) {
    let store = writable(&backend).watch_buffer(8);
    let mut lagging = store.watch::<Watched>().await.unwrap();
    for n in 0..100 {
        store
            .set::<Watched>("burst".to_string(), &watched("burst", n))
            .await
            .unwrap();
    }
    let mut missed = 0;
    let mut last = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), lagging.next()).await {
            Ok(Some(Err(Error::Lagged { missed: m }))) => missed += m,
            Ok(Some(Ok(Change::Set { value, .. }))) => last = Some(value.step),
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
    }
    assert!(missed > 0, "the watcher lagged");
    assert_eq!(last, Some(99), "the newest change kept");
}

/// Checks, for a backend whose watchers hear every write to a type's storage (no
/// [`announced_writes_only`](Capabilities::announced_writes_only)): a write of a type without
/// `notify`, a [`Backend::set`] without a channel, a `touch` and the rate-limit checks that
/// count (fixed window and smooth) each reach a watcher of the type as a change to the value
/// stored; `touch` as a change to the same value.
pub async fn every_write_is_heard<B: Backend + Clone>(backend: B) {
    let store = writable(&backend);
    let next_event = async |events: &mut BoxStream<'static, crate::Result<Event>>, what: &str| {
        match tokio::time::timeout(FEED_WAIT, events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => panic!("{what}: expected a change, got the error {e:?}"),
            Ok(None) => panic!("{what}: the change feed ended"),
            Err(_) => panic!("{what}: no change arrived within {FEED_WAIT:?}"),
        }
    };
    let set = |key: &str, value: &[u8]| Event::Set {
        key: key.into(),
        value: value.into(),
    };
    // Declared with its ttl before the watch, as a store's first call would.
    store.full_key::<Session>(1).unwrap();
    let mut sessions = backend.watch(&Watch::new("session")).await.unwrap();

    store.set::<Session>(1, &session(1)).await.unwrap();
    let value = serde_json::to_vec(&session(1)).unwrap();
    let event = next_event(&mut sessions, "set of a type without `notify`").await;
    assert_eq!(event, set("session:1", &value), "set of Session");

    backend
        .set("session:2", b"raw".to_vec(), Session::TTL, None)
        .await
        .unwrap();
    let event = next_event(&mut sessions, "a write without a channel").await;
    assert_eq!(
        event,
        set("session:2", b"raw"),
        "Backend::set without a channel"
    );

    assert!(store.touch::<Session>(1).await.unwrap());
    let event = next_event(&mut sessions, "touch").await;
    assert_eq!(
        event,
        set("session:1", &value),
        "touch: the same value again"
    );

    let client = || "client".to_string();
    let mut fixed = store.watch::<WatchedFixed>().await.unwrap();
    assert!(store.check::<WatchedFixed>(client()).await.unwrap().allowed);
    let change = next_change(&mut fixed, "a fixed-window rate-limit check").await;
    assert_eq!(
        change,
        Change::Set {
            id: client(),
            value: WatchedFixed(1),
        },
        "the window's first count"
    );
    let mut smooth = store.watch::<WatchedSmooth>().await.unwrap();
    assert!(
        store
            .check::<WatchedSmooth>(client())
            .await
            .unwrap()
            .allowed
    );
    match next_change(&mut smooth, "a smooth rate-limit check").await {
        Change::Set { id, .. } => assert_eq!(id, client()),
        other => panic!("a smooth rate-limit check: expected a set, got {other:?}"),
    }
}

/// Checks, for a backend with a value size limit: values up to it round trip, a larger one is
/// an error naming the key and writes nothing.
pub async fn values_up_to_the_limit<B: Backend + Clone>(backend: B, limit: usize) {
    let store = writable(&backend);
    let big = Job {
        status: "x".repeat(limit / 2),
    };
    let id = ("big".to_string(), 1);
    store.set::<Job>(&id, &big).await.unwrap();
    assert_eq!(store.get::<Job>(&id).await.unwrap(), Some(big));
    let over = Job {
        status: "x".repeat(limit + 1),
    };
    let err = store
        .set::<Job>(("over".to_string(), 1), &over)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("job:over:1"), "{err}");
    assert_eq!(
        store.get::<Job>(("over".to_string(), 1)).await.unwrap(),
        None
    );
}

/// Checks, for a backend with a longest expiry: the derive's longest ttl is accepted and kept
/// for that limit.
pub async fn expiry_up_to_the_limit<B: Backend + Clone>(backend: B, limit: Duration) {
    let store = writable(&backend);
    store.set::<Forever>(1, &Forever(1)).await.unwrap();
    let left = store.ttl::<Forever>(1).await.unwrap().unwrap();
    assert!(
        left <= limit && left > limit - Duration::from_secs(60),
        "{left:?}"
    );
}

/// How the forms of [`conformance_tests!`] call a check: `check(backend)`, or, for a check that
/// adapts to what a backend declares, `check(backend, &capabilities)` ([`Capabilities::FULL`]
/// but in the `capabilities = ...` form). `Form` tells the two apart: `()` for the first,
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

#[cfg(test)]
mod slot_tests {
    #[test]
    fn cluster_slots_match_redis() {
        // `CLUSTER KEYSLOT` of these keys on Redis 7.
        assert_eq!(super::redis_cluster_slot("foo"), 12182);
        assert_eq!(
            super::redis_cluster_slot("{user1000}.following"),
            super::redis_cluster_slot("user1000")
        );
        assert_eq!(super::redis_cluster_slot("123456789"), 12739);
    }
}
