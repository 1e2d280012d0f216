use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session")]
struct Session;

fn main() {}
