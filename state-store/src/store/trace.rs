//! Spans of [`Store`](crate::Store) calls and events of the engines, with the `tracing` feature,
//! and the duration of each call with the `metrics` feature (see `crate::metrics`): both are
//! recorded here, where a call's operation, prefix and outcome are known. Nothing at all
//! without either.
//!
//! Every `Store` call but [`Store::ids`](crate::Store::ids) (a stream, read at the caller's
//! pace) runs in one span at the `INFO` level, target `state_store`, named after
//! the operation (`get`, `update`, `check`, ...), with OpenTelemetry's database client fields:
//!
//! | field | value |
//! |---|---|
//! | `otel.kind` | `client` |
//! | `db.system.name` | the engine: `redis`, `memory` (see [`Extensions::system_name`](crate::backend::Extensions::system_name)) |
//! | `db.operation.name` | the operation, as the span's name |
//! | `db.operation.batch.size` | how many ids a bulk call (`get_many`, `set_many`, `remove_many`) was given |
//! | `state.namespace` | the store's namespace (empty without one) |
//! | `state.prefix` | the state type's key prefix |
//! | `state.id` | the id as written in the key, only with [`Store::trace_ids`](crate::Store::trace_ids) |
//! | `state.outcome` | `found` / `none`, `true` / `false`, `written` / `unchanged`, `allowed` / `refused`, `ok`, or `error` |
//! | `state.attempts` | for `update` and its siblings: how many times the change ran (1 without a lost race) |
//! | `error.type` | on failure, the [`Error`](crate::Error) variant: `Decode`, `Conflict`, `Backend`, ... |
//! | `otel.status_code` | `ERROR` on failure |
//!
//! The id is left out by default because ids are often personal data (user ids, emails).
//! Events, at `WARN`: a watcher that fell behind ([`Error::Lagged`](crate::Error::Lagged)), a
//! change feed interrupted by a lost connection, the Redis feed's and the client-side cache's
//! reconnections, and a Sentinel failover followed to a new primary.
//!
//! Without a subscriber that wants them, the field values are not computed, and a call costs a
//! little more (measured with callgrind; the figure is in the guide's `observability` chapter),
//! which is why the feature is off by default.

use crate::Result;
use crate::rate_limit::Decision;

/// One call as the `tracing` feature's span and the `metrics` feature's duration see it: what
/// [`traced`] records when the call ends. Nothing without either feature.
#[derive(Debug)]
pub(crate) struct CallSpan {
    #[cfg(feature = "tracing")]
    pub(crate) span: tracing::Span,
    #[cfg(feature = "metrics")]
    pub(crate) call: crate::metrics::Call,
}

/// `call_span!(store, S, "get")`: the span of a `get` of `S` through `store`; with a fourth
/// argument, the `Result<&str, &Error>` key whose id to record when the store records ids.
macro_rules! call_span {
    ($store:expr, $state:ty, $op:literal) => {
        $crate::store::trace::call_span!(@span $store, <$state as $crate::StateKey>::PREFIX, $op)
    };
    ($store:expr, $state:ty, $op:literal, $key:expr) => {{
        let span = $crate::store::trace::call_span!($store, $state, $op);
        $store.record_id::<$state>(&span, $key);
        span
    }};
    (@span $store:expr, $prefix:expr, $op:literal) => {
        $crate::store::trace::CallSpan {
            #[cfg(feature = "tracing")]
            span: ::tracing::info_span!(
                target: "state_store",
                $op,
                "otel.kind" = "client",
                "db.system.name" = $store.system_name(),
                "db.operation.name" = $op,
                "db.operation.batch.size" = ::tracing::field::Empty,
                "state.namespace" = $store.namespace_name(),
                "state.prefix" = $prefix,
                "state.id" = ::tracing::field::Empty,
                "state.outcome" = ::tracing::field::Empty,
                "state.attempts" = ::tracing::field::Empty,
                "error.type" = ::tracing::field::Empty,
                "otel.status_code" = ::tracing::field::Empty,
            ),
            #[cfg(feature = "metrics")]
            call: $crate::metrics::Call::new($store.system_name(), $op, $prefix),
        }
    };
}
pub(crate) use call_span;

/// `call`, run in `span`, whose outcome (and failure) the span records when it ends, and whose
/// duration and outcome the metrics record.
#[cfg(any(feature = "tracing", feature = "metrics"))]
pub(crate) async fn traced<T: Outcome, F: Future<Output = Result<T>>>(
    span: CallSpan, call: F,
) -> Result<T> {
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    #[cfg(feature = "tracing")]
    let result = in_span(&span.span, call).await;
    #[cfg(not(feature = "tracing"))]
    let result = call.await;
    #[cfg(feature = "metrics")]
    span.call.finish(started, outcome(&result));
    result
}

/// `call` as it is, without either feature.
#[cfg(not(any(feature = "tracing", feature = "metrics")))]
pub(crate) fn traced<T: Outcome, F: Future<Output = Result<T>>>(_span: CallSpan, call: F) -> F {
    call
}

/// `call`, run in `span`, which records its outcome (and failure) when it ends.
#[cfg(feature = "tracing")]
async fn in_span<T: Outcome>(
    span: &tracing::Span, call: impl Future<Output = Result<T>>,
) -> Result<T> {
    use tracing::Instrument;
    if span.is_disabled() {
        return call.await;
    }
    let result = call.instrument(span.clone()).await;
    span.record("state.outcome", outcome(&result));
    if let Err(e) = &result {
        span.record("error.type", e.variant());
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// The `state.outcome` word of a call's result.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn outcome<T: Outcome>(result: &Result<T>) -> &'static str {
    match result {
        Ok(value) => value.outcome(),
        Err(_) => "error",
    }
}

/// Records how many ids a bulk call was given.
pub(crate) fn record_batch(span: &CallSpan, size: usize) {
    #[cfg(feature = "tracing")]
    span.span.record("db.operation.batch.size", size);
    #[cfg(not(feature = "tracing"))]
    let _ = (span, size);
}

/// Records how many times an update's change ran, on the span of the call it runs in.
pub(crate) fn record_attempts(attempts: u32) {
    #[cfg(feature = "tracing")]
    tracing::Span::current().record("state.attempts", attempts);
    #[cfg(not(feature = "tracing"))]
    let _ = attempts;
}

/// What a call's span records of a successful result, as `state.outcome`.
pub(crate) trait Outcome {
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl Outcome for () {}
impl Outcome for i64 {}
impl Outcome for u64 {}
impl<T> Outcome for Vec<T> {}
impl<S> Outcome for crate::Changes<S> {}
impl<S> Outcome for crate::Follow<S> {}
impl<S> Outcome for crate::Journal<S> {}
impl<S> Outcome for crate::Consumer<S> {}
impl Outcome for crate::Usage {}
impl Outcome for crate::MigrateReport {}

impl Outcome for bool {
    fn outcome(&self) -> &'static str {
        if *self { "true" } else { "false" }
    }
}

impl<T> Outcome for Option<T> {
    fn outcome(&self) -> &'static str {
        if self.is_some() { "found" } else { "none" }
    }
}

impl Outcome for Decision {
    fn outcome(&self) -> &'static str {
        if self.allowed { "allowed" } else { "refused" }
    }
}
