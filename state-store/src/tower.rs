//! [`RateLimitLayer`]: a [`RateLimit`] type checked per HTTP request, as a tower layer (feature
//! `tower`).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Backend, Decision, Error, Policy, RateLimit, Store};

/// `RateLimit-Limit` of the IETF draft "RateLimit header fields for HTTP".
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining` of the IETF draft "RateLimit header fields for HTTP".
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset` of the IETF draft "RateLimit header fields for HTTP".
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What a [`RateLimitLayer`] does with a request whose check failed (the store unreachable, a
/// timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnError {
    /// Answer `503 Service Unavailable` with a line of plain text naming the cause, without
    /// calling the inner service: an outage of the store does not lift the limit.
    #[default]
    FailClosed,
    /// Let the request through, without rate-limit headers: an outage of the store does not
    /// take the service down with it.
    FailOpen,
}

/// A tower [`Layer`] that checks the rate limit `S` for every HTTP request.
///
/// Each request is checked against `S` for a key its closure takes from the request (client
/// IP, API key header, user id) with one [`Store::check`]. A refused request gets `429 Too Many
/// Requests` with `Retry-After`, and never reaches the inner service; every checked response
/// carries the `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers of the
/// IETF draft "RateLimit header fields for HTTP".
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use serde::{Deserialize, Serialize};
/// use state_store::{MemoryBackend, Policy, Quota, RateLimit, RateLimitLayer, StateKey, Store};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// /// 2 requests per minute per API key.
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "api-rate", id = String, counter)]
/// struct ApiRate(i64);
///
/// impl RateLimit for ApiRate {
///     const QUOTA: Quota = Quota::per_minute(2);
///     const POLICY: Policy = Policy::FixedWindow;
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // `RedisBackend::connect(url).await?` in production: then every instance of the service
/// // counts against the same limit.
/// let store = Store::new(MemoryBackend::new()).namespace("api").enable_set();
/// let limit = RateLimitLayer::<ApiRate, _, _>::new(store, |request| {
///     // No key, no limit: requests without the header pass unchecked (see below).
///     let key = request.headers.get("x-api-key")?.to_str().ok()?;
///     Some(key.to_string())
/// });
/// let service = ServiceBuilder::new().layer(limit).service_fn(|_: Request<String>| async {
///     Ok::<_, Infallible>(Response::new("hello".to_string()))
/// });
///
/// let request = || Request::builder().header("x-api-key", "k1").body(String::new()).unwrap();
/// let first = service.clone().oneshot(request()).await.unwrap();
/// assert_eq!(first.status(), StatusCode::OK);
/// assert_eq!(first.headers()["ratelimit-limit"], "2");
/// assert_eq!(first.headers()["ratelimit-remaining"], "1");
/// assert_eq!(first.headers()["ratelimit-reset"], "60");
///
/// service.clone().oneshot(request()).await.unwrap();
/// let third = service.clone().oneshot(request()).await.unwrap();
/// assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(third.headers()["retry-after"], "60");
/// assert_eq!(third.headers()["ratelimit-remaining"], "0");
/// # }
/// ```
///
/// `examples/axum_service.rs` puts it in front of an axum router.
///
/// # Keys
/// The closure sees the request's [`Parts`] (method, URI, headers, extensions; not the body)
/// and returns the id of `S`, or `None` to let the request through unchecked and without
/// headers: routes or methods that are not limited, or requests without an API key when an
/// authentication layer refuses those anyway. To count keyless requests together instead,
/// return a fixed key (`Some("anonymous".into())`). axum puts the peer address in the
/// extensions when served with `into_make_service_with_connect_info::<SocketAddr>()`:
/// `parts.extensions.get::<ConnectInfo<SocketAddr>>()`. Behind a proxy, take the client's
/// address from the header your proxy sets, and only from a proxy you trust.
///
/// # Headers
/// - `RateLimit-Limit`: the calls allowed at once: the quota's `count` for
///   [`Policy::FixedWindow`], its `burst` for [`Policy::Smooth`] (a full bucket), so that
///   `Remaining` never exceeds it.
/// - `RateLimit-Remaining`: [`Decision::remaining`], the calls left right now.
/// - `RateLimit-Reset`: [`Decision::reset_after`] in seconds, rounded up: when the limit is back
///   to its full quota (the window's end, or the bucket full again).
/// - `Retry-After` (429 only): [`Decision::retry_after`] in seconds, rounded up and at least 1.
///
/// Headers the inner service set under the same names are replaced.
///
/// # When the store fails
/// A check that fails (Redis unreachable, a timeout) is answered by [`OnError`]: by default
/// [`OnError::FailClosed`], `503 Service Unavailable` without calling the inner service;
/// [`OnError::FailOpen`] lets the request through, without rate-limit headers. Either way the
/// error is put in the response's extensions as an `Arc<`[`Error`](crate::Error)`>` for a
/// logging layer to report, since a limiter that fails open silently is a limiter that is off;
/// with the `tracing` feature each failure is also a `WARN` event (target `state_store`) with
/// the error's message, which names the key, so the client's id.
///
/// The 503's body is one line of `text/plain`, such as `rate limit check failed: the store is
/// unreachable`: the kind of failure only, never the error's message (the key, the driver's
/// words), which is not the client's to read. That body is why the response body type must
/// implement `From<&'static str>` (`String`, `axum::body::Body`, `Full<Bytes>` do).
///
/// # Compared with `tower_governor`
/// [`tower_governor`](https://docs.rs/tower_governor) wraps the `governor` crate, whose counts
/// live in the memory of one process. The differences:
/// - **Shared counts.** Here the counts live in the store: on Redis every instance of the
///   service, and every restart, counts against the same limit. With governor, `n` instances
///   behind a load balancer allow `n` times the quota, and a restart forgets it. (On the memory
///   backend this layer is per process too.)
/// - **Cost.** A governor check is a few atomic operations in memory; here it is one round trip
///   to Redis per checked request (one script), and it can fail, hence [`OnError`].
/// - **Policies.** governor is GCRA only; here a [`RateLimit`] type chooses GCRA
///   ([`Policy::Smooth`]) or [`Policy::FixedWindow`].
/// - **Configuration.** governor's quota is built at run time (`GovernorConfigBuilder`,
///   `per_second`, `burst_size`); here it is a type, the same one handlers can
///   [`check`](Store::check) themselves, and a zero quota does not compile.
/// - **Keys.** governor has key extractor types (peer IP, forwarding headers, global) and answers
///   an error when a key cannot be extracted; here a closure over the request's parts, and `None`
///   is not limited.
/// - **Headers.** governor sends `x-ratelimit-*` headers when asked (`use_headers`); here the IETF
///   draft's `RateLimit-*` headers always, and `Retry-After` on 429.
///
///
/// Cloning is cheap: clones share the store and the closure.
pub struct RateLimitLayer<S, B, F> {
    shared: Arc<Shared<B, F>>,
    on_error: OnError,
    limit: PhantomData<fn() -> S>,
}

struct Shared<B, F> {
    store: Store<B>,
    key: F,
}

impl<S, B, F> RateLimitLayer<S, B, F>
where
    S: RateLimit,
    B: Backend,
    F: Fn(&Parts) -> Option<S::Id> + Send + Sync + 'static,
{
    /// Checks `S` in `store` for the id `key` takes from each request; `None` lets the request
    /// through unchecked.
    ///
    /// # Panics
    /// When `store` does not allow writes: a check writes, so without
    /// [`enable_set`](Store::enable_set) every request would fail its check and be answered
    /// 503. Build the store with `Store::new(backend).enable_set()`.
    #[track_caller]
    pub fn new(store: Store<B>, key: F) -> Self {
        assert!(
            store.writes_enabled(),
            "RateLimitLayer::new: the store does not allow writes, and every rate-limit check \
             writes; build it with `Store::new(backend).enable_set()`"
        );
        RateLimitLayer {
            shared: Arc::new(Shared { store, key }),
            on_error: OnError::default(),
            limit: PhantomData,
        }
    }
}

impl<S, B, F> RateLimitLayer<S, B, F> {
    /// What to do when a check fails: [`OnError::FailClosed`] (503, the default) or
    /// [`OnError::FailOpen`].
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }
}

impl<S, B, F> Clone for RateLimitLayer<S, B, F> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: self.shared.clone(),
            on_error: self.on_error,
            limit: PhantomData,
        }
    }
}

impl<S, B: fmt::Debug, F> fmt::Debug for RateLimitLayer<S, B, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limit", &std::any::type_name::<S>())
            .field("store", &self.shared.store)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl<S, B, F, Svc> Layer<Svc> for RateLimitLayer<S, B, F> {
    type Service = RateLimitService<S, B, F, Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RateLimitService {
            inner,
            shared: self.shared.clone(),
            on_error: self.on_error,
            limit: PhantomData,
        }
    }
}

/// The service of a [`RateLimitLayer`]: checks the limit, then calls `Svc` or answers 429.
pub struct RateLimitService<S, B, F, Svc> {
    inner: Svc,
    shared: Arc<Shared<B, F>>,
    on_error: OnError,
    limit: PhantomData<fn() -> S>,
}

impl<S, B, F, Svc: Clone> Clone for RateLimitService<S, B, F, Svc> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            on_error: self.on_error,
            limit: PhantomData,
        }
    }
}

impl<S, B: fmt::Debug, F, Svc: fmt::Debug> fmt::Debug for RateLimitService<S, B, F, Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("limit", &std::any::type_name::<S>())
            .field("store", &self.shared.store)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// The future of a [`RateLimitService`].
type ResponseFuture<ResBody, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send + 'static>>;

impl<S, B, F, Svc, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S, B, F, Svc>
where
    S: RateLimit,
    B: Backend,
    F: Fn(&Parts) -> Option<S::Id> + Send + Sync + 'static,
    Svc: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    Svc::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Svc::Error;
    type Future = ResponseFuture<ResBody, Svc::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let id = (self.shared.key)(&parts);
        let request = Request::from_parts(parts, body);
        // `poll_ready` readied `self.inner`: take that one into the future and leave a fresh
        // clone (which will be readied by the next `poll_ready`) in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(id) = id else {
            return Box::pin(inner.call(request));
        };
        let shared = self.shared.clone();
        let on_error = self.on_error;
        Box::pin(async move {
            match shared.store.check::<S>(id).await {
                Ok(decision) if decision.allowed => {
                    let mut response = inner.call(request).await?;
                    set_headers::<S>(response.headers_mut(), &decision);
                    Ok(response)
                }
                Ok(decision) => {
                    let mut response = status(StatusCode::TOO_MANY_REQUESTS);
                    let headers = response.headers_mut();
                    set_headers::<S>(headers, &decision);
                    let retry_after = ceil_secs(decision.retry_after).max(1);
                    headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
                    Ok(response)
                }
                Err(error) => {
                    crate::backend::kit::warn_event!(
                        limit = S::PREFIX,
                        error.type = error.variant(),
                        error = %error,
                        "state_store: a rate-limit check failed; {}",
                        match on_error {
                            OnError::FailClosed => "answering 503",
                            OnError::FailOpen => "letting the request through (OnError::FailOpen)",
                        }
                    );
                    let mut response = match on_error {
                        OnError::FailClosed => unavailable(&error),
                        OnError::FailOpen => inner.call(request).await?,
                    };
                    let error = Arc::new(error);
                    response.extensions_mut().insert(error);
                    Ok(response)
                }
            }
        })
    }
}

/// `RateLimit-Limit`: what `Remaining` is when the limit is full.
fn limit<S: RateLimit>() -> u32 {
    match S::POLICY {
        Policy::FixedWindow => S::QUOTA.count(),
        Policy::Smooth => S::QUOTA.burst(),
    }
}

fn set_headers<S: RateLimit>(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit::<S>()));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(
        RATELIMIT_RESET,
        HeaderValue::from(ceil_secs(decision.reset_after)),
    );
}

fn status<ResBody: Default>(status: StatusCode) -> Response<ResBody> {
    let mut response = Response::new(ResBody::default());
    *response.status_mut() = status;
    response
}

/// The 503 of a failed check: one line of plain text from a fixed set.
fn unavailable<ResBody: From<&'static str>>(error: &Error) -> Response<ResBody> {
    let mut response = Response::new(ResBody::from(failure(error)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What a client is told of a failed check: the kind of failure, never the error's message,
/// which names the key (the client's id, and on a shared store its tenant's namespace) and
/// repeats the driver's words.
fn failure(error: &Error) -> &'static str {
    match error {
        Error::Connect { .. } => "rate limit check failed: the store is unreachable\n",
        Error::Backend { .. } if error.is_timeout() => {
            "rate limit check failed: the store did not answer in time\n"
        }
        Error::Backend { .. } => {
            "rate limit check failed: the store failed (connection lost or a server error)\n"
        }
        Error::Conflict { .. } => "rate limit check failed: too many concurrent checks\n",
        Error::NotACounter { .. } | Error::InvalidKey { .. } => {
            "rate limit check failed: the stored count is not a counter\n"
        }
        Error::InvalidNamespace { .. } => {
            "rate limit check failed: the store's namespace is invalid\n"
        }
        Error::Disabled { .. } => "rate limit check failed: the store does not allow writes\n",
        Error::Unsupported { .. } => {
            "rate limit check failed: the store does not support rate limits\n"
        }
        Error::NotDurable { .. } => {
            "rate limit check failed: the count did not reach the copies it requires\n"
        }
        _ => "rate limit check failed: the store failed\n",
    }
}

/// Whole seconds, rounded up: a client that waits this long is never early.
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(60)), 60);
    }
}
