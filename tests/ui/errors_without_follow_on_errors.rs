use serde::{Deserialize, Serialize};
use state_store::StateKey;

// Only the prefix error is reported: the derive still implements the trait and `key`, so the
// uses below do not add "not implemented" errors on top.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "user:session", id = u64, counter)]
struct Session(i64);

fn is_counter<C: state_store::Counter>() {}

fn main() {
    let _ = Session::key(&1);
    is_counter::<Session>();
}
