//! The minimal backend of the "Writing a backend" docs (`state-store/docs/writing_a_backend.rs`,
//! shown in the `state_store::backend` module docs) passes the whole exported conformance suite,
//! in the one form the README and the docs show: the five core methods are all a new engine
//! needs. It has no change feed, which the suite detects: each feed check is replaced by one that
//! `watch` is unsupported and notified writes work all the same (named in the test output).

include!("../state-store/docs/writing_a_backend.rs");

// Its clock is the wall clock, as the provided rate limiters' is, so the suite runs in real
// time, as it would for an engine whose server keeps time.
state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    async { ((), MapBackend::default()) }
);

/// The same backend with a yield to the scheduler before every core call, as a remote engine
/// would await its network: concurrent tasks then interleave between the read and the
/// conditional write of the provided `incr`, rate-limit and `update` loops, and the suite's
/// exact-count checks hold only if those loops retry every lost race.
mod interleaved {
    use super::*;

    #[derive(Debug, Default, Clone)]
    pub struct Interleaved(MapBackend);

    impl Backend for Interleaved {
        fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.get_versioned(key).await
            })
        }

        fn put<'a>(
            &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.put(key, value, options).await
            })
        }

        fn remove<'a>(
            &'a self, key: &'a str, options: RemoveOptions<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.remove(key, options).await
            })
        }

        fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.ttl(key).await
            })
        }

        fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
            self.0.list(prefix)
        }
    }

    // The form of earlier versions, which declares the missing feed up front, still works.
    state_store::conformance_tests!(
        tokio::test(flavor = "multi_thread", worker_threads = 2),
        async { ((), Interleaved::default()) },
        without_feed
    );
}
