use state_store::StateKey;

#[derive(StateKey)]
#[state(prefix = "bits", id = u64)]
union Bits {
    int: u64,
    float: f64,
}

fn main() {}
