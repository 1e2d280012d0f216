//! The Redis backend's data connection, whatever the deployment: one server through the `redis`
//! crate's reconnecting `ConnectionManager`, a Cluster through its cluster connection, or the
//! primary that Sentinel names, found again after a failover.

use std::fmt;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::link::Link;
use crate::Error;
use crate::backend::kit::not_a_counter;

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
    /// One server's data connection: whether it broke under a command since it last answered,
    /// so that the metrics count one reconnection however many commands failed with it.
    #[cfg(feature = "metrics")]
    broken: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The connection of each deployment. The Cluster's and Sentinel's are built by their modules;
/// what differs between them is asked through [`Link`], so that only these two variants name a
/// feature.
#[derive(Clone)]
pub(super) enum Inner {
    Node(ConnectionManager),
    /// The client-side cache's tracking connection, for commands on its keys.
    Tracking(redis::aio::MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(super::cluster::route::Routed),
    #[cfg(feature = "sentinel")]
    Sentinel(super::sentinel::primary::Followed),
}

/// `$body` with `$link` bound to the connection `$inner` holds, whichever deployment's it is.
macro_rules! with_link {
    ($inner:expr, $link:ident => $body:expr) => {
        match $inner {
            Inner::Node($link) => $body,
            Inner::Tracking($link) => $body,
            #[cfg(feature = "cluster")]
            Inner::Cluster($link) => $body,
            #[cfg(feature = "sentinel")]
            Inner::Sentinel($link) => $body,
        }
    };
}

fn kind<L: Link>(_: &L) -> &'static str {
    L::KIND
}

fn is_cluster<L: Link>(_: &L) -> bool {
    L::CLUSTER
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = with_link!(&self.inner, link => kind(link));
        f.debug_struct("RedisConnection")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    pub(super) fn new(inner: Inner) -> Self {
        RedisConnection {
            inner,
            #[cfg(feature = "metrics")]
            broken: None,
        }
    }

    pub(crate) fn node(conn: ConnectionManager) -> Self {
        RedisConnection {
            #[cfg(feature = "metrics")]
            broken: Some(Default::default()),
            ..Self::new(Inner::Node(conn))
        }
    }

    pub(crate) fn tracking(conn: redis::aio::MultiplexedConnection) -> Self {
        Self::new(Inner::Tracking(conn))
    }

    /// Whether commands go to a Cluster, where multi-key commands must be split per slot.
    pub(crate) fn is_cluster(&self) -> bool {
        with_link!(&self.inner, link => is_cluster(link))
    }

    /// `items` grouped by the hash slot of their `key` on a Cluster (see [`Link::per_slot`]).
    pub(super) fn per_slot<T>(
        &self, items: Vec<T>, key: impl Fn(&T) -> &str,
    ) -> Result<Vec<Vec<T>>, Vec<T>> {
        with_link!(&self.inner, link => link.per_slot(items, key))
    }

    /// Sends `cmd` to the Cluster node at `node` (see [`Link::on_node`]).
    pub(super) fn on_node<'a>(
        &'a mut self, node: &'a (String, u16), cmd: &'a Cmd,
    ) -> RedisFuture<'a, Value> {
        with_link!(&mut self.inner, link => link.on_node(node, cmd))
    }

    /// Which server the connection goes to (see [`Link::generation`]).
    pub(super) fn generation(&self) -> u64 {
        with_link!(&self.inner, link => link.generation())
    }

    /// Sends `cmd` to the primary of `key`'s slot (see [`Link::on_key_primary`]).
    pub(super) fn on_key_primary<'a>(
        &'a mut self, key: &'a str, cmd: &'a mut Cmd,
    ) -> RedisFuture<'a, Value> {
        with_link!(&mut self.inner, link => link.on_key_primary(key, cmd))
    }

    /// Sends `pipeline` to the Cluster node at `node` (see [`Link::pipeline_on_node`]).
    pub(super) fn pipeline_on_node<'a>(
        &'a mut self, node: &'a (String, u16), pipeline: &'a Pipeline,
    ) -> RedisFuture<'a, Vec<Value>> {
        with_link!(&mut self.inner, link => link.pipeline_on_node(node, pipeline))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let sent = with_link!(&mut self.inner, link => link.req_packed_command(cmd));
        #[cfg(feature = "metrics")]
        if let Some(broken) = &self.broken {
            return Box::pin(count_reconnection(broken, sent));
        }
        sent
    }

    fn req_packed_commands<'a>(
        &'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let sent =
            with_link!(&mut self.inner, link => link.req_packed_commands(pipeline, offset, count));
        #[cfg(feature = "metrics")]
        if let Some(broken) = &self.broken {
            return Box::pin(count_reconnection(broken, sent));
        }
        sent
    }

    fn get_db(&self) -> i64 {
        with_link!(&self.inner, link => link.get_db())
    }
}

/// `sent`, a command on a data connection: a failure because the connection broke marks it
/// `broken`; the first answer after that (the connection manager has reconnected) counts one
/// reconnection.
#[cfg(feature = "metrics")]
async fn count_reconnection<T>(
    broken: &std::sync::atomic::AtomicBool, sent: RedisFuture<'_, T>,
) -> redis::RedisResult<T> {
    use std::sync::atomic::Ordering::Relaxed;
    let result = sent.await;
    match &result {
        Err(e) if worth_one_retry(e) || e.is_io_error() || e.is_connection_refusal() => {
            broken.store(true, Relaxed);
        }
        // No answer in time: the connection may be fine, or not; the next answer tells.
        Err(e) if e.is_timeout() => {}
        // An answer, even an error reply: the connection works.
        _ => {
            if broken.load(Relaxed) && broken.swap(false, Relaxed) {
                crate::metrics::reconnected("redis", "data");
            }
        }
    }
    result
}

/// Whether the connection broke under a command, so that the manager is reconnecting and one
/// more try (which waits for the new connection) may succeed. Only for idempotent commands: the
/// server may have carried out the first one.
pub(super) fn worth_one_retry(e: &RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_connection_dropped()
}

/// Whether a command failed because the connection broke, was refused or did not answer in
/// time: the reads queued behind it fail with it.
pub(super) fn broke_connection(e: &RedisError) -> bool {
    worth_one_retry(e)
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_connection_dropped()
}

pub(super) fn backend_error(operation: &'static str, key: &str, e: RedisError) -> Error {
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
