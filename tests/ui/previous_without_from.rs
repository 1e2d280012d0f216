use serde::{Deserialize, Serialize};
use state_store::StateKey;

// Values in the `previous` shape are read as `SessionV1` and converted with `From`, which is
// missing here.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, previous = SessionV1)]
struct Session {
    cart: Vec<(String, u32)>,
}

#[derive(Deserialize)]
struct SessionV1 {
    cart: Vec<String>,
}

fn main() {}
