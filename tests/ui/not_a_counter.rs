use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64)]
struct Session(i64);

fn is_counter<C: state_store::Counter>() {}

fn main() {
    is_counter::<Session>();
}
