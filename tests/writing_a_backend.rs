//! The minimal backend of the "Writing a backend" docs (`state-store/docs/writing_a_backend.rs`,
//! shown in the `state_store::backend` module docs) passes the whole exported conformance suite:
//! the five core methods are all a new engine needs.

include!("../state-store/docs/writing_a_backend.rs");

// Its expiry is on tokio's clock, so the suite may pause time; real time here, as an engine
// whose server keeps time would run it, keeps the provided GCRA's wall clock in step.
state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    async { ((), MapBackend::default()) }
);
