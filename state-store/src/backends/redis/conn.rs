//! The Redis backend's data connection, whatever the deployment: one server through the `redis`
//! crate's reconnecting `ConnectionManager`, a Cluster through its cluster connection, or the
//! primary that Sentinel names, found again after a failover.

use std::fmt;
#[cfg(feature = "sentinel")]
use std::sync::Arc;
#[cfg(feature = "sentinel")]
use std::time::{Duration, Instant};

#[cfg(feature = "sentinel")]
use redis::aio::ConnectionManagerConfig;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// The connection a [`RedisBackend`](crate::RedisBackend) sends its commands over, for commands
/// this crate does not wrap: a `redis` crate [`ConnectionLike`] on which `query_async`,
/// pipelines and scripts work as on any connection. Clones share the backend's connections.
///
/// Through a Cluster it routes each command to the primary of its key's slot (as the `redis`
/// crate's cluster connection does); a pipeline goes to the slot of its first keyed command that
/// is not a `PUBLISH`, so every key of a pipeline must share one slot. Through Sentinel it
/// follows the primary across failovers.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Node(ConnectionManager),
    /// The client-side cache's tracking connection, for commands on its keys.
    Tracking(redis::aio::MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    #[cfg(feature = "sentinel")]
    Sentinel(Arc<Primary>),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Inner::Node(_) | Inner::Tracking(_) => "node",
            #[cfg(feature = "cluster")]
            Inner::Cluster(_) => "cluster",
            #[cfg(feature = "sentinel")]
            Inner::Sentinel(_) => "sentinel",
        };
        f.debug_struct("RedisConnection")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    pub(crate) fn node(conn: ConnectionManager) -> Self {
        RedisConnection {
            inner: Inner::Node(conn),
        }
    }

    pub(crate) fn tracking(conn: redis::aio::MultiplexedConnection) -> Self {
        RedisConnection {
            inner: Inner::Tracking(conn),
        }
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(conn: redis::cluster_async::ClusterConnection) -> Self {
        RedisConnection {
            inner: Inner::Cluster(conn),
        }
    }

    #[cfg(feature = "sentinel")]
    pub(crate) fn sentinel(primary: Arc<Primary>) -> Self {
        RedisConnection {
            inner: Inner::Sentinel(primary),
        }
    }

    /// The cluster connection, when this is one.
    #[cfg(feature = "cluster")]
    pub(crate) fn as_cluster(&self) -> Option<&redis::cluster_async::ClusterConnection> {
        match &self.inner {
            Inner::Cluster(conn) => Some(conn),
            _ => None,
        }
    }

    /// Whether commands go to a Cluster, where multi-key commands must be split per slot.
    pub(crate) fn is_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        if let Inner::Cluster(_) = self.inner {
            return true;
        }
        false
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Node(conn) => conn.req_packed_command(cmd),
            Inner::Tracking(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Inner::Cluster(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "sentinel")]
            Inner::Sentinel(primary) => {
                let primary = primary.clone();
                Box::pin(async move {
                    let (generation, mut conn) = primary.current();
                    let result = conn.req_packed_command(cmd).await;
                    primary.check(generation, result).await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Inner::Tracking(conn) => conn.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Inner::Cluster(conn) => match cluster::publishing_pipeline_route(pipeline) {
                // The `redis` crate takes a `PUBLISH` channel for a key when it routes a
                // pipeline, and refuses a `SET` and its announcement as crossing slots: route by
                // the keys instead (the server itself takes `PUBLISH` for keyless).
                Some(route) => {
                    Box::pin(conn.route_pipeline(pipeline.clone(), offset, count, route))
                }
                None => conn.req_packed_commands(pipeline, offset, count),
            },
            #[cfg(feature = "sentinel")]
            Inner::Sentinel(primary) => {
                let primary = primary.clone();
                Box::pin(async move {
                    let (generation, mut conn) = primary.current();
                    let result = conn.req_packed_commands(pipeline, offset, count).await;
                    primary.check(generation, result).await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Node(conn) => conn.get_db(),
            Inner::Tracking(conn) => conn.get_db(),
            #[cfg(feature = "cluster")]
            Inner::Cluster(conn) => conn.get_db(),
            #[cfg(feature = "sentinel")]
            Inner::Sentinel(primary) => primary.db,
        }
    }
}

#[cfg(feature = "cluster")]
pub(crate) mod cluster {
    use redis::Pipeline;
    use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};

    /// The route of a pipeline that holds `PUBLISH` commands: the primary of the slot of its
    /// first other command's key. `None` for any other pipeline, which the `redis` crate routes.
    pub(crate) fn publishing_pipeline_route(pipeline: &Pipeline) -> Option<SingleNodeRoutingInfo> {
        let is_publish = |cmd: &redis::Cmd| {
            matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name))
                if name.eq_ignore_ascii_case(b"PUBLISH"))
        };
        if !pipeline.cmd_iter().any(is_publish) {
            return None;
        }
        let key = pipeline
            .cmd_iter()
            .filter(|cmd| !is_publish(cmd))
            .find_map(|cmd| match cmd.args_iter().nth(1) {
                Some(redis::Arg::Simple(key)) => Some(key.to_vec()),
                _ => None,
            })?;
        Some(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
            key,
            SlotAddr::Master,
        )))
    }

    /// The hash slot of `key`, by which multi-key operations are split.
    pub(crate) fn slot(key: &str) -> Slot {
        Slot::for_key(key)
    }
}

/// The primary that Sentinel names, found again when a command fails in a way a failover
/// explains: the connection broke or was refused, the server did not answer, or it answered
/// `READONLY` (it is a replica now) or `MASTERDOWN`. The failing command still fails (it may
/// have run), and the next ones go to the primary the sentinels name by then.
#[cfg(feature = "sentinel")]
pub(crate) struct Primary {
    sentinel: tokio::sync::Mutex<Resolver>,
    current: std::sync::Mutex<Current>,
    config: ConnectionManagerConfig,
    /// Bounds one round of questions to the sentinels and one connection attempt.
    timeout: Duration,
    db: i64,
}

#[cfg(feature = "sentinel")]
struct Resolver {
    client: redis::sentinel::SentinelClient,
    last_asked: Option<Instant>,
}

#[cfg(feature = "sentinel")]
#[derive(Clone)]
struct Current {
    generation: u64,
    address: String,
    conn: ConnectionManager,
}

/// How often, at most, the sentinels are asked again while commands keep failing.
#[cfg(feature = "sentinel")]
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(200);

#[cfg(feature = "sentinel")]
impl Primary {
    /// Asks the sentinels for the primary and connects to it.
    pub(crate) async fn connect(
        mut client: redis::sentinel::SentinelClient,
        config: ConnectionManagerConfig,
        timeout: Duration,
        db: i64,
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
        self: &Arc<Self>,
        generation: u64,
        result: redis::RedisResult<T>,
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
        crate::trace::warn_event!(
            from = %current.address,
            to = %address,
            "state_store: the sentinels name a new primary; following it"
        );
        current.generation += 1;
        current.address = address;
        current.conn = conn;
    }
}

/// Whether a failover may be why a command failed.
#[cfg(feature = "sentinel")]
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

#[cfg(feature = "sentinel")]
async fn resolve(
    client: &mut redis::sentinel::SentinelClient,
    timeout: Duration,
) -> Result<redis::Client, String> {
    match tokio::time::timeout(timeout, client.async_get_client()).await {
        Ok(Ok(primary)) => Ok(primary),
        Ok(Err(e)) => Err(format!("the sentinels named no reachable primary: {e}")),
        Err(_) => Err(format!("the sentinels did not answer within {timeout:?}")),
    }
}

#[cfg(feature = "sentinel")]
async fn manager(
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
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
