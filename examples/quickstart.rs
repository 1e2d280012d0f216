//! Quickstart: declare state once, then read and write it with compiler-checked keys and values.
//!
//! Runs on the in-memory backend with nothing set up:
//!
//!     cargo run --example quickstart
//!
//! and against Redis when `REDIS_URL` is set:
//!
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart

use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{
    AnyBackend, Backend, MemoryBackend, Result, SetOptions, StateKey, Store, UpdateOptions, Updated,
};

/// A shopping session. It expires 30 minutes after it is `set`, or after its last `touch`,
/// `get_and_touch` or `update_with` with `UpdateOptions::new().refresh_ttl()`; a plain `update` keeps the time it has left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
pub struct Session {
    pub cart: Vec<String>,
    pub updated_at: i64,
}

/// A job's status under a composite id, kept until removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = (String, u32))]
pub struct Job {
    pub status: String,
}

/// Handler code is written once, for the backend chosen at run time. The item is added with a
/// compare-and-set (two concurrent requests cannot lose one another's item), and the session
/// gets 30 more minutes.
async fn add_to_cart(store: &Store<AnyBackend>, user: u64, item: &str) -> Result<Session> {
    let empty = || Session {
        cart: Vec::new(),
        updated_at: 0,
    };
    let added = store
        .update_with::<Session>(user, UpdateOptions::new().refresh_ttl(), |current| {
            let mut session = current.unwrap_or_else(empty);
            session.cart.push(item.to_string());
            session.updated_at += 1;
            Some(session)
        })
        .await?;
    match added {
        Updated::Written(session) => Ok(session),
        // Not reached: the closure always returns a session.
        Updated::Unchanged(session) => Ok(session.unwrap_or_else(empty)),
    }
}

async fn demo(store: Store<AnyBackend>) -> Result<()> {
    let session = add_to_cart(&store, 42, "book").await?;
    let session_key = store.full_key::<Session>(42)?;
    println!("{session_key} = {session:?}");
    let left = store.ttl::<Session>(42).await?.unwrap_or_default();
    println!("{session_key} expires in {}s", left.as_secs());

    let job_id = ("nightly:report".to_string(), 7);
    store
        .set::<Job>(
            &job_id,
            &Job {
                status: "queued".into(),
            },
        )
        .await?;
    println!(
        "{} = {:?}",
        store.full_key::<Job>(&job_id)?,
        store.get::<Job>(&job_id).await?
    );

    // A per-key expiry: on NATS JetStream KV (one `max_age` per bucket) only the type's ttl.
    match store
        .set_with::<Session>(
            7,
            &session,
            SetOptions::new().ttl(Duration::from_millis(200)),
        )
        .await
    {
        Ok(()) => println!(
            "short session stored: {}",
            store.exists::<Session>(7).await?
        ),
        Err(e @ state_store::Error::Unsupported { .. }) => println!("short session: {e}"),
        Err(e) => return Err(e),
    }

    println!("removed session 42: {}", store.remove::<Session>(42).await?);
    println!("removed job: {}", store.remove::<Job>(&job_id).await?);
    store.remove::<Session>(7).await?;

    // Writes and deletes are opt-in: a store without enable_set() refuses to write.
    let read_only = Store::new(MemoryBackend::new());
    let refused = read_only.set::<Session>(1, &session).await.unwrap_err();
    println!("read-only store: {refused}");
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
        .namespace("quickstart")
        .enable_set()
        .enable_remove()
}
