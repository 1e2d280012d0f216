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

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::{Backend, Error, Policy, Quota, RateLimit, StateKey, Store};
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
        backend.set(&key, raw.to_vec(), None, None).await.unwrap();
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
        .set("session:2", b"not json".to_vec(), None, None)
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
            .set(foreign, b"{}".to_vec(), None, None)
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

/// One test per check of [`conformance`](crate::conformance), each on a fresh backend.
///
/// `$flavor` is the test attribute without `#[...]` (such as `tokio::test` or
/// `tokio::test(flavor = "multi_thread", worker_threads = 2)`); `$new_backend` is a future
/// giving `(guard, backend)`, where the guard (a server process, a temp dir, or `()`) lives until
/// the check ends. The tests go in a module `conformance_checks`.
#[macro_export]
macro_rules! conformance_tests {
    ($flavor:meta, $new_backend:expr) => {
        $crate::conformance_tests!(@each $flavor, $new_backend,
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
            update_of_a_corrupt_value_is_a_decode_error,
            concurrent_updates_lose_nothing,
            set_if_absent_never_overwrites,
            bulk_reads_and_writes,
            bulk_errors_name_the_key,
            ids_lists_the_type_in_its_namespace,
            ids_report_foreign_keys_and_go_on,
            ids_walk_large_key_spaces,
            large_values_and_ids_round_trip,
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
                    $crate::conformance::$check(backend).await;
                    drop(_guard);
                }
            )*
        }
    };
}
