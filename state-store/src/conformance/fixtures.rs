//! The state types the checks store, and the helpers that build them.

use super::*;

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

// The counters implement `Counter` by hand rather than through `#[state(counter)]`, so that
// `do_not_recommend` keeps them out of users' compiler messages ("the following other types
// implement trait `Counter`") when the `conformance` feature is on; the rate limits' `RateLimit`
// likewise. `counters!` writes, for each `Name(derives) [state(...)] [limit(quota, policy)];`, a
// `pub struct Name(pub i64)` deriving `Debug`, `Serialize`, `Deserialize` and the derives named
// (and `StateKey`, with the `state(...)` given, when there is one), its `Counter`, and with
// `limit(...)` its `RateLimit` of that quota and policy.
macro_rules! counters {
    ($(
        $(#[$doc:meta])*
        $name:ident($($derive:ident),*)
        $(state($($state:tt)*))?
        $(limit($quota:expr, $policy:ident))?;
    )*) => {$(
        $(#[$doc])*
        #[derive(Debug, $($derive,)* Serialize, Deserialize)]
        $(#[derive(StateKey)] #[state($($state)*)])?
        pub struct $name(pub i64);
        $(
            #[diagnostic::do_not_recommend]
            impl RateLimit for $name {
                const QUOTA: Quota = $quota;
                const POLICY: Policy = Policy::$policy;
            }
        )?
        #[diagnostic::do_not_recommend]
        impl crate::Counter for $name {}
    )*};
}

counters! {
    /// A counter whose window is its ttl.
    ApiCalls(Clone, Copy, PartialEq) state(prefix = "ratelimit", id = String, ttl = "1m");
    /// A counter without expiry.
    Total(Clone, Copy, PartialEq) state(prefix = "total", id = u8);
    /// Rate limits whose windows outlast a test: exact counts under concurrency.
    HourlyFixed() state(prefix = "hourly-fixed", id = String)
        limit(Quota::per_hour(100), FixedWindow);
    /// A state type of the checks: `HourlySmooth`.
    HourlySmooth() state(prefix = "hourly-smooth", id = String)
        limit(Quota::per_hour(100), Smooth);
    /// Ten a second, both ways: for windows and edges.
    FastFixed() state(prefix = "fast-fixed", id = u32) limit(Quota::per_second(10), FixedWindow);
    /// A state type of the checks: `FastSmooth`.
    FastSmooth() state(prefix = "fast-smooth", id = u32) limit(Quota::per_second(10), Smooth);
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

/// `task` after one more run.
pub(crate) fn ran_again(task: Task) -> Task {
    Task {
        runs: task.runs + 1,
        ..task
    }
}

/// A state type of the change-feed checks: `Watched`, notified (its writes announce
/// themselves, so [`Store::watch`] reads them), with a String id and a ttl of seven days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    /// Its status.
    pub status: String,
    /// Which write of a sequence stored it.
    pub step: u64,
}

counters! {
    /// A notified counter: `incr` announces the new count. Its prefix starts with `Watched`'s, so
    /// that a feed that routes keys by prefix alone shows up.
    WatchedCount(Clone, Copy, PartialEq);
    /// A notified fixed-window rate limit, three calls an hour: its checks announce nothing.
    WatchedFixed(Clone, Copy, PartialEq) limit(Quota::per_hour(3), FixedWindow);
    /// A notified smooth rate limit, three calls an hour: its checks announce nothing.
    WatchedSmooth(Clone, Copy, PartialEq) limit(Quota::per_hour(3), Smooth);
    /// A notified fixed-window rate limit, ten calls a second: its window ends a second after its
    /// first check.
    WatchedWindow(Clone, Copy, PartialEq) limit(Quota::per_second(10), FixedWindow);
    /// A notified smooth rate limit, ten calls a second: its key ends a tenth of a second after a
    /// lone check.
    WatchedPace(Clone, Copy, PartialEq) limit(Quota::per_second(10), Smooth);
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

pub(crate) fn writable<B: Backend + Clone>(backend: &B) -> Store<B> {
    Store::new(backend.clone()).enable_set().enable_remove()
}

pub(crate) const THIRTY_MINUTES: Duration = Duration::from_secs(30 * 60);

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
        let Profile { names, visits } = Profile::from(old);
        WatchedProfile { names, visits }
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
pub(crate) fn profile_v1(name: &str) -> Vec<u8> {
    serde_json::to_vec(&ProfileV1 { name: name.into() }).unwrap()
}

/// The `Profile` a `ProfileV1` named `name` reads as.
pub(crate) fn profile_from_v1(name: &str) -> Profile {
    Profile::from(ProfileV1 { name: name.into() })
}
