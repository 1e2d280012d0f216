use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, expiry = "30m")]
struct Session;

fn main() {}
