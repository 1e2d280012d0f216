use serde::{Deserialize, Serialize};
use state_store::StateKey;

// Redis counters are signed 64-bit: a u64 counter could not hold what increments produce.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "ratelimit", id = String, counter)]
struct ApiCalls(u64);

fn main() {}
