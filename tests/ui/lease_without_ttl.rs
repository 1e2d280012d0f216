use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job-lease", id = u64, lease)]
struct JobLease {
    worker: String,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "hits", id = u64, ttl = "1m", counter, lease)]
struct Hits(i64);

fn main() {}
