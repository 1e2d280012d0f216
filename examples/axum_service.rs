//! A web service over the store: a session per user, a per-client rate limit, and job status.
//!
//!     cargo run --example axum_service                                   # in-memory backend
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_service  # against Redis
//!
//! It listens on 127.0.0.1:3000 (`PORT` to change it) until Ctrl-C. Try it:
//!
//!     json='content-type: application/json'
//!     curl -i localhost:3000/login -H "$json" -d '{"user":"alice"}'
//!     curl -i localhost:3000/cart/items -H 'x-user: alice' -H "$json" -d '{"item":"book"}'
//!     curl -i localhost:3000/cart -H 'x-user: alice'
//!     curl -i localhost:3000/jobs -H "$json" -d '{"id":"report-1"}'
//!     curl -i localhost:3000/jobs/report-1
//!     curl -N localhost:3000/jobs/report-1/events   # server-sent events until it is done
//!
//! Every response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; the
//! eleventh request in a burst is `429 Too Many Requests` with `Retry-After`. On Redis, every
//! instance of the service shares the sessions, the jobs and the limit.
//!
//! `GET /metrics` is the Prometheus page (`metrics-exporter-prometheus`); built with
//! `--features metrics` it shows the store's call durations, cache hits, batch sizes, missed
//! changes and reconnections:
//!
//!     cargo run --features metrics --example axum_service
//!     curl localhost:3000/metrics
//!
//! `tests/axum_service.rs` runs this file's `serve` over HTTP on both backends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use state_store::{
    AnyBackend, Backend, Policy, Quota, RateLimit, RateLimitLayer, StateKey, Store, StreamExt,
    UpdateOptions,
};
use tokio::net::TcpListener;

/// A user's session: gone after 30 minutes without a request (reading the cart keeps it alive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = String, ttl = "30m")]
pub struct Session {
    pub user: String,
    pub cart: Vec<String>,
}

/// A job's status, kept for a day; its changes are announced (`notify`), for `follow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = String, ttl = "1d", notify)]
pub struct Job {
    pub id: String,
    pub status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
}

/// Requests per client: one a second on average, up to 10 at once (GCRA, no window edge).
#[derive(Debug, Serialize, Deserialize, StateKey)]
#[state(prefix = "api-rate", id = String, counter)]
pub struct ApiRate(i64);

impl RateLimit for ApiRate {
    const QUOTA: Quota = Quota::per_minute(60).allow_burst(10);
    const POLICY: Policy = Policy::Smooth;
}

/// How long the worker spends on a job in each state.
const WORK: Duration = Duration::from_millis(50);

/// The service's store: its own namespace, so that services sharing a Redis cannot collide,
/// and writes on (sessions, jobs, and the rate limit's counts).
pub fn store(backend: AnyBackend) -> Store<AnyBackend> {
    Store::new(backend).namespace("axum-example").enable_set()
}

/// The service: handlers over one store, behind the rate limit.
pub fn app(store: Store<AnyBackend>) -> Router {
    // A store failure refuses the request (503) by default; `.on_error(OnError::FailOpen)`
    // would let it through.
    let limit = RateLimitLayer::<ApiRate, _, _>::new(store.clone(), client_key);
    Router::new()
        .route("/login", post(login))
        .route("/cart", get(cart))
        .route("/cart/items", post(add_to_cart))
        .route("/jobs", post(create_job))
        .route("/jobs/{id}", get(job_status))
        .route("/jobs/{id}/events", get(job_events))
        .layer(axum::middleware::map_response(log_store_errors))
        .layer(limit)
        // Outside the limit: a scraper polls it.
        .route("/metrics", get(metrics_page))
        .with_state(store)
}

// ---- metrics ------------------------------------------------------------------------------------

/// The process's Prometheus recorder, installed by the first caller (a process has one global
/// recorder; the tests start the service more than once).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // OpenTelemetry's advised buckets for `db.client.operation.duration`, in seconds: a
        // histogram (not a summary) adds up across the instances of the service.
        let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("db.client.operation.duration".into()),
                &buckets,
            )
            .and_then(|builder| builder.install_recorder())
            .expect("no other metrics recorder in this process");
        #[cfg(feature = "metrics")]
        state_store::metrics::describe();
        handle
    })
}

/// `GET /metrics`: every metric recorded so far, in Prometheus's text format.
async fn metrics_page() -> String {
    let handle = prometheus();
    // Trims what the recorder holds; once per scrape is often enough.
    handle.run_upkeep();
    handle.render()
}

/// Serves `app(store)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener, store: Store<AnyBackend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Installed before the first request, so that the first calls are counted too.
    prometheus();
    // With the peer's address in each request's extensions, for `client_key`.
    let app = app(store).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whom the rate limit counts a request against: its API key, else its peer address. (A real
/// service would check the key first; behind a proxy, the address is the proxy's.)
fn client_key(request: &Parts) -> Option<String> {
    if let Some(key) = request
        .headers
        .get("x-api-key")
        .and_then(|key| key.to_str().ok())
    {
        return Some(format!("key:{key}"));
    }
    let ConnectInfo(peer) = request.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(format!("ip:{}", peer.ip()))
}

// ---- sessions -----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// Starts a fresh session with an empty cart.
async fn login(
    State(store): State<Store<AnyBackend>>, Json(login): Json<Login>,
) -> Result<Json<Session>, state_store::Error> {
    let session = Session {
        user: login.user,
        cart: Vec::new(),
    };
    store.set::<Session>(&session.user, &session).await?;
    Ok(Json(session))
}

/// The caller's cart; reading it gives the session another 30 minutes.
async fn cart(
    State(store): State<Store<AnyBackend>>, headers: HeaderMap,
) -> Result<Response, state_store::Error> {
    let Some(user) = user(&headers) else {
        return Ok(no_session());
    };
    let session = store.get_and_touch::<Session>(user).await?;
    Ok(session.map_or_else(no_session, |session| Json(session).into_response()))
}

#[derive(Deserialize)]
struct AddItem {
    item: String,
}

/// Adds an item to the caller's cart: `update` is a compare-and-set, so two concurrent adds
/// both land (a `get` then `set` would lose one).
async fn add_to_cart(
    State(store): State<Store<AnyBackend>>, headers: HeaderMap, Json(add): Json<AddItem>,
) -> Result<Response, state_store::Error> {
    let Some(user) = user(&headers) else {
        return Ok(no_session());
    };
    let session = store
        .update::<Session>(user, |session| {
            // `None` (no session) leaves it absent; the closure may run again on a lost race.
            session.map(|mut session| {
                session.cart.push(add.item.clone());
                session
            })
        })
        .await?;
    Ok(session.map_or_else(no_session, |session| Json(session).into_response()))
}

/// Who the caller is. A real service takes this from a verified token or cookie; the example
/// trusts an `x-user` header to stay short.
fn user(headers: &HeaderMap) -> Option<String> {
    let user = headers.get("x-user").and_then(|user| user.to_str().ok());
    user.map(str::to_string)
}

// ---- jobs ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct NewJob {
    id: String,
}

/// Queues a job and starts a worker on it: 202 with the job, or 409 with the job as it is when
/// the id is taken (`set_if_absent`: submitting twice never resets a job that started).
async fn create_job(
    State(store): State<Store<AnyBackend>>, Json(new): Json<NewJob>,
) -> Result<Response, state_store::Error> {
    let job = Job {
        id: new.id,
        status: Status::Queued,
    };
    if !store.set_if_absent::<Job>(&job.id, &job).await? {
        let current = store.get::<Job>(&job.id).await?;
        return Ok((StatusCode::CONFLICT, Json(current)).into_response());
    }
    tokio::spawn(work(store, job.id.clone()));
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// The worker: queued -> running -> done, each step a compare-and-set, so that two workers
/// never both run one job.
async fn work(store: Store<AnyBackend>, id: String) {
    let step = |from: Status, to: Status| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let step = store
                .update_with::<Job>(&id, UpdateOptions::new(), |job| match job {
                    Some(job) if job.status == from => Some(Job { status: to, ..job }),
                    _ => None,
                })
                .await;
            // Ours only if this call wrote the step: a worker that finds the job already moved
            // (by another worker) gets `Unchanged`, even when it is already in `to`.
            matches!(step, Ok(step) if step.is_written())
        }
    };
    if !step(Status::Queued, Status::Running).await {
        return;
    }
    tokio::time::sleep(WORK).await; // the work itself
    if step(Status::Running, Status::Done).await {
        println!("job {id} done");
    }
}

async fn job_status(
    State(store): State<Store<AnyBackend>>, Path(id): Path<String>,
) -> Result<Response, state_store::Error> {
    let job = store.get::<Job>(&id).await?;
    Ok(job.map_or_else(no_job, |job| Json(job).into_response()))
}

/// The job as server-sent events: an `event: job` with the job now, then one with each new
/// status, until it is done (`event: gone` if it is removed or expires first). `follow`
/// subscribes before it reads, so no step between the two is lost.
async fn job_events(
    State(store): State<Store<AnyBackend>>, Path(id): Path<String>,
) -> Result<Response, state_store::Error> {
    let mut follow = store.follow::<Job>(&id).await?;
    // The first item is the job as it is: none, no stream.
    let job = match follow.next().await {
        Some(Ok(Some(job))) => job,
        Some(Err(error)) => return Err(error),
        Some(Ok(None)) | None => return Ok(no_job()),
    };
    let first = futures_util::stream::once(std::future::ready(Ok(Some(job))));
    let values = first.chain(follow);
    let events = futures_util::stream::unfold(Some(values), |values| async move {
        let mut values = values?;
        let (event, last) = match values.next().await? {
            Ok(Some(job)) => {
                let done = job.status == Status::Done;
                (Event::default().event("job").json_data(&job), done)
            }
            Ok(None) => (Ok(Event::default().event("gone").data("no such job")), true),
            // A value that does not decode, a failed read: the stream goes on with the next.
            Err(error) => {
                eprintln!("store error: {error}");
                (
                    Ok(Event::default().event("error").data("cannot read the job")),
                    false,
                )
            }
        };
        Some((event, (!last).then_some(values)))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---- errors -------------------------------------------------------------------------------------

// A handler returns `state_store::Error` as it is (feature `axum` of state-store): 409 for a lost
// race, 503 with `Retry-After` when the store is unreachable, 500 otherwise, with a body that
// shows no key and no password. The service's own refusals are plain responses.

fn no_session() -> Response {
    refusal(StatusCode::UNAUTHORIZED, "no session: POST /login first")
}

fn no_job() -> Response {
    refusal(StatusCode::NOT_FOUND, "no such job")
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Logs the store error a response was made from (it rides in the response's extensions), so
/// that the details the client does not see reach the log.
async fn log_store_errors(response: Response) -> Response {
    if let Some(error) = response.extensions().get::<Arc<state_store::Error>>() {
        eprintln!("store error: {error}");
    }
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Redis when REDIS_URL is set, else the embedded memory backend: chosen at run time, so the
    // handlers above are compiled once.
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    println!("backend: {}", backend.name());
    let store = store(backend);

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, store, ctrl_c).await?;
    Ok(())
}
