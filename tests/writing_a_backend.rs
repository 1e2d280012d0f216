//! The minimal backend of the "Writing a backend" docs (`state-store/docs/writing_a_backend.rs`,
//! shown in the `state_store::backend` module docs) passes the whole exported conformance suite
//! but the change-feed checks (it has no feed, and is checked to say so): the five core methods
//! are all a new engine needs.

include!("../state-store/docs/writing_a_backend.rs");

// Its expiry is on tokio's clock, but the provided GCRA reads the wall clock (`Backend::now`), so
// the suite runs in real time, as it would for an engine whose server keeps time.
// It has no change feed and no compare-and-delete: each feed check is replaced by one that
// `watch` is unsupported and notified writes work all the same, and the `remove_if` check by one
// that `remove_if` is unsupported. Here the missing feed is declared (`without_feed`); the
// interleaved copy below uses the plain form, where both are detected.
state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    async { ((), MapBackend::default()) },
    without_feed
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
            &'a self,
            key: &'a str,
            value: Vec<u8>,
            mode: PutMode,
            expiry: Expiry,
            notify: Notify<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.put(key, value, mode, expiry, notify).await
            })
        }

        fn remove<'a>(&'a self, key: &'a str, notify: Notify<'a>) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.remove(key, notify).await
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

    // The plain form: the missing feed is detected (`watch` answers `Unsupported`).
    state_store::conformance_tests!(
        tokio::test(flavor = "multi_thread", worker_threads = 2),
        async { ((), Interleaved::default()) }
    );
}
