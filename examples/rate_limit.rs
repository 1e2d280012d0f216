//! Rate limiting declared as types, checked atomically in one round trip.
//!
//!     cargo run --example rate_limit                                   # in-memory backend
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example rate_limit  # against Redis
//!
//! The racy version this replaces reads the count, compares it and writes it back: concurrent
//! requests all read the same count and all pass, and the window's expiry is easily forgotten.

use serde::{Deserialize, Serialize};
use state_store::{AnyBackend, Backend, Policy, Quota, RateLimit, Result, StateKey, Store};

/// Login attempts: at most 5 per minute per account, counted in fixed windows.
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "login-attempts", id = String, counter)]
struct LoginAttempts(i64);

impl RateLimit for LoginAttempts {
    const QUOTA: Quota = Quota::per_minute(5);
    const POLICY: Policy = Policy::FixedWindow;
}

/// API calls: 10 per second per client on average, up to 3 at once, with no window edge to
/// exploit (GCRA).
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "api-rate", id = String, counter)]
struct ApiRate(i64);

impl RateLimit for ApiRate {
    const QUOTA: Quota = Quota::per_second(10).allow_burst(3);
    const POLICY: Policy = Policy::Smooth;
}

/// A plain counter: each increment is atomic, and the first one starts a one-hour window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "requests", id = String, ttl = "1h", counter)]
struct Requests(i64);

async fn demo(store: Store<AnyBackend>) -> Result<()> {
    let account = "alice".to_string();
    for attempt in 1..=6 {
        let decision = store.check::<LoginAttempts>(&account).await?;
        if decision.allowed {
            println!(
                "login attempt {attempt}: allowed, {} left this minute",
                decision.remaining
            );
        } else {
            println!(
                "login attempt {attempt}: refused, retry in {}s",
                decision.retry_after.as_secs_f64().ceil()
            );
        }
    }

    // 64 concurrent requests from one client against a burst of 3.
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.check::<ApiRate>("client-1".to_string()).await })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.expect("task")?.allowed);
    }
    println!("64 concurrent API calls: {allowed} allowed (burst 3)");

    let total = store.incr::<Requests>(&account, 1).await?;
    println!("requests counted for {account}: {total}");

    // Clean up so the example can run again against the same Redis.
    store.remove::<LoginAttempts>(&account).await?;
    store.remove::<ApiRate>("client-1".to_string()).await?;
    store.remove::<Requests>(&account).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Redis when REDIS_URL is set, else the embedded memory backend: chosen at run time, so the
    // handlers above are compiled once.
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    match std::env::var("REDIS_URL") {
        Ok(_) => println!("backend: {}", backend.name()),
        Err(_) => println!("backend: {} (set REDIS_URL to use Redis)", backend.name()),
    }
    demo(writable(backend)).await
}

fn writable(backend: AnyBackend) -> Store<AnyBackend> {
    Store::new(backend)
        .namespace("example")
        .enable_set()
        .enable_remove()
}
