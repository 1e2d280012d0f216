//! `examples/axum_service.rs` served on a free loopback port and driven over real HTTP
//! (reqwest): every endpoint, the rate limit's headers and its 429, and a job reaching `done`;
//! on the memory backend and on a real redis-server.
#![cfg(all(feature = "tower", feature = "axum"))]

#[cfg(feature = "redis")]
mod support;

// The example itself, so that what is tested is what the guide tells people to run.
#[allow(dead_code)] // its `main`
#[path = "../examples/axum_service.rs"]
mod service;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use state_store::backend::PutOptions;
use state_store::{AnyBackend, Backend, Store};
use tokio::net::TcpListener;

/// The example's burst: requests a client may make at once.
const BURST: u64 = 10;

/// A running service: stopped (gracefully) by `stop`.
struct Running {
    base: String,
    http: reqwest::Client,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(store: Store<AnyBackend>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service::serve(listener, store, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Running {
        base,
        http,
        shutdown,
        server,
    }
}

impl Running {
    /// A request with an API key of its own, so that the rate limit never gets in the way of
    /// the checks that are not about it.
    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let key = format!("test-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", key)
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    fn post(&self, path: &str, body: Value) -> RequestBuilder {
        self.request(reqwest::Method::POST, path).json(&body)
    }

    async fn stop(self) {
        drop(self.http); // its pooled connections would hold the graceful shutdown open
        self.shutdown.send(()).unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        stopped.expect("graceful shutdown").unwrap().unwrap();
    }
}

/// Sends `request`; returns its status and JSON body, after checking the rate-limit headers
/// every response of the service carries.
async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers();
    assert_eq!(header(headers, "ratelimit-limit"), Some(BURST), "{status}");
    assert!(header(headers, "ratelimit-remaining").is_some(), "{status}");
    assert!(header(headers, "ratelimit-reset").is_some(), "{status}");
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .map(|value| value.to_str().unwrap().parse().unwrap())
}

// ---- the checks, on every backend ---------------------------------------------------------------

async fn sessions(app: &Running) {
    let alice = |request: RequestBuilder| request.header("x-user", "alice");
    let (status, body) = send(alice(app.get("/cart"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no login yet");
    assert_eq!(body, json!({ "error": "no session: POST /login first" }));

    let (status, body) = send(app.post("/login", json!({ "user": "alice" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "user": "alice", "cart": [] }));

    let (status, body) = send(alice(app.post("/cart/items", json!({ "item": "book" })))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "user": "alice", "cart": ["book"] }));

    // Concurrent adds to one cart: `update` is a compare-and-set, so none is lost.
    let adds: Vec<_> = (0..8)
        .map(|n| {
            let add = alice(app.post("/cart/items", json!({ "item": format!("pen-{n}") })));
            tokio::spawn(send(add))
        })
        .collect();
    for add in adds {
        assert_eq!(add.await.unwrap().0, StatusCode::OK);
    }
    let (status, body) = send(alice(app.get("/cart"))).await;
    assert_eq!(status, StatusCode::OK);
    let cart = body["cart"].as_array().unwrap();
    assert_eq!(cart.len(), 9, "{cart:?}");
    assert_eq!(cart[0], "book");
    for n in 0..8 {
        assert!(
            cart.contains(&json!(format!("pen-{n}"))),
            "pen-{n} lost: {cart:?}"
        );
    }

    // Without a session, or without saying who you are, there is no cart to add to.
    let bob = app
        .post("/cart/items", json!({ "item": "hat" }))
        .header("x-user", "bob");
    assert_eq!(send(bob).await.0, StatusCode::UNAUTHORIZED);
    let bob = app.get("/cart").header("x-user", "bob");
    assert_eq!(
        send(bob).await.0,
        StatusCode::UNAUTHORIZED,
        "the add made no session"
    );
    assert_eq!(send(app.get("/cart")).await.0, StatusCode::UNAUTHORIZED);

    // A new login starts a fresh session.
    let (_, body) = send(app.post("/login", json!({ "user": "alice" }))).await;
    assert_eq!(body, json!({ "user": "alice", "cart": [] }));
}

async fn jobs(app: &Running) {
    let (status, body) = send(app.post("/jobs", json!({ "id": "report-1" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({ "id": "report-1", "status": "queued" }));

    // Submitting it again changes nothing: 409 with the job as it is.
    let (status, body) = send(app.post("/jobs", json!({ "id": "report-1" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["id"], "report-1");

    // The worker moves it queued -> running -> done; never backwards.
    let order = ["queued", "running", "done"];
    let mut seen = Vec::new();
    for _ in 0..250 {
        let (status, body) = send(app.get("/jobs/report-1")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], "report-1");
        let status = body["status"].as_str().unwrap().to_string();
        let at = order.iter().position(|s| *s == status).unwrap();
        assert!(
            seen.last().is_none_or(|last| *last <= at),
            "{status} after {seen:?}"
        );
        seen.push(at);
        if status == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.last(), Some(&2), "the job never reached done");

    let (status, body) = send(app.get("/jobs/report-2")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({ "error": "no such job" }));
    // axum's answer to a body without the id.
    let (status, _) = send(app.post("/jobs", json!({ "name": "report-3" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// `GET /jobs/{id}/events`: server-sent events from `follow`, the job as it is and then each
/// new status, never going back, ending once it is done; 404 for a job that does not exist.
async fn job_events(app: &Running) {
    for round in 0..5 {
        let id = format!("report-sse-{round}");
        let (status, _) = send(app.post("/jobs", json!({ "id": id }))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Subscribed while the worker moves the job along.
        let mut response = app.get(&format!("/jobs/{id}/events")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut text = String::new();
        // The stream ends after `done`; a stream that does not end fails on the client's timeout.
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let order = ["queued", "running", "done"];
        let mut seen = Vec::new();
        for event in text
            .split("\n\n")
            .filter(|event| event.starts_with("event:"))
        {
            let (kind, data) = event.split_once('\n').unwrap();
            assert_eq!(kind, "event: job", "{text}");
            let job: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(job["id"], id.as_str());
            let at = order.iter().position(|s| *s == job["status"]).unwrap();
            assert!(seen.last().is_none_or(|last| *last < at), "{text}");
            seen.push(at);
        }
        assert_eq!(seen.last(), Some(&2), "round {round}: {text}");
    }
    let (status, body) = send(app.get("/jobs/no-such-job/events")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({ "error": "no such job" }));
}

async fn rate_limit(app: &Running) {
    // One API key spends its burst (any request counts, a 404 too); the next is refused.
    let spend = || {
        app.http
            .get(format!("{}/jobs/none", app.base))
            .header("x-api-key", "spender")
    };
    for remaining in (0..BURST).rev() {
        let response = spend().send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let headers = response.headers();
        assert_eq!(header(headers, "ratelimit-remaining"), Some(remaining));
        assert!(!headers.contains_key("retry-after"));
    }
    let refused = spend().send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers();
    // One request a second comes back: at most a second to wait, rounded up.
    assert_eq!(header(headers, "retry-after"), Some(1));
    assert_eq!(header(headers, "ratelimit-limit"), Some(BURST));
    assert_eq!(header(headers, "ratelimit-remaining"), Some(0));
    let reset = header(headers, "ratelimit-reset").unwrap();
    assert!(
        (9..=10).contains(&reset),
        "the bucket full again in ~10 s: {reset}"
    );

    // Other clients are not affected.
    let (status, _) = send(app.get("/jobs/none")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Without an API key a client is counted by its address: all of this test's keyless
    // requests come from 127.0.0.1.
    let keyless = || app.http.get(format!("{}/jobs/none", app.base));
    for _ in 0..BURST {
        assert_eq!(
            keyless().send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
    let refused = keyless().send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
}

/// A store error is state-store's own response (feature `axum`): a value that does not decode
/// is a 500 whose body names neither the key nor the id.
async fn store_errors(app: &Running, backend: &AnyBackend) {
    let key = "axum-example:job:tenant-b-secret";
    let put = backend.put(key, b"not json".to_vec(), PutOptions::new());
    assert!(put.await.unwrap());
    let response = app.get("/jobs/tenant-b-secret").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.unwrap();
    assert_eq!(body, r#"{"error":"a stored value cannot be decoded"}"#);
}

/// `GET /metrics`: the Prometheus page, outside the rate limit; with the `metrics` feature it
/// holds the store's call durations, labelled as OpenTelemetry's database client metric.
async fn metrics_page(app: &Running, system: &str) {
    let response = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit-limit").is_none());
    let page = response.text().await.unwrap();
    #[cfg(feature = "metrics")]
    {
        let get = format!(
            "db_client_operation_duration_count{{db_system_name=\"{system}\",\
             db_operation_name=\"get\",state_prefix=\"job\",state_outcome=\"found\"}}"
        );
        assert!(page.contains(&get), "{get} in\n{page}");
        assert!(
            page.contains("# HELP db_client_operation_duration"),
            "{page}"
        );
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (page, system);
}

// ---- the backends -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend() {
    let backend = AnyBackend::memory();
    let app = start(service::store(backend.clone())).await;
    sessions(&app).await;
    jobs(&app).await;
    job_events(&app).await;
    rate_limit(&app).await;
    store_errors(&app, &backend).await;
    metrics_page(&app, "memory").await;
    app.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend() {
    let server = support::RedisServer::start();
    let backend = AnyBackend::connect(&server.url()).await.unwrap();
    let app = start(service::store(backend.clone())).await;
    sessions(&app).await;
    jobs(&app).await;
    job_events(&app).await;
    rate_limit(&app).await;
    store_errors(&app, &backend).await;
    metrics_page(&app, "redis").await;
    app.stop().await;

    // The state is in Redis, under the example's namespace, with the types' expiries.
    let mut raw = server.raw();
    let session_ttl: i64 = redis::cmd("PTTL")
        .arg("axum-example:session:alice")
        .query(&mut raw)
        .unwrap();
    assert!((1..=30 * 60 * 1000).contains(&session_ttl), "{session_ttl}");
    let job: String = redis::cmd("GET")
        .arg("axum-example:job:report-1")
        .query(&mut raw)
        .unwrap();
    let job: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job, json!({ "id": "report-1", "status": "done" }));
    let spent: bool = redis::cmd("EXISTS")
        .arg("axum-example:api-rate:key%3Aspender")
        .query(&mut raw)
        .unwrap();
    assert!(spent, "the rate limit's state is in Redis too");
}
