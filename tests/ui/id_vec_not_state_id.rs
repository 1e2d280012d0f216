use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "blob", id = Vec<u8>)]
struct Blob;

fn main() {}
