//! The primary that Sentinel names, followed across failovers: the connection of a
//! [`RedisBackend::sentinel`](crate::RedisBackend::sentinel).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::super::link::Link;

/// The Sentinel connection of a [`RedisConnection`](crate::RedisConnection): each command goes
/// to the current primary, and an error a failover may explain makes it ask the sentinels again.
#[derive(Clone)]
pub(crate) struct Followed(pub(crate) Arc<Primary>);

impl ConnectionLike for Followed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let primary = self.0.clone();
        Box::pin(async move {
            let (generation, mut conn) = primary.current();
            let result = conn.req_packed_command(cmd).await;
            primary.check(generation, result).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let primary = self.0.clone();
        Box::pin(async move {
            let (generation, mut conn) = primary.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            primary.check(generation, result).await
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}

impl Link for Followed {
    const KIND: &'static str = "sentinel";

    fn generation(&self) -> u64 {
        self.0.lock().generation
    }
}

/// The primary that Sentinel names, found again when a command fails in a way a failover
/// explains: the connection broke or was refused, the server did not answer, or it answered
/// `READONLY` (it is a replica now) or `MASTERDOWN`. The failing command still fails (it may
/// have run), and the next ones go to the primary the sentinels name by then.
pub(crate) struct Primary {
    sentinel: tokio::sync::Mutex<Resolver>,
    current: std::sync::Mutex<Current>,
    config: ConnectionManagerConfig,
    /// Bounds one round of questions to the sentinels and one connection attempt.
    timeout: Duration,
    db: i64,
}

struct Resolver {
    client: redis::sentinel::SentinelClient,
    last_asked: Option<Instant>,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    address: String,
    conn: ConnectionManager,
}

/// How often, at most, the sentinels are asked again while commands keep failing.
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(200);

impl Primary {
    /// Asks the sentinels for the primary and connects to it.
    pub(crate) async fn connect(
        mut client: redis::sentinel::SentinelClient, config: ConnectionManagerConfig,
        timeout: Duration, db: i64,
    ) -> Result<Primary, String> {
        let primary = resolve(&mut client, timeout).await?;
        let address = primary.get_connection_info().addr().to_string();
        let conn = manager(primary, config.clone(), timeout).await?;
        Ok(Primary {
            sentinel: tokio::sync::Mutex::new(Resolver {
                client,
                last_asked: Some(Instant::now()),
            }),
            current: std::sync::Mutex::new(Current {
                generation: 0,
                address,
                conn,
            }),
            config,
            timeout,
            db,
        })
    }

    /// A client for the primary the sentinels name now (for the change feed's connection).
    pub(crate) async fn resolve(&self) -> Result<redis::Client, String> {
        let mut sentinel = self.sentinel.lock().await;
        resolve(&mut sentinel.client, self.timeout).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> (u64, ConnectionManager) {
        let current = self.lock();
        (current.generation, current.conn.clone())
    }

    /// Passes `result` on at once; if its error may mean a failover, the sentinels are asked
    /// again in the background (the failing call does not wait for them).
    async fn check<T>(
        self: &Arc<Self>, generation: u64, result: redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && failover_may_explain(e)
        {
            let primary = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move { primary.follow(generation).await });
                }
                Err(_) => primary.follow(generation).await,
            }
        }
        result
    }

    /// Moves to the primary the sentinels name, if it is another one than that of
    /// `generation`. One caller asks at a time; the others return their error at once rather
    /// than wait for the answer (their next commands find it).
    async fn follow(&self, generation: u64) {
        let Ok(mut sentinel) = self.sentinel.try_lock() else {
            return;
        };
        if self.lock().generation != generation {
            return; // Another caller has moved on already.
        }
        if sentinel
            .last_asked
            .is_some_and(|at| at.elapsed() < ASK_AGAIN_AFTER)
        {
            return;
        }
        sentinel.last_asked = Some(Instant::now());
        let Ok(primary) = resolve(&mut sentinel.client, self.timeout).await else {
            return; // No sentinel answered: the next failure asks again.
        };
        let address = primary.get_connection_info().addr().to_string();
        if address == self.lock().address {
            return; // Same primary: its connection manager reconnects by itself.
        }
        let Ok(conn) = manager(primary, self.config.clone(), self.timeout).await else {
            return;
        };
        let mut current = self.lock();
        crate::backend::kit::warn_event!(
            from = %current.address,
            to = %address,
            "state_store: the sentinels name a new primary; following it"
        );
        current.generation += 1;
        #[cfg(feature = "metrics")]
        crate::metrics::reconnected("redis", "data");
        current.address = address;
        current.conn = conn;
    }
}

/// Whether a failover may be why a command failed.
fn failover_may_explain(e: &redis::RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_io_error()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        // Inside a transaction, the server's refusal comes as `EXECABORT`, naming the cause.
        || e.to_string().contains("READONLY")
}

async fn resolve(
    client: &mut redis::sentinel::SentinelClient, timeout: Duration,
) -> Result<redis::Client, String> {
    match tokio::time::timeout(timeout, client.async_get_client()).await {
        Ok(Ok(primary)) => Ok(primary),
        Ok(Err(e)) => Err(format!("the sentinels named no reachable primary: {e}")),
        Err(_) => Err(format!("the sentinels did not answer within {timeout:?}")),
    }
}

async fn manager(
    client: redis::Client, config: ConnectionManagerConfig, timeout: Duration,
) -> Result<ConnectionManager, String> {
    let address = client.get_connection_info().addr().to_string();
    match tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot connect to the primary at {address}: {e}")),
        Err(_) => Err(format!(
            "the primary at {address} did not answer within {timeout:?}"
        )),
    }
}
