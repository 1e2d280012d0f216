use state_store::Quota;

// A quota that allows nothing stops the build when it is a const.
const NONE: Quota = Quota::per_minute(0);

fn main() {
    let _ = NONE;
}
