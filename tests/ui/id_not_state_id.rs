use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "reading", id = f64)]
struct Reading(f64);

fn main() {}
