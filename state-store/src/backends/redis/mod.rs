//! The Redis backend: one shared, reconnecting, multiplexed connection.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError, ScriptInvocation};

pub use crate::backends::redis::conn::RedisConnection;

use crate::backend::{
    Backend, BoxFuture, BoxStream, Decode, Decoded, Event, Expiry, Notify, PutMode, Version,
    Versioned, Watch, ceil_millis, not_a_counter,
};
use crate::backends::redis::batch::{Batcher, Turn};
use crate::backends::redis::cache::Tracker;
use crate::backends::redis::feed::{RedisFeed, Source, set_message, wire_channel};
use crate::backends::redis::scripts::{
    FIXED_WINDOW, GCRA, INCR, PUT_IF_VERSION, PUT_NOTIFY, REMOVE_IF_VERSION, REMOVE_NOTIFY,
};
use crate::rate_limit::Decision;
use crate::{Error, Result, Usage, UsageOptions};

mod batch;
mod cache;
mod conn;
mod feed;
mod scripts;
mod usage;

/// Timeouts, reconnect attempts and TLS certificates of a [`RedisBackend`].
///
/// The defaults bound every failure to well under ten seconds: an unreachable server fails
/// `connect` after three attempts of at most two seconds each, and a server that stops answering
/// fails a call after the response timeout.
///
/// With the `tls` feature, a `rediss://` URL connects over TLS (rustls, no OpenSSL), trusting
/// the public roots bundled with the crate (Mozilla's) unless `tls_root_cert` names a private
/// CA, and presenting a client certificate given with `tls_client_cert`. `Debug` shows whether
/// certificates are set, never their bytes.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// How long one connection attempt (TCP connect and handshake) may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long a command may wait for its answer. Default 2 s.
    pub response_timeout: Duration,
    /// How many more connection attempts follow a failed one, with exponential backoff from
    /// 100 ms. Default 2.
    pub reconnect_retries: usize,
    /// Automatic read batching: the most single `get`s sent together in one round trip. A `get`
    /// that finds no read in flight goes out at once as a plain `GET`; those that arrive while
    /// one is in flight wait for it and go out together, as one `MGET` (then a `TYPE` for each
    /// key it found nil, so that a key of another type is still an error for its caller). 0 or
    /// 1 turns batching off (every `get` is sent on its own, all in flight at once). Off on a
    /// Cluster, where a batch would span nodes. Default 128.
    pub read_batch: usize,
    /// The most values the client-side cache keeps decoded, for types declared with
    /// `#[state(cache)]` (single server only); 0 turns it off. Default 10,000.
    pub client_cache: usize,
    /// A private CA to trust, PEM.
    #[cfg(feature = "tls")]
    tls_root_cert: Option<Vec<u8>>,
    /// A client certificate and its key, PEM.
    #[cfg(feature = "tls")]
    tls_client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 2,
            read_batch: 128,
            client_cache: 10_000,
            #[cfg(feature = "tls")]
            tls_root_cert: None,
            #[cfg(feature = "tls")]
            tls_client_cert: None,
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut options = f.debug_struct("RedisOptions");
        options
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .field("read_batch", &self.read_batch)
            .field("client_cache", &self.client_cache);
        #[cfg(feature = "tls")]
        options
            .field(
                "tls_root_cert",
                &self.tls_root_cert.as_ref().map(|_| "<set>"),
            )
            .field(
                "tls_client_cert",
                &self.tls_client_cert.as_ref().map(|_| "<set>"),
            );
        options.finish()
    }
}

impl RedisOptions {
    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`reconnect_retries`](Self::reconnect_retries).
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// Sets [`read_batch`](Self::read_batch); 0 turns automatic read batching off.
    pub fn read_batch(mut self, keys: usize) -> Self {
        self.read_batch = keys;
        self
    }

    /// Sets [`client_cache`](Self::client_cache); 0 turns the client-side cache off.
    pub fn client_cache(mut self, entries: usize) -> Self {
        self.client_cache = entries;
        self
    }

    /// The read batcher these options ask for.
    fn batcher(&self) -> Option<Arc<Batcher>> {
        (self.read_batch > 1).then(|| Batcher::new(self.read_batch))
    }

    /// Trusts the CA in `pem` (PEM bytes, one or more certificates) for `rediss://` servers,
    /// instead of the bundled public roots.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Presents this client certificate and key (PEM bytes; the key unencrypted, PKCS#8, PKCS#1
    /// or SEC1) to `rediss://` servers that ask for one (`tls-auth-clients yes`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// How long connecting may take in all: every attempt and the backoff between them.
    #[cfg(any(feature = "cluster", feature = "sentinel"))]
    fn connect_bound(&self) -> Duration {
        let attempts = u32::try_from(self.reconnect_retries.saturating_add(1)).unwrap_or(u32::MAX);
        self.connect_timeout
            .saturating_mul(attempts)
            .saturating_add(self.response_timeout)
            .saturating_add(Duration::from_secs(1))
    }

    /// The certificates of these options, for the cluster and sentinel clients.
    #[cfg(all(feature = "tls", any(feature = "cluster", feature = "sentinel")))]
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.tls_root_cert.is_none() && self.tls_client_cert.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .tls_client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.tls_root_cert.clone(),
        })
    }

    /// The `redis` client for `url` with these options' certificates.
    fn client(&self, url: &str) -> Result<Client> {
        // The URL did not parse, so there is no safe way to show its parts.
        let invalid = |source: RedisError| Error::Connect {
            target: "the given Redis URL".into(),
            source: Box::new(source),
        };
        #[cfg(feature = "tls")]
        if self.tls_root_cert.is_some() || self.tls_client_cert.is_some() {
            // The URL parses (or the error says so): name its host, not the URL, in the
            // certificates' errors.
            let target = Client::open(url).map_err(invalid).map(|c| describe(&c))?;
            let root = self.tls_root_cert.as_deref();
            return tls::client(url, root, self.tls_client_cert.as_ref()).map_err(|reason| {
                Error::Connect {
                    target,
                    source: reason.into(),
                }
            });
        }
        #[cfg(feature = "tls")]
        tls::install_provider();
        Client::open(url).map_err(invalid)
    }
}

/// TLS through the `redis` crate's rustls support, with the `ring` provider.
#[cfg(feature = "tls")]
mod tls {
    use redis::{Client, ClientTlsConfig, TlsCertificates};

    /// Makes `ring` the process's rustls provider unless one is installed: rustls cannot pick
    /// one itself when another crate of the program enables a second provider.
    pub(super) fn install_provider() {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer leaves that one, which serves as well.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    }

    pub(super) fn client(
        url: &str,
        root: Option<&[u8]>,
        client_cert: Option<&(Vec<u8>, Vec<u8>)>,
    ) -> Result<Client, String> {
        install_provider();
        // The redis crate accepts a root PEM without any certificate, and the connection then
        // fails later as an unknown issuer; its key errors do not say which option is wrong.
        // Say what is wrong here.
        if let Some(root) = root
            && !contains(root, b"-----BEGIN CERTIFICATE-----")
        {
            return Err(
                "`tls_root_cert` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into(),
            );
        }
        if let Some((cert, key)) = client_cert {
            if !contains(cert, b"-----BEGIN CERTIFICATE-----") {
                return Err("the certificate of `tls_client_cert` holds no PEM certificate".into());
            }
            if contains(key, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                return Err("the key of `tls_client_cert` is encrypted: give it decrypted".into());
            }
            if !contains(key, b"PRIVATE KEY-----") {
                return Err("the key of `tls_client_cert` holds no PEM private key".into());
            }
        }
        let certificates = TlsCertificates {
            client_tls: client_cert.map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: root.map(<[u8]>::to_vec),
        };
        Client::build_with_tls(url, certificates)
            .map_err(|e| format!("invalid `tls_root_cert` or `tls_client_cert`: {e}"))
    }

    fn contains(pem: &[u8], marker: &[u8]) -> bool {
        pem.windows(marker.len()).any(|w| w == marker)
    }
}

/// State in Redis, values as JSON, through the `redis` crate's reconnecting
/// [`ConnectionManager`].
///
/// Clones share one multiplexed connection, which every task pipelines its commands over; when
/// the connection breaks, the calls in flight fail and the next calls reconnect.
#[derive(Clone)]
pub struct RedisBackend {
    conn: RedisConnection,
    target: String,
    /// The database, whose number the feeds' channels carry outside database 0.
    db: i64,
    /// The change feeds' pub/sub connection, shared by clones; opened by the first watcher.
    feed: Arc<RedisFeed>,
    /// Automatic read batching, shared by clones; `None` when turned off.
    batch: Option<Arc<Batcher>>,
    /// The client-side cache of types declared with `cache`, shared by clones; `None` when
    /// turned off, and on a Cluster or through Sentinel.
    cache: Option<Arc<Tracker>>,
}

impl RedisBackend {
    /// Connects to a `redis://[user:password@]host[:port][/db]` URL with default
    /// [`RedisOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` with the given options.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self> {
        let client = options.client(url)?;
        Self::from_client_with(client, options).await
    }

    /// Connects with a `redis::Client` built by hand (for settings a URL cannot carry).
    pub async fn from_client(client: Client) -> Result<Self> {
        Self::from_client_with(client, RedisOptions::default()).await
    }

    /// Connects with a `redis::Client` and the given options.
    pub async fn from_client_with(client: Client, options: RedisOptions) -> Result<Self> {
        let target = describe(&client);
        let db = client.get_connection_info().redis_settings().db();
        let feed = RedisFeed::new(
            Source::Node(client.clone()),
            db,
            target.clone(),
            options.connect_timeout,
            options.response_timeout,
        );
        let cache_client = client.clone();
        let conn = ConnectionManager::new_with_config(client, manager_config(&options))
            .await
            .map_err(|source| Error::Connect {
                target: target.clone(),
                source: Box::new(source),
            })?;
        Ok(RedisBackend {
            conn: RedisConnection::node(conn),
            target,
            db,
            feed: Arc::new(feed),
            batch: options.batcher(),
            cache: (options.client_cache > 0).then(|| {
                Arc::new(Tracker::new(
                    cache_client,
                    options.client_cache,
                    options.response_timeout.max(options.connect_timeout),
                ))
            }),
        })
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://` or, with the `tls`
    /// feature, `rediss://` URLs; one is enough, more survive one being down), with default
    /// [`RedisOptions`].
    ///
    /// Every operation keeps its guarantees: single-key operations, counters, rate limits and
    /// `update` touch one key each; `get_many` and `remove_many` are split per hash slot and
    /// their results put back in the caller's order; `set_many` is one atomic `MULTI` per slot,
    /// the slots' transactions sent concurrently (atomic per slot, not across slots: when one
    /// fails, the error says how many of the other keys were written, and the call can be
    /// repeated as a whole); `ids` scans every primary. Change feeds hear `Set` and `Removed`
    /// from every node, and `Expired` from every node's own expired-key events. After a primary
    /// fails, operations on its slots fail with errors until a replica is promoted, then succeed
    /// again through the same backend.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub async fn cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::cluster_with(nodes, RedisOptions::default()).await
    }

    /// [`cluster`](Self::cluster) with the given options (timeouts, TLS certificates; retries
    /// bound the cluster connection's own retries of a command after a connection error or a
    /// slot move).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub async fn cluster_with<I, S>(nodes: I, options: RedisOptions) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let clients = nodes
            .into_iter()
            .map(|url| options.client(url.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let Some(template) = clients.first().cloned() else {
            return Err(Error::Connect {
                target: "a Redis Cluster".into(),
                source: "no node URL was given".into(),
            });
        };
        let target = format!(
            "redis cluster at {}",
            clients
                .iter()
                .map(|c| c.get_connection_info().addr().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let connect_error = |source: RedisError| Error::Connect {
            target: target.clone(),
            source: Box::new(source),
        };
        let infos = clients.iter().map(|c| c.get_connection_info().clone());
        let builder = redis::cluster::ClusterClientBuilder::new(infos)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(u32::try_from(options.reconnect_retries).unwrap_or(u32::MAX))
            .min_retry_wait(100)
            .max_retry_wait(1000);
        #[cfg(feature = "tls")]
        let builder = match options.certificates() {
            Some(certificates) => builder.certs(certificates),
            None => builder,
        };
        let client = builder.build().map_err(connect_error)?;
        let conn = tokio::time::timeout(options.connect_bound(), client.get_async_connection())
            .await
            .map_err(|_| Error::Connect {
                target: target.clone(),
                source: format!("no node answered within {:?}", options.connect_bound()).into(),
            })?
            .map_err(connect_error)?;
        let feed = RedisFeed::new(
            Source::Cluster {
                conn: conn.clone(),
                template,
            },
            0,
            target.clone(),
            options.connect_timeout,
            options.response_timeout,
        );
        Ok(RedisBackend {
            conn: RedisConnection::cluster(conn),
            target,
            db: 0,
            feed: Arc::new(feed),
            // A batch's MGET spans nodes: one failing primary would fail the reads of the
            // healthy ones with it. Each get goes to its own slot's primary instead.
            batch: None,
            cache: None,
        })
    }

    /// Connects to the primary that Redis Sentinel names `master_name`, asking the sentinels at
    /// `sentinels` (`redis://` URLs of the sentinels; their user, password and database, if
    /// any, are used for the sentinels and the primary alike; with the `tls` feature,
    /// `rediss://` for both), with default [`RedisOptions`].
    ///
    /// After a failover it finds the new primary by itself: when a command fails in a way a
    /// failover explains (the connection broke or was refused, no answer in time, `READONLY`
    /// from a primary turned replica), the sentinels are asked again (at most every 200 ms) and
    /// the next commands go to the primary they name. The failing command is not sent again,
    /// so reads and writes fail with errors during the failover and succeed again after it.
    /// A new primary is used only once it has said it is the primary. A replica refuses writes
    /// (`READONLY`), which makes the backend ask again, so writes never land on a replica; reads
    /// sent just after a primary was demoted in place (not killed) may reach it until an error
    /// or a refused write shows the change.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub async fn sentinel<I, S>(sentinels: I, master_name: &str) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::sentinel_with(sentinels, master_name, RedisOptions::default()).await
    }

    /// [`sentinel`](Self::sentinel) with the given options (timeouts, retries, TLS
    /// certificates, used for the sentinels and the primary alike).
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub async fn sentinel_with<I, S>(
        sentinels: I,
        master_name: &str,
        options: RedisOptions,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        let clients = sentinels
            .into_iter()
            .map(|url| options.client(url.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let target = format!("redis primary `{master_name}` named by sentinel");
        let connect_error = |source: RedisError| Error::Connect {
            target: target.clone(),
            source: Box::new(source),
        };
        let Some(first) = clients.first().map(|c| c.get_connection_info().clone()) else {
            return Err(Error::Connect {
                target,
                source: "no sentinel URL was given".into(),
            });
        };
        let addresses = clients
            .iter()
            .map(|c| c.get_connection_info().addr().clone());
        let mut builder =
            SentinelClientBuilder::new(addresses, master_name, SentinelServerType::Master)
                .map_err(connect_error)?;
        let settings = first.redis_settings();
        if let Some(username) = settings.username() {
            builder = builder
                .set_client_to_sentinel_username(username)
                .set_client_to_redis_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder
                .set_client_to_sentinel_password(password)
                .set_client_to_redis_password(password);
        }
        let db = settings.db();
        builder = builder.set_client_to_redis_db(db);
        #[cfg(feature = "tls")]
        if let redis::ConnectionAddr::TcpTls { .. } = first.addr() {
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            if let Some(certificates) = options.certificates() {
                builder = builder
                    .set_client_to_sentinel_certificates(certificates.clone())
                    .set_client_to_redis_certificates(certificates);
            }
        }
        let client = builder.build().map_err(connect_error)?;
        let primary = crate::backends::redis::conn::Primary::connect(
            client,
            manager_config(&options),
            options.connect_bound(),
            db,
        )
        .await
        .map_err(|reason| Error::Connect {
            target: target.clone(),
            source: reason.into(),
        })?;
        let primary = Arc::new(primary);
        let feed = RedisFeed::new(
            Source::Sentinel(primary.clone()),
            db,
            target.clone(),
            options.connect_timeout,
            options.response_timeout,
        );
        Ok(RedisBackend {
            conn: RedisConnection::sentinel(primary),
            target,
            db,
            feed: Arc::new(feed),
            batch: options.batcher(),
            cache: None,
        })
    }

    /// The connection for commands on `key`: the client-side cache's tracking connection when
    /// the key is one of a cached type (see `redis_cache.rs`), else the backend's.
    fn conn_for(&self, key: &str) -> RedisConnection {
        match self
            .cache
            .as_deref()
            .and_then(|cache| cache.writer_for(key))
        {
            Some(tracking) => RedisConnection::tracking(tracking),
            None => self.conn.clone(),
        }
    }

    /// The underlying connection, for commands this crate does not wrap.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// Sends `cmd` once: for commands that must not run twice.
    async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T> {
        let mut conn = self.conn_for(key);
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| backend_error(operation, key, e))
    }

    /// Runs a script once (it loads the script first only if the server does not have it).
    async fn run<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut conn = self.conn_for(key);
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend_error(operation, key, e))
    }

    /// Sends `cmd`, once more if the connection broke: only for commands that may run twice
    /// without changing the outcome or the answer (reads, `SET`).
    async fn query_idempotent<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T> {
        let mut conn = self.conn_for(key);
        match cmd.query_async(&mut conn).await {
            Err(e) if worth_one_retry(&e) => cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| backend_error(operation, key, e)),
            result => result.map_err(|e| backend_error(operation, key, e)),
        }
    }
}

/// The connection manager's settings from `options`.
fn manager_config(options: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(options.reconnect_retries)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
}

/// Whether the connection broke under a command, so that the manager is reconnecting and one
/// more try (which waits for the new connection) may succeed. Only for idempotent commands: the
/// server may have carried out the first one.
fn worth_one_retry(e: &RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_connection_dropped()
}

/// Whether a command failed because the connection broke, was refused or did not answer in
/// time: the reads queued behind it fail with it.
pub(crate) fn broke_connection(e: &RedisError) -> bool {
    worth_one_retry(e)
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_connection_dropped()
}

/// `host:port/db` of the client, which is all an error or `Debug` may show of the URL.
fn describe(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("redis at {}/{}", info.addr(), info.redis_settings().db())
}

fn backend_error(operation: &'static str, key: &str, e: RedisError) -> Error {
    match e.code() {
        Some("WRONGTYPE") => {
            return Error::InvalidKey {
                key: key.to_owned(),
                reason: "it holds a Redis value of another type than a string".into(),
            };
        }
        Some("NOTCOUNTER") => {
            let detail = e.detail().unwrap_or("value is not an integer");
            // The detail is the server's own error, which starts with its code: drop it.
            let reason = detail.strip_prefix("ERR ").unwrap_or(detail);
            return not_a_counter(key, reason);
        }
        _ => {}
    }
    Error::Backend {
        operation,
        key: key.to_owned(),
        source: Box::new(e),
    }
}

/// Milliseconds for `PX`; the store has already rejected durations Redis cannot take.
fn millis(ttl: Duration) -> u64 {
    ceil_millis(ttl).max(1)
}

/// A script argument for an optional expiry: milliseconds, or empty for none.
fn millis_arg(ttl: Option<Duration>) -> String {
    ttl.map(|ttl| millis(ttl).to_string()).unwrap_or_default()
}

/// The four integers the rate-limit scripts return, `unit` being their time unit.
fn decision(reply: [i64; 4], unit: fn(u64) -> Duration) -> Decision {
    let [allowed, remaining, retry_after, reset_after] =
        reply.map(|n| u64::try_from(n).unwrap_or(0));
    Decision {
        allowed: allowed == 1,
        remaining,
        retry_after: unit(retry_after),
        reset_after: unit(reset_after),
    }
}

/// `SCAN MATCH` pattern for keys starting with `prefix`, glob characters escaped.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The version of a value on Redis: its SHA-1 in lowercase hex, as `redis.sha1hex` computes it
/// in the compare-and-set script.
fn version_of(value: &[u8]) -> Version {
    use sha1::Digest;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha1::Sha1::digest(value);
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    Version::from_text(hex)
}

/// The core, plus the provided methods Redis does better: `get` and `exists` without a digest,
/// `get_many` as one `MGET`, `set_many` as one `MULTI` pipeline, `remove_many` as one `DEL`, and
/// `incr` and both rate limits as Lua scripts (one round trip each). `update` keeps the provided
/// loop: `GET`, then the `PUT_IF_VERSION` script.
impl Backend for RedisBackend {
    fn system_name(&self) -> &'static str {
        "redis"
    }

    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            Ok(self.get(key).await?.map(|value| {
                let version = version_of(&value);
                Versioned::new(value, version)
            }))
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
        Box::pin(self.put_one(key, value, mode, expiry, notify))
    }

    /// As the provided `set`, but one boxed future instead of two (`set` around `put`).
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mode = PutMode::Overwrite;
            let written = self.put_one(key, value, mode, Expiry::from_ttl(ttl), notify);
            written.await.map(drop)
        })
    }

    fn remove<'a>(&'a self, key: &'a str, notify: Notify<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.writing(self.forget_key(key), async {
                if let Some(channel) = notify {
                    let mut invocation = REMOVE_NOTIFY.key(key);
                    invocation.arg(&*wire_channel(channel, self.db));
                    let removed: u64 = self.run("remove", key, &invocation).await?;
                    return Ok(removed > 0);
                }
                // Not retried: a DEL whose reply was lost has removed the key, and a second one
                // would answer `false`.
                let removed: u64 = self
                    .query("remove", key, redis::cmd("DEL").arg(key))
                    .await?;
                Ok(removed > 0)
            })
            .await
        })
    }

    /// `GETEX key PX ms` (or `PERSIST`): the value and its new expiry in one command
    /// (Redis 6.2+).
    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        expiry: Expiry,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            self.writing(self.forget_key(key), async {
                let mut cmd = redis::cmd("GETEX");
                cmd.arg(key);
                match expiry {
                    Expiry::After(ttl) => {
                        cmd.arg("PX").arg(millis(ttl));
                    }
                    Expiry::Never => {
                        cmd.arg("PERSIST");
                    }
                    Expiry::Keep => {}
                }
                // May run twice: the second run sets the same expiry again, from a moment later.
                self.query_idempotent("get_and_touch", key, &cmd).await
            })
            .await
        })
    }

    /// The `REMOVE_IF_VERSION` script: compare the value's SHA-1 and delete, in one step.
    fn remove_version<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(digest) = version.as_text().filter(|text| is_digest(text)) else {
                // Not a version this backend handed out: it cannot match any value.
                return Ok(false);
            };
            self.writing(self.forget_key(key), async {
                let mut invocation = REMOVE_IF_VERSION.key(key);
                invocation.arg(digest).arg(
                    notify
                        .map_or(Cow::Borrowed(""), |channel| wire_channel(channel, self.db))
                        .as_ref(),
                );
                // Not retried: after a lost reply, a second run would find the key gone and say 0.
                let removed: i64 = self.run("remove_if", key, &invocation).await?;
                Ok(removed == 1)
            })
            .await
        })
    }

    /// `PEXPIRE key ms`, or `PERSIST` for no expiry (with `EXISTS`, since `PERSIST` answers 0
    /// for a key without expiry too).
    fn touch<'a>(&'a self, key: &'a str, expiry: Expiry) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.writing(self.forget_key(key), async {
                let found: u64 = match expiry {
                    Expiry::After(ttl) => {
                        let mut cmd = redis::cmd("PEXPIRE");
                        cmd.arg(key).arg(millis(ttl));
                        self.query_idempotent("touch", key, &cmd).await?
                    }
                    Expiry::Never => {
                        let mut pipe = redis::pipe();
                        pipe.cmd("PERSIST").arg(key).ignore().cmd("EXISTS").arg(key);
                        let mut conn = self.conn_for(key);
                        let (found,): (u64,) = pipe
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| backend_error("touch", key, e))?;
                        found
                    }
                    _ => {
                        self.query_idempotent("touch", key, redis::cmd("EXISTS").arg(key))
                            .await?
                    }
                };
                Ok(found > 0)
            })
            .await
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        Box::pin(async move {
            let ms: i64 = self
                .query_idempotent("ttl", key, redis::cmd("PTTL").arg(key))
                .await?;
            // -2: no such key; -1: no expiry.
            Ok(u64::try_from(ms).ok().map(Duration::from_millis))
        })
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        Box::pin(self.scan(prefix))
    }

    /// A plain `GET`, or a place in the next batch while another read is in flight (see
    /// [`RedisOptions::read_batch`]).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            // Built only for a `GET` that goes out: a batched caller's key goes in the `MGET`.
            let get = || {
                let mut get = redis::cmd("GET");
                get.arg(key);
                get
            };
            let Some(batcher) = &self.batch else {
                return self.query_idempotent("get", key, &get()).await;
            };
            match batcher.turn(self, key) {
                Turn::Now(lead) => {
                    let value = self.query_idempotent("get", key, &get()).await;
                    // The calls that queued meanwhile go out now, or fail with this one if the
                    // connection broke under it.
                    lead.end(match &value {
                        Err(Error::Backend { source, .. }) => source
                            .downcast_ref::<RedisError>()
                            .filter(|e| broke_connection(e))
                            .cloned(),
                        _ => None,
                    });
                    value
                }
                Turn::Wait(answer) => answer.await.unwrap_or_else(|_| {
                    Err(Error::Backend {
                        operation: "get",
                        key: key.to_owned(),
                        source: "the read batch ended without an answer (its runtime shut down)"
                            .into(),
                    })
                }),
            }
        })
    }

    /// Through the client-side cache: a kept value is handed out as it is; otherwise `GET` and
    /// `PTTL` in one round trip, and the decoded value is kept for at most the key's remaining
    /// ttl, unless the key changed meanwhile (see `redis_cache.rs`). Without a cache (turned
    /// off, Cluster, Sentinel) or when the server cannot track the prefix, a plain read.
    fn get_cached<'a>(
        &'a self,
        key: &'a str,
        prefix: &'a str,
        decode: &'a Decode<'a>,
    ) -> BoxFuture<'a, Result<Option<Decoded>>> {
        Box::pin(async move {
            let tracked = match &self.cache {
                Some(cache) => cache.track(prefix).await.then_some(cache),
                None => None,
            };
            let Some(cache) = tracked else {
                return match self.get(key).await? {
                    Some(bytes) => decode(&bytes).map(Some),
                    None => Ok(None),
                };
            };
            if let Some(value) = cache.lookup(key) {
                return Ok(Some(value));
            }
            let read = cache.begin(key);
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
            let mut conn = self.conn.clone();
            let reply: redis::RedisResult<(Option<Vec<u8>>, i64)> =
                match pipe.query_async(&mut conn).await {
                    Err(e) if worth_one_retry(&e) => pipe.query_async(&mut conn).await,
                    reply => reply,
                };
            let (bytes, ttl) = reply.map_err(|e| backend_error("get", key, e))?;
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let value = decode(&bytes)?;
            // -1: no expiry; -2: gone since the GET, so not kept.
            if ttl != -2 {
                let ttl = u64::try_from(ttl).ok().map(Duration::from_millis);
                read.keep(value.clone(), ttl);
            }
            Ok(Some(value))
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: u64 = self
                .query_idempotent("exists", key, redis::cmd("EXISTS").arg(key))
                .await?;
            Ok(n > 0)
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(async move {
            let Some(first) = keys.first() else {
                return Ok(Vec::new());
            };
            // On a Cluster, the `redis` crate splits an `MGET` per slot and puts the values back
            // in the order of `keys`.
            self.query_idempotent("get_many", first, redis::cmd("MGET").arg(keys))
                .await
        })
    }

    fn set_many<'a>(
        &'a self,
        items: Vec<(String, Vec<u8>)>,
        ttl: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        let forget = self.forget_keys(items.iter().map(|(key, _)| key.as_str()));
        let write = self.set_in_multi("set_many", items, Expiry::from_ttl(ttl), notify);
        Box::pin(self.writing(forget, write))
    }

    fn remove_many<'a>(
        &'a self,
        keys: &'a [String],
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            self.writing(self.forget_keys(keys.iter().map(String::as_str)), async {
                let Some(first) = keys.first() else {
                    return Ok(0);
                };
                if let Some(channel) = notify {
                    let wire = wire_channel(channel, self.db);
                    let remove = |keys: &[String]| {
                        let mut invocation = REMOVE_NOTIFY.key(keys);
                        invocation.arg(&*wire);
                        let first = keys.first().cloned().unwrap_or_default();
                        async move { self.run::<u64>("remove_many", &first, &invocation).await }
                    };
                    return match self.per_slot(keys.to_vec()) {
                        None => Ok(0),
                        Some(PerSlot::One(keys)) => remove(&keys).await,
                        // A script may only touch keys of one slot: one per slot, all at once.
                        Some(PerSlot::Many(groups)) => {
                            let results = futures_util::future::join_all(
                                groups.iter().map(|keys| remove(keys)),
                            )
                            .await;
                            let removed: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
                            match results.into_iter().find_map(Result::err) {
                                None => Ok(removed),
                                Some(e) => Err(partly_done(
                                    e,
                                    format!("{removed} keys in the other hash slots were removed"),
                                )),
                            }
                        }
                    };
                }
                // On a Cluster, the `redis` crate splits a `DEL` per slot and sums the counts.
                self.query("remove_many", first, redis::cmd("DEL").arg(keys))
                    .await
            })
            .await
        })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl_if_created: Option<Duration>,
        notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            self.writing(self.forget_key(key), async {
                let mut invocation = INCR.key(key);
                invocation.arg(by).arg(millis_arg(ttl_if_created)).arg(
                    notify
                        .map_or(Cow::Borrowed(""), |channel| wire_channel(channel, self.db))
                        .as_ref(),
                );
                self.run("incr", key, &invocation).await
            })
            .await
        })
    }

    fn fixed_window<'a>(
        &'a self,
        key: &'a str,
        limit: u64,
        window: Duration,
    ) -> BoxFuture<'a, Result<Decision>> {
        Box::pin(async move {
            self.writing(self.forget_key(key), async {
                let mut invocation = FIXED_WINDOW.key(key);
                invocation.arg(limit).arg(millis(window));
                let reply: [i64; 4] = self.run("check", key, &invocation).await?;
                Ok(decision(reply, Duration::from_millis))
            })
            .await
        })
    }

    fn gcra<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        burst: u32,
    ) -> BoxFuture<'a, Result<Decision>> {
        Box::pin(async move {
            self.writing(self.forget_key(key), async {
                let mut invocation = GCRA.key(key);
                invocation
                    // At least a microsecond, as the provided `gcra` counts it: the script divides
                    // by it.
                    .arg(
                        u64::try_from(interval.as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1),
                    )
                    .arg(burst);
                let reply: [i64; 4] = self.run("check", key, &invocation).await?;
                Ok(decision(reply, Duration::from_micros))
            })
            .await
        })
    }

    /// Subscribes on the backend's one pub/sub connection (opened by the first watcher), which
    /// resubscribes by itself after a reconnection. `Set` and `Removed` come from the write
    /// scripts; `Expired` from the server's keyspace events, when they are on (see
    /// [`enable_expiry_events`](Backend::enable_expiry_events)).
    fn watch<'a>(
        &'a self,
        watch: &'a Watch,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
        Box::pin(self.feed.watch(watch))
    }

    /// Adds `E` (keyevent channels) and `x` (expired keys) to the server's
    /// `notify-keyspace-events`, keeping the flags already set. Managed services often refuse
    /// `CONFIG`: the error then says to set the flags in the server's configuration. Without
    /// them watchers get no `Expired` changes; nothing else differs.
    fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            const PARAMETER: &str = "notify-keyspace-events";
            let refused = |e: Error| {
                // The server's own answer, without the operation and key said again around it.
                let answer = match e {
                    Error::Backend { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                Error::Backend {
                    operation: "enable_expiry_events",
                    key: PARAMETER.into(),
                    source: format!(
                        "the server refused `CONFIG` ({answer}); set `{PARAMETER} Ex` in its \
                         configuration instead (without it, watchers get no `Expired` changes)"
                    )
                    .into(),
                }
            };
            let (_, flags): (String, String) = self
                .query(
                    "enable_expiry_events",
                    PARAMETER,
                    redis::cmd("CONFIG").arg("GET").arg(PARAMETER),
                )
                .await
                .map_err(refused)?;
            let Some(flags) = expiry_event_flags(&flags) else {
                return Ok(());
            };
            let () = self
                .query(
                    "enable_expiry_events",
                    PARAMETER,
                    redis::cmd("CONFIG").arg("SET").arg(PARAMETER).arg(flags),
                )
                .await
                .map_err(refused)?;
            Ok(())
        })
    }

    /// `SCAN MATCH` with the options' `COUNT`; per batch one pipeline of `PTTL` (exact expiry
    /// counts) and one of `MEMORY USAGE` for the keys of the sample; on a Cluster every primary
    /// in turn. See `redis_backend/usage.rs`.
    fn usage<'a>(
        &'a self,
        prefix: &'a str,
        options: &'a UsageOptions,
    ) -> BoxFuture<'a, Result<Usage>> {
        Box::pin(self.scan_usage(prefix, options))
    }
}

/// What a `GET` of one key of a batch would have answered.
#[derive(Clone)]
pub(crate) enum Reply {
    Value(Option<Vec<u8>>),
    /// The key holds a Redis value of this other type.
    OtherType(String),
    /// The batch failed.
    Failed(RedisError),
}

impl Reply {
    /// The caller's answer for `key`.
    pub(crate) fn answer(self, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Reply::Value(value) => Ok(value),
            Reply::OtherType(kind) => Err(Error::InvalidKey {
                key: key.to_owned(),
                reason: format!("it holds a Redis value of another type than a string (a {kind})"),
            }),
            Reply::Failed(e) => Err(backend_error("get", key, e)),
        }
    }
}

/// Items of a multi-key operation, split by hash slot on a Cluster.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
enum PerSlot<T> {
    One(Vec<T>),
    Many(Vec<Vec<T>>),
}

/// What a multi-key operation's items are keyed by.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
trait SlotKey {
    fn slot_key(&self) -> &str;
}

impl SlotKey for (String, Vec<u8>) {
    fn slot_key(&self) -> &str {
        &self.0
    }
}

impl SlotKey for String {
    fn slot_key(&self) -> &str {
        self
    }
}

/// `e`, with what the rest of a call split per slot did.
fn partly_done(e: Error, rest: String) -> Error {
    match e {
        Error::Backend {
            operation,
            key,
            source,
        } => Error::Backend {
            operation,
            key,
            source: format!("{source} ({rest})").into(),
        },
        other => other,
    }
}

/// Whether `text` is a version this backend hands out, a SHA-1 in lowercase hex, and so can be
/// passed to a script as one (and never be taken for another argument such as `nx`).
fn is_digest(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `notify-keyspace-events` with expired-key events on the keyevent channel added, or `None`
/// when `flags` has them already (`A` stands for `g$lshzxetd`, which includes `x`).
fn expiry_event_flags(flags: &str) -> Option<String> {
    let keyevent = flags.contains('E');
    let expired = flags.contains('x') || flags.contains('A');
    if keyevent && expired {
        return None;
    }
    let mut flags = flags.to_owned();
    if !keyevent {
        flags.push('E');
    }
    if !expired {
        flags.push('x');
    }
    Some(flags)
}

/// The keys of a write, for the client-side cache: dropped when the guard is made, and again
/// when the write has run (see `redis_cache.rs`). [`finish`](Forget::finish) says whether an
/// answer came; a write given up or timed out may still run, so the cache waits for it.
struct Forget<'a> {
    cache: Option<&'a Arc<Tracker>>,
    keys: Vec<String>,
}

impl Forget<'_> {
    /// The write ended with `result`: an answer (a value or the server's refusal) means it ran
    /// or never will; a broken connection or a timeout leaves it undecided.
    fn finish<T>(mut self, result: &Result<T>) {
        let Some(cache) = self.cache.take() else {
            return;
        };
        let keys = std::mem::take(&mut self.keys);
        let undecided = match result {
            Err(Error::Backend { source, .. }) => source
                .downcast_ref::<RedisError>()
                .is_some_and(broke_connection),
            _ => false,
        };
        if undecided {
            cache.end_write_later(keys);
        } else {
            cache.end_write(&keys);
        }
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        // Dropped before `finish`: the call was given up while the write was in flight.
        if let Some(cache) = self.cache.take() {
            cache.end_write_later(std::mem::take(&mut self.keys));
        }
    }
}

impl RedisBackend {
    /// [`Forget`] for the keys of a write, when the cache tracks any of them.
    fn forget_keys<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Forget<'_> {
        let Some(cache) = self.cache.as_ref().filter(|cache| cache.is_active()) else {
            return Forget {
                cache: None,
                keys: Vec::new(),
            };
        };
        let keys = cache.begin_write(keys);
        Forget {
            cache: (!keys.is_empty()).then_some(cache),
            keys,
        }
    }

    fn forget_key(&self, key: &str) -> Forget<'_> {
        self.forget_keys(std::iter::once(key))
    }

    /// Runs the write `work` inside `forget` (made before `work` is first polled, so before
    /// anything is sent), telling it how the write ended.
    async fn writing<T>(
        &self,
        forget: Forget<'_>,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = work.await;
        forget.finish(&result);
        result
    }
}

impl RedisBackend {
    /// `put` and `set`: a plain `SET` (with `NX`, `PX` or `KEEPTTL`), else the compare-and-set
    /// or notifying script. The rarer two are boxed, so that the future of the common `SET`
    /// stays small (every call moves it into its box).
    async fn put_one(
        &self,
        key: &str,
        value: Vec<u8>,
        mode: PutMode,
        expiry: Expiry,
        notify: Notify<'_>,
    ) -> Result<bool> {
        self.writing(self.forget_key(key), async {
            if let Some(channel) = notify {
                return Box::pin(self.put_notify(key, value, mode, expiry, channel)).await;
            }
            let create = mode == PutMode::Create;
            let version = match mode {
                PutMode::Overwrite | PutMode::Create => None,
                PutMode::Update(version) => Some(version),
            };
            if let Some(version) = version {
                let Some(digest) = version.as_text() else {
                    // Not a version this backend handed out: it cannot match any value.
                    return Ok(false);
                };
                let mut invocation = PUT_IF_VERSION.key(key);
                invocation.arg(digest).arg(value);
                match expiry {
                    Expiry::Keep => invocation.arg("keep"),
                    Expiry::Never => invocation.arg("never"),
                    Expiry::After(ttl) => invocation.arg(millis(ttl)),
                };
                // Not retried: after a lost reply, a second try would find its own write and
                // report a conflict.
                let written: i64 = Box::pin(self.run("update", key, &invocation)).await?;
                return Ok(written == 1);
            }
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value);
            if create {
                cmd.arg("NX");
            }
            match expiry {
                Expiry::After(ttl) => {
                    cmd.arg("PX").arg(millis(ttl));
                }
                // A created key has no expiry to keep.
                Expiry::Keep if !create => {
                    cmd.arg("KEEPTTL");
                }
                Expiry::Keep | Expiry::Never => {}
            }
            if create {
                // Not retried: after a lost reply, a second try would find its own write and say
                // `false`.
                let reply: Option<String> = self.query("set_if_absent", key, &cmd).await?;
                Ok(reply.is_some())
            } else {
                let () = self.query_idempotent("set", key, &cmd).await?;
                Ok(true)
            }
        })
        .await
    }

    /// A write of a notified type: the `PUT_NOTIFY` script, which publishes what it wrote.
    async fn put_notify(
        &self,
        key: &str,
        value: Vec<u8>,
        mode: PutMode,
        expiry: Expiry,
        channel: &str,
    ) -> Result<bool> {
        let (operation, condition) = match &mode {
            // Unconditional: `SET` and `PUBLISH` in a `MULTI`, which needs no script, and which
            // Redis refuses as a whole when the user may not publish (on 6.2 too). Measured side
            // by side with the script at 64 tasks, it was as fast or faster (0.55-0.67x of a
            // plain `SET` against 0.43-0.67x, on 2 shared cores).
            PutMode::Overwrite => {
                let items = vec![(key.to_owned(), value)];
                self.set_in_multi("set", items, expiry, Some(channel))
                    .await?;
                return Ok(true);
            }
            PutMode::Create => ("set_if_absent", "nx"),
            PutMode::Update(version) => match version.as_text().filter(|text| is_digest(text)) {
                Some(digest) => ("update", digest),
                // Not a version this backend handed out: it cannot match any value.
                None => return Ok(false),
            },
        };
        let mut invocation = PUT_NOTIFY.key(key);
        invocation
            .arg(&*wire_channel(channel, self.db))
            .arg(value)
            .arg(condition);
        match expiry {
            Expiry::Keep => invocation.arg("keep"),
            Expiry::Never => invocation.arg("never"),
            Expiry::After(ttl) => invocation.arg(millis(ttl)),
        };
        // Not retried: a second run after a lost reply would announce the write twice (and a
        // conditional one would find its own write and report `false`).
        let written: i64 = self.run(operation, key, &invocation).await?;
        Ok(written == 1)
    }
}

impl RedisBackend {
    /// `SET` of every item, each followed by the `PUBLISH` of its change when `notify` is
    /// given, in one `MULTI` pipeline: atomic, one round trip, and safe on the shared connection
    /// because nothing can interleave inside it (no `WATCH` involved). A user who may not
    /// publish on the channel has the whole transaction refused as it is queued (`EXECABORT`),
    /// so nothing is written.
    ///
    /// On a Cluster, the items are grouped by hash slot, one transaction per slot, all sent at
    /// once. When some fail, the first failure is reported with how many of the other keys were
    /// written.
    async fn set_in_multi(
        &self,
        operation: &'static str,
        items: Vec<(String, Vec<u8>)>,
        expiry: Expiry,
        notify: Notify<'_>,
    ) -> Result<()> {
        let Some(groups) = self.per_slot(items) else {
            return Ok(());
        };
        let groups = match groups {
            PerSlot::One(items) => return self.set_group(operation, items, expiry, notify).await,
            PerSlot::Many(groups) => groups,
        };
        let total: usize = groups.iter().map(Vec::len).sum();
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let results = futures_util::future::join_all(
            groups
                .into_iter()
                .map(|items| self.set_group(operation, items, expiry, notify)),
        )
        .await;
        let written: usize = results
            .iter()
            .zip(&sizes)
            .filter(|(result, _)| result.is_ok())
            .map(|(_, size)| size)
            .sum();
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(e) => Err(partly_done(
                e,
                format!(
                    "{written} of the {total} keys, in the other hash slots, were written; \
                 repeat the call to write them all"
                ),
            )),
        }
    }

    /// `items` grouped by the hash slot of their key on a Cluster (in their order within a
    /// group), or as one group elsewhere; `None` when there are none.
    fn per_slot<T>(&self, items: Vec<T>) -> Option<PerSlot<T>>
    where
        T: SlotKey,
    {
        if items.is_empty() {
            return None;
        }
        #[cfg(feature = "cluster")]
        if self.conn.is_cluster() {
            let mut order = Vec::new();
            let mut groups: std::collections::HashMap<_, Vec<T>> = std::collections::HashMap::new();
            for item in items {
                let slot = crate::backends::redis::conn::cluster::slot(item.slot_key());
                groups
                    .entry(slot)
                    .or_insert_with(|| {
                        order.push(slot);
                        Vec::new()
                    })
                    .push(item);
            }
            if groups.len() > 1 {
                return Some(PerSlot::Many(
                    order
                        .iter()
                        .filter_map(|slot| groups.remove(slot))
                        .collect(),
                ));
            }
            return groups.into_values().next().map(PerSlot::One);
        }
        Some(PerSlot::One(items))
    }

    /// One `MULTI` of `set_in_multi`, whose keys share a slot on a Cluster.
    async fn set_group(
        &self,
        operation: &'static str,
        items: Vec<(String, Vec<u8>)>,
        expiry: Expiry,
        notify: Notify<'_>,
    ) -> Result<()> {
        let Some(first) = items.first().map(|(key, _)| key.clone()) else {
            return Ok(());
        };
        let wire = notify.map(|channel| wire_channel(channel, self.db));
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in items {
            let message = wire.as_ref().map(|_| set_message(&key, &value));
            let set = pipe.cmd("SET").arg(&key).arg(value);
            match expiry {
                Expiry::After(ttl) => set.arg("PX").arg(millis(ttl)),
                Expiry::Keep => set.arg("KEEPTTL"),
                Expiry::Never => set,
            }
            .ignore();
            if let (Some(wire), Some(message)) = (&wire, message) {
                pipe.cmd("PUBLISH").arg(&**wire).arg(message).ignore();
            }
        }
        let mut conn = self.conn_for(&first);
        let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        match result {
            // Retried only when nothing is announced: a second run would announce every item
            // twice.
            Err(e) if notify.is_none() && worth_one_retry(&e) => pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| backend_error(operation, &first, e)),
            result => result.map_err(|e| backend_error(operation, &first, e)),
        }
    }

    /// The value of each key, as a `GET` of it would answer: one `MGET` (split per hash slot by
    /// the `redis` crate on a Cluster), then, only for the keys it found nil, a `TYPE` each (sent
    /// together), since `MGET` says nil for a key of another type where `GET` says `WRONGTYPE`.
    /// When the `MGET` itself fails, every key gets its failure. Sent once more if the
    /// connection broke (reads may be).
    pub(crate) async fn get_each(&self, keys: &[&str]) -> Vec<Reply> {
        let mut conn = self.conn.clone();
        let mut mget = redis::cmd("MGET");
        mget.arg(keys);
        let sent = match mget.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await {
            Err(e) if worth_one_retry(&e) => mget.query_async(&mut conn).await,
            sent => sent,
        };
        let values = match sent {
            Ok(values) if values.len() == keys.len() => values,
            Ok(values) => {
                let e = RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "MGET answered another number of values",
                    format!("{} values for {} keys", values.len(), keys.len()),
                ));
                return vec![Reply::Failed(e); keys.len()];
            }
            Err(e) => return vec![Reply::Failed(e); keys.len()],
        };
        // Nil: no such key, or a key of another type.
        let nil: Vec<usize> = (0..keys.len()).filter(|&at| values[at].is_none()).collect();
        let types = futures_util::future::join_all(nil.iter().map(|&at| {
            let mut conn = self.conn.clone();
            async move {
                redis::cmd("TYPE")
                    .arg(keys[at])
                    .query_async::<String>(&mut conn)
                    .await
            }
        }))
        .await;
        let mut replies: Vec<Reply> = values.into_iter().map(Reply::Value).collect();
        for (at, kind) in nil.into_iter().zip(types) {
            replies[at] = match kind {
                // Written since the MGET: nil is what a GET at that moment said.
                Ok(kind) if kind == "none" || kind == "string" => Reply::Value(None),
                Ok(kind) => Reply::OtherType(kind),
                Err(e) => Reply::Failed(e),
            };
        }
        replies
    }

    /// `host:port` of every primary of the Cluster, as it knows them now.
    async fn primaries(&self, key: &str) -> Result<Vec<(String, u16)>> {
        let nodes: String = self
            .query_idempotent("ids", key, redis::cmd("CLUSTER").arg("NODES"))
            .await?;
        Ok(crate::backends::redis::feed::parse_nodes(&nodes)
            .filter(|node| node.primary && !node.failed)
            .map(|node| (node.host.to_owned(), node.port))
            .collect())
    }

    /// Sends `cmd` to the Cluster node at `node`, once more if the connection broke.
    #[cfg(feature = "cluster")]
    async fn on_node<T: FromRedisValue>(
        &self,
        node: &(String, u16),
        operation: &'static str,
        key: &str,
        cmd: Cmd,
    ) -> Result<T> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let Some(conn) = self.conn.as_cluster() else {
            return self.query_idempotent(operation, key, &cmd).await;
        };
        let mut conn = conn.clone();
        let route = || {
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: node.0.clone(),
                port: node.1,
            })
        };
        let reply = match conn.route_command(cmd.clone(), route()).await {
            Err(e) if worth_one_retry(&e) => conn.route_command(cmd, route()).await,
            reply => reply,
        };
        reply
            .and_then(|value| redis::from_redis_value(value).map_err(RedisError::from))
            .map_err(|e| backend_error(operation, key, e))
    }

    #[cfg(not(feature = "cluster"))]
    async fn on_node<T: FromRedisValue>(
        &self,
        _node: &(String, u16),
        operation: &'static str,
        key: &str,
        cmd: Cmd,
    ) -> Result<T> {
        self.query_idempotent(operation, key, &cmd).await
    }

    /// `SCAN MATCH` over the keys starting with `prefix`, each reported once; on a Cluster,
    /// over every primary in turn.
    fn scan(&self, prefix: &str) -> impl Stream<Item = Result<String>> + Send + use<> {
        struct Scan {
            backend: RedisBackend,
            pattern: String,
            /// `None` once the server said the walk is complete.
            cursor: Option<u64>,
            batch: VecDeque<Vec<u8>>,
            /// SCAN may return a key more than once (and on a Cluster, a failover during the
            /// walk may show a key on two nodes); each is reported once.
            seen: HashSet<Vec<u8>>,
            /// On a Cluster, the primaries not walked yet (`None` until they are listed), and
            /// the one being walked.
            primaries: Option<VecDeque<(String, u16)>>,
            node: Option<(String, u16)>,
        }
        let state = Scan {
            backend: self.clone(),
            pattern: prefix_pattern(prefix),
            cursor: Some(0),
            batch: VecDeque::new(),
            seen: HashSet::new(),
            primaries: None,
            node: None,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(key) = state.batch.pop_front() {
                    if !state.seen.insert(key.clone()) {
                        continue;
                    }
                    let item = String::from_utf8(key).map_err(|e| Error::InvalidKey {
                        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        reason: "the key is not UTF-8".into(),
                    });
                    return Some((item, state));
                }
                if state.backend.conn.is_cluster() {
                    if state.primaries.is_none() {
                        match state.backend.primaries(&state.pattern).await {
                            Ok(primaries) => state.primaries = Some(primaries.into()),
                            Err(e) => {
                                state.cursor = None;
                                state.primaries = Some(VecDeque::new());
                                return Some((Err(e), state));
                            }
                        }
                        state.cursor = None;
                    }
                    if state.cursor.is_none() {
                        // The next primary, from the start of its keys.
                        state.node = state.primaries.as_mut()?.pop_front();
                        state.node.as_ref()?;
                        state.cursor = Some(0);
                    }
                }
                let cursor = state.cursor?;
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&state.pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply: Result<(u64, Vec<Vec<u8>>)> = match &state.node {
                    None => {
                        state
                            .backend
                            .query_idempotent("ids", &state.pattern, &cmd)
                            .await
                    }
                    Some(node) => {
                        state
                            .backend
                            .on_node(node, "ids", &state.pattern, cmd)
                            .await
                    }
                };
                match reply {
                    Ok((next, keys)) => {
                        state.cursor = (next != 0).then_some(next);
                        state.batch.extend(keys);
                    }
                    Err(e) => {
                        // Without a cursor the walk cannot go on: report and end.
                        state.cursor = None;
                        state.primaries = Some(VecDeque::new());
                        return Some((Err(e), state));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_lowercase_hex_sha1_as_redis_computes_it() {
        // FIPS 180 test vectors; `redis.sha1hex` gives the same lowercase hex.
        assert_eq!(
            version_of(b"abc").as_text(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            version_of(b"").as_text(),
            Some("da39a3ee5e6b4b0d3255bfef95601890afd80709")
        );
    }

    #[test]
    fn expiry_event_flags_are_added_to_the_existing_ones() {
        assert_eq!(expiry_event_flags("").as_deref(), Some("Ex"));
        assert_eq!(expiry_event_flags("Kg").as_deref(), Some("KgEx"));
        assert_eq!(expiry_event_flags("Ex"), None);
        assert_eq!(expiry_event_flags("KEA"), None);
        assert_eq!(expiry_event_flags("Kx").as_deref(), Some("KxE"));
    }

    #[test]
    fn scan_patterns_escape_globs() {
        assert_eq!(prefix_pattern("svc:job:"), "svc:job:*");
        assert_eq!(prefix_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
