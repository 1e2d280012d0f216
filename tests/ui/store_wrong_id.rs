use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, StateKey, Store};

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    cart: Vec<String>,
}

async fn handler(store: Store<MemoryBackend>) {
    // The id type comes from `#[state(id = u64)]`.
    let _ = store.get::<Session>("42").await;
}

fn main() {}
