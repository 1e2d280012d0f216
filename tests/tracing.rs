//! The spans of `Store` calls and the events of the `tracing` feature, captured by a subscriber:
//! their names, OpenTelemetry fields and outcomes, on the memory backend and a real
//! redis-server.
#![cfg(feature = "tracing")]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::backend::{BoxFuture, BoxStream, PutOptions, RemoveOptions};
use state_store::{
    AnyBackend, Backend, BackendExt, Error, Expiry, MemoryBackend, PutMode, RedisBackend, StateKey,
    Store, UpdateOptions, Versioned,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, Registry};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    user: String,
    visits: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "profile", id = String)]
struct Profile {
    email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64, notify)]
struct Job {
    step: u32,
}

/// One closed span (or an event, with `name` = its message) and its fields as text.
#[derive(Debug, Clone)]
struct Captured {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Keeps every span of target `state_store` with its fields once it closes, and every event.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Captured>>>,
    events: Arc<Mutex<Vec<Captured>>>,
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        let span = ctx.span(id).unwrap();
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "state_store" {
            return;
        }
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        let level = event.metadata().level().to_string();
        fields.0.insert("level".into(), level);
        let name = fields.0.get("message").cloned().unwrap_or_default();
        self.events.lock().unwrap().push(Captured {
            name,
            fields: fields.0,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        if span.metadata().target() != "state_store" {
            return;
        }
        let fields = span.extensions_mut().remove::<Fields>().unwrap();
        self.spans.lock().unwrap().push(Captured {
            name: span.name().to_string(),
            fields: fields.0,
        });
    }
}

impl Capture {
    /// Runs `work` on a current-thread runtime with this capture as the default subscriber.
    fn run<F: Future>(&self, work: F) -> F::Output {
        let subscriber = Registry::default().with(self.clone());
        let _default = tracing::subscriber::set_default(subscriber);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    }

    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.spans.lock().unwrap())
    }

    fn only(&self, name: &str) -> Captured {
        let spans = self.take();
        let named: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(named.len(), 1, "one `{name}` span in {spans:#?}");
        named[0].clone()
    }
}

fn session(user: &str) -> Session {
    Session {
        user: user.into(),
        visits: 0,
    }
}

#[test]
fn each_call_is_one_span_with_the_database_fields_and_no_id() {
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(MemoryBackend::new())
            .namespace("shop")
            .enable_set();
        store.set::<Session>(42, &session("ada")).await.unwrap();
        let set = capture.only("set");
        assert_eq!(set.field("otel.kind"), Some("client"));
        assert_eq!(set.field("db.system.name"), Some("memory"));
        assert_eq!(set.field("db.operation.name"), Some("set"));
        assert_eq!(set.field("state.namespace"), Some("shop"));
        assert_eq!(set.field("state.prefix"), Some("session"));
        assert_eq!(set.field("state.outcome"), Some("ok"));
        assert_eq!(set.field("state.id"), None, "ids are left out by default");
        assert_eq!(set.field("error.type"), None);

        store.get::<Session>(42).await.unwrap();
        assert_eq!(capture.only("get").field("state.outcome"), Some("found"));
        store.get::<Session>(7).await.unwrap();
        assert_eq!(capture.only("get").field("state.outcome"), Some("none"));
        assert!(!store.exists::<Session>(7).await.unwrap());
        assert_eq!(capture.only("exists").field("state.outcome"), Some("false"));
        assert!(store.touch::<Session>(42).await.unwrap());
        assert_eq!(capture.only("touch").field("state.outcome"), Some("true"));

        store.get_many::<Session>([1, 2, 42]).await.unwrap();
        let many = capture.only("get_many");
        assert_eq!(many.field("db.operation.batch.size"), Some("3"));
        assert_eq!(many.field("state.outcome"), Some("ok"));
    });
}

#[test]
fn namespace_wide_calls_are_spans_too() {
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(MemoryBackend::new())
            .namespace("shop")
            .enable_set();
        store.set::<Session>(1, &session("ada")).await.unwrap();
        let usage = store.usage().await.unwrap();
        assert_eq!(usage.keys, 1);
        let span = capture.only("usage");
        assert_eq!(span.field("state.namespace"), Some("shop"));
        assert_eq!(span.field("state.prefix"), Some(""));
        assert_eq!(span.field("state.outcome"), Some("ok"));

        let report = store.migrate::<Session>().await.unwrap();
        assert_eq!(report.current, 1);
        let span = capture.only("migrate");
        assert_eq!(span.field("state.prefix"), Some("session"));
        assert_eq!(span.field("state.outcome"), Some("ok"));
    });
}

#[test]
fn a_failure_records_its_error_type_and_status() {
    let capture = Capture::default();
    capture.run(async {
        // Writes are not enabled: `set` fails before touching the backend, in its span.
        let store = Store::new(MemoryBackend::new());
        let err = store.set::<Session>(1, &session("ada")).await.unwrap_err();
        assert!(matches!(err, Error::Disabled { .. }), "{err:?}");
        let set = capture.only("set");
        assert_eq!(set.field("state.outcome"), Some("error"));
        assert_eq!(set.field("error.type"), Some("Disabled"));
        assert_eq!(set.field("otel.status_code"), Some("ERROR"));

        // A value that is not JSON of the type: `Decode`.
        let backend = MemoryBackend::new();
        backend
            .set("session:3", b"not json".to_vec(), None, None)
            .await
            .unwrap();
        let store = Store::new(backend);
        store.get::<Session>(3).await.unwrap_err();
        assert_eq!(capture.only("get").field("error.type"), Some("Decode"));
    });
}

#[test]
fn ids_are_recorded_only_when_the_store_says_so() {
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(MemoryBackend::new())
            .namespace("users")
            .enable_set()
            .trace_ids(true);
        store.set::<Session>(42, &session("ada")).await.unwrap();
        assert_eq!(capture.only("set").field("state.id"), Some("42"));
        // As written in the key: separators escaped.
        let profile = Profile {
            email: "ada@example.com".into(),
        };
        store
            .set::<Profile>("ada:lovelace", &profile)
            .await
            .unwrap();
        assert_eq!(
            capture.only("set").field("state.id"),
            Some("ada%3Alovelace")
        );
        store.get::<Profile>("ada:lovelace").await.unwrap();
        assert_eq!(
            capture.only("get").field("state.id"),
            Some("ada%3Alovelace")
        );
        store
            .update::<Session>(42, |s| s.map(|s| Session { visits: 1, ..s }))
            .await
            .unwrap();
        assert_eq!(capture.only("update").field("state.id"), Some("42"));

        let quiet = store.clone().trace_ids(false);
        quiet.get::<Session>(42).await.unwrap();
        assert_eq!(capture.only("get").field("state.id"), None);
    });
}

/// The memory backend, except that the first compare-and-set write of each key finds the value
/// changed by "another writer" just before it: every update loses one race.
#[derive(Debug, Default)]
struct Contended {
    inner: MemoryBackend,
    raced: Mutex<std::collections::HashSet<String>>,
}

impl Backend for Contended {
    fn get_versioned<'a>(
        &'a self, key: &'a str,
    ) -> BoxFuture<'a, state_store::Result<Option<Versioned>>> {
        self.inner.get_versioned(key)
    }
    fn put<'a>(
        &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
    ) -> BoxFuture<'a, state_store::Result<bool>> {
        Box::pin(async move {
            let first = matches!(options.mode, PutMode::Update(_))
                && self.raced.lock().unwrap().insert(key.to_owned());
            if first {
                let other = serde_json::to_vec(&Session {
                    user: "other writer".into(),
                    visits: 100,
                })
                .unwrap();
                let overwrite = PutOptions::new().expiry(Expiry::Keep);
                self.inner.put(key, other, overwrite).await?;
            }
            self.inner.put(key, value, options).await
        })
    }
    fn remove<'a>(
        &'a self, key: &'a str, options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, state_store::Result<bool>> {
        self.inner.remove(key, options)
    }
    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, state_store::Result<Option<Duration>>> {
        self.inner.ttl(key)
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, state_store::Result<String>> {
        self.inner.list(prefix)
    }
}

#[test]
fn an_update_records_how_many_times_its_change_ran() {
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(Contended::default()).enable_set();
        store.set::<Session>(1, &session("ada")).await.unwrap();
        capture.take();
        let bump = |s: Option<Session>| {
            s.map(|s| Session {
                visits: s.visits + 1,
                ..s
            })
        };
        let now = store.update::<Session>(1, bump).await.unwrap().unwrap();
        assert_eq!(
            now.visits, 101,
            "the second attempt saw the other writer's value"
        );
        let update = capture.only("update");
        assert_eq!(update.field("state.attempts"), Some("2"));
        assert_eq!(update.field("state.outcome"), Some("written"));
        // No lost race the second time.
        store
            .update_with::<Session>(1, UpdateOptions::new(), bump)
            .await
            .unwrap();
        let outcome = capture.only("update_with");
        assert_eq!(outcome.field("state.attempts"), Some("1"));
        assert_eq!(outcome.field("state.outcome"), Some("written"));
        store
            .update_with::<Session>(1, UpdateOptions::new(), |_| None)
            .await
            .unwrap();
        assert_eq!(
            capture.only("update_with").field("state.outcome"),
            Some("unchanged")
        );
    });
}

#[test]
fn a_watcher_that_falls_behind_is_an_event() {
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(MemoryBackend::new())
            .enable_set()
            .watch_buffer(1);
        let mut changes = store.watch::<Job>().await.unwrap();
        for step in 0..3 {
            store.set::<Job>(1, &Job { step }).await.unwrap();
        }
        let first = changes.next().await.unwrap();
        assert!(
            matches!(first, Err(Error::Lagged { missed: 2 })),
            "{first:?}"
        );
        let events = capture.events.lock().unwrap().clone();
        let lagged: Vec<_> = events
            .iter()
            .filter(|e| e.name.contains("fell behind"))
            .collect();
        assert_eq!(lagged.len(), 1, "{events:#?}");
        assert_eq!(lagged[0].field("missed"), Some("2"));
        assert_eq!(lagged[0].field("channel"), Some("job"));
    });
}

#[test]
fn on_redis_the_system_is_redis_also_behind_any_backend() {
    let server = support::RedisServer::start();
    let capture = Capture::default();
    capture.run(async {
        let redis = RedisBackend::connect(&server.url()).await.unwrap();
        let store = Store::new(AnyBackend::new(redis)).enable_set();
        store.set::<Session>(5, &session("ada")).await.unwrap();
        capture.take();
        let got = store.get::<Session>(5).await.unwrap();
        assert_eq!(got, Some(session("ada")));
        let get = capture.only("get");
        assert_eq!(get.field("db.system.name"), Some("redis"));
        assert_eq!(get.field("state.outcome"), Some("found"));
        assert_eq!(get.field("state.namespace"), Some(""));
    });
}

#[test]
fn the_redis_feed_reports_its_reconnection() {
    let mut server = support::RedisServer::start();
    let capture = Capture::default();
    capture.run(async {
        let store = Store::new(RedisBackend::connect(&server.url()).await.unwrap()).enable_set();
        let mut changes = store.watch::<Job>().await.unwrap();
        server.restart();
        // The feed tells its watcher that changes may have been missed, once it is back.
        let item = tokio::time::timeout(Duration::from_secs(20), changes.next())
            .await
            .expect("the watcher hears of the interruption")
            .unwrap();
        assert!(matches!(item, Err(Error::Interrupted { .. })), "{item:?}");
        let events = capture.events.lock().unwrap().clone();
        assert!(
            events.iter().any(|e| e.name.contains("connection closed")),
            "{events:#?}"
        );
        assert!(
            events.iter().any(|e| e.name.contains("interrupted")),
            "{events:#?}"
        );
    });
}

/// A rate-limit check that fails inside `RateLimitLayer` is a `WARN` event with the error, beside
/// the 503 the client gets.
#[cfg(feature = "tower")]
#[test]
fn a_failed_check_in_the_rate_limit_layer_is_a_warning() {
    use std::convert::Infallible;

    use axum::http::{Request, Response, StatusCode, request::Parts};
    use state_store::{Policy, Quota, RateLimit, RateLimitLayer};
    use tower::{Layer, ServiceExt};

    #[derive(Serialize, Deserialize, StateKey)]
    #[state(prefix = "api-rate", id = String, counter)]
    struct ApiRate(i64);

    impl RateLimit for ApiRate {
        const QUOTA: Quota = Quota::per_minute(10);
        const POLICY: Policy = Policy::FixedWindow;
    }

    let capture = Capture::default();
    capture.run(async {
        // An invalid namespace fails every check before it touches a key.
        let store = Store::new(MemoryBackend::new())
            .namespace("not valid")
            .enable_set();
        let key = |_: &Parts| Some("client-1".to_string());
        let inner = tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let service = RateLimitLayer::<ApiRate, _, _>::new(store, key).layer(inner);
        let response = service.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

        let events = capture.events.lock().unwrap().clone();
        let failed: Vec<_> = events
            .iter()
            .filter(|e| e.name.contains("rate-limit check failed"))
            .collect();
        assert_eq!(failed.len(), 1, "{events:#?}");
        let event = failed[0];
        assert_eq!(event.field("level"), Some("WARN"));
        assert!(event.name.contains("answering 503"), "{event:?}");
        assert_eq!(event.field("limit"), Some("api-rate"));
        assert_eq!(event.field("error.type"), Some("InvalidNamespace"));
        let error = event.field("error").unwrap();
        assert!(
            error.starts_with("invalid namespace `not valid`"),
            "{error}"
        );
    });
}
