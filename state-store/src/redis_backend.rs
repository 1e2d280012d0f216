//! The Redis backend: one shared, reconnecting, multiplexed connection.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use futures_core::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError, Script, ScriptInvocation};

use crate::backend::Backend;
use crate::rate_limit::Decision;
use crate::{Error, Result};

/// Scripts run atomically on the server in one round trip (`EVALSHA`). Each reports a value that
/// is not an integer counter (by Redis's own rule, checked with `INCRBY key 0`) as a
/// `NOTCOUNTER` error instead of changing anything.
///
/// `INCRBY` that starts the key's expiry only when it creates the key.
static INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local created = redis.call('EXISTS', KEYS[1]) == 0
        local n = redis.pcall('INCRBY', KEYS[1], ARGV[1])
        if type(n) == 'table' and n.err then
            return redis.error_reply('NOTCOUNTER ' .. n.err)
        end
        if created and ARGV[2] ~= '' then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return n
        ",
    )
});

/// Compare-and-set on the whole previous value; a replaced value keeps its expiry (`KEEPTTL`).
/// ARGV: has-expected flag, expected value, new value, ttl in ms for a created key (or '').
static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('GET', KEYS[1])
        if ARGV[1] == '1' then
            if current ~= ARGV[2] then return 0 end
            redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
        else
            if current then return 0 end
            if ARGV[4] ~= '' then
                redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
            else
                redis.call('SET', KEYS[1], ARGV[3])
            end
        end
        return 1
        ",
    )
});

/// Fixed window: ARGV limit, window in ms. Returns {allowed, remaining, retry_after_ms,
/// reset_after_ms}.
static FIXED_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local limit = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        local raw = redis.call('GET', KEYS[1])
        local count = 0
        local left = window
        if raw then
            -- INCRBY 0 applies Redis's own integer rule, exactly as `incr` would.
            count = redis.pcall('INCRBY', KEYS[1], 0)
            if type(count) == 'table' then
                return redis.error_reply('NOTCOUNTER ' .. count.err)
            end
            left = redis.call('PTTL', KEYS[1])
            if left < 0 then
                -- A counter without expiry would refuse forever once full: give it a window.
                redis.call('PEXPIRE', KEYS[1], window)
                left = window
            end
        end
        if count < 0 then count = 0 end
        if count >= limit then return {0, 0, left, left} end
        if raw then
            redis.call('SET', KEYS[1], count + 1, 'KEEPTTL')
        else
            redis.call('SET', KEYS[1], 1, 'PX', window)
        end
        return {1, limit - count - 1, 0, left}
        ",
    )
});

/// GCRA on the server's clock, in microseconds: ARGV interval, burst. The key holds the
/// theoretical arrival time and expires when it has passed. Returns {allowed, remaining,
/// retry_after_us, reset_after_us}.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local interval = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
        local tat = now
        local raw = redis.call('GET', KEYS[1])
        if raw then
            -- INCRBY 0 applies Redis's own integer rule, exactly as `incr` would.
            local stored = redis.pcall('INCRBY', KEYS[1], 0)
            if type(stored) == 'table' then
                return redis.error_reply('NOTCOUNTER ' .. stored.err)
            end
            tat = math.max(stored, now)
        end
        local new_tat = tat + interval
        local allow_at = new_tat - interval * burst
        if now < allow_at then
            return {0, 0, allow_at - now, tat - now}
        end
        local px = math.ceil((new_tat - now) / 1000)
        redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', px))
        return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
        ",
    )
});

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

    /// Sends `cmd` once: for commands that must not run twice.
    async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
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
        let mut conn = self.conn.clone();
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
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if worth_one_retry(&e) => cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| backend_error(operation, key, e)),
            result => result.map_err(|e| backend_error(operation, key, e)),
        }
    }
}

/// Whether the connection broke under a command, so that the manager is reconnecting and one
/// more try (which waits for the new connection) may succeed. Only for idempotent commands: the
/// server may have carried out the first one.
fn worth_one_retry(e: &RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_connection_dropped()
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
            return crate::memory::not_a_counter(key, reason);
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
    crate::store::ceil_millis(ttl).max(1)
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
        // Not retried: a DEL whose reply was lost has removed the key, and a second one would
        // answer `false`.
        let removed: u64 = self
            .query("remove", key, redis::cmd("DEL").arg(key))
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

    async fn set_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        // Not retried: after a lost reply, a second try would find its own write and say `false`.
        let reply: Option<String> = self.query("set_if_absent", key, &cmd).await?;
        Ok(reply.is_some())
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl_if_created: Option<Duration>,
    ) -> Result<bool> {
        let mut invocation = COMPARE_AND_SET.key(key);
        invocation
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(millis_arg(ttl_if_created));
        let written: i64 = self.run("update", key, &invocation).await?;
        Ok(written == 1)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        self.query_idempotent("get_many", first, redis::cmd("MGET").arg(keys))
            .await
    }

    async fn set_many(&self, items: Vec<(String, Vec<u8>)>, ttl: Option<Duration>) -> Result<()> {
        let Some((first, _)) = items.first() else {
            return Ok(());
        };
        let first = first.clone();
        // MULTI/EXEC sent as one write: atomic, one round trip, and safe on the shared
        // connection because nothing can interleave inside it (no WATCH involved).
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in items {
            let cmd = pipe.cmd("SET").arg(key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(millis(ttl));
            }
            cmd.ignore();
        }
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        match result {
            Err(e) if worth_one_retry(&e) => pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| backend_error("set_many", &first, e)),
            result => result.map_err(|e| backend_error("set_many", &first, e)),
        }
    }

    async fn remove_many(&self, keys: &[String]) -> Result<u64> {
        let Some(first) = keys.first() else {
            return Ok(0);
        };
        self.query("remove_many", first, redis::cmd("DEL").arg(keys))
            .await
    }

    async fn incr(&self, key: &str, by: i64, ttl_if_created: Option<Duration>) -> Result<i64> {
        let mut invocation = INCR.key(key);
        invocation.arg(by).arg(millis_arg(ttl_if_created));
        self.run("incr", key, &invocation).await
    }

    async fn fixed_window(&self, key: &str, limit: u64, window: Duration) -> Result<Decision> {
        let mut invocation = FIXED_WINDOW.key(key);
        invocation.arg(limit).arg(millis(window));
        let reply: [i64; 4] = self.run("check", key, &invocation).await?;
        Ok(decision(reply, Duration::from_millis))
    }

    async fn gcra(&self, key: &str, interval: Duration, burst: u32) -> Result<Decision> {
        let mut invocation = GCRA.key(key);
        invocation
            .arg(u64::try_from(interval.as_micros()).unwrap_or(u64::MAX))
            .arg(burst);
        let reply: [i64; 4] = self.run("check", key, &invocation).await?;
        Ok(decision(reply, Duration::from_micros))
    }

    fn scan_prefix(&self, prefix: &str) -> impl Stream<Item = Result<String>> + Send + use<> {
        struct Scan {
            backend: RedisBackend,
            pattern: String,
            /// `None` once the server said the walk is complete.
            cursor: Option<u64>,
            batch: VecDeque<Vec<u8>>,
            /// SCAN may return a key more than once; each is reported once.
            seen: HashSet<Vec<u8>>,
        }
        let state = Scan {
            backend: self.clone(),
            pattern: prefix_pattern(prefix),
            cursor: Some(0),
            batch: VecDeque::new(),
            seen: HashSet::new(),
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
                let cursor = state.cursor?;
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&state.pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply: Result<(u64, Vec<Vec<u8>>)> = state
                    .backend
                    .query_idempotent("ids", &state.pattern, &cmd)
                    .await;
                match reply {
                    Ok((next, keys)) => {
                        state.cursor = (next != 0).then_some(next);
                        state.batch.extend(keys);
                    }
                    Err(e) => {
                        // Without a cursor the walk cannot go on: report and end.
                        state.cursor = None;
                        return Some((Err(e), state));
                    }
                }
            }
        })
    }
}
