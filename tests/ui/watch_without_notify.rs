use serde::{Deserialize, Serialize};
use state_store::{MemoryBackend, StateKey, Store};

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    cart: Vec<String>,
}

async fn handler(store: Store<MemoryBackend>) {
    // Only `#[state(notify)]` types have a change feed: their writes publish, others' do not.
    let _ = store.watch::<Session>().await;
    let _ = store.watch_id::<Session>(1).await;
}

fn main() {}
