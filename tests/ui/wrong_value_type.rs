use serde::{Deserialize, Serialize};
use state_store::StateKey;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64)]
struct Session;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64)]
struct Job;

fn f(_s: &Session) {
    let _: state_store::Key<Job> = Session::key(&1);
}

fn main() {}
