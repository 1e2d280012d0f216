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
    /// [`connect`](Self::connect) reads it; the memory backend when it is unset or empty
    /// ([`Error::Connect`] when it is set to something that is not UTF-8). A
    /// `rediss://` URL connects with the certificates the environment names: see
    /// [`from_env_with`](Self::from_env_with), which this is with the default
    /// [`RedisOptions`](crate::RedisOptions).
    pub async fn from_env(var: &str) -> Result<AnyBackend> {
        #[cfg(feature = "redis")]
        let backend = AnyBackend::from_env_with(var, crate::RedisOptions::default()).await;
        #[cfg(not(feature = "redis"))]
        let backend = match url_in(var, std::env::var_os(var))? {
            Some(url) => AnyBackend::connect(&url).await,
            None => Ok(AnyBackend::memory()),
        };
        backend
    }

    /// [`from_env`](Self::from_env), with `options` for a Redis URL: the backend named by the
    /// environment variable `var`, the memory backend when it is unset or empty
    /// ([`Error::Connect`] when it is set to something that is not UTF-8).
    ///
    /// A Redis URL (`redis://`, `rediss://`, `redis+unix://`, `unix://`) connects with
    /// `options` (`RedisBackend::connect_with`), to which three more variables add the
    /// certificates of a `rediss://` server, so a service configured from its environment needs
    /// no code for TLS:
    ///
    /// | variable | what it names | becomes |
    /// |---|---|---|
    /// | `REDIS_TLS_CA_FILE` | a PEM file of the CA(s) to trust instead of the bundled public roots | `RedisOptions::tls_root_cert` |
    /// | `REDIS_TLS_CERT_FILE` | a PEM file of the client certificate (with `REDIS_TLS_KEY_FILE`) | `RedisOptions::tls_client_cert` |
    /// | `REDIS_TLS_KEY_FILE` | a PEM file of its unencrypted key (with `REDIS_TLS_CERT_FILE`) | `RedisOptions::tls_client_cert` |
    ///
    /// The names are these whatever `var` is; unset or empty is not set, and a variable that
    /// is set replaces the certificate `options` holds. None of them is ever ignored: one that
    /// is set is [`Error::Connect`], naming it and its path, in a build without the `tls`
    /// feature, with a URL that is not `rediss://` (the connection would be in plain text), when
    /// its file cannot be read or holds no PEM block of its kind, and when the certificate
    /// comes without its key or the key without its certificate.
    ///
    /// `memory://`, `nats://` and the schemes of [`register`](Self::register) connect as
    /// [`connect`](Self::connect) does: `options` and the three variables are for Redis, and
    /// are not read.
    ///
    /// ```
    /// use std::time::Duration;
    /// use state_store::{AnyBackend, RedisOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # // SAFETY of the example: a doctest runs alone in its process.
    /// # unsafe { std::env::remove_var("REDIS_URL") };
    /// // A managed Redis: a slower network than a local one. With `REDIS_URL=rediss://...` and
    /// // `REDIS_TLS_CA_FILE=/etc/redis/ca.pem` in the environment, this connects over TLS
    /// // to a server whose certificate comes from that private CA.
    /// let options = RedisOptions::default()
    ///     .connect_timeout(Duration::from_secs(5))
    ///     .response_timeout(Duration::from_secs(5));
    /// let backend = AnyBackend::from_env_with("REDIS_URL", options).await?;
    /// # assert_eq!(backend.inner().name(), "MemoryBackend");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn from_env_with(var: &str, options: crate::RedisOptions) -> Result<AnyBackend> {
        from_lookup(var, options, |name| std::env::var_os(name)).await
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

/// The URL that the environment variable `var` holds (its `value`): `None` when it is unset
/// or empty (the memory backend), [`Error::Connect`] when it is set to something that is not
/// UTF-8 (a service meant for Redis must not run on memory in silence).
fn url_in(var: &str, value: Option<std::ffi::OsString>) -> Result<Option<String>> {
    match value.map(std::ffi::OsString::into_string) {
        Some(Ok(url)) if !url.is_empty() => Ok(Some(url)),
        Some(Err(_)) => Err(Error::Connect {
            target: format!("the backend URL in `{var}`"),
            source: format!("`{var}` is set, but not to valid UTF-8, so it names no backend")
                .into(),
        }),
        _ => Ok(None),
    }
}

/// [`AnyBackend::from_env_with`] with `env` for the process's environment.
#[cfg(feature = "redis")]
async fn from_lookup(
    var: &str, options: crate::RedisOptions, env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<AnyBackend> {
    let Some(url) = url_in(var, env(var))? else {
        return Ok(AnyBackend::memory());
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme @ redis_schemes!()) if registered(scheme).is_none() => {
            let options = env_tls::options(var, scheme, options, &env)?;
            let backend = crate::RedisBackend::connect_with(&url, options).await?;
            Ok(AnyBackend::new(backend))
        }
        _ => AnyBackend::connect(&url).await,
    }
}

/// The certificates of a Redis URL from `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE` and
/// `REDIS_TLS_KEY_FILE`.
#[cfg(feature = "redis")]
mod env_tls {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use crate::{Error, RedisOptions, Result};

    /// The CA(s) to trust, PEM.
    pub(super) const CA_FILE: &str = "REDIS_TLS_CA_FILE";
    /// The client certificate, PEM.
    pub(super) const CERT_FILE: &str = "REDIS_TLS_CERT_FILE";
    /// The client certificate's key, PEM.
    pub(super) const KEY_FILE: &str = "REDIS_TLS_KEY_FILE";

    /// A variable that is set, and the path it holds.
    type Named = (&'static str, PathBuf);

    /// `options` with the certificates the variables name, for the URL of `var`, whose scheme
    /// is `scheme`.
    pub(super) fn options(
        var: &str, scheme: &str, options: RedisOptions, env: &impl Fn(&str) -> Option<OsString>,
    ) -> Result<RedisOptions> {
        let set = |name: &'static str| {
            let path = env(name).filter(|value| !value.is_empty())?;
            Some((name, PathBuf::from(path)))
        };
        let [ca, cert, key] = [CA_FILE, CERT_FILE, KEY_FILE].map(set);
        let Some((name, path)) = ca.iter().chain(&cert).chain(&key).next() else {
            return Ok(options);
        };
        let refused = |reason: String| Error::Connect {
            target: format!("the Redis of `{var}`"),
            source: reason.into(),
        };
        let path = path.display();
        if cfg!(not(feature = "tls")) {
            return Err(refused(format!(
                "`{name}` ({path}) is set, but this build of state-store has no TLS: enable its \
                 `tls` feature"
            )));
        }
        if scheme != "rediss" {
            return Err(refused(format!(
                "`{name}` ({path}) is set, but `{var}` is a `{scheme}://` URL, which does not use \
                 TLS: use `rediss://`"
            )));
        }
        match (&cert, &key) {
            (Some((name, path)), None) | (None, Some((name, path))) => {
                let other = if *name == CERT_FILE {
                    KEY_FILE
                } else {
                    CERT_FILE
                };
                Err(refused(format!(
                    "`{name}` ({}) is set without `{other}`: a client certificate needs both",
                    path.display()
                )))
            }
            _ => with_files(options, ca, cert.zip(key), refused),
        }
    }

    /// `options` with the files read in.
    #[cfg(feature = "tls")]
    fn with_files(
        mut options: RedisOptions, ca: Option<Named>, client: Option<(Named, Named)>,
        refused: impl Fn(String) -> Error,
    ) -> Result<RedisOptions> {
        use crate::backends::redis::pem::{CERTIFICATE, PRIVATE_KEY, contains};
        // Read, and checked for a PEM block of its kind: the connection's own errors name the
        // option (`tls_root_cert`), not the variable the service's operator set.
        let read = |(name, path): Named, marker: &str, kind: &str| {
            let shown = path.display();
            let pem = std::fs::read(&path)
                .map_err(|e| refused(format!("`{name}` ({shown}) cannot be read: {e}")))?;
            if !contains(&pem, marker) {
                return Err(refused(format!(
                    "`{name}` ({shown}) holds no PEM {kind} (`{marker}`)"
                )));
            }
            Ok(pem)
        };
        if let Some(ca) = ca {
            options = options.tls_root_cert(read(ca, CERTIFICATE, "certificate")?);
        }
        if let Some((cert, key)) = client {
            let cert = read(cert, CERTIFICATE, "certificate")?;
            let key = read(key, PRIVATE_KEY, "private key")?;
            options = options.tls_client_cert(cert, key);
        }
        Ok(options)
    }

    /// Without `tls` there is nothing to do with the files (and `options` refuses them first).
    #[cfg(not(feature = "tls"))]
    fn with_files(
        _: RedisOptions, _: Option<Named>, _: Option<(Named, Named)>,
        refused: impl Fn(String) -> Error,
    ) -> Result<RedisOptions> {
        Err(refused(
            "this build of state-store has no TLS: enable its `tls` feature".into(),
        ))
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

    /// The environment `vars`, for [`from_lookup`].
    #[cfg(feature = "redis")]
    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| vars.get(name).map(Into::into)
    }

    /// The message of `from_lookup`'s `Error::Connect` with `vars`.
    #[cfg(feature = "redis")]
    async fn refusal(vars: &[(&str, &str)]) -> String {
        let options = crate::RedisOptions::default();
        match from_lookup("APP_REDIS", options, env(vars)).await {
            Err(e @ Error::Connect { .. }) => e.to_string(),
            other => panic!("expected Error::Connect, got {other:?}"),
        }
    }

    #[cfg(all(feature = "redis", unix))]
    #[tokio::test]
    async fn a_variable_that_is_not_utf8_is_an_error_not_memory() {
        use std::os::unix::ffi::OsStringExt;
        let options = crate::RedisOptions::default();
        let env = |_: &str| Some(std::ffi::OsString::from_vec(b"redis://\xff:6379".to_vec()));
        match from_lookup("APP_REDIS", options, env).await {
            Err(e @ Error::Connect { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains("`APP_REDIS`"), "{shown}");
                assert!(shown.contains("not to valid UTF-8"), "{shown}");
            }
            other => panic!("expected Error::Connect, got {other:?}"),
        }
        // Unset and empty still mean memory.
        let unset = from_lookup("APP_REDIS", crate::RedisOptions::default(), |_| None);
        assert_eq!(unset.await.unwrap().name(), "MemoryBackend");
        let empty = from_lookup("APP_REDIS", crate::RedisOptions::default(), |_| {
            Some(std::ffi::OsString::new())
        });
        assert_eq!(empty.await.unwrap().name(), "MemoryBackend");
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn tls_variables_are_never_ignored() {
        // Refused before any connection is tried (nothing listens on port 1).
        let url = ("APP_REDIS", "rediss://127.0.0.1:1");
        let plain = ("APP_REDIS", "redis://127.0.0.1:1");
        let ca = ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem");
        let cert = ("REDIS_TLS_CERT_FILE", "/nonexistent/client.pem");
        let key = ("REDIS_TLS_KEY_FILE", "/nonexistent/client.key");
        let starts = "cannot connect to the Redis of `APP_REDIS`: `REDIS_TLS_CA_FILE` \
                      (/nonexistent/ca.pem) ";
        let shown = refusal(&[url, ca]).await;
        if cfg!(feature = "tls") {
            assert!(shown.starts_with(starts), "{shown}");
            assert!(shown.contains("cannot be read"), "{shown}");
            let shown = refusal(&[plain, ca]).await;
            assert!(shown.starts_with(starts), "{shown}");
            assert!(
                shown.contains("`redis://` URL, which does not use TLS"),
                "{shown}"
            );
            for (vars, named, missing) in [
                ([url, cert], "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"),
                ([url, key], "REDIS_TLS_KEY_FILE", "REDIS_TLS_CERT_FILE"),
            ] {
                let shown = refusal(&vars).await;
                assert!(
                    shown.contains(&format!("`{named}` (/nonexistent/")),
                    "{shown}"
                );
                assert!(shown.contains(&format!("without `{missing}`")), "{shown}");
            }
        } else {
            for vars in [[url, ca], [plain, ca]] {
                let shown = refusal(&vars).await;
                assert!(shown.starts_with(starts), "{shown}");
                assert!(
                    shown.contains("no TLS: enable its `tls` feature"),
                    "{shown}"
                );
            }
        }
        // An empty variable is an unset one; and the variables are Redis's, not memory's.
        let empty = ("REDIS_TLS_CA_FILE", "");
        let result = from_lookup("APP_REDIS", crate::RedisOptions::default(), env(&[empty]));
        assert_eq!(result.await.unwrap().name(), "MemoryBackend");
        let memory = ("APP_REDIS", "memory://");
        let result = from_lookup(
            "APP_REDIS",
            crate::RedisOptions::default(),
            env(&[memory, ca]),
        );
        assert_eq!(result.await.unwrap().name(), "MemoryBackend");
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn tls_files_must_hold_pem_of_their_kind() {
        let dir = std::env::temp_dir().join(format!("state-store-env-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let not_pem = not_pem.to_str().unwrap();
        let url = ("APP_REDIS", "rediss://127.0.0.1:1");
        let shown = refusal(&[url, ("REDIS_TLS_CA_FILE", not_pem)]).await;
        assert!(
            shown.contains(&format!(
                "`REDIS_TLS_CA_FILE` ({not_pem}) holds no PEM certificate"
            )),
            "{shown}"
        );
        let client = [
            url,
            ("REDIS_TLS_CERT_FILE", not_pem),
            ("REDIS_TLS_KEY_FILE", not_pem),
        ];
        let shown = refusal(&client).await;
        assert!(shown.contains("`REDIS_TLS_CERT_FILE`"), "{shown}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
