use serde::{Deserialize, Serialize};
use state_store::StateKey;

// A journal keeps the changes a type announces: `history` needs `notify`.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, history = 1_000)]
struct Job {
    status: String,
}

// How many changes to keep: a positive integer.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "task", id = u64, notify, history = "lots")]
struct Task {
    status: String,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "step", id = u64, notify, history = 0)]
struct Step {
    status: String,
}

fn main() {}
