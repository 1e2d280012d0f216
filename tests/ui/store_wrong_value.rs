use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, StateKey, Store};

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    cart: Vec<String>,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64)]
struct Job {
    status: String,
}

async fn handler(store: Store<MemoryBackend>, job: Job) {
    // A Job is not a Session.
    let _ = store.set::<Session>(1, &job).await;
    let _: Option<Job> = store.get::<Session>(1).await.unwrap();
}

fn main() {}
