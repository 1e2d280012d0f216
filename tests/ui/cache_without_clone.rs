use serde::{Deserialize, Serialize};
use state_store::StateKey;

// A cached value is handed out as a clone of the one kept: `cache` needs `Clone`.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "flags", id = String, cache)]
struct Flags {
    on: bool,
}

fn main() {}
