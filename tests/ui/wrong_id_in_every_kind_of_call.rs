use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, Policy, Quota, RateLimit, StateKey, Store};

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m", notify)]
struct Session {
    cart: Vec<String>,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "hits", id = String, ttl = "1m", counter)]
struct Hits(i64);

impl RateLimit for Hits {
    const QUOTA: Quota = Quota::per_minute(10);
    const POLICY: Policy = Policy::Smooth;
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job-lease", id = u64, ttl = "30s", lease)]
struct JobLease {
    worker: String,
}

// A wrong id is one error per call, whichever kind of call: at the id, with the id type.
async fn handler(store: Store<MemoryBackend>, session: Session, lease: JobLease) {
    let _ = store.get_many::<Session>(["a", "b"]).await;
    let _ = store.set::<Session>("1", &session).await;
    let _ = store.incr::<Hits>(1, 1).await;
    let _ = store.check::<Hits>(1).await;
    let _ = store.update::<Session>("1", |s| s).await;
    let _ = store.watch_id::<Session>("1").await;
    if let Ok(Some(held)) = store.acquire::<JobLease>("7", &lease).await {
        let _ = store.fenced(&held).set::<Session>("1", &session).await;
    }
}

fn main() {}
