//! [`AnyBackend`]: the backend chosen at run time.

use std::fmt;
use std::sync::Arc;

use std::collections::HashMap;
use std::sync::RwLock;

use crate::backend::{Backend, BoxFuture};
use crate::{Error, MemoryBackend, Result};

/// The URL schemes of the Redis backend, as a pattern.
macro_rules! redis_schemes {
    () => {
        "redis" | "rediss" | "redis+unix" | "unix"
    };
}

/// The URL schemes of the NATS backend, as a pattern.
macro_rules! nats_schemes {
    () => {
        "nats" | "tls" | "ws" | "wss"
    };
}

/// Any [`Backend`], chosen at run time: from configuration, a URL, or the environment. Handlers
/// take `&Store<AnyBackend>` and are written once, without generics:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use state_store::{AnyBackend, StateKey, Store};
///
/// #[derive(Serialize, Deserialize, StateKey)]
/// #[state(prefix = "visits", id = String, counter)]
/// struct Visits(i64);
///
/// async fn visit(store: &Store<AnyBackend>, page: &str) -> state_store::Result<i64> {
///     store.incr::<Visits>(page.to_string(), 1).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> state_store::Result<()> {
/// // Redis when `REDIS_URL` is set, else the embedded memory backend.
/// # // SAFETY of the example: a doctest runs alone in its process.
/// # unsafe { std::env::remove_var("REDIS_URL") };
/// let backend = AnyBackend::from_env("REDIS_URL").await?;
/// let store = Store::new(backend).namespace("web").enable_set();
/// assert_eq!(visit(&store, "/home").await?, 1);
/// # Ok(())
/// # }
/// ```
///
/// It is a shared trait object (`Arc<dyn Backend>`): cloning is cheap, and every call goes
/// straight to the chosen backend's own methods, its overrides included, so a `Store<AnyBackend>`
/// sends exactly what a `Store` over the concrete backend sends. The benchmark measures the
/// cost of the indirection.
#[derive(Clone)]
pub struct AnyBackend {
    inner: Arc<dyn Backend>,
}

impl AnyBackend {
    /// Wraps `backend`: a built-in one or your own.
    pub fn new(backend: impl Backend) -> AnyBackend {
        AnyBackend {
            inner: Arc::new(backend),
        }
    }

    /// Wraps a shared backend as it is (no second `Arc`).
    pub fn from_arc(backend: Arc<dyn Backend>) -> AnyBackend {
        AnyBackend { inner: backend }
    }

    /// A new, empty [`MemoryBackend`].
    pub fn memory() -> AnyBackend {
        AnyBackend::new(MemoryBackend::new())
    }

    /// The backend a URL names:
    /// - `memory://` (anything after it is ignored): a new, empty [`MemoryBackend`];
    /// - `redis://...` (and `rediss://`, `redis+unix://`, `unix://`; feature `redis`):
    ///   `RedisBackend::connect(url)`;
    /// - `nats://...` (and `tls://`, `ws://`, `wss://`; feature `nats`):
    ///   `NatsBackend::connect(url)`.
    ///
    /// - any scheme an engine registered with [`register`](Self::register).
    ///
    /// Any other scheme, or `redis://` (`nats://`) in a build without the `redis` (`nats`)
    /// feature, is [`Error::Connect`] naming the scheme (never the rest of the URL, which may
    /// hold a password).
    pub async fn connect(url: &str) -> Result<AnyBackend> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if let Some(connect) = scheme.and_then(registered) {
            return connect(url.to_owned()).await;
        }
        match scheme {
            Some("memory") => Ok(AnyBackend::memory()),
            #[cfg(feature = "redis")]
            Some(redis_schemes!()) => Ok(AnyBackend::new(crate::RedisBackend::connect(url).await?)),
            #[cfg(not(feature = "redis"))]
            Some(redis_schemes!()) => Err(not_built("redis", "Redis")),
            #[cfg(feature = "nats")]
            Some(nats_schemes!()) => Ok(AnyBackend::new(crate::NatsBackend::connect(url).await?)),
            #[cfg(not(feature = "nats"))]
            Some(nats_schemes!()) => Err(not_built("nats", "NATS")),
            Some(other) => Err(Error::Connect {
                target: format!("a `{other}://` URL"),
                source: "unknown backend; use `redis://`, `nats://` or `memory://`".into(),
            }),
            None => Err(Error::Connect {
                target: "the given backend URL".into(),
                source: "not a URL: expected `redis://...`, `nats://...` or `memory://`".into(),
            }),
        }
    }

    /// The backend named by the environment variable `var` (such as `REDIS_URL`), as
    /// [`connect`](Self::connect) reads it; the memory backend when it is unset or empty.
    pub async fn from_env(var: &str) -> Result<AnyBackend> {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => AnyBackend::connect(&url).await,
            _ => Ok(AnyBackend::memory()),
        }
    }

    /// Turns on the announcements of expired keys of the inner engine's change feed
    /// ([`ChangeFeed::enable_expiry_events`](crate::backend::ChangeFeed::enable_expiry_events));
    /// [`Error::Unsupported`] for an engine without a feed.
    pub async fn enable_expiry_events(&self) -> Result<()> {
        crate::backend::extensions::enable_expiry_events(&*self.inner).await
    }

    /// The backend inside.
    pub fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    /// Makes [`connect`](Self::connect) (and [`from_env`](Self::from_env)) reach a third-party
    /// engine through URLs with `scheme`, exactly like the built-in ones. `connect` gets the
    /// whole URL. A later registration of the same scheme replaces an earlier one; the built-in
    /// schemes (`memory`, `redis`, `rediss`, `nats`, ...) can be registered over too.
    ///
    /// ```
    /// use state_store::{AnyBackend, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// // An engine of your own; a memory backend stands in for it here.
    /// AnyBackend::register("myengine", |url| {
    ///     Box::pin(async move {
    ///         let _path = url.trim_start_matches("myengine://");
    ///         Ok(AnyBackend::new(MemoryBackend::new()))
    ///     })
    /// });
    /// let backend = AnyBackend::connect("myengine:///var/lib/state").await?;
    /// assert_eq!(backend.inner().name(), "MemoryBackend");
    /// # Ok(())
    /// # }
    /// ```
    pub fn register(
        scheme: &str,
        connect: impl Fn(String) -> BoxFuture<'static, Result<AnyBackend>> + Send + Sync + 'static,
    ) {
        let mut schemes = SCHEMES.write().unwrap_or_else(|e| e.into_inner());
        schemes
            .get_or_insert_with(HashMap::new)
            .insert(scheme.to_owned(), Arc::new(connect));
    }
}

/// The error for a URL of an engine this build leaves out: its `feature` is off.
#[cfg(any(not(feature = "redis"), not(feature = "nats")))]
fn not_built(feature: &str, engine: &str) -> Error {
    Error::Connect {
        target: feature.into(),
        source: format!(
            "this build of state-store has no {engine} backend: enable its `{feature}` feature"
        )
        .into(),
    }
}

/// How a registered scheme connects.
type Connector = Arc<dyn Fn(String) -> BoxFuture<'static, Result<AnyBackend>> + Send + Sync>;

/// The schemes engines registered, for the whole process.
static SCHEMES: RwLock<Option<HashMap<String, Connector>>> = RwLock::new(None);

/// The connector registered for `scheme`, if any.
fn registered(scheme: &str) -> Option<Connector> {
    let schemes = SCHEMES.read().unwrap_or_else(|e| e.into_inner());
    schemes.as_ref()?.get(scheme).cloned()
}

impl fmt::Debug for AnyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AnyBackend").field(&self.inner).finish()
    }
}

impl From<MemoryBackend> for AnyBackend {
    fn from(backend: MemoryBackend) -> AnyBackend {
        AnyBackend::new(backend)
    }
}

#[cfg(feature = "nats")]
impl From<crate::NatsBackend> for AnyBackend {
    fn from(backend: crate::NatsBackend) -> AnyBackend {
        AnyBackend::new(backend)
    }
}

#[cfg(feature = "redis")]
impl From<crate::RedisBackend> for AnyBackend {
    fn from(backend: crate::RedisBackend) -> AnyBackend {
        AnyBackend::new(backend)
    }
}

// Every method, provided ones included, forwards to the inner backend, so its overrides are the
// ones that run.
crate::backend::forward_backend!([] AnyBackend, |this| this.inner);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use std::time::Duration;

    use super::*;
    use crate::backend::{
        BoxStream, ChangeFeed, CountOp, CountOptions, Counted, Event, Extensions, GetOptions,
        PutOptions, RemoveOptions, UpdateFn, UpdateOptions, Versioned, Watch, WriteMany,
    };

    /// Records which of its methods ran (clones share the record); every method answers at
    /// once, with what no provided default would answer.
    #[derive(Debug, Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<&'static str>>>);

    impl Recorder {
        fn ran<'a, T: Send + 'a>(&self, method: &'static str, value: T) -> BoxFuture<'a, T> {
            self.0.lock().unwrap().push(method);
            Box::pin(std::future::ready(value))
        }
    }

    #[deny(clippy::missing_trait_methods)]
    impl Backend for Recorder {
        fn get_versioned<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
            self.ran("get_versioned", Ok(None))
        }
        fn put<'a>(
            &'a self, _: &'a str, _: Vec<u8>, _: PutOptions<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            self.ran("put", Ok(true))
        }
        fn remove<'a>(&'a self, _: &'a str, _: RemoveOptions<'a>) -> BoxFuture<'a, Result<bool>> {
            self.ran("remove", Ok(true))
        }
        fn ttl<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
            self.ran("ttl", Ok(None))
        }
        fn list(&self, _: &str) -> BoxStream<'static, Result<String>> {
            self.0.lock().unwrap().push("list");
            Box::pin(futures_util::stream::empty())
        }
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn get<'a>(&'a self, _: &'a str, _: GetOptions) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
            self.ran("get", Ok(Some(b"own".to_vec())))
        }
        fn get_many<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
            self.ran("get_many", Ok(vec![]))
        }
        fn write_many<'a>(&'a self, _: WriteMany<'a>) -> BoxFuture<'a, Result<u64>> {
            self.ran("write_many", Ok(7))
        }
        fn count<'a>(
            &'a self, _: &'a str, _: CountOp, _: CountOptions<'a>,
        ) -> BoxFuture<'a, Result<Counted>> {
            self.ran("count", Ok(Counted::Value(42)))
        }
        fn update<'a>(
            &'a self, _: &'a str, _: &'a mut UpdateFn<'_>, _: UpdateOptions<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            self.ran("update", Ok(false))
        }
        fn extensions(&self) -> Extensions<'_> {
            self.0.lock().unwrap().push("extensions");
            Extensions::new().system_name("recorder-system").feed(self)
        }
    }

    impl ChangeFeed for Recorder {
        fn watch<'a>(
            &'a self, _: &'a Watch,
        ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
            let stream: BoxStream<'static, Result<Event>> = Box::pin(futures_util::stream::empty());
            self.ran("watch", Ok(stream))
        }
        fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
            self.ran("enable_expiry_events", Ok(()))
        }
    }

    #[tokio::test]
    async fn every_method_reaches_the_inner_backends_own() {
        let recorder = Recorder::default();
        let any = AnyBackend::new(recorder.clone());
        let keys = vec!["k".to_string()];
        any.get_versioned("k").await.unwrap();
        any.put("k", vec![], PutOptions::new()).await.unwrap();
        any.remove("k", RemoveOptions::new()).await.unwrap();
        any.ttl("k").await.unwrap();
        drop(any.list("k"));
        assert_eq!(any.name(), "recorder");
        assert_eq!(
            any.get("k", GetOptions::new()).await.unwrap(),
            Some(b"own".to_vec())
        );
        any.get_many(&keys).await.unwrap();
        let batch = WriteMany::Remove {
            keys: &keys,
            options: RemoveOptions::new(),
        };
        assert_eq!(any.write_many(batch).await.unwrap(), 7);
        let op = CountOp::Increment {
            by: 1,
            ttl_if_created: None,
        };
        assert_eq!(
            any.count("k", op, CountOptions::new()).await.unwrap(),
            Counted::Value(42)
        );
        any.update("k", &mut |_| Ok(None), UpdateOptions::new())
            .await
            .unwrap();
        let extensions = any.extensions();
        assert_eq!(extensions.system_name, Some("recorder-system"));
        let feed = extensions.feed.expect("the inner backend's feed");
        drop(feed.watch(&Watch::new("c")).await.unwrap());
        feed.enable_expiry_events().await.unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "get_versioned",
                "put",
                "remove",
                "ttl",
                "list",
                "get",
                "get_many",
                "write_many",
                "count",
                "update",
                "extensions",
                "watch",
                "enable_expiry_events",
            ],
            "each call ran the inner backend's own method, not a provided default"
        );
    }

    #[tokio::test]
    async fn urls_choose_the_backend() {
        let memory = AnyBackend::connect("memory://").await.unwrap();
        assert_eq!(memory.name(), "MemoryBackend");
        assert_eq!(memory.extensions().system_name, Some("memory"));
        for url in ["ftp://user:s3cret@host", "nonsense"] {
            let err = AnyBackend::connect(url).await.unwrap_err();
            assert!(matches!(err, Error::Connect { .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
        }
    }

    #[tokio::test]
    async fn registered_schemes_reach_their_engine() {
        let err = AnyBackend::connect("recorded://x").await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        AnyBackend::register("recorded", |url| {
            Box::pin(async move {
                assert_eq!(url, "recorded://x");
                Ok(AnyBackend::new(Recorder::default()))
            })
        });
        let any = AnyBackend::connect("recorded://x").await.unwrap();
        assert_eq!(any.name(), "recorder");
    }
}
