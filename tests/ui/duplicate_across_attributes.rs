use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64)]
#[state(ttl = "30m", id = u32)]
struct Session;

fn main() {}
