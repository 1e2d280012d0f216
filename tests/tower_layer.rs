//! `RateLimitLayer` (feature `tower`) driven through `tower::ServiceExt` on a `service_fn`: its
//! headers, its 429, keys, and what a failing store does; on the memory backend and on a real
//! redis-server.
#![cfg(feature = "tower")]

#[cfg(feature = "redis")]
mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use state_store::{
    Backend, Error, MemoryBackend, OnError, Policy, Quota, RateLimit, RateLimitLayer, StateKey,
    Store,
};
use tower::{Layer, Service, ServiceExt};

/// 3 calls per minute, in fixed windows.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "per-minute", id = String, counter)]
struct PerMinute(i64);

impl RateLimit for PerMinute {
    const QUOTA: Quota = Quota::per_minute(3);
    const POLICY: Policy = Policy::FixedWindow;
}

/// 2 calls per minute on average (one every 30 s), up to 3 at once.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "smooth", id = String, counter)]
struct Smooth(i64);

impl RateLimit for Smooth {
    const QUOTA: Quota = Quota::per_minute(2).allow_burst(3);
    const POLICY: Policy = Policy::Smooth;
}

/// The inner service: answers 200 "inner" and counts its calls.
fn counting() -> (
    Arc<AtomicUsize>,
    impl Service<
        Request<String>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service = tower::service_fn(move |_: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new("inner".to_string())) }
    });
    (calls, service)
}

/// The key: the `x-client` header; requests without it are not limited.
fn client(request: &axum::http::request::Parts) -> Option<String> {
    let client = request.headers.get("x-client")?.to_str().ok()?;
    Some(client.to_string())
}

fn from(client: &str) -> Request<String> {
    Request::builder()
        .uri("/")
        .header("x-client", client)
        .body(String::new())
        .unwrap()
}

fn header(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .map(|value| value.to_str().unwrap().parse().unwrap())
}

fn has_no_rate_limit_headers(headers: &HeaderMap) -> bool {
    [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ]
    .iter()
    .all(|name| !headers.contains_key(*name))
}

// ---- checks run on every backend ----------------------------------------------------------------

async fn allowed_responses_carry_the_headers_then_429<B: Backend>(store: Store<B>) {
    let (calls, inner) = counting();
    let service = RateLimitLayer::<PerMinute, _, _>::new(store, client).layer(inner);
    for remaining in [2, 1, 0] {
        let response = service.clone().oneshot(from("alice")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(header(headers, "ratelimit-limit"), Some(3));
        assert_eq!(header(headers, "ratelimit-remaining"), Some(remaining));
        // The window is a minute, started by the first call: its end, rounded up.
        let reset = header(headers, "ratelimit-reset").unwrap();
        assert!((58..=60).contains(&reset), "reset {reset}");
        assert!(!headers.contains_key("retry-after"), "only on 429");
        assert_eq!(response.into_body(), "inner");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let refused = service.clone().oneshot(from("alice")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers();
    let retry_after = header(headers, "retry-after").unwrap();
    assert!(
        (58..=60).contains(&retry_after),
        "retry-after {retry_after}"
    );
    assert_eq!(header(headers, "ratelimit-limit"), Some(3));
    assert_eq!(header(headers, "ratelimit-remaining"), Some(0));
    assert_eq!(header(headers, "ratelimit-reset"), Some(retry_after));
    assert_eq!(
        refused.into_body(),
        "",
        "the layer's own response: an empty body"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "a refused request never reaches the service"
    );

    // Another key has its own count; a request without a key is not limited, nor counted.
    let bob = service.clone().oneshot(from("bob")).await.unwrap();
    assert_eq!(bob.status(), StatusCode::OK);
    assert_eq!(header(bob.headers(), "ratelimit-remaining"), Some(2));
    let keyless = Request::new(String::new());
    let keyless = service.clone().oneshot(keyless).await.unwrap();
    assert_eq!(keyless.status(), StatusCode::OK);
    assert!(has_no_rate_limit_headers(keyless.headers()));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let bob = service.clone().oneshot(from("bob")).await.unwrap();
    assert_eq!(header(bob.headers(), "ratelimit-remaining"), Some(1));
}

async fn the_smooth_policy_reports_its_burst<B: Backend>(store: Store<B>) {
    let (calls, inner) = counting();
    let service = RateLimitLayer::<Smooth, _, _>::new(store, client).layer(inner);
    // One call every 30 s, 3 at once: the bucket is full again 30 s per call spent.
    for (remaining, reset) in [(2, 30), (1, 60), (0, 90)] {
        let response = service.clone().oneshot(from("carol")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(header(headers, "ratelimit-limit"), Some(3), "the burst");
        assert_eq!(header(headers, "ratelimit-remaining"), Some(remaining));
        assert_eq!(header(headers, "ratelimit-reset"), Some(reset));
    }
    let refused = service.clone().oneshot(from("carol")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(refused.headers(), "retry-after"), Some(30));
    assert_eq!(header(refused.headers(), "ratelimit-remaining"), Some(0));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

async fn concurrent_requests_never_pass_more_than_the_quota<B: Backend>(store: Store<B>) {
    let (calls, inner) = counting();
    let service = RateLimitLayer::<PerMinute, _, _>::new(store, client).layer(inner);
    let requests: Vec<_> = (0..32)
        .map(|_| tokio::spawn(service.clone().oneshot(from("dave"))))
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap().unwrap().status());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, refused), (3, 29));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Words the 503 of a failed check must never show: the client's id, the store's namespace (so
/// no key), and the password of the Redis tests' URL.
const UNSAID: [&str; 4] = ["erin", "tower", "per-minute", "s3cret"];

/// `store` makes every check fail: 503 with a short line of text naming the cause (one of
/// `causes`), or the inner service when failing open.
async fn a_failing_store_fails_closed_by_default_or_open_when_asked<B: Backend>(
    store: Store<B>, expected: fn(&Error) -> bool, causes: &[&str],
) {
    let (calls, inner) = counting();
    let layer = RateLimitLayer::<PerMinute, _, _>::new(store, client);

    let closed = layer
        .layer(inner.clone())
        .oneshot(from("erin"))
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(has_no_rate_limit_headers(closed.headers()));
    assert_eq!(
        closed.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let error = closed
        .extensions()
        .get::<Arc<Error>>()
        .expect("the error, for logging")
        .clone();
    assert!(expected(&error), "{error:?}");
    let body = closed.into_body();
    let cause = body.strip_prefix("rate limit check failed: ");
    let cause = cause.and_then(|cause| cause.strip_suffix('\n'));
    assert!(
        cause.is_some_and(|cause| causes.contains(&cause)),
        "{body:?}"
    );
    assert!(body.len() < 1024, "{body}");
    for word in UNSAID {
        // The error itself names the key, which is why the body does not repeat it.
        assert!(
            !body.contains(word),
            "{word:?} in {body:?} (error: {error})"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "fail closed: the service is not called"
    );

    let open = layer.on_error(OnError::FailOpen).layer(inner);
    let response = open.oneshot(from("erin")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(has_no_rate_limit_headers(response.headers()));
    let error = response
        .extensions()
        .get::<Arc<Error>>()
        .expect("the error, for logging");
    assert!(expected(error), "{error:?}");
    assert_eq!(response.into_body(), "inner");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "fail open: the service is called"
    );
}

// ---- the memory backend -------------------------------------------------------------------------

fn memory() -> Store<MemoryBackend> {
    Store::new(MemoryBackend::new())
        .namespace("tower")
        .enable_set()
}

#[tokio::test]
async fn memory_allowed_responses_carry_the_headers_then_429() {
    allowed_responses_carry_the_headers_then_429(memory()).await;
}

#[tokio::test]
async fn memory_the_smooth_policy_reports_its_burst() {
    the_smooth_policy_reports_its_burst(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_concurrent_requests_never_pass_more_than_the_quota() {
    concurrent_requests_never_pass_more_than_the_quota(memory()).await;
}

#[test]
#[should_panic(
    expected = "RateLimitLayer::new: the store does not allow writes, and every \
                           rate-limit check writes; build it with \
                           `Store::new(backend).enable_set()`"
)]
fn a_store_without_writes_is_refused_when_the_layer_is_built() {
    // `check` writes: without `enable_set` every request would be answered 503.
    let _ = RateLimitLayer::<PerMinute, _, _>::new(Store::new(MemoryBackend::new()), client);
}

#[tokio::test]
async fn memory_a_failing_store_fails_closed_or_open() {
    // An invalid namespace fails every call of the store before it touches a key.
    let store = Store::new(MemoryBackend::new())
        .namespace("tower per-minute")
        .enable_set();
    a_failing_store_fails_closed_by_default_or_open_when_asked(
        store,
        |error| matches!(error, Error::InvalidNamespace { .. }),
        &["the store's namespace is invalid"],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_waits_retry_after_is_allowed_again() {
    // The memory backend runs on tokio's clock, so the window can pass without waiting for it.
    let (_, inner) = counting();
    let service = RateLimitLayer::<PerMinute, _, _>::new(memory(), client).layer(inner);
    for _ in 0..3 {
        service.clone().oneshot(from("frank")).await.unwrap();
    }
    let refused = service.clone().oneshot(from("frank")).await.unwrap();
    let retry_after = header(refused.headers(), "retry-after").unwrap();
    tokio::time::advance(Duration::from_secs(retry_after - 1)).await;
    let early = service.clone().oneshot(from("frank")).await.unwrap();
    assert_eq!(
        early.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a second early"
    );
    assert_eq!(header(early.headers(), "retry-after"), Some(1));
    // A key lives until its deadline has passed (as in Redis): a millisecond past it.
    tokio::time::advance(Duration::from_millis(1001)).await;
    let again = service.clone().oneshot(from("frank")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(header(again.headers(), "ratelimit-remaining"), Some(2));
}

/// An inner service that insists on being called only after its own `poll_ready`, as tower
/// requires; its clones start unready.
#[derive(Default)]
struct MustBeReady {
    ready: bool,
}

impl Clone for MustBeReady {
    fn clone(&self) -> Self {
        MustBeReady { ready: false }
    }
}

impl Service<Request<String>> for MustBeReady {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        assert!(self.ready, "called without poll_ready");
        self.ready = false;
        std::future::ready(Ok(Response::new(String::new())))
    }
}

#[tokio::test]
async fn the_inner_service_called_is_the_one_that_was_made_ready() {
    let mut service =
        RateLimitLayer::<PerMinute, _, _>::new(memory(), client).layer(MustBeReady::default());
    for client in ["a", "b", "c"] {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(from(client))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // A request without a key goes straight to the inner service: the ready one too.
    let keyless = service
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()));
    assert_eq!(keyless.await.unwrap().status(), StatusCode::OK);
}

// ---- a real redis-server ------------------------------------------------------------------------

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use state_store::{RedisBackend, RedisOptions};
    use support::RedisServer;

    async fn store(server: &RedisServer) -> Store<RedisBackend> {
        let backend = RedisBackend::connect(&server.url()).await.unwrap();
        Store::new(backend).namespace("tower").enable_set()
    }

    #[tokio::test]
    async fn redis_allowed_responses_carry_the_headers_then_429() {
        let server = RedisServer::start();
        allowed_responses_carry_the_headers_then_429(store(&server).await).await;
    }

    #[tokio::test]
    async fn redis_the_smooth_policy_reports_its_burst() {
        let server = RedisServer::start();
        the_smooth_policy_reports_its_burst(store(&server).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_concurrent_requests_never_pass_more_than_the_quota() {
        let server = RedisServer::start();
        concurrent_requests_never_pass_more_than_the_quota(store(&server).await).await;
    }

    #[tokio::test]
    async fn instances_with_their_own_connections_share_one_limit() {
        // Two instances of a service, each with its own connection to the same Redis: what
        // one lets through counts for the other.
        let server = RedisServer::start();
        let (calls_a, inner_a) = counting();
        let (calls_b, inner_b) = counting();
        let a = RateLimitLayer::<PerMinute, _, _>::new(store(&server).await, client).layer(inner_a);
        let b = RateLimitLayer::<PerMinute, _, _>::new(store(&server).await, client).layer(inner_b);
        let first = a.clone().oneshot(from("gina")).await.unwrap();
        assert_eq!(header(first.headers(), "ratelimit-remaining"), Some(2));
        let second = b.clone().oneshot(from("gina")).await.unwrap();
        assert_eq!(header(second.headers(), "ratelimit-remaining"), Some(1));
        let third = a.clone().oneshot(from("gina")).await.unwrap();
        assert_eq!(header(third.headers(), "ratelimit-remaining"), Some(0));
        let fourth = b.clone().oneshot(from("gina")).await.unwrap();
        assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            (
                calls_a.load(Ordering::SeqCst),
                calls_b.load(Ordering::SeqCst)
            ),
            (2, 1)
        );
    }

    #[tokio::test]
    async fn a_killed_server_fails_closed_by_default_or_open_when_asked() {
        let mut server = RedisServer::start();
        // A user with a password, which the 503 must not show.
        let () = ::redis::cmd("ACL")
            .arg(&["SETUSER", "tower", "on", ">s3cret-pw", "~*", "&*", "+@all"])
            .query(&mut server.raw())
            .unwrap();
        let url = format!("redis://tower:s3cret-pw@127.0.0.1:{}", server.port());
        let options = RedisOptions::default()
            .connect_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_millis(500))
            .reconnect_retries(0);
        let backend = RedisBackend::connect_with(&url, options).await.unwrap();
        let store = Store::new(backend).namespace("tower").enable_set();
        // Working first, so the failure below is the server's.
        let (_, inner) = counting();
        let layer = RateLimitLayer::<PerMinute, _, _>::new(store.clone(), client);
        let before = layer.layer(inner).oneshot(from("hank")).await.unwrap();
        assert_eq!(before.status(), StatusCode::OK);

        server.kill();
        a_failing_store_fails_closed_by_default_or_open_when_asked(
            store,
            |error| matches!(error, Error::Backend { .. } | Error::Connect { .. }),
            &[
                "the store failed (connection lost or a server error)",
                "the store did not answer in time",
                "the store is unreachable",
            ],
        )
        .await;
    }
}
