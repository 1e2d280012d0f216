use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "ratelimit", id = String, counter)]
struct ApiCalls {
    count: i64,
}

fn main() {}
