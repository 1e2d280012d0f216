use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, StateKey, Store};

// A counter, but no `RateLimit` impl says what its quota is.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "calls", id = String, counter)]
struct Calls(i64);

async fn handler(store: Store<MemoryBackend>) {
    let _ = store.check::<Calls>("client".to_string()).await;
}

fn main() {}
