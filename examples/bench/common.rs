//! What the workloads share: the error type, the state types and the constants.

use serde::{Deserialize, Serialize};
use state_store::{Policy, Quota, RateLimit, StateKey};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Res<T> = Result<T, BoxError>;

/// A realistic session: about 200 bytes of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) cart: Vec<String>,
    pub(crate) locale: String,
    pub(crate) updated_at: i64,
    pub(crate) flags: u32,
}

/// The same session, declared with `cache`: read often, kept decoded in the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "csession", id = u64, ttl = "30m", cache)]
pub(crate) struct CachedSession {
    pub(crate) user: String,
    pub(crate) cart: Vec<String>,
    pub(crate) locale: String,
    pub(crate) updated_at: i64,
    pub(crate) flags: u32,
}

pub(crate) fn cached_session(id: u64) -> CachedSession {
    let Session {
        user,
        cart,
        locale,
        updated_at,
        flags,
    } = session(id);
    CachedSession {
        user,
        cart,
        locale,
        updated_at,
        flags,
    }
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "calls", id = u64, ttl = "1m", counter)]
pub(crate) struct Calls(i64);

/// Quotas large enough that every check in the benchmark is allowed.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "rate-fixed", id = u64, ttl = "1m", counter)]
pub(crate) struct FixedRate(i64);

impl RateLimit for FixedRate {
    const QUOTA: Quota = Quota::per_second(1_000_000);
    const POLICY: Policy = Policy::FixedWindow;
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "rate-smooth", id = u64, ttl = "1m", counter)]
pub(crate) struct SmoothRate(i64);

impl RateLimit for SmoothRate {
    const QUOTA: Quota = Quota::per_second(1_000_000);
    const POLICY: Policy = Policy::Smooth;
}

/// Sessions written before the benchmark; reads pick among them.
pub(crate) const POOL: u64 = 1000;
/// The `PX` the raw side sends, as the store does for `Session`'s `ttl = "30m"`.
pub(crate) const SESSION_TTL_MS: u64 = 30 * 60 * 1000;
/// Concurrency of the "many tasks" workloads.
pub(crate) const MANY: usize = 64;
/// Batch size of the bulk workloads.
pub(crate) const BATCH: u64 = 100;
/// Ids outside the pool for the update workloads.
pub(crate) const UPDATE_SOLO_ID: u64 = 100_000;
pub(crate) const UPDATE_SHARED_ID: u64 = 100_001;
/// The typed-vs-raw target.
pub(crate) const TARGET: f64 = 0.95;
/// Typed `get` at 1 task against raw: read batching must cost a lone caller nothing.
pub(crate) const GET1_TARGET: f64 = 0.97;
/// Typed `get` at many tasks against raw: what read batching must win.
pub(crate) const BATCHED_TARGET: f64 = 1.5;
/// A cached hot-key get against a raw `GET` + decode, at 1 task.
pub(crate) const CACHE_HIT_TARGET: f64 = 20.0;
/// A write of a cached type against one of an uncached type.
pub(crate) const CACHED_WRITE_TARGET: f64 = 0.95;
/// The `AnyBackend`-vs-concrete target: within 2 %.
pub(crate) const ANY_TARGET: f64 = 0.98;
/// Leases, typed against raw: `acquire` + `release` against `SET NX PX` + a compare-and-delete
/// script, and a fenced `set` against a plain one.
pub(crate) const LEASE_TARGET: f64 = 0.90;
/// A durable `set` (one replica) against a plain one at 1 task: one more round trip, the `WAIT`.
pub(crate) const DURABLE1_TARGET: f64 = 0.5;
/// ... and at many tasks, where concurrent durable writes share their `WAIT`s (group commit).
pub(crate) const DURABLE_MANY_TARGET: f64 = 0.8;
/// A get of a type declared with `previous`, of a value in the current shape, against the same
/// type without: within 2 %.
pub(crate) const PREVIOUS_TARGET: f64 = 0.98;

pub(crate) fn session(id: u64) -> Session {
    Session {
        user: format!("customer-{id:06}@shop.example.com"),
        cart: vec![
            "sku-100234-espresso-beans-1kg".into(),
            "sku-200871-ceramic-mug-blue".into(),
            "sku-310045-milk-frother".into(),
        ],
        locale: "en-GB".into(),
        updated_at: 1_767_225_600_000 + id as i64,
        flags: 0b1011,
    }
}

/// Spreads the ids a task reads or writes over the pool.
pub(crate) fn pick(task: usize, i: u64) -> u64 {
    (task as u64 * 7919 + i) % POOL
}
