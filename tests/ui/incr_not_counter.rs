use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, StateKey, Store};

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    cart: Vec<String>,
}

async fn handler(store: Store<MemoryBackend>) {
    // `incr` is for `#[state(counter)]` types only.
    let _ = store.incr::<Session>(1, 1).await;
}

fn main() {}
