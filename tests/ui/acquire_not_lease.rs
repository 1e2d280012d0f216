use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, StateKey, Store};

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, ttl = "30s")]
struct Job {
    worker: String,
}

async fn claim(store: &Store<MemoryBackend>) {
    let _ = store.acquire::<Job>(7, &Job { worker: "a".into() }).await;
}

fn main() {
    let _ = claim;
}
