use serde::{Deserialize, Serialize};
use state_store::StateKey;

// One second past the longest expiry the store accepts (the edge is tested to compile and to be
// written in the conformance suite's `Forever`).
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "2305843009213694s")]
struct Session;

fn main() {}
