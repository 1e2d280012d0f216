use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "cache", id = u64)]
struct Cache<T> {
    value: T,
}

fn main() {}
