//! The Redis backend: one shared, reconnecting, multiplexed connection.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Cmd, FromRedisValue, RedisError, ScriptInvocation};

pub use self::conn::RedisConnection;
pub use self::options::RedisOptions;

use self::batch::Turn;
use self::cache::Tracker;
use self::conn::{backend_error, broke_connection, worth_one_retry};
use self::feed::{RedisFeed, SingleNode, wire_channel};
use self::options::{describe, durable_lane, manager_config};
use self::scripts::{FIXED_WINDOW, GCRA, INCR, REMOVE_IF_VERSION, REMOVE_NOTIFY};
use crate::backend::kit;
use crate::backend::{
    Backend, BoxFuture, BoxStream, ChangeFeed, ClientCache, CountOp, CountOptions, Counted, Decode,
    Decoded, Event, Expiry, Extensions, GetOptions, Notify, PutMode, PutOptions, RemoveOptions,
    UsageScan, Version, Versioned, Watch, WriteMany, ceil_millis,
};
use crate::rate_limit::Decision;
use crate::{Error, Result, Usage, UsageOptions};

mod batch;
mod cache;
#[cfg(feature = "cluster")]
mod cluster;
mod conn;
mod durable;
mod feed;
mod journal;
mod lease;
mod link;
mod options;
/// The PEM checks of the TLS options, shared with the environment's TLS variables.
#[cfg(feature = "tls")]
pub(crate) use options::tls as pem;
mod scan;
mod scripts;
#[cfg(feature = "sentinel")]
mod sentinel;
mod usage;
mod write;

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
    batch: Option<Arc<batch::Batcher>>,
    /// The durable writes' own connection and their `WAIT` rounds, shared by clones.
    durable: Arc<durable::Durable>,
    /// The client-side cache of types declared with `cache`, shared by clones; `None` when
    /// turned off, and on a Cluster or through Sentinel.
    cache: Option<Arc<Tracker>>,
    /// The journaled channels and their expiry listener, shared by clones.
    journaling: Arc<journal::Journaling>,
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
        let source = Arc::new(SingleNode(client.clone()));
        let feed = RedisFeed::new(source, db, target.clone(), &options);
        let cache_client = client.clone();
        let lane_client = client.clone();
        let conn = ConnectionManager::new_with_config(client, manager_config(&options))
            .await
            .map_err(|source| Error::Connect {
                target: target.clone(),
                source: Box::new(source),
            })?;
        let mut conn = RedisConnection::node(conn);
        durable::check_durability(&mut conn, options.durability, &target).await?;
        let lane_config = manager_config(&durable_lane(&options));
        let lane_target = target.clone();
        let connect: durable::Connect = Arc::new(move || {
            let (client, config) = (lane_client.clone(), lane_config.clone());
            let target = lane_target.clone();
            Box::pin(async move {
                let conn = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|source| Error::Connect {
                        target,
                        source: Box::new(source),
                    })?;
                Ok(RedisConnection::node(conn))
            })
        });
        Ok(RedisBackend {
            journaling: Arc::default(),
            durable: Arc::new(durable::Durable::new(options.durability, connect)),
            conn,
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

    /// The connection for commands on `key`: the client-side cache's tracking connection when
    /// the key is one of a cached type (see `cache.rs`), else the backend's.
    fn conn_for(&self, key: &str) -> RedisConnection {
        // A durable write goes over the durable lane, where its `WAIT` follows it.
        if let Some(lane) = Self::lane() {
            return lane;
        }
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
        &self, operation: &'static str, key: &str, cmd: &Cmd,
    ) -> Result<T> {
        let mut conn = self.conn_for(key);
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| backend_error(operation, key, e))
    }

    /// Runs a script once (it loads the script first only if the server does not have it).
    async fn run<T: FromRedisValue>(
        &self, operation: &'static str, key: &str, invocation: &ScriptInvocation<'_>,
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
        &self, operation: &'static str, key: &str, cmd: &Cmd,
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

/// The core, plus the provided methods Redis does better: `get` without a digest (and `EXISTS`,
/// `GETEX` or `PEXPIRE` as its options ask), `get_many` as one `MGET`, `write_many` as one
/// `MULTI` pipeline or one `DEL`, and `count` as Lua scripts (one round trip each). `update` keeps
/// the provided loop: `GET`, then the `PUT_IF_VERSION` script.
impl Backend for RedisBackend {
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            Ok(self.read(key).await?.map(|value| {
                let version = version_of(&value);
                Versioned::new(value, version)
            }))
        })
    }

    fn put<'a>(
        &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        // A journaled write: the same write, whose feed argument names the journal too.
        if options.notify.is_some() && options.history.is_some() {
            return Box::pin(async move {
                let spec = self.journaled(options.notify, options.history);
                let options = PutOptions {
                    notify: spec.as_deref(),
                    history: None,
                    ..options
                };
                self.put(key, value, options).await
            });
        }
        if options.fence.is_some() || options.durable {
            return Box::pin(async move {
                // A durable plain `SET` alone on its lane: with its `WAIT`, one round trip.
                let plain = options.fence.is_none() && options.notify.is_none();
                let create = match options.mode {
                    PutMode::Overwrite => Some(false),
                    PutMode::Create => Some(true),
                    _ => None,
                };
                let mut value = value;
                if let (true, Some(create)) = (plain && options.durable, create) {
                    let expiry = options.expiry.per_key();
                    match self.durable_set(key, value, create, expiry).await? {
                        Ok(written) => return Ok(written),
                        Err(back) => value = back,
                    }
                }
                let write = async {
                    let expiry = options.expiry.per_key();
                    match &options.fence {
                        Some(fence) => {
                            let op = lease::FencedOp::Put(value, &options.mode, expiry);
                            self.fenced(key, op, options.notify, fence).await
                        }
                        None => {
                            let mode = options.mode.clone();
                            self.put_one(key, value, mode, expiry, options.notify).await
                        }
                    }
                };
                self.durably(options.durable, key, write).await
            });
        }
        Box::pin(self.put_one(
            key,
            value,
            options.mode,
            options.expiry.per_key(),
            options.notify,
        ))
    }

    fn remove<'a>(
        &'a self, key: &'a str, options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            // A journaled removal: the same removal, whose feed argument names the journal too.
            let spec = self.journaled(options.notify, options.history);
            let options = RemoveOptions {
                notify: spec.as_deref().or(options.notify),
                history: None,
                ..options
            };
            let remove = async {
                if let Some(fence) = &options.fence {
                    let op = lease::FencedOp::Remove(options.if_version.as_ref());
                    return self.fenced(key, op, options.notify, fence).await;
                }
                match &options.if_version {
                    Some(version) => self.remove_version(key, version, options.notify).await,
                    None => self.remove_one(key, options.notify).await,
                }
            };
            self.durably(options.durable, key, remove).await
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

    /// `GET` (batched, see [`RedisOptions::read_batch`]); `EXISTS` when only existence matters;
    /// with a touch, `GETEX` (or `PEXPIRE`, `PERSIST` and `EXISTS` when only existence
    /// matters).
    fn get<'a>(
        &'a self, key: &'a str, options: GetOptions,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            match (options.touch, options.exists_only) {
                (None, false) => self.read(key).await,
                (None, true) => {
                    let n: u64 = self
                        .query_idempotent("exists", key, redis::cmd("EXISTS").arg(key))
                        .await?;
                    Ok((n > 0).then(Vec::new))
                }
                (Some(expiry), false) => {
                    let touch = self.get_and_touch(key, expiry.per_key());
                    self.durably(options.durable, key, touch).await
                }
                (Some(expiry), true) => {
                    let touch = self.touch(key, expiry.per_key());
                    let found = self.durably(options.durable, key, touch).await?;
                    Ok(found.then(Vec::new))
                }
            }
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

    /// Overwrites in one `MULTI` pipeline (per slot on a Cluster), removals in one `DEL` (or
    /// the notifying script per key); conditional writes one by one.
    fn write_many<'a>(&'a self, batch: WriteMany<'a>) -> BoxFuture<'a, Result<u64>> {
        match batch {
            // A journaled batch: the same batch, whose feed argument names the journal too.
            WriteMany::Put { items, options }
                if options.notify.is_some() && options.history.is_some() =>
            {
                Box::pin(async move {
                    let spec = self.journaled(options.notify, options.history);
                    let options = PutOptions {
                        notify: spec.as_deref(),
                        history: None,
                        ..options
                    };
                    self.write_many(WriteMany::Put { items, options }).await
                })
            }
            WriteMany::Remove { keys, options }
                if options.notify.is_some() && options.history.is_some() =>
            {
                Box::pin(async move {
                    let spec = self.journaled(options.notify, options.history);
                    let options = RemoveOptions {
                        notify: spec.as_deref(),
                        history: None,
                        ..options
                    };
                    self.write_many(WriteMany::Remove { keys, options }).await
                })
            }
            WriteMany::Put { items, options }
                if options.mode == PutMode::Overwrite && options.fence.is_none() =>
            {
                // Nothing before the future is polled, the cache's bookkeeping included.
                Box::pin(async move {
                    let written = items.len() as u64;
                    let keys: Vec<String> = match options.durable {
                        true => items.iter().map(|(key, _)| key.clone()).collect(),
                        false => Vec::new(),
                    };
                    let forget = self.forget_keys(items.iter().map(|(key, _)| key.as_str()));
                    let expiry = options.expiry.per_key();
                    let write = self.set_in_multi("set_many", items, expiry, options.notify);
                    let write = self.writing(forget, write);
                    self.durably_all(options.durable, &keys, write).await?;
                    Ok(written)
                })
            }
            WriteMany::Remove { keys, options }
                if options.if_version.is_none() && options.fence.is_none() =>
            {
                let remove = self.remove_keys(keys, options.notify);
                Box::pin(self.durably_all(options.durable, keys, remove))
            }
            other => Box::pin(kit::write_each(self, other)),
        }
    }

    /// One Lua script per call (`INCR`, `FIXED_WINDOW`, `GCRA`): one round trip, on the
    /// server's clock.
    fn count<'a>(
        &'a self, key: &'a str, op: CountOp, options: CountOptions<'a>,
    ) -> BoxFuture<'a, Result<Counted>> {
        Box::pin(async move {
            let spec = self.journaled(options.notify, options.history);
            let notify = spec.as_deref().or(options.notify);
            let count = async {
                match op {
                    CountOp::Increment { by, ttl_if_created } => self
                        .incr(key, by, ttl_if_created, notify)
                        .await
                        .map(Counted::Value),
                    CountOp::FixedWindow { limit, window } => self
                        .fixed_window(key, limit, window)
                        .await
                        .map(Counted::Decision),
                    CountOp::Gcra { interval, burst } => {
                        self.gcra(key, interval, burst).await.map(Counted::Decision)
                    }
                    #[allow(unreachable_patterns)]
                    _ => Err(Error::Unsupported {
                        operation: "count",
                        backend: self.name(),
                    }),
                }
            };
            self.durably(options.durable, key, count).await
        })
    }

    fn extensions(&self) -> Extensions<'_> {
        let extensions = Extensions::new()
            .system_name("redis")
            .feed(self)
            .cache(self)
            .usage(self)
            .leases(self);
        // A Cluster's journal would need the write and its entry in one slot: not offered.
        if self.conn.is_cluster() {
            extensions
        } else {
            extensions.journals(self)
        }
    }
}

crate::backend::inherent_enable_expiry_events!(RedisBackend);

impl ChangeFeed for RedisBackend {
    /// Subscribes on the backend's one pub/sub connection (opened by the first watcher), which
    /// resubscribes by itself after a reconnection. `Set` and `Removed` come from the write
    /// scripts; `Expired` from the server's keyspace events, when they are on (see
    /// [`enable_expiry_events`](ChangeFeed::enable_expiry_events)).
    fn watch<'a>(
        &'a self, watch: &'a Watch,
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
}

impl ClientCache for RedisBackend {
    /// Through the client-side cache: a kept value is handed out as it is; otherwise `GET` and
    /// `PTTL` in one round trip, and the decoded value is kept for at most the key's remaining
    /// ttl, unless the key changed meanwhile (see `cache.rs`). Without a cache (turned
    /// off, Cluster, Sentinel) or when the server cannot track the prefix, a plain read.
    fn get_cached<'a>(
        &'a self, key: &'a str, prefix: &'a str, decode: &'a Decode<'a>,
    ) -> BoxFuture<'a, Result<Option<Decoded>>> {
        Box::pin(async move {
            let tracked = match &self.cache {
                Some(cache) => cache.track(prefix).await.then_some(cache),
                None => None,
            };
            let Some(cache) = tracked else {
                return match self.read(key).await? {
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
}

impl UsageScan for RedisBackend {
    /// `SCAN MATCH` with the options' `COUNT`; per batch one pipeline of `PTTL` (exact expiry
    /// counts) and one of `MEMORY USAGE` for the keys of the sample; on a Cluster every primary
    /// in turn. See `usage.rs`.
    fn usage<'a>(
        &'a self, prefix: &'a str, options: &'a UsageOptions,
    ) -> BoxFuture<'a, Result<Usage>> {
        Box::pin(self.scan_usage(prefix, options))
    }
}

/// The calls behind the contract's methods.
impl RedisBackend {
    /// A plain `GET`, or a place in the next batch while another read is in flight (see
    /// [`RedisOptions::read_batch`]).
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        {
            // Built only for a `GET` that goes out: a batched caller's key goes in the `MGET`.
            let get = || {
                let mut get = redis::cmd("GET");
                get.arg(key);
                get
            };
            let Some(batcher) = &self.batch else {
                return self.query_idempotent("get", key, &get()).await;
            };
            match batcher.turn(&self.conn, key) {
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
        }
    }

    async fn remove_one(&self, key: &str, notify: Notify<'_>) -> Result<bool> {
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
    }

    /// `GETEX key PX ms` (or `PERSIST`): the value and its new expiry in one command
    /// (Redis 6.2+).
    async fn get_and_touch(&self, key: &str, expiry: Expiry) -> Result<Option<Vec<u8>>> {
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
                _ => {}
            }
            // May run twice: the second run sets the same expiry again, from a moment later.
            self.query_idempotent("get_and_touch", key, &cmd).await
        })
        .await
    }

    /// The `REMOVE_IF_VERSION` script: compare the value's SHA-1 and delete, in one step.
    async fn remove_version(
        &self, key: &str, version: &Version, notify: Notify<'_>,
    ) -> Result<bool> {
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
    }

    /// `PEXPIRE key ms`, or `PERSIST` for no expiry (with `EXISTS`, since `PERSIST` answers 0
    /// for a key without expiry too).
    async fn touch(&self, key: &str, expiry: Expiry) -> Result<bool> {
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
    }

    async fn remove_keys(&self, keys: &[String], notify: Notify<'_>) -> Result<u64> {
        self.writing(self.forget_keys(keys.iter().map(String::as_str)), async {
            let Some(first) = keys.first() else {
                return Ok(0);
            };
            if let Some(channel) = notify {
                return self.remove_notify_many(keys, channel).await;
            }
            // On a Cluster, the `redis` crate splits a `DEL` per slot and sums the counts.
            self.query("remove_many", first, redis::cmd("DEL").arg(keys))
                .await
        })
        .await
    }

    async fn incr(
        &self, key: &str, by: i64, ttl_if_created: Option<Duration>, notify: Notify<'_>,
    ) -> Result<i64> {
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
    }

    async fn fixed_window(&self, key: &str, limit: u64, window: Duration) -> Result<Decision> {
        self.writing(self.forget_key(key), async {
            let mut invocation = FIXED_WINDOW.key(key);
            invocation.arg(limit).arg(millis(window));
            let reply: [i64; 4] = self.run("check", key, &invocation).await?;
            Ok(decision(reply, Duration::from_millis))
        })
        .await
    }

    async fn gcra(&self, key: &str, interval: Duration, burst: u32) -> Result<Decision> {
        self.writing(self.forget_key(key), async {
            let mut invocation = GCRA.key(key);
            invocation
                // At least a microsecond, as the provided `count` counts it: the script divides
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
}
