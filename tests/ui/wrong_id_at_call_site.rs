use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64)]
struct Session;

fn main() {
    let _ = Session::key(&"x");
}
