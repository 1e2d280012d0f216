use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "a:b", id = u64, ttl = "30x", colour = "red", ttl = 0, counter)]
struct Session {
    cart: Vec<String>,
}

fn main() {}
