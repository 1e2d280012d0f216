//! The Redis backend: one shared, reconnecting, multiplexed connection.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError};

use crate::backend::Backend;
use crate::{Error, Result};

/// Timeouts and reconnect attempts of a [`RedisBackend`].
///
/// The defaults bound every failure to well under ten seconds: an unreachable server fails
/// `connect` after three attempts of at most two seconds each, and a server that stops answering
/// fails a call after the response timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// How long one connection attempt (TCP connect and handshake) may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long a command may wait for its answer. Default 2 s.
    pub response_timeout: Duration,
    /// How many more connection attempts follow a failed one, with exponential backoff from
    /// 100 ms. Default 2.
    pub reconnect_retries: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 2,
        }
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
}

/// State in Redis, values as JSON, through the `redis` crate's reconnecting
/// [`ConnectionManager`].
///
/// Clones share one multiplexed connection, which every task pipelines its commands over; when
/// the connection breaks, the calls in flight fail and the next calls reconnect.
#[derive(Clone)]
pub struct RedisBackend {
    conn: ConnectionManager,
    target: String,
}

impl RedisBackend {
    /// Connects to a `redis://[user:password@]host[:port][/db]` URL with default
    /// [`RedisOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` with the given options.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self> {
        let client = Client::open(url).map_err(|source| Error::Connect {
            // The URL did not parse, so there is no safe way to show its parts.
            target: "the given Redis URL".into(),
            source: Box::new(source),
        })?;
        Self::from_client_with(client, options).await
    }

    /// Connects with a `redis::Client` built by hand (for settings a URL cannot carry).
    pub async fn from_client(client: Client) -> Result<Self> {
        Self::from_client_with(client, RedisOptions::default()).await
    }

    /// Connects with a `redis::Client` and the given options.
    pub async fn from_client_with(client: Client, options: RedisOptions) -> Result<Self> {
        let target = describe(&client);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| Error::Connect {
                target: target.clone(),
                source: Box::new(source),
            })?;
        Ok(RedisBackend { conn, target })
    }

    /// The underlying connection, for commands this crate does not wrap.
    pub fn connection(&self) -> &ConnectionManager {
        &self.conn
    }

    /// Sends `cmd`, once more if the connection broke: only for commands that may run twice
    /// without changing the outcome (reads, `SET`, `DEL`).
    async fn query_idempotent<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            // The manager has started reconnecting; the retry waits for the new connection.
            Err(e) if e.is_unrecoverable_error() || e.is_connection_dropped() => cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| backend_error(operation, key, e)),
            result => result.map_err(|e| backend_error(operation, key, e)),
        }
    }
}

/// `host:port/db` of the client, which is all an error or `Debug` may show of the URL.
fn describe(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("redis at {}/{}", info.addr(), info.redis_settings().db())
}

fn backend_error(operation: &'static str, key: &str, e: RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") {
        return Error::InvalidKey {
            key: key.to_owned(),
            reason: "it holds a Redis value of another type than a string".into(),
        };
    }
    Error::Backend {
        operation,
        key: key.to_owned(),
        source: Box::new(e),
    }
}

/// Milliseconds for `PX`; the store has already rejected durations Redis cannot take.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Backend for RedisBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.query_idempotent("get", key, redis::cmd("GET").arg(key))
            .await
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        self.query_idempotent("set", key, &cmd).await
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        let removed: u64 = self
            .query_idempotent("remove", key, redis::cmd("DEL").arg(key))
            .await?;
        Ok(removed > 0)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let n: u64 = self
            .query_idempotent("exists", key, redis::cmd("EXISTS").arg(key))
            .await?;
        Ok(n > 0)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let ms: i64 = self
            .query_idempotent("ttl", key, redis::cmd("PTTL").arg(key))
            .await?;
        // -2: no such key; -1: no expiry.
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }
}
