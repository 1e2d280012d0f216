//! [`AnyBackend`]: the backend chosen at run time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{
    Backend, BoxFuture, BoxStream, Decode, Decoded, Event, Expiry, Notify, PutMode, RemoveFn,
    UpdateFn, Version, Versioned, Watch,
};
use crate::rate_limit::Decision;
use crate::{Error, MemoryBackend, Result, Usage, UsageOptions};

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
    /// Any other scheme, or `redis://` (`nats://`) in a build without the `redis` (`nats`)
    /// feature, is [`Error::Connect`] naming the scheme (never the rest of the URL, which may
    /// hold a password).
    pub async fn connect(url: &str) -> Result<AnyBackend> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("memory") => Ok(AnyBackend::memory()),
            #[cfg(feature = "redis")]
            Some(redis_schemes!()) => Ok(AnyBackend::new(crate::RedisBackend::connect(url).await?)),
            #[cfg(not(feature = "redis"))]
            Some(redis_schemes!()) => Err(Error::Connect {
                target: "redis".into(),
                source: "this build of state-store has no Redis backend: enable its `redis` \
                         feature"
                    .into(),
            }),
            #[cfg(feature = "nats")]
            Some(nats_schemes!()) => Ok(AnyBackend::new(crate::NatsBackend::connect(url).await?)),
            #[cfg(not(feature = "nats"))]
            Some(nats_schemes!()) => Err(Error::Connect {
                target: "nats".into(),
                source: "this build of state-store has no NATS backend: enable its `nats` \
                         feature"
                    .into(),
            }),
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

    /// The backend inside.
    pub fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
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

/// Every method, provided ones included, forwards to the inner backend, so its overrides are
/// the ones that run. A provided method added to `Backend` must be forwarded here too (the
/// delegation test below lists them).
impl Backend for AnyBackend {
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        self.inner.get_versioned(key)
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        mode: PutMode,
        expiry: Expiry,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.put(key, value, mode, expiry, notify)
    }

    fn remove<'a>(&'a self, key: &'a str, notify: Notify<'a>) -> BoxFuture<'a, Result<bool>> {
        self.inner.remove(key, notify)
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        self.inner.ttl(key)
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        self.inner.list(prefix)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn system_name(&self) -> &'static str {
        self.inner.system_name()
    }

    fn declare(&self, prefix: &str, ttl: Option<Duration>) {
        self.inner.declare(prefix, ttl)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        self.inner.get(key)
    }

    fn get_cached<'a>(
        &'a self,
        key: &'a str,
        prefix: &'a str,
        decode: &'a Decode<'a>,
    ) -> BoxFuture<'a, Result<Option<Decoded>>> {
        self.inner.get_cached(key, prefix, decode)
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.exists(key)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        self.inner.set(key, value, ttl, notify)
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.set_if_absent(key, value, ttl, notify)
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        self.inner.get_many(keys)
    }

    fn set_many<'a>(
        &'a self,
        items: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        self.inner.set_many(items, ttl, notify)
    }

    fn remove_many<'a>(
        &'a self,
        keys: &'a [String],
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<u64>> {
        self.inner.remove_many(keys, notify)
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl_if_created: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<i64>> {
        self.inner.incr(key, by, ttl_if_created, notify)
    }

    fn fixed_window<'a>(
        &'a self,
        key: &'a str,
        limit: u64,
        window: Duration,
    ) -> BoxFuture<'a, Result<Decision>> {
        self.inner.fixed_window(key, limit, window)
    }

    fn gcra<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        burst: u32,
    ) -> BoxFuture<'a, Result<Decision>> {
        self.inner.gcra(key, interval, burst)
    }

    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        change: &'a mut UpdateFn<'_>,
        ttl_if_created: Option<Duration>,
        attempts: u32,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner
            .update(key, change, ttl_if_created, attempts, notify)
    }

    fn update_refreshing<'a>(
        &'a self,
        key: &'a str,
        change: &'a mut UpdateFn<'_>,
        ttl: Option<Duration>,
        attempts: u32,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner
            .update_refreshing(key, change, ttl, attempts, notify)
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        expiry: Expiry,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        self.inner.get_and_touch(key, expiry)
    }

    fn remove_version<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.remove_version(key, version, notify)
    }

    fn remove_if<'a>(
        &'a self,
        key: &'a str,
        check: &'a mut RemoveFn<'_>,
        attempts: u32,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.remove_if(key, check, attempts, notify)
    }

    fn touch<'a>(&'a self, key: &'a str, expiry: Expiry) -> BoxFuture<'a, Result<bool>> {
        self.inner.touch(key, expiry)
    }

    fn watch<'a>(
        &'a self,
        watch: &'a Watch,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
        self.inner.watch(watch)
    }

    fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.enable_expiry_events()
    }

    fn usage<'a>(
        &'a self,
        prefix: &'a str,
        options: &'a UsageOptions,
    ) -> BoxFuture<'a, Result<Usage>> {
        self.inner.usage(prefix, options)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::UsageTally;

    /// Records which of its methods ran (clones share the record); every method answers at
    /// once.
    #[derive(Debug, Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<&'static str>>>);

    impl Recorder {
        fn ran<'a, T: Send + 'a>(&self, method: &'static str, value: T) -> BoxFuture<'a, T> {
            self.0.lock().unwrap().push(method);
            Box::pin(std::future::ready(value))
        }
    }

    impl Backend for Recorder {
        fn get_versioned<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
            self.ran("get_versioned", Ok(None))
        }
        fn put<'a>(
            &'a self,
            _: &'a str,
            _: Vec<u8>,
            _: PutMode,
            _: Expiry,
            _: Notify<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            self.ran("put", Ok(true))
        }
        fn remove<'a>(&'a self, _: &'a str, _: Notify<'a>) -> BoxFuture<'a, Result<bool>> {
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
        fn system_name(&self) -> &'static str {
            "recorder-system"
        }
        fn declare(&self, _: &str, _: Option<Duration>) {
            self.0.lock().unwrap().push("declare");
        }
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
            self.ran("get", Ok(None))
        }
        fn exists<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
            self.ran("exists", Ok(false))
        }
        fn set<'a>(
            &'a self,
            _: &'a str,
            _: Vec<u8>,
            _: Option<Duration>,
            _: Notify<'a>,
        ) -> BoxFuture<'a, Result<()>> {
            self.ran("set", Ok(()))
        }
        fn set_if_absent<'a>(
            &'a self,
            _: &'a str,
            _: Vec<u8>,
            _: Option<Duration>,
            _: Notify<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            self.ran("set_if_absent", Ok(true))
        }
        fn get_many<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
            self.ran("get_many", Ok(Vec::new()))
        }
        fn set_many<'a>(
            &'a self,
            _: Vec<(String, Vec<u8>)>,
            _: Option<Duration>,
            _: Notify<'a>,
        ) -> BoxFuture<'a, Result<()>> {
            self.ran("set_many", Ok(()))
        }
        fn remove_many<'a>(&'a self, _: &'a [String], _: Notify<'a>) -> BoxFuture<'a, Result<u64>> {
            self.ran("remove_many", Ok(0))
        }
        fn incr<'a>(
            &'a self,
            _: &'a str,
            _: i64,
            _: Option<Duration>,
            _: Notify<'a>,
        ) -> BoxFuture<'a, Result<i64>> {
            self.ran("incr", Ok(0))
        }
        fn fixed_window<'a>(
            &'a self,
            _: &'a str,
            _: u64,
            _: Duration,
        ) -> BoxFuture<'a, Result<Decision>> {
            self.ran(
                "fixed_window",
                Err(Error::Conflict {
                    key: String::new(),
                    attempts: 0,
                }),
            )
        }
        fn gcra<'a>(&'a self, _: &'a str, _: Duration, _: u32) -> BoxFuture<'a, Result<Decision>> {
            self.ran(
                "gcra",
                Err(Error::Conflict {
                    key: String::new(),
                    attempts: 0,
                }),
            )
        }
        fn now(&self) -> Duration {
            self.0.lock().unwrap().push("now");
            Duration::ZERO
        }
        fn update<'a>(
            &'a self,
            _: &'a str,
            _: &'a mut UpdateFn<'_>,
            _: Option<Duration>,
            _: u32,
            _: Notify<'a>,
        ) -> BoxFuture<'a, Result<bool>> {
            self.ran("update", Ok(false))
        }
        fn watch<'a>(
            &'a self,
            _: &'a Watch,
        ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
            let stream: BoxStream<'static, Result<Event>> = Box::pin(futures_util::stream::empty());
            self.ran("watch", Ok(stream))
        }
        fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
            self.ran("enable_expiry_events", Ok(()))
        }
        fn usage<'a>(&'a self, _: &'a str, o: &'a UsageOptions) -> BoxFuture<'a, Result<Usage>> {
            self.ran("usage", Ok(UsageTally::new("", o).finish(true)))
        }
    }

    #[tokio::test]
    async fn every_method_reaches_the_inner_backends_own() {
        let recorder = Recorder::default();
        let any = AnyBackend::new(recorder.clone());
        let keys = vec!["k".to_string()];
        any.get_versioned("k").await.unwrap();
        any.put("k", vec![], PutMode::Overwrite, Expiry::Never, None)
            .await
            .unwrap();
        any.remove("k", None).await.unwrap();
        any.ttl("k").await.unwrap();
        drop(any.list("k"));
        assert_eq!(any.name(), "recorder");
        assert_eq!(any.system_name(), "recorder-system");
        any.declare("k", None);
        any.get("k").await.unwrap();
        any.exists("k").await.unwrap();
        any.set("k", vec![], None, None).await.unwrap();
        any.set_if_absent("k", vec![], None, None).await.unwrap();
        any.get_many(&keys).await.unwrap();
        any.set_many(vec![], None, None).await.unwrap();
        any.remove_many(&keys, None).await.unwrap();
        any.incr("k", 1, None, None).await.unwrap();
        any.fixed_window("k", 1, Duration::from_secs(1))
            .await
            .unwrap_err();
        any.gcra("k", Duration::from_secs(1), 1).await.unwrap_err();
        any.now();
        any.update("k", &mut |_| Ok(None), None, 1, None)
            .await
            .unwrap();
        drop(any.watch(&Watch::new("c")).await.unwrap());
        any.enable_expiry_events().await.unwrap();
        any.usage("", &UsageOptions::new()).await.unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "get_versioned",
                "put",
                "remove",
                "ttl",
                "list",
                "declare",
                "get",
                "exists",
                "set",
                "set_if_absent",
                "get_many",
                "set_many",
                "remove_many",
                "incr",
                "fixed_window",
                "gcra",
                "now",
                "update",
                "watch",
                "enable_expiry_events",
                "usage",
            ],
            "each call ran the inner backend's own method, not a provided default"
        );
    }

    #[tokio::test]
    async fn urls_choose_the_backend() {
        let memory = AnyBackend::connect("memory://").await.unwrap();
        assert_eq!(memory.name(), "MemoryBackend");
        assert_eq!(memory.system_name(), "memory");
        for url in ["ftp://user:s3cret@host", "nonsense"] {
            let err = AnyBackend::connect(url).await.unwrap_err();
            assert!(matches!(err, Error::Connect { .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
        }
    }
}
