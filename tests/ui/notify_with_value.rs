use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = String, notify = true)]
struct Job {
    status: String,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "task", id = String, notify("task-changes"))]
struct Task {
    status: String,
}

fn main() {}
