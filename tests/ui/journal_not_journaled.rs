use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, Position, StateKey, Store};

// A type without `history` keeps no journal to read.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "order", id = u64, notify)]
struct Order {
    status: String,
}

async fn read(store: Store<MemoryBackend>) {
    let _ = store.journal::<Order>(Position::Start).await;
}

fn main() {}
